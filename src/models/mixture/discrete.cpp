#include "latent/models/mixture/discrete.hpp"

#include <cmath>
#include <limits>

#include "latent/core/error.hpp"
#include "latent/core/rng.hpp"

namespace latent::models {
namespace {
constexpr double kProbFloor = 1e-10;
}  // namespace

DiscreteMixture::DiscreteMixture(Index num_components, Index num_features, DiscreteKind kind, double alpha,
                                 double weight_alpha)
    : k_(num_components), d_(num_features), kind_(kind), alpha_(alpha), weight_alpha_(weight_alpha) {
  if (k_ < 1) throw_usage("n_components must be at least 1");
  if (!(alpha_ >= 0) || !(weight_alpha_ >= 0)) throw_usage("--alpha and --weight-alpha must be non-negative");
}

Index DiscreteMixture::num_parameters() const noexcept {
  return k_ - 1 + k_ * (kind_ == DiscreteKind::kBernoulli ? d_ : d_ - 1);
}

void DiscreteMixture::set_parameters(RowVector weights, RowMatrix probabilities) {
  if (weights.size() != k_ || probabilities.rows() != k_ || probabilities.cols() != d_)
    throw_usage("discrete mixture parameters have the wrong shapes");
  weights_ = std::move(weights);
  probs_ = std::move(probabilities);
  if (kind_ == DiscreteKind::kBernoulli) probs_ = probs_.cwiseMax(kProbFloor).cwiseMin(1.0 - kProbFloor);
  prepare();
}

void DiscreteMixture::prepare() {
  bias_ = weights_.array().log().matrix();
  if (kind_ == DiscreteKind::kBernoulli) {
    const Eigen::ArrayXXd log_mu = probs_.array().log(), log_1m = (1.0 - probs_.array()).log();
    coef_ = (log_mu - log_1m).matrix().transpose();
    bias_ += log_1m.matrix().rowwise().sum().transpose();
  } else {
    // log 0 = −inf for a word a component never emits (α = 0): such a document gets
    // probability 0 under that component.
    coef_ = probs_.array().log().matrix().transpose();
  }
}

void DiscreteMixture::weighted_log_prob(const Eigen::Ref<const RowMatrix>& x, RowMatrix& out) const {
  out.resize(x.rows(), k_);
  out.noalias() = x * coef_;
  out.rowwise() += bias_;
}

void DiscreteMixture::weighted_log_prob(const io::CsrBlock& docs, RowMatrix& out) const {
  const Index n = docs.num_rows();
  out.resize(n, k_);
  for (Index i = 0; i < n; ++i) {
    auto row = out.row(i);
    row = bias_;
    for (auto j = docs.indptr[static_cast<std::size_t>(i)]; j < docs.indptr[static_cast<std::size_t>(i) + 1]; ++j) {
      const double c = docs.counts[static_cast<std::size_t>(j)];
      const double* coef = coef_.data() + static_cast<Index>(docs.indices[static_cast<std::size_t>(j)]) * k_;
      for (Index k = 0; k < k_; ++k) row[k] += c * coef[k];
    }
  }
}

void DiscreteMixture::normalize(RowMatrix& wlp, Vector& log_prob) {
  log_prob.resize(wlp.rows());
  for (Index i = 0; i < wlp.rows(); ++i) {
    const double m = wlp.row(i).maxCoeff();
    if (!std::isfinite(m)) {
      log_prob[i] = m;
      wlp.row(i).setConstant(1.0 / static_cast<double>(wlp.cols()));
      continue;
    }
    double s = 0;
    for (Index k = 0; k < wlp.cols(); ++k) s += std::exp(wlp(i, k) - m);
    log_prob[i] = m + std::log(s);
    for (Index k = 0; k < wlp.cols(); ++k) wlp(i, k) = std::exp(wlp(i, k) - log_prob[i]);
  }
}

double DiscreteMixture::log_prior() const {
  double lp = 0;
  if (weight_alpha_ > 0) lp += weight_alpha_ * weights_.array().log().sum();
  if (alpha_ > 0) {
    if (kind_ == DiscreteKind::kBernoulli)
      lp += alpha_ * (probs_.array().log() + (1.0 - probs_.array()).log()).sum();
    else
      lp += alpha_ * probs_.array().log().sum();
  }
  return lp;
}

RowMatrix DiscreteMixture::sample(Index first, Index count, std::uint64_t seed, std::vector<std::int64_t>& labels) const {
  if (kind_ != DiscreteKind::kBernoulli) throw_usage("a multinomial mixture samples documents: `latent sample` writes a count dataset");
  RowMatrix out(count, d_);
  labels.resize(static_cast<std::size_t>(count));
  for (Index i = 0; i < count; ++i) {
    CounterRng rng(seed, RngPurpose::kSample, 0, static_cast<std::uint64_t>(first + i));
    double u = rng.next_uniform();
    Index c = 0;
    while (c + 1 < k_ && u > weights_[c]) u -= weights_[c++];
    for (Index j = 0; j < d_; ++j) out(i, j) = rng.next_uniform() < probs_(c, j) ? 1.0 : 0.0;
    labels[static_cast<std::size_t>(i)] = c;
  }
  return out;
}

std::size_t DiscreteEm::num_stats() const {
  return static_cast<std::size_t>(2 + model_.num_components() + model_.num_components() * model_.num_features());
}

void DiscreteEm::accumulate(const Eigen::Ref<const RowMatrix>& x, const RowMatrix& resp, std::span<double> partial) const {
  const Index k = model_.num_components(), d = model_.num_features();
  partial[1] += static_cast<double>(x.rows());
  Eigen::Map<RowVector>(partial.data() + 2, k) += resp.colwise().sum();
  Eigen::Map<RowMatrix>(partial.data() + 2 + k, k, d).noalias() += resp.transpose() * x;
}

void DiscreteEm::accumulate(const io::CsrBlock& docs, const RowMatrix& resp, std::span<double> partial) const {
  const Index k = model_.num_components();
  partial[1] += static_cast<double>(docs.num_rows());
  Eigen::Map<RowVector>(partial.data() + 2, k) += resp.colwise().sum();
  // S is K × V row-major: S_kw += r_dk c_dw.
  double* s = partial.data() + 2 + k;
  const Index v = model_.num_features();
  for (Index i = 0; i < docs.num_rows(); ++i)
    for (auto j = docs.indptr[static_cast<std::size_t>(i)]; j < docs.indptr[static_cast<std::size_t>(i) + 1]; ++j) {
      const double c = docs.counts[static_cast<std::size_t>(j)];
      const Index w = docs.indices[static_cast<std::size_t>(j)];
      for (Index c2 = 0; c2 < k; ++c2) s[c2 * v + w] += c * resp(i, c2);
    }
}

train::EmModel::Step DiscreteEm::m_step(std::span<const double> stats) {
  const Index k = model_.num_components(), d = model_.num_features();
  const double n = stats[1];
  const double objective = (stats[0] + model_.log_prior()) / n;
  // Copies: reductions over maps of a heap buffer would depend on its alignment.
  const RowVector nk = Eigen::Map<const RowVector>(stats.data() + 2, k);
  const RowMatrix s = Eigen::Map<const RowMatrix>(stats.data() + 2 + k, k, d);
  const double a = model_.alpha(), g = model_.weight_alpha();
  RowVector w = (nk.array() + g).matrix() / (n + static_cast<double>(k) * g);
  RowMatrix p(k, d);
  if (model_.kind() == DiscreteKind::kBernoulli) {
    for (Index c = 0; c < k; ++c) p.row(c) = (s.row(c).array() + a) / (nk[c] + 2 * a + 1e-300);
  } else {
    for (Index c = 0; c < k; ++c) {
      const double total = s.row(c).sum() + static_cast<double>(d) * a;
      if (!(total > 0))
        throw_numerical("multinomial mixture: component " + std::to_string(c) +
                        " is empty and --alpha is 0; use fewer components or --alpha > 0");
      p.row(c) = (s.row(c).array() + a) / total;
    }
  }
  if ((w.array() <= 0).any())
    throw_numerical("discrete mixture: a component lost every sample; use fewer components or --weight-alpha > 0");
  model_.set_parameters(w, p);
  const train::EmModel::Step step{objective, objective - previous_};
  previous_ = objective;
  return step;
}

void DiscreteEm::save_state(train::TrainState& state) const {
  state.arrays["weights"] = model_.weights();
  state.arrays["probabilities"] = model_.probabilities();
  state.scalars["previous_objective"] = previous_;
}

void DiscreteEm::load_state(const train::TrainState& state) {
  const RowMatrix& w = state.array("weights");
  model_.set_parameters(RowVector(Eigen::Map<const RowVector>(w.data(), w.size())), state.array("probabilities"));
  previous_ = state.scalar("previous_objective");
}

void DiscreteEm::reset_objective() { previous_ = -1e300; }

}  // namespace latent::models
