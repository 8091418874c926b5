#include "latent/models/gmm/bgmm.hpp"

#include "latent/train/restarts.hpp"

#include <Eigen/Cholesky>
#include <cmath>
#include <limits>
#include <optional>

#include <fmt/format.h>

#include "latent/core/error.hpp"
#include "latent/models/factor/factor_fit.hpp"
#include "latent/models/gmm/float32_tiles.hpp"
#include "latent/models/kmeans/kmeans.hpp"
#include "latent/models/lda/lda.hpp"
#include "latent/train/block_reduce.hpp"

namespace latent::models {
namespace {

constexpr double kNkFloor = 10.0 * std::numeric_limits<double>::epsilon();
const double kLog2 = std::log(2.0);

double lgamma_safe(double x) {
  int sign = 0;
  return lgamma_r(x, &sign);
}

class Bgmm final : public train::EmModel {
 public:
  Bgmm(const BgmmConfig& c, Index d, RowVector center, RowVector mean_prior, RowMatrix covariance_prior)
      : c_(c), k_(c.n_components), d_(d), dp_(c.weight_concentration_prior_type == "dirichlet_process"),
        center_(std::move(center)), m0_(std::move(mean_prior)), psi0_(std::move(covariance_prior)),
        gmm_(k_, d_, c.covariance_type, c.reg_covar) {
    gmm_.set_center(center_);
    gamma0_ = c.weight_concentration_prior > 0 ? c.weight_concentration_prior : 1.0 / static_cast<double>(k_);
    beta0_ = c.mean_precision_prior > 0 ? c.mean_precision_prior : 1.0;
    nu0_ = c.degrees_of_freedom_prior > 0 ? c.degrees_of_freedom_prior : static_cast<double>(d_);
    if (nu0_ <= static_cast<double>(d_) - 1)
      throw_usage(fmt::format("--degrees-of-freedom-prior must be > n_features - 1 = {}", d_ - 1));
  }

  std::size_t num_stats() const override { return gmm_.num_stats() + 1; }

  void e_step_block(const io::DenseBlock& block, std::span<double> partial) const override {
    const Index tile = c_.covariance_type == CovarianceType::kFull ? Gmm::kFullTileRows : Gmm::kTileRows;
    Vector lpn;
    RowMatrix resp;
    double entropy = 0;
    for (Index r0 = 0; r0 < block.x.rows(); r0 += tile) {
      const auto x = block.x.middleRows(r0, std::min(tile, block.x.rows() - r0));
      gmm_.e_step(x, lpn, resp);
      partial[0] += lpn.sum();
      gmm_.accumulate(x, resp, partial);
      for (Index i = 0; i < resp.size(); ++i) {
        const double r = resp.data()[i];
        if (r > 0) entropy += r * std::log(r);
      }
    }
    partial[partial.size() - 1] += entropy;
  }

  // Statistics → (N_k, x̄_k, S_k) as scikit-learn's _estimate_gaussian_parameters
  // (S_k with reg_covar), then the variational updates and the lower bound.
  Step m_step(std::span<const double> stats) override {
    Gmm scratch(k_, d_, c_.covariance_type, c_.reg_covar);
    scratch.set_center(center_);
    if (c_.covariance_type == CovarianceType::kFull) scratch.set_component_shift(shift_);
    scratch.m_step(stats.first(stats.size() - 1));
    const RowVector nk = Eigen::Map<const RowVector>(stats.data() + 2, k_).array() + kNkFloor;
    update(nk, scratch.means(), scratch.covariances());
    const double n = stats[1];
    const double bound = lower_bound(stats[stats.size() - 1]);
    const Step step{bound / n, bound / n - previous_};
    previous_ = bound / n;
    return step;
  }

