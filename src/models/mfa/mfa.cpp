#include "latent/models/mfa/mfa.hpp"

#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "latent/core/error.hpp"
#include "latent/core/rng.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/models/gmm/gmm.hpp"

namespace latent::models {

std::string noise_name(NoiseType noise) { return noise == NoiseType::kIsotropic ? "isotropic" : "diagonal"; }

Mfa::Mfa(Index num_components, Index num_factors, Index num_features, NoiseType noise)
    : k_(num_components), l_(num_factors), d_(num_features), noise_(noise) {
  if (k_ < 1 || l_ < 0 || d_ < 1)
    throw_usage(fmt::format("a mixture of factor analysers needs n_components >= 1, n_factors >= 0 and n_features >= 1 "
                            "(got {}, {}, {})",
                            k_, l_, d_));
  weights_ = RowVector::Constant(k_, 1.0 / static_cast<double>(k_));
  log_weights_ = weights_.array().log().matrix();
  components_.assign(static_cast<std::size_t>(k_), FactorModel(l_, d_, noise_));
}

void Mfa::set_parameters(RowVector weights, const RowMatrix& means, const RowMatrix& components,
                         const RowMatrix& noise_variance) {
  if (weights.size() != k_ || means.rows() != k_ || means.cols() != d_ || components.rows() != k_ * l_ ||
      components.cols() != d_ || noise_variance.rows() != k_ ||
      (noise_variance.cols() != d_ && !(noise_ == NoiseType::kIsotropic && noise_variance.cols() == 1)))
    throw_usage(fmt::format("mixture of factor analysers: parameters have the wrong shapes (expected weights {}, means "
                            "{} x {}, components {} x {}, noise_variance {} x {})",
                            k_, k_, d_, k_ * l_, d_, k_, noise_ == NoiseType::kIsotropic ? "1 or D" : std::to_string(d_)));
  std::vector<FactorModel> comps;
  comps.reserve(static_cast<std::size_t>(k_));
  for (Index k = 0; k < k_; ++k) {
    RowVector psi = noise_variance.cols() == 1 ? RowVector::Constant(d_, noise_variance(k, 0))
                                               : RowVector(noise_variance.row(k));
    if (noise_ == NoiseType::kIsotropic && (psi.array() != psi[0]).any())
      throw_usage(fmt::format("mixture of factor analysers: component {} has isotropic noise but unequal variances", k));
    FactorModel m(l_, d_, noise_);
    m.set_parameters(means.row(k), components.middleRows(k * l_, l_), std::move(psi));
    comps.push_back(std::move(m));
  }
  set_parameters(std::move(weights), std::move(comps));
}

void Mfa::set_parameters(RowVector weights, std::vector<FactorModel> components) {
  if (weights.size() != k_ || static_cast<Index>(components.size()) != k_)
    throw_usage("mixture of factor analysers: wrong number of weights or components");
  for (const FactorModel& m : components)
    if (m.num_components() != l_ || m.num_features() != d_ || m.noise_type() != noise_)
      throw_usage("mixture of factor analysers: a component has the wrong shape or noise type");
  for (Index k = 0; k < k_; ++k)
    if (!(weights[k] >= 0) || !std::isfinite(weights[k]))
      throw_numerical(fmt::format("mixture of factor analysers: weight {} is {} (must be non-negative and finite)", k,
                                  weights[k]));
  if (!(std::abs(weights.sum() - 1.0) <= 1e-9))
    throw_numerical(fmt::format("mixture of factor analysers: the weights sum to {:.17g}, not 1", weights.sum()));
  weights_ = std::move(weights);
  log_weights_ = weights_.array().log().matrix();
  components_ = std::move(components);
}

RowMatrix Mfa::means() const {
  RowMatrix out(k_, d_);
  for (Index k = 0; k < k_; ++k) out.row(k) = component(k).mean();
  return out;
}

RowMatrix Mfa::stacked_components() const {
  RowMatrix out(k_ * l_, d_);
  for (Index k = 0; k < k_; ++k) out.middleRows(k * l_, l_) = component(k).components();
  return out;
}

RowMatrix Mfa::noise_variances() const {
  RowMatrix out(k_, d_);
  for (Index k = 0; k < k_; ++k) out.row(k) = component(k).noise_variance();
  return out;
}

Index Mfa::num_parameters() const noexcept { return (k_ - 1) + k_ * components_.front().num_parameters(); }

void Mfa::infer(const ConstRows& x, RowMatrix& wlp, std::vector<RowMatrix>* latent,
                std::vector<RowMatrix>* imputed) const {
  if (x.cols() != d_)
    throw_usage(fmt::format("mixture of factor analysers: the data have {} features, the model {}", x.cols(), d_));
  wlp.resize(x.rows(), k_);
  if (latent) latent->resize(static_cast<std::size_t>(k_));
  if (imputed) imputed->resize(static_cast<std::size_t>(k_));
  Vector lp;
  for (Index k = 0; k < k_; ++k) {
    const std::size_t s = static_cast<std::size_t>(k);
    components_[s].infer(x, lp, latent ? &(*latent)[s] : nullptr, imputed ? &(*imputed)[s] : nullptr);
    wlp.col(k) = lp.array() + log_weights_[k];
  }
}

void Mfa::weighted_log_prob(const ConstRows& x, RowMatrix& out) const { infer(x, out, nullptr, nullptr); }

void Mfa::e_step(const ConstRows& x, Vector& log_prob, RowMatrix& resp) const {
  infer(x, resp, nullptr, nullptr);
  log_sum_exp_rows(resp, log_prob);
  // A row with nothing observed: log p = log Σ π_k, which is 0 up to rounding; make it exact.
  if (x.hasNaN())
    for (Index i = 0; i < x.rows(); ++i)
      if (x.row(i).array().isNaN().all()) log_prob[i] = 0.0;
}

void Mfa::factor_means(const ConstRows& x, Index k, RowMatrix& out) const {
  if (k < 0 || k >= k_) throw_usage(fmt::format("mixture of factor analysers: no component {}", k));
  Vector lp;
  component(k).infer(x, lp, &out, nullptr);
}

void Mfa::transform(const ConstRows& x, RowMatrix& out, std::vector<std::int64_t>* labels) const {
  RowMatrix wlp;
  std::vector<RowMatrix> latent;
  infer(x, wlp, &latent, nullptr);
  out.resize(x.rows(), l_);
  if (labels) labels->resize(static_cast<std::size_t>(x.rows()));
  for (Index i = 0; i < x.rows(); ++i) {
    Index best = 0;
    wlp.row(i).maxCoeff(&best);  // argmax of the responsibilities = argmax of log π_k + log p(x_o | k)
    out.row(i) = latent[static_cast<std::size_t>(best)].row(i);
    if (labels) (*labels)[static_cast<std::size_t>(i)] = best;
  }
}

void Mfa::impute(const ConstRows& x, RowMatrix& out) const {
  out = x;
  if (!x.hasNaN()) return;
  RowMatrix resp;
  std::vector<RowMatrix> filled;
  infer(x, resp, nullptr, &filled);
  Vector lse;
  log_sum_exp_rows(resp, lse);
  for (Index i = 0; i < x.rows(); ++i)
    for (Index j = 0; j < d_; ++j) {
      if (!std::isnan(x(i, j))) continue;
      double v = 0;
      for (Index k = 0; k < k_; ++k) v += resp(i, k) * filled[static_cast<std::size_t>(k)](i, j);
      out(i, j) = v;
    }
}

RowMatrix Mfa::sample(Index first, Index count, std::uint64_t seed, std::vector<std::int64_t>& labels) const {
  RowMatrix out(count, d_);
  labels.resize(static_cast<std::size_t>(count));
  RowMatrix sd(k_, d_);
  for (Index k = 0; k < k_; ++k) sd.row(k) = component(k).noise_variance().cwiseSqrt();
  RowVector z(l_);
  for (Index i = 0; i < count; ++i) {
    CounterRng rng(seed, RngPurpose::kSample, 0, static_cast<std::uint64_t>(first + i));
    double u = rng.next_uniform();
    Index c = 0;
    while (c + 1 < k_ && u > weights_[c]) u -= weights_[c++];
    const FactorModel& m = component(c);
    for (Index j = 0; j < l_; ++j) z[j] = rng.next_normal();
    out.row(i) = m.mean();
    out.row(i).noalias() += z * m.components();
    for (Index j = 0; j < d_; ++j) out(i, j) += sd(c, j) * rng.next_normal();
    labels[static_cast<std::size_t>(i)] = c;
  }
  return out;
}

namespace {

class MfaFitted final : public FittedModel {
 public:
  MfaFitted(Mfa model, std::string summary) : model_(std::move(model)), summary_(std::move(summary)) {}
  std::string name() const override { return "mfa"; }
  Index num_features() const override { return model_.num_features(); }
  Index num_components() const override { return model_.num_components(); }
  bool has_likelihood() const override { return true; }
  Index num_parameters() const override { return model_.num_parameters(); }
  bool is_mixture() const override { return true; }
  bool handles_missing() const override { return true; }
  // As fa/ppca: the posterior factor means, here under the most probable component.
  std::string transform_name() const override { return "latent_mean"; }
  Index transform_dim() const override { return model_.num_factors(); }

