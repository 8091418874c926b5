#pragma once
/// \file Fitting Bernoulli mixtures on dense shards and multinomial mixtures on count
/// shards by batch EM (one pass and one allreduce of 2 + K + K·D doubles per iteration).
#include <cstdint>
#include <limits>
#include <string>

#include "latent/comm/communicator.hpp"
#include "latent/core/log.hpp"
#include "latent/io/block_source.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/models/mixture/discrete.hpp"
#include "latent/train/batch_em.hpp"
#include "latent/train/data_summary.hpp"

namespace latent::models {

struct DiscreteConfig {
  /// Bytes of per-row state a k-means start may keep per rank (FitCommon::row_state_bytes).
  double row_state_bytes = std::numeric_limits<double>::infinity();
  Index n_components = 2;
  double alpha = 1.0;         ///< additive smoothing of μ / β (scikit-learn's naive Bayes alpha)
  double weight_alpha = 0.0;  ///< Dirichlet pseudo-count added to every component's weight
  double tol = 1e-3;          ///< on the mean log posterior, nats per sample
  int max_iter = 100;
  int n_init = 1;  ///< initialisations; the best mean log posterior is kept (train/restarts.hpp)
  /// bmm: "kmeans" (k-means|| + Lloyd, hard responsibilities) or "random" (uniform random
  /// responsibilities per row, keyed by (seed, row)); mmm: "random".
  std::string init_params = "kmeans";
  std::uint64_t seed = 0;
  int threads = 1;
};

struct DiscreteFitResult {
  DiscreteMixture model;
  train::EmResult em;
};

/// Bernoulli mixture on dense data in [0, 1]. Collective. Throws Error(kInput) naming
/// file, dataset, row and column for a value outside [0, 1], Error(kUsage) if K > N,
/// Error(kNumerical) if a component empties, Error(kRequeue) after a stop signal.
DiscreteFitResult fit_bmm(const comm::Communicator& comm, io::BlockSource& source, const train::DataSummary& summary,
                          const DiscreteConfig& config, const Logger& log, const train::IterationObserver& observer,
                          train::FitControl* control = nullptr);

/// Multinomial mixture on documents (`num_documents` in all). Collective; errors as fit_bmm.
DiscreteFitResult fit_mmm(const comm::Communicator& comm, io::CountsSource& source, Index num_documents,
                          const DiscreteConfig& config, const Logger& log, const train::IterationObserver& observer,
                          train::FitControl* control = nullptr);

}  // namespace latent::models
