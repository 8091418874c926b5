#pragma once
/// \file Fitting a Gaussian mixture on streamed data: initialisation (scikit-learn's
/// init_params), EM, n_init restarts keeping the best lower bound.
#include <cstdint>
#include <limits>
#include <string>

#include "latent/comm/communicator.hpp"
#include "latent/core/log.hpp"
#include "latent/io/block_source.hpp"
#include "latent/models/gmm/gmm.hpp"
#include "latent/train/batch_em.hpp"
#include "latent/train/data_summary.hpp"

namespace latent::models {

struct GmmConfig {
  /// Bytes of per-row state a k-means start may keep per rank (FitCommon::row_state_bytes).
  double row_state_bytes = std::numeric_limits<double>::infinity();
  Index n_components = 1;
  CovarianceType covariance_type = CovarianceType::kFull;
  double reg_covar = 1e-6;
  double tol = 1e-3;
  int max_iter = 100;
  int n_init = 1;
  /// "kmeans" (k-means|| seeding + Lloyd, then hard responsibilities), "k-means++",
  /// "random" (uniform random responsibilities), "random_from_data".
  std::string init_params = "kmeans";
  /// If set, a GMM model file whose weights, means and covariances start EM (overrides
  /// init_params; as scikit-learn's weights_init/means_init/precisions_init).
  std::string init_model;
  /// "high": the EM iterations of diag and spherical mixtures take float32 products with
  /// double sums (Gmm::set_float32_products); "highest": double throughout.
  std::string matmul_precision = "high";
  std::uint64_t seed = 0;
  int threads = 1;
};

struct GmmFitResult {
  Gmm model;
  train::EmResult em;
  int best_init = 0;
};

/// The starting mixture of one restart (before EM), from config.init_model or
/// config.init_params with the restart's `seed`: "kmeans" runs k-means (k-means|| seeding,
/// then Lloyd) and one M-step from its hard responsibilities; "random" one M-step from
/// uniform random responsibilities (CounterRng(seed, kRandomInit, 0, global row));
/// "k-means++"/"random_from_data" put the means on chosen rows with reg_covar covariances.
/// Rows with missing values contribute expected statistics under the data's mean and
/// variance. The seeding and the k-means work about the data mean (KmeansFrame). Collective;
/// interruptible at the seeding's and the k-means' boundaries through `points`
/// (initial_kmeans, init_centers). Throws Error(kUsage) for an unknown init_params or a
/// mismatched init_model.
Gmm initial_gmm(const comm::Communicator& comm, io::BlockSource& source, const train::DataSummary& summary,
                const GmmConfig& config, std::uint64_t seed, const Logger& log, const train::InitPoints& points = {});

/// Collective. `summary` comes from train::summarize on the same source. With `control`,
/// resumes from and writes checkpoints at EM iteration boundaries and honours stop
/// signals (an interrupted initialisation is redone: it is deterministic). Throws
/// Error(kUsage) if K > N, Error(kNumerical) for a collapsed component, Error(kRequeue)
/// after a stop signal.
GmmFitResult fit_gmm(const comm::Communicator& comm, io::BlockSource& source, const train::DataSummary& summary,
                     const GmmConfig& config, const Logger& log, const train::IterationObserver& observer,
                     train::FitControl* control = nullptr);

}  // namespace latent::models
