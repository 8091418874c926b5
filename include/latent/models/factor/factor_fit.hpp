#pragma once
/// \file Fitting PPCA and factor analysis by EM on streamed blocks (Tipping & Bishop 1999
/// §3.2 and appendix B; Ghahramani & Hinton 1996; with missing values Ghahramani & Jordan
/// 1994): the mean is a parameter of the EM (W̃ = [W; μ], z̃ = [z; 1]), so rows with
/// missing coordinates contribute their expected statistics.
///
/// Two solvers give the same iterates:
///  - "streaming": one pass per EM iteration; statistics Σ E[z̃ z̃ᵀ] ((L+1)²),
///    Σ E[x z̃ᵀ] (D × (L+1)) and Σ E[x²] (D), one allreduce of D (L+2) + (L+1)² + 2
///    doubles. Memory O(D L). Required for missing values.
///  - "covariance": one pass computes the scatter matrix (D (D+1)/2 doubles, one
///    allreduce); the EM iterations then run on it in memory at O(D² L) each, with no
///    further data pass. EM depends on complete data only through it (PRML eq. 12.69-12.70).
/// "auto" takes covariance when there are no missing values and D ≤ 4096.
#include <cstdint>
#include <string>
#include <vector>

#include "latent/comm/communicator.hpp"
#include "latent/core/log.hpp"
#include "latent/io/block_source.hpp"
#include "latent/models/factor/factor.hpp"
#include "latent/train/batch_em.hpp"
#include "latent/train/data_summary.hpp"

namespace latent::models {

struct FactorConfig {
  Index n_components = 2;
  NoiseType noise = NoiseType::kDiagonal;
  /// Stop when the mean log-likelihood (nats per sample) changes by less than this.
  double tol = 1e-6;
  int max_iter = 1000;
  std::string solver = "auto";  ///< auto | covariance | streaming
  /// high: the covariance solver's scatter pass in float32 products (double sums per 512
  /// rows; `latent fit fa|ppca` defaults to it); highest (the default here): double throughout.
  std::string matmul_precision = "highest";
  bool missing_values = false;  ///< NaN entries are missing (else the data must be complete)
  /// Noise variances are floored at this (scikit-learn's FactorAnalysis uses 1e-12).
  double noise_variance_floor = 1e-12;
  std::uint64_t seed = 0;
  int threads = 1;
};

struct FactorFitResult {
  FactorModel model;
  train::EmResult em;
  std::string solver;  ///< the solver used
};

/// Complete data's scatter about the data mean c: T = Σ (x − c)(x − c)ᵀ (D × D, global)
/// and s = Σ (x − c) (D), from one pass (collective; one allreduce of D (D+3)/2 doubles).
/// Shared by fits of several latent dimensions (`latent select`).
struct Scatter {
  RowMatrix t;
  RowVector s;
};
/// With float32, T's lower triangle is summed as float32 products per 512 rows (rows
/// rounded once; core/matmul.hpp's fixed order, the same bits in every kernel variant),
/// added to double (docs/ARCHITECTURE.md §5.9); s stays double.
Scatter scatter_pass(const comm::Communicator& comm, io::BlockSource& source, const RowVector& center, int threads,
                     bool float32 = false);

/// The solver "auto" resolves to. Throws Error(kUsage) for an unknown name or for
/// "covariance" with missing values.
std::string resolve_factor_solver(const FactorConfig& config, Index num_features);

/// Collective. Initial W: N(0, 1) entries scaled by 0.1 √(mean feature variance) (drawn
/// from the seed), Ψ = the feature variances; the mean is the data mean. The objective is
/// the mean log-likelihood of the observed entries under the E-step's parameters.
/// `summary` comes from train::summarize on the same source. With `control`, resumes from
/// and writes checkpoints at iteration boundaries. Throws Error(kUsage) if L ≥ D or
/// L < 1, Error(kNumerical) if the statistics become singular, Error(kRequeue) after a
/// stop signal. With `scatter` (from scatter_pass about summary.mean) the covariance
/// solver reads no data.
FactorFitResult fit_factor(const comm::Communicator& comm, io::BlockSource& source, const train::DataSummary& summary,
                           const FactorConfig& config, const Logger& log, const train::IterationObserver& observer,
                           train::FitControl* control = nullptr, const Scatter* scatter = nullptr);

// Building blocks of the factor-model EM, shared with the mixture of factor analysers
// (models/mfa). In shifted coordinates x̃ = x − c and with z̃ = [z; 1], the statistics of
// one factor model are, contiguous in this order (factor_stats_size doubles):
//   A = Σ_i w_i E[z̃ z̃ᵀ | x̃_i]   ((L+1) × (L+1), row-major; A(L, L) = Σ_i w_i),
//   B = Σ_i w_i E[x̃ z̃ᵀ | x̃_i]   (D × (L+1), row-major),
//   C = Σ_i w_i E[x̃² | x̃_i]     (D),
// with row weights w_i: 1 for a single model, the responsibility r_ik for component k of a
// mixture (Ghahramani & Hinton 1996; McLachlan & Peel 2000 ch. 8).

/// (L+1)² + D (L+1) + D.
inline std::size_t factor_stats_size(Index num_components, Index num_features) {
  return static_cast<std::size_t>((num_components + 1) * (num_components + 1) + num_features * (num_components + 1) +
                                  num_features);
}

/// Reusable scratch matrices of add_factor_row_stats.
struct FactorRowScratch {
  RowMatrix g, wm, wg;
};

/// Adds `weight` × the expected statistics of one row x̃ (D, NaN = missing) to `stats`
/// (layout above), given its posterior under `model` from missing_row_posterior:
/// `missing` (its missing coordinates), E[z | x̃_o] `ez` (L) and Cov[z | x̃_o] `cov` (L × L).
/// `wt` is W̃ = [W; μ] ((L+1) × D) of `model`. An observed x̃_d adds x̃_d z̃ᵀ and x̃_d², a
/// missing one E[x̃_d z̃ᵀ] = w̃_d G and E[x̃_d²] = w̃_d G w̃_dᵀ + ψ_d, G = E[z̃ z̃ᵀ | x̃_o]
/// (Ghahramani & Jordan 1994). O(D L + |m| L²).
void add_factor_row_stats(const FactorModel& model, const RowMatrix& wt, const Eigen::Ref<const RowVector>& xt,
                          const std::vector<Index>& missing, const Vector& ez, const RowMatrix& cov, double weight,
                          double* stats, FactorRowScratch& scratch);

/// New parameters of one factor model (in the shifted coordinates of its statistics).
struct FactorUpdate {
  RowVector mean;            ///< D
  RowMatrix components;      ///< L × D
  RowVector noise_variance;  ///< D (isotropic: all equal)
};

/// The M-step from statistics `stats` (layout above) with n = Σ w (Ghahramani & Hinton
/// 1996's M-step for W̃ = [W; μ] and Ψ): W̃ = A⁻¹ Bᵀ, ψ_d = (C_d − w̃_dᵀ B_dᵀ) / n (isotropic:
/// their mean), then ψ + add_to_noise floored at `floor`; then the parameter-expansion step
/// (PX-EM; Liu, Rubin & Wu 1998 §5): z ~ N(m, Σ) fitted and reduced to N(0, I). Throws
/// Error(kNumerical) starting with `what` if A or Σ is singular.
FactorUpdate factor_m_step(const double* stats, double n, Index num_components, Index num_features, NoiseType noise,
                           double floor, double add_to_noise, const std::string& what);

}  // namespace latent::models