  void predict_block(const RowMatrix& x, Vector& score, std::vector<std::int64_t>& labels, RowMatrix* proba) const override {
    RowMatrix resp;
    model_.e_step(x, score, resp);
    labels.resize(static_cast<std::size_t>(x.rows()));
    for (Index i = 0; i < x.rows(); ++i) {
      Index best = 0;
      resp.row(i).maxCoeff(&best);
      labels[static_cast<std::size_t>(i)] = best;
    }
    if (proba) *proba = std::move(resp);
  }
  void transform_block(const RowMatrix& x, RowMatrix& out) const override { model_.transform(x, out); }
  void impute_block(const RowMatrix& x, RowMatrix& out) const override { model_.impute(x, out); }
  RowMatrix sample(Index first, Index n, std::uint64_t seed, std::vector<std::int64_t>& labels) const override {
    return model_.sample(first, n, seed, labels);
  }

  std::string describe() const override {
    std::string s = fmt::format("mixture of factor analysers: {} components, {} factors, {} features, {} noise\n",
                                model_.num_components(), model_.num_factors(), model_.num_features(),
                                noise_name(model_.noise_type()));
    s += summary_;
    s += "  component  weight     mean(|mean|)  mean noise variance  tr(W^T W)/D (variance the factors explain)\n";
    for (Index k = 0; k < model_.num_components(); ++k) {
      const FactorModel& m = model_.component(k);
      s += fmt::format("  {:>9}  {:<9.5f}  {:<12.6g}  {:<19.6g}  {:.6g}\n", k, model_.weights()[k],
                       m.mean().cwiseAbs().mean(), m.noise_variance().mean(),
                       m.components().squaredNorm() / static_cast<double>(model_.num_features()));
    }
    return s;
  }

