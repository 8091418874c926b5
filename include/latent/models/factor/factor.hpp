#pragma once
/// \file Linear-Gaussian latent factor models: probabilistic PCA (Tipping & Bishop 1999,
/// isotropic noise σ² I) and factor analysis (Bishop PRML §12.2.4, Ghahramani & Hinton
/// 1996, diagonal noise Ψ):
///
///     z ~ N(0, I_L),  x | z ~ N(μ + Wᵀ z, Ψ),  so  x ~ N(μ, C),  C = Wᵀ W + Ψ.
///
/// W is L × D, row-major, as scikit-learn's components_. Every quantity is computed
/// through the L × L matrix M = I + W Ψ⁻¹ Wᵀ (Woodbury), never the D × D matrix C, so
/// inference costs O(D L) per row. Missing coordinates (NaN) are marginalised: a row with
/// observed set o uses W_o, Ψ_o and M_o = I + W_o Ψ_o⁻¹ W_oᵀ.
#include <cstdint>
#include <string>
#include <vector>

#include "latent/core/types.hpp"

namespace latent::models {

enum class NoiseType { kIsotropic, kDiagonal };

class FactorModel {
 public:
  /// An unfitted model; `noise` kIsotropic selects PPCA. num_components (L) may be 0: then
  /// x ~ N(μ, Ψ), a diagonal Gaussian. Throws Error(kUsage) if L < 0 or D < 1.
  FactorModel(Index num_components, Index num_features, NoiseType noise);

  /// mean (D), components W (L × D), noise_variance (D; for PPCA all entries equal).
  /// Throws Error(kNumerical) if a noise variance is not positive and finite.
  void set_parameters(RowVector mean, RowMatrix components, RowVector noise_variance);

  Index num_components() const noexcept { return l_; }
  Index num_features() const noexcept { return d_; }
  NoiseType noise_type() const noexcept { return noise_; }
  const RowVector& mean() const noexcept { return mean_; }
  const RowMatrix& components() const noexcept { return w_; }
  const RowVector& noise_variance() const noexcept { return psi_; }
  /// Free parameters for BIC/AIC: D (mean) + L D − L(L−1)/2 (W up to rotation) + 1 or D.
  Index num_parameters() const noexcept;

  using ConstRows = Eigen::Ref<const RowMatrix>;
  /// For x (B × D, NaN = missing): log p(x_o) in nats (B; 0 for a row with nothing
  /// observed), and optionally the posterior means E[z | x_o] (B × L, scikit-learn's
  /// FactorAnalysis.transform) and x with every NaN replaced by E[x_m | x_o] = μ_m +
  /// W_mᵀ E[z | x_o] (B × D). Thread-safe.
  void infer(const ConstRows& x, Vector& log_prob, RowMatrix* latent_mean, RowMatrix* imputed) const;

  /// One row x (D, NaN = missing): fills `missing` with its missing coordinates, E[z | x_o]
  /// (L) and, if cov is not null, Cov[z | x_o] = M_o⁻¹ (L × L); returns log p(x_o) (0 if
  /// nothing is observed). O(|m| L² + D L + L³). Thread-safe.
  double missing_row_posterior(const Eigen::Ref<const RowVector>& x, std::vector<Index>& missing, Vector& ez,
                               RowMatrix* cov) const;

  /// Draws first .. first+count-1 (count × D); draw i is a pure function of (seed, i).
  RowMatrix sample(Index first, Index count, std::uint64_t seed) const;

  /// The L × L matrix M = I + W Ψ⁻¹ Wᵀ and related operands, kept in step with the parameters.
  const RowMatrix& m_matrix() const noexcept { return m_; }
  /// β = M⁻¹ W Ψ⁻¹ (L × D): E[z | x] = β (x − μ) for a complete row.
  const RowMatrix& posterior_map() const noexcept { return beta_; }
  /// M⁻¹ (L × L): the posterior covariance of z given a complete row.
  const RowMatrix& m_inverse() const noexcept { return m_inv_; }
  /// W Ψ⁻¹ (L × D).
  const RowMatrix& components_over_noise() const noexcept { return w_inv_psi_; }
  const RowVector& inverse_noise() const noexcept { return inv_psi_; }
  double log_det_m() const noexcept { return log_det_m_; }
  double sum_log_noise() const noexcept { return sum_log_psi_; }

 private:
  void prepare();
  Index l_, d_;
  NoiseType noise_;
  RowVector mean_, psi_, inv_psi_;
  RowMatrix w_, w_inv_psi_, m_, m_inv_, beta_;
  double log_det_m_ = 0, sum_log_psi_ = 0;
};

/// "ppca" or "fa" as used by the model files and the CLI.
std::string model_name(NoiseType noise);

}  // namespace latent::models