  void update(const RowVector& nk, const RowMatrix& xk, const RowMatrix& sk) {
    // Weights.
    if (dp_) {
      wc_.resize(2, k_);
      double tail = nk.sum();
      for (Index j = 0; j < k_; ++j) {
        tail -= nk[j];
        wc_(0, j) = 1.0 + nk[j];
        wc_(1, j) = gamma0_ + std::max(tail, 0.0);
      }
    } else {
      wc_ = (nk.array() + gamma0_).matrix();
    }
    // Means and precisions.
    beta_ = (nk.array() + beta0_).matrix();
    nu_ = (nk.array() + nu0_).matrix();
    means_.resize(k_, d_);
    for (Index j = 0; j < k_; ++j) means_.row(j) = (beta0_ * m0_ + nk[j] * xk.row(j)) / beta_[j];
    switch (c_.covariance_type) {
      case CovarianceType::kFull:
        cov_.resize(k_ * d_, d_);
        for (Index j = 0; j < k_; ++j) {
          const RowVector diff = xk.row(j) - m0_;
          RowMatrix c = psi0_ + nk[j] * sk.middleRows(j * d_, d_);
          c.noalias() += (nk[j] * beta0_ / beta_[j]) * diff.transpose() * diff;
          cov_.middleRows(j * d_, d_) = c / nu_[j];
        }
        break;
      case CovarianceType::kTied: {
        // One Wishart shared by the components (scikit-learn's _estimate_wishart_tied).
        const double kk = static_cast<double>(k_);
        nu_.setConstant(nu0_ + nk.sum() / kk);
        RowMatrix c = psi0_ + sk * (nk.sum() / kk);
        for (Index j = 0; j < k_; ++j) {
          const RowVector diff = xk.row(j) - m0_;
          c.noalias() += (beta0_ / kk * nk[j] / beta_[j]) * diff.transpose() * diff;
        }
        cov_ = c / nu_[0];
        break;
      }
      case CovarianceType::kDiag:
        cov_.resize(k_, d_);
        for (Index j = 0; j < k_; ++j) {
          const RowVector diff = xk.row(j) - m0_;
          cov_.row(j) = (psi0_.row(0).array() + nk[j] * (sk.row(j).array() + beta0_ / beta_[j] * diff.array().square())) / nu_[j];
        }
        break;
      case CovarianceType::kSpherical:
        cov_.resize(k_, 1);
        for (Index j = 0; j < k_; ++j) {
          const RowVector diff = xk.row(j) - m0_;
          cov_(j, 0) = (psi0_(0, 0) + nk[j] * (sk(j, 0) + beta0_ / beta_[j] * diff.array().square().mean())) / nu_[j];
        }
        break;
    }
    // E-step operands: plug-in Gaussians with the expected log-weights and the Wishart
    // corrections in the per-component weight (scikit-learn's _estimate_log_weights +
    // _estimate_log_prob).
    RowVector log_w(k_);
    if (dp_) {
      double acc = 0;
      for (Index j = 0; j < k_; ++j) {
        const double dab = digamma(wc_(0, j) + wc_(1, j));
        log_w[j] = digamma(wc_(0, j)) - dab + acc;
        acc += digamma(wc_(1, j)) - dab;
      }
    } else {
      const double dsum = digamma(wc_.sum());
      for (Index j = 0; j < k_; ++j) log_w[j] = digamma(wc_(0, j)) - dsum;
    }
    const double d = static_cast<double>(d_);
    for (Index j = 0; j < k_; ++j) {
      double log_lambda = d * kLog2;
      for (Index i = 0; i < d_; ++i) log_lambda += digamma(0.5 * (nu_[j] - static_cast<double>(i)));
      log_w[j] += -0.5 * d * std::log(nu_[j]) + 0.5 * (log_lambda - d / beta_[j]);
    }
    log_w_ = log_w;
    gmm_.set_parameters(log_w.array().max(-700.0).exp().matrix(), means_, cov_);
    shift_ = means_;
  }

