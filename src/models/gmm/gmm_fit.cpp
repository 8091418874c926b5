#include "latent/models/gmm/gmm_fit.hpp"

#include "latent/train/restarts.hpp"

#include <limits>
#include <optional>

#include <fmt/format.h>

#include "latent/core/error.hpp"
#include "latent/models/fitted_model.hpp"
#include "latent/models/gmm/float32_tiles.hpp"
#include "latent/core/rng.hpp"
#include "latent/models/kmeans/kmeans.hpp"
#include "latent/train/block_reduce.hpp"

namespace latent::models {
namespace {

// One pass with responsibilities given by `resp_of(block, resp)`, then an M-step.
template <class RespFn>
void initialise_from_resp(const comm::Communicator& comm, io::BlockSource& source, Gmm& gmm, int threads, RespFn resp_of) {
  const std::vector<double> stats =
      train::reduce_global(comm, source, gmm.num_stats(), threads, [&](const io::DenseBlock& b, std::span<double> partial) {
        RowMatrix resp;
        resp_of(b, resp);
        gmm.accumulate(b.x, resp, partial);
      });
  gmm.m_step(stats);
  gmm.reset_objective();
}

}  // namespace

Gmm initial_gmm(const comm::Communicator& comm, io::BlockSource& source, const train::DataSummary& summary,
                const GmmConfig& c, std::uint64_t seed, const Logger& log, const train::InitPoints& points) {
  const Index k = c.n_components, d = source.info().num_features;
  Gmm gmm(k, d, c.covariance_type, c.reg_covar);
  gmm.set_center(gmm_kernel::float32_centre(summary.mean, summary.variance));
  gmm.set_component_shift(summary.mean.replicate(k, 1));
  // Missing values: the initialising statistics need parameters for the missing entries'
  // expectations (the data's mean and variance), and the seeding passes see NaN replaced
  // by the feature means.
  const bool missing = summary.num_missing > 0;
  std::unique_ptr<io::BlockSource> filled;
  if (missing) {
    const RowVector var = (summary.variance.array() + c.reg_covar).matrix();
    RowMatrix cov;
    switch (c.covariance_type) {
      case CovarianceType::kDiag: cov = var.replicate(k, 1); break;
      case CovarianceType::kSpherical: cov = RowMatrix::Constant(k, 1, var.mean()); break;
      case CovarianceType::kTied: cov = RowMatrix(var.asDiagonal()); break;
      case CovarianceType::kFull:
        cov = RowMatrix::Zero(k * d, d);
        for (Index j = 0; j < k; ++j) cov.middleRows(j * d, d).diagonal() = var.transpose();
        break;
    }
    gmm.set_parameters(RowVector::Constant(k, 1.0 / static_cast<double>(k)), summary.mean.replicate(k, 1), cov);
    filled = source.with_nan_fill(std::vector<double>(summary.mean.data(), summary.mean.data() + d));
  }
  io::BlockSource& seeding = missing ? *filled : source;
  const auto fill_nan = [&](const RowMatrix& x) {
    if (!missing || !x.hasNaN()) return x;
    RowMatrix f = x;
    for (Index i = 0; i < f.rows(); ++i)
      for (Index j = 0; j < d; ++j)
        if (std::isnan(f(i, j))) f(i, j) = summary.mean[j];
    return f;
  };
  if (!c.init_model.empty()) {
    const Gmm start = load_gmm_parameters(c.init_model);
    if (start.num_components() != k || start.num_features() != d || start.covariance_type() != c.covariance_type)
      throw_usage(fmt::format("--init-model {} has K={}, D={}, covariance_type={}; the fit asks for K={}, D={}, {}",
                              c.init_model, start.num_components(), start.num_features(),
                              to_string(start.covariance_type()), k, d, to_string(c.covariance_type)));
    gmm.set_parameters(start.weights(), start.means(), start.covariances());
  } else if (c.init_params == "kmeans") {
    const KmeansResult km = initial_kmeans(comm, seeding, summary.num_samples, summary.mean, k, seed, c.threads, log,
                                           points, bound_bytes_for(c.row_state_bytes));
    if (c.covariance_type == CovarianceType::kFull) gmm.set_component_shift(km.centers);
    const Vector norms = km.centered_centers.rowwise().squaredNorm();
    initialise_from_resp(comm, source, gmm, c.threads, [&](const io::DenseBlock& b, RowMatrix& resp) {
      resp = hard_responsibilities(fill_nan(b.x), km.centered_centers, norms, km.frame.origin);
    });
  } else if (c.init_params == "random") {
    initialise_from_resp(comm, source, gmm, c.threads, [&](const io::DenseBlock& b, RowMatrix& resp) {
      resp = random_responsibilities(b.x.rows(), b.ref.global_row_begin, k, seed);
    });
  } else if (c.init_params == "k-means++" || c.init_params == "random_from_data") {
    // As scikit-learn: responsibilities concentrated on K chosen rows, so the means are
    // those rows and every covariance is reg_covar on the diagonal.
    const RowMatrix rows = init_centers(comm, seeding, summary.mean, k, c.init_params == "k-means++" ? "k-means++" : "random",
                                        seed, c.threads, log, points)
                               .rowwise() +
                           summary.mean;
    RowMatrix cov;
    switch (c.covariance_type) {
      case CovarianceType::kFull:
        cov = RowMatrix::Zero(k * d, d);
        for (Index j = 0; j < k; ++j) cov.middleRows(j * d, d).diagonal().setConstant(c.reg_covar);
        break;
      case CovarianceType::kTied: cov = RowMatrix::Identity(d, d) * c.reg_covar; break;
      case CovarianceType::kDiag: cov = RowMatrix::Constant(k, d, c.reg_covar); break;
      case CovarianceType::kSpherical: cov = RowMatrix::Constant(k, 1, c.reg_covar); break;
    }
    gmm.set_parameters(RowVector::Constant(k, 1.0 / static_cast<double>(k)), rows, cov);
  } else {
    throw_usage("invalid init_params '" + c.init_params + "' (choose kmeans, k-means++, random or random_from_data)");
  }
  return gmm;
}

GmmFitResult fit_gmm(const comm::Communicator& comm, io::BlockSource& source, const train::DataSummary& summary,
                     const GmmConfig& config, const Logger& log, const train::IterationObserver& observer,
                     train::FitControl* control) {
  if (config.n_components < 1) throw_usage("--n-components must be at least 1");
  if (config.n_components > summary.num_samples)
    throw_usage("Expected n_samples >= n_components but got n_components = " + std::to_string(config.n_components) +
                ", n_samples = " + std::to_string(summary.num_samples));
  if (config.max_iter < 1) throw_usage("--max-iter must be at least 1");
  if (config.tol < 0) throw_usage("--tol must be non-negative");
  const Index k = config.n_components, d = source.info().num_features;
  const RowVector centre = gmm_kernel::float32_centre(summary.mean, summary.variance);
  const auto blank = [&] {
    Gmm g(k, d, config.covariance_type, config.reg_covar);
    g.set_center(centre);
    return g;
  };
  train::RestartSteps<Gmm> steps;
  steps.initial = [&](int, std::uint64_t seed, const train::InitPoints& points) {
    return initial_gmm(comm, source, summary, config, seed, log, points);
  };
  steps.blank = blank;
  if (config.matmul_precision != "high" && config.matmul_precision != "highest")
    throw_usage("--matmul-precision must be high (float32 products, double sums) or highest (double); got '" +
                config.matmul_precision + "'");
  steps.fit = [&](Gmm& gmm, train::EmResult start, const train::IterationHook& hook) {
    gmm.set_float32_products(config.matmul_precision == "high");
    return train::run_batch_em(comm, source, summary.num_samples, gmm, {config.max_iter, config.tol, config.threads},
                               observer, std::move(start), hook);
  };
  train::BestRun<Gmm> best = train::run_restarts(control, config.n_init, config.seed, log, steps);
  if (!best.em.converged)
    log.warn("Best performing initialization did not converge. Try different init parameters, or increase "
             "max_iter, tol, or check for degenerate data.");
  return GmmFitResult{std::move(best.model), std::move(best.em), best.run};
}

}  // namespace latent::models