 private:
  Mfa model_;
  std::string summary_;
};

std::string shape_text(const std::vector<Index>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// The dataset's shape, or Error(kInput) naming file and dataset if it is missing or its
// rank differs from `rank`.
std::vector<Index> dataset_shape(const io::H5Reader& r, const std::string& name, std::size_t rank) {
  if (!r.has(name)) throw_input("model " + r.path() + ": dataset /" + name + " is missing");
  const std::vector<Index> shape = r.shape(name);
  if (shape.size() != rank)
    throw_input(fmt::format("model {}: dataset /{} has shape {}, expected {} dimensions", r.path(), name,
                            shape_text(shape), rank));
  return shape;
}

void expect_shape(const io::H5Reader& r, const std::string& name, const std::vector<Index>& expected) {
  const std::vector<Index> shape = dataset_shape(r, name, expected.size());
  if (shape != expected)
    throw_input(fmt::format("model {}: dataset /{} has shape {}, expected {}", r.path(), name, shape_text(shape),
                            shape_text(expected)));
}

void expect_finite(const io::H5Reader& r, const std::string& name, const std::vector<double>& v) {
  for (const double x : v)
    if (!std::isfinite(x)) throw_input("model " + r.path() + ": dataset /" + name + " has a value that is not finite");
}

}  // namespace

std::unique_ptr<FittedModel> make_fitted(Mfa model) { return std::make_unique<MfaFitted>(std::move(model), ""); }

void save_mfa(const Mfa& m, const FitRecord& record, const std::string& path, bool overwrite) {
  io::H5Writer w(path, overwrite);
  write_fit_record(w, "mfa", record);
  const Index k = m.num_components(), l = m.num_factors(), d = m.num_features();
  const bool iso = m.noise_type() == NoiseType::kIsotropic;
  w.write("weights", std::span<const double>(m.weights().data(), static_cast<std::size_t>(k)));
  w.write("means", m.means());
  const RowMatrix comps = m.stacked_components();
  w.write("components", std::span<const double>(comps.data(), static_cast<std::size_t>(comps.size())), {k, l, d});
  const RowMatrix psi = m.noise_variances();
  if (iso) {
    const RowVector sigma2 = psi.col(0).transpose();
    w.write("noise_variance", std::span<const double>(sigma2.data(), static_cast<std::size_t>(k)));
  } else {
    w.write("noise_variance", psi);
  }
  w.attr("/", "noise_type", noise_name(m.noise_type()));
  w.attr("/", "n_components", static_cast<std::int64_t>(k));
  w.attr("/", "n_factors", static_cast<std::int64_t>(l));
  w.attr("/", "n_features_in", static_cast<std::int64_t>(d));
  w.commit();
}

Mfa read_mfa(const io::H5Reader& r) {
  const std::string& path = r.path();
  if (!r.has_attr("/", "model") || r.attr_string("/", "model") != "mfa")
    throw_input("model " + path + ": not an MFA model file (root attribute model != \"mfa\")");
  if (r.has_attr("/", "format_version") && r.attr_int("/", "format_version") != kModelFormatVersion)
    throw_input(fmt::format("model {}: format_version {} is not supported (this build reads {})", path,
                            r.attr_int("/", "format_version"), kModelFormatVersion));
  if (!r.has_attr("/", "noise_type")) throw_input("model " + path + ": root attribute noise_type is missing");
  const std::string noise_attr = r.attr_string("/", "noise_type");
  if (noise_attr != "diagonal" && noise_attr != "isotropic")
    throw_input("model " + path + ": root attribute noise_type is '" + noise_attr + "' (expected diagonal or isotropic)");
  const NoiseType noise = noise_attr == "isotropic" ? NoiseType::kIsotropic : NoiseType::kDiagonal;
  const std::vector<Index> ms = dataset_shape(r, "means", 2);
  const Index k = ms[0], d = ms[1];
  if (k < 1 || d < 1) throw_input(fmt::format("model {}: dataset /means has shape {}", path, shape_text(ms)));
  expect_shape(r, "weights", {k});
  const std::vector<Index> cs = dataset_shape(r, "components", 3);
  if (cs[0] != k || cs[2] != d)
    throw_input(fmt::format("model {}: dataset /components has shape {}, expected ({}, n_factors, {})", path,
                            shape_text(cs), k, d));
  const Index l = cs[1];
  expect_shape(r, "noise_variance", noise == NoiseType::kIsotropic ? std::vector<Index>{k} : std::vector<Index>{k, d});
  const std::vector<double> weights = r.read_doubles("weights"), means = r.read_doubles("means"),
                            comps = r.read_doubles("components"), psi = r.read_doubles("noise_variance");
  expect_finite(r, "weights", weights);
  expect_finite(r, "means", means);
  expect_finite(r, "components", comps);
  expect_finite(r, "noise_variance", psi);
  double total = 0;
  for (const double w : weights) {
    if (w < 0) throw_input("model " + path + ": dataset /weights has a negative weight");
    total += w;
  }
  if (!(std::abs(total - 1.0) <= 1e-9))
    throw_input(fmt::format("model {}: dataset /weights sums to {:.17g}, not 1", path, total));
  for (const double v : psi)
    if (!(v > 0)) throw_input("model " + path + ": dataset /noise_variance has a variance that is not positive");
  Mfa m(k, l, d, noise);
  m.set_parameters(Eigen::Map<const RowVector>(weights.data(), k), Eigen::Map<const RowMatrix>(means.data(), k, d),
                   Eigen::Map<const RowMatrix>(comps.data(), k * l, d),
                   Eigen::Map<const RowMatrix>(psi.data(), k, noise == NoiseType::kIsotropic ? 1 : d));
  return m;
}

std::unique_ptr<FittedModel> load_mfa(const io::H5Reader& r) {
  return std::make_unique<MfaFitted>(read_mfa(r), fit_summary(r));
}

std::unique_ptr<FittedModel> load_mfa(const std::string& path) {
  const io::H5Reader r(path);
  return load_mfa(r);
}

}  // namespace latent::models