  double lower_bound(double sum_r_log_r) const {
    const double d = static_cast<double>(d_);
    double log_wishart = 0;
    for (Index j = 0; j < k_; ++j) {
      double log_det_cov = 0;
      switch (c_.covariance_type) {
        case CovarianceType::kFull:
        case CovarianceType::kTied: {
          const Eigen::LLT<Eigen::MatrixXd> llt(
              Eigen::MatrixXd(c_.covariance_type == CovarianceType::kFull ? cov_.middleRows(j * d_, d_) : cov_.middleRows(0, d_)));
          log_det_cov = 2.0 * llt.matrixLLT().diagonal().array().log().sum();
          break;
        }
        case CovarianceType::kDiag: log_det_cov = cov_.row(j).array().log().sum(); break;
        case CovarianceType::kSpherical: log_det_cov = d * std::log(cov_(j, 0)); break;
      }
      const double log_det_chol = -0.5 * log_det_cov - 0.5 * d * std::log(nu_[j]);
      double g = 0;
      for (Index i = 0; i < d_; ++i) g += lgamma_safe(0.5 * (nu_[j] - static_cast<double>(i)));
      log_wishart += -(nu_[j] * log_det_chol + nu_[j] * d * 0.5 * kLog2 + g);
    }
    double log_norm_weight = 0;
    if (dp_) {
      for (Index j = 0; j < k_; ++j)
        log_norm_weight -= lgamma_safe(wc_(0, j)) + lgamma_safe(wc_(1, j)) - lgamma_safe(wc_(0, j) + wc_(1, j));
    } else {
      log_norm_weight = lgamma_safe(wc_.sum());
      for (Index j = 0; j < k_; ++j) log_norm_weight -= lgamma_safe(wc_(0, j));
    }
    return -sum_r_log_r - log_wishart - log_norm_weight - 0.5 * d * beta_.array().log().sum();
  }

  void save_state(train::TrainState& st) const override {
    st.arrays["weight_concentration"] = wc_;
    st.arrays["mean_precision"] = beta_;
    st.arrays["degrees_of_freedom"] = nu_;
    st.arrays["means"] = means_;
    st.arrays["covariances"] = cov_;
    st.arrays["log_weights"] = log_w_;
    st.scalars["previous_objective"] = previous_;
  }
  void load_state(const train::TrainState& st) override {
    wc_ = st.array("weight_concentration");
    beta_ = st.array("mean_precision");
    nu_ = st.array("degrees_of_freedom");
    means_ = st.array("means");
    cov_ = st.array("covariances");
    log_w_ = st.array("log_weights");
    previous_ = st.scalar("previous_objective");
    gmm_.set_parameters(log_w_.array().max(-700.0).exp().matrix(), means_, cov_);
    shift_ = means_;
  }

  Gmm& gmm() { return gmm_; }
  void reset_objective() { previous_ = -std::numeric_limits<double>::infinity(); }
  BgmmFitResult result(train::EmResult em) const {
    RowVector w(k_);
    if (dp_) {
      double rest = 1;
      for (Index j = 0; j < k_; ++j) {
        const double v = wc_(0, j) / (wc_(0, j) + wc_(1, j));
        w[j] = v * rest;
        rest *= 1 - v;
      }
    } else {
      w = wc_.row(0) / wc_.sum();
    }
    Gmm plug(k_, d_, c_.covariance_type, c_.reg_covar);
    plug.set_parameters(w / w.sum(), means_, cov_);
    return {std::move(plug), wc_, beta_, nu_, std::move(em)};
  }
  RowMatrix shift_;

