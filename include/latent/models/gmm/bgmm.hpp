#pragma once
/// \file Variational Bayesian Gaussian mixture (Bishop PRML §10.2; Blei & Jordan 2006 for
/// the Dirichlet-process prior), as scikit-learn's BayesianGaussianMixture: a Dirichlet
/// distribution or a truncated stick-breaking (Dirichlet process) prior on the weights,
/// Gaussian-Wishart priors on means and precisions, mean-field updates. Start with too many
/// components: the unused ones get weights near weight_concentration_prior / N.
///
/// The E-step is the Gaussian mixture's (gmm.hpp) with the expected log-weights
/// E[log π_k] − D/2 log ν_k + (E[log |Λ_k|] − D log 2 − Σ log ν... ) folded into its
/// per-component bias, so it streams at the same speed; the M-step turns the same
/// statistics (N_k, x̄_k, S_k) into the variational parameters. Covariance types: full,
/// tied (one Wishart shared by the components), diag, spherical. The objective is
/// scikit-learn's lower bound (_compute_lower_bound) divided by N.
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

struct BgmmConfig {
  /// Bytes of per-row state a k-means start may keep per rank (FitCommon::row_state_bytes).
  double row_state_bytes = std::numeric_limits<double>::infinity();
  Index n_components = 1;
  CovarianceType covariance_type = CovarianceType::kFull;
  /// "dirichlet_process" (stick-breaking) or "dirichlet_distribution".
  std::string weight_concentration_prior_type = "dirichlet_process";
  double weight_concentration_prior = -1;  ///< γ0; default 1/K
  double mean_precision_prior = -1;        ///< β0; default 1
  double degrees_of_freedom_prior = -1;    ///< ν0; default D
  double reg_covar = 1e-6;
  double tol = 1e-3;  ///< on the lower bound per sample (nats); scikit-learn's is on the total
  int max_iter = 100;
  int n_init = 1;  ///< initialisations; the best lower bound is kept (train/restarts.hpp)
  std::string init_params = "kmeans";  ///< kmeans | random (as fit_gmm)
  std::uint64_t seed = 0;
  int threads = 1;
};

/// The fitted variational parameters; `mixture` is the plug-in Gaussian mixture (expected
/// weights, means m_k, covariances W_k⁻¹ / ν_k), as scikit-learn's weights_, means_, covariances_.
struct BgmmFitResult {
  Gmm mixture;
  RowMatrix weight_concentration;  ///< 2 × K (DP: the Beta parameters) or 1 × K (DD)
  RowVector mean_precision;        ///< β_k
  RowVector degrees_of_freedom;    ///< ν_k
  train::EmResult em;
};

/// Collective. Priors as scikit-learn: mean_prior = the data mean, covariance_prior = the
/// data covariance (full/tied, ddof = 1; one extra pass), the variances (diag) or their
/// mean (spherical). With `control`, resumes from and writes checkpoints at iteration
/// boundaries (the priors and k-means are recomputed: they are deterministic). Throws
/// Error(kUsage) for K > N, Error(kRequeue) after a stop signal.
BgmmFitResult fit_bgmm(const comm::Communicator& comm, io::BlockSource& source, const train::DataSummary& summary,
                       const BgmmConfig& config, const Logger& log, const train::IterationObserver& observer,
                       train::FitControl* control = nullptr);

}  // namespace latent::models
