#pragma once
/// \file Fitting a mixture of factor analysers by EM on streamed blocks (Ghahramani &
/// Hinton 1996, the EM for mixtures of factor analysers; McLachlan & Peel 2000 ch. 8;
/// isotropic noise: the EM for mixtures of PPCA, Tipping & Bishop 1999, Neural Computation
/// 11(2)), with missing values marginalised (Ghahramani & Jordan 1994).
///
/// Per iteration one pass computes, for each component k, the factor-model statistics of
/// factor_fit.hpp weighted by the responsibilities r_ik (N_k = Σ_i r_ik = A_k(L, L),
/// A_k ((L+1)²), B_k (D × (L+1)), C_k (D)) and the total log-likelihood: one allreduce of
/// 2 + K ((L+1)² + D (L+1) + D) doubles. The M-step is the factor model's per component
/// (W̃_k = A_k⁻¹ B_kᵀ, ψ_k, the PX-EM step) with reg_covar added to ψ_k, and π_k = N_k / N.
/// Data are shifted by the data mean before any sum. Memory O(K D L).
#include <cstdint>
#include <string>

#include "latent/comm/communicator.hpp"
#include "latent/core/log.hpp"
#include "latent/io/block_source.hpp"
#include "latent/models/mfa/mfa.hpp"
#include "latent/train/batch_em.hpp"
#include "latent/train/data_summary.hpp"

namespace latent::models {

struct MfaConfig {
  Index n_components = 1;  ///< K ≥ 1
  Index n_factors = 2;     ///< L, 0 ≤ L < D (L = 0: a Gaussian mixture with diagonal covariances)
  NoiseType noise = NoiseType::kDiagonal;
  /// Added to every noise variance in each M-step (and to the initial cluster variances),
  /// as scikit-learn's GaussianMixture reg_covar.
  double reg_covar = 1e-6;
  /// Noise variances are floored at this after reg_covar is added.
  double noise_variance_floor = 1e-12;
  /// Stop when the mean log-likelihood (nats per sample) changes by less than this.
  double tol = 1e-3;
  int max_iter = 100;
  int n_init = 1;  ///< restarts; the best final mean log-likelihood is kept
  /// K > 1: "kmeans" (GMM's: k-means|| seeding + Lloyd, then one M-step from hard
  /// responsibilities) or "random" (uniform random responsibilities). K = 1 always starts
  /// as fit_factor does.
  std::string init_params = "kmeans";
  bool missing_values = false;  ///< NaN entries are missing (else the data must be complete)
  /// "highest": double throughout. "high" (the CLI's default, as PyTorch's
  /// torch.set_float32_matmul_precision): the complete rows' E-step in float32 products
  /// (the data kept as float32 in the stream and the cache), the statistics summed in double
  /// per tile of 256 rows in a fixed order (docs/ARCHITECTURE.md §5.9); tiles with a
  /// missing value take the double path. The mean log-likelihood agrees with "highest" to
  /// about 1e-7 relative (tested to 1e-6).
  std::string matmul_precision = "highest";
  std::uint64_t seed = 0;
  int threads = 1;
};

struct MfaFitResult {
  Mfa model;
  train::EmResult em;
  int best_init = 0;  ///< the restart whose fit was kept
};

/// Collective. `summary` comes from train::summarize on the same source. Restart r uses the
/// seed `config.seed` (r = 0) or CounterRng(seed, kNInit, 0, r).next_u64(), as fit_gmm.
/// Initialisation:
///  - K = 1: fit_factor's (mean = data mean, Ψ = the feature variances floored, isotropic:
///    their mean; W = 0.1 √(mean variance) N(0, 1) from CounterRng(seed, kFactorInit, 0, i)),
///    so with reg_covar = 0 the iterates are fit_factor's (solver "streaming").
///  - K > 1: fit_gmm's initial diagonal mixture for init_params (same seed, reg_covar), giving
///    π_k, μ_k and Ψ_k; W_k = 0.1 √(mean of Ψ_k) N(0, 1) from CounterRng(seed, kFactorInit,
///    k, i). With L = 0 the fit is fit_gmm's with covariance_type diag.
/// The objective is the mean log-likelihood of the observed entries under the E-step's
/// parameters (nats per sample). With `control`, resumes from and writes checkpoints at
/// iteration boundaries (tagged by restart) and honours stop signals. Throws Error(kUsage)
/// naming the flag for a bad configuration (--n-components, --n-factors, --tol,
/// --max-iter, --n-init, --reg-covar, --noise-variance-floor, --init-params,
/// --missing-values, --matmul-precision), Error(kNumerical) for a collapsed component or a
/// NaN objective, Error(kRequeue) after a stop signal.
MfaFitResult fit_mfa(const comm::Communicator& comm, io::BlockSource& source, const train::DataSummary& summary,
                     const MfaConfig& config, const Logger& log, const train::IterationObserver& observer,
                     train::FitControl* control = nullptr);

}  // namespace latent::models