 private:
  BgmmConfig c_;
  Index k_, d_;
  bool dp_;
  RowVector center_, m0_;
  RowMatrix psi0_;  // full/tied: D × D; diag: 1 × D; spherical: 1 × 1
  double gamma0_ = 0, beta0_ = 0, nu0_ = 0;
  Gmm gmm_;
  RowMatrix wc_, means_, cov_;
  RowVector beta_, nu_, log_w_;
  double previous_ = -std::numeric_limits<double>::infinity();
};

}  // namespace

BgmmFitResult fit_bgmm(const comm::Communicator& comm, io::BlockSource& source, const train::DataSummary& summary,
                       const BgmmConfig& c, const Logger& log, const train::IterationObserver& observer,
                       train::FitControl* control) {
  const Index k = c.n_components, d = source.info().num_features;
  if (k < 1) throw_usage("--n-components must be at least 1");
  if (k > summary.num_samples) throw_usage("Expected n_samples >= n_components");
  if (c.weight_concentration_prior_type != "dirichlet_process" && c.weight_concentration_prior_type != "dirichlet_distribution")
    throw_usage("--weight-concentration-prior-type must be dirichlet_process or dirichlet_distribution");
  if (c.max_iter < 1) throw_usage("--max-iter must be at least 1");
  const double n = static_cast<double>(summary.num_samples);
  // Priors as scikit-learn: the data mean, and its covariance (ddof = 1).
  RowMatrix psi0;
  if (c.covariance_type == CovarianceType::kFull || c.covariance_type == CovarianceType::kTied) {
    const Scatter s = scatter_pass(comm, source, summary.mean, c.threads);
    psi0 = (s.t - s.s.transpose() * s.s / n) / std::max(1.0, n - 1);
  } else {
    psi0 = summary.variance * (n / std::max(1.0, n - 1));
    if (c.covariance_type == CovarianceType::kSpherical) psi0 = RowMatrix::Constant(1, 1, psi0.mean());
  }
  const RowVector centre = gmm_kernel::float32_centre(summary.mean, summary.variance);
  const auto blank = [&] { return Bgmm(c, d, centre, summary.mean, psi0); };
  train::RestartSteps<Bgmm> steps;
  steps.blank = blank;
  steps.initial = [&](int, std::uint64_t seed, const train::InitPoints& points) {
    // Initial responsibilities: k-means (hard) or uniform random, then an M-step.
    Bgmm model = blank();
    KmeansResult km;
    if (c.init_params == "kmeans") {
      km = initial_kmeans(comm, source, summary.num_samples, summary.mean, k, seed, c.threads, log, points,
                          bound_bytes_for(c.row_state_bytes));
    } else if (c.init_params != "random") {
      throw_usage("invalid --init-params '" + c.init_params + "' for bgmm (kmeans or random)");
    }
    Gmm acc(k, d, c.covariance_type, c.reg_covar);
    acc.set_center(centre);
    const RowMatrix shift = c.init_params == "kmeans" ? km.centers : summary.mean.replicate(k, 1);
    acc.set_component_shift(shift);
    const Vector norms = km.centered_centers.rowwise().squaredNorm();
    std::vector<double> stats = train::reduce_global(comm, source, model.num_stats(), c.threads, [&](const io::DenseBlock& b, std::span<double> p) {
      const RowMatrix resp = c.init_params == "kmeans" ? hard_responsibilities(b.x, km.centered_centers, norms, km.frame.origin)
                                                       : random_responsibilities(b.x.rows(), b.ref.global_row_begin, k, seed);
      acc.accumulate(b.x, resp, p);
    });
    model.shift_ = shift;
    model.m_step(stats);
    model.reset_objective();
    return model;
  };
  steps.fit = [&](Bgmm& model, train::EmResult start, const train::IterationHook& hook) {
    return train::run_batch_em(comm, source, summary.num_samples, model, {c.max_iter, c.tol, c.threads}, observer,
                               std::move(start), hook);
  };
  train::BestRun<Bgmm> best = train::run_restarts(control, c.n_init, c.seed, log, steps);
  if (!best.em.converged)
    log.warn("Best performing initialization did not converge. Try different init parameters, or increase max_iter, tol");
  return best.model.result(std::move(best.em));
}

}  // namespace latent::models
