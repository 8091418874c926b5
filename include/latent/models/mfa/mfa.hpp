#pragma once
/// \file Mixture of factor analysers (Ghahramani & Hinton 1996; McLachlan & Peel 2000
/// ch. 8), and with isotropic noise the mixture of probabilistic PCA (Tipping & Bishop
/// 1999, Neural Computation 11(2)):
///
///     p(k) = π_k,  z ~ N(0, I_L),  x | z, k ~ N(μ_k + W_kᵀ z, Ψ_k),
///     so  x | k ~ N(μ_k, C_k),  C_k = W_kᵀ W_k + Ψ_k,
///
/// W_k is L × D (row-major, as scikit-learn's components_), Ψ_k diagonal (one variance per
/// feature) or isotropic (σ²_k I). Each component is a FactorModel, so every quantity goes
/// through its L × L matrix M_k = I + W_k Ψ_k⁻¹ W_kᵀ (Woodbury): memory O(K D L), inference
/// O(K D L) per row, no D × D matrix. L = 0 is a Gaussian mixture with diagonal
/// covariances. Missing coordinates (NaN) are marginalised: each component uses the
/// observed block of its Gaussian (FactorModel::missing_row_posterior).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "latent/core/types.hpp"
#include "latent/models/factor/factor.hpp"
#include "latent/models/fitted_model.hpp"

namespace latent::models {

class Mfa {
 public:
  /// An unfitted mixture: K ≥ 1 components of L ≥ 0 factors in D ≥ 1 dimensions, equal
  /// weights, zero means and components, unit noise. Throws Error(kUsage) otherwise.
  Mfa(Index num_components, Index num_factors, Index num_features, NoiseType noise);

  /// weights (K, non-negative, summing to 1 within 1e-9 relative), means (K × D),
  /// components ((K·L) × D: W_k in rows [kL, kL+L)), noise_variance (K × D; isotropic: every
  /// entry of a row equal, or K × 1). Throws Error(kUsage) for wrong shapes,
  /// Error(kNumerical) for a weight or noise variance out of range or non-finite values.
  void set_parameters(RowVector weights, const RowMatrix& means, const RowMatrix& components,
                      const RowMatrix& noise_variance);
  /// The same from one FactorModel per component (each L factors, D features, this noise type).
  void set_parameters(RowVector weights, std::vector<FactorModel> components);

  Index num_components() const noexcept { return k_; }
  Index num_factors() const noexcept { return l_; }
  Index num_features() const noexcept { return d_; }
  NoiseType noise_type() const noexcept { return noise_; }
  const RowVector& weights() const noexcept { return weights_; }
  const FactorModel& component(Index k) const { return components_[static_cast<std::size_t>(k)]; }
  const std::vector<FactorModel>& components() const noexcept { return components_; }
  /// K × D: row k is μ_k.
  RowMatrix means() const;
  /// (K·L) × D: W_k in rows [kL, kL+L).
  RowMatrix stacked_components() const;
  /// K × D: row k is diag(Ψ_k) (isotropic: σ²_k repeated).
  RowMatrix noise_variances() const;
  /// Free parameters for BIC/AIC: (K − 1) + K (D + L D − L(L−1)/2 + (D or 1)); W_k counts up
  /// to rotation, as FactorModel::num_parameters.
  Index num_parameters() const noexcept;

  using ConstRows = Eigen::Ref<const RowMatrix>;
  /// For a block x (B × D, NaN = missing, marginalised): the per-row log p(x_o) in nats (B;
  /// a row with nothing observed scores 0) and the responsibilities p(k | x_o) (B × K), by
  /// log-sum-exp over log π_k + log N(x_o | μ_ko, C_k,oo). O(B K D L). Thread-safe.
  void e_step(const ConstRows& x, Vector& log_prob, RowMatrix& resp) const;
  /// log π_k + log N(x_o | μ_ko, C_k,oo) in nats (B × K). Thread-safe.
  void weighted_log_prob(const ConstRows& x, RowMatrix& out) const;
  /// The posterior factor means E[z | x_o, k] = M_k,o⁻¹ W_k,o Ψ_k,o⁻¹ (x_o − μ_k,o) of
  /// component k (B × L; 0 for a row with nothing observed). Thread-safe.
  void factor_means(const ConstRows& x, Index k, RowMatrix& out) const;
  /// E[z | x_o, k*] under the most probable component k* = argmax_k p(k | x_o) (B × L);
  /// with labels, also k* (B). Thread-safe.
  void transform(const ConstRows& x, RowMatrix& out, std::vector<std::int64_t>* labels = nullptr) const;
  /// x (B × D) with every NaN replaced by E[x_m | x_o] = Σ_k p(k | x_o) (μ_k,m + W_k,mᵀ
  /// E[z | x_o, k]) (the mixture of the components' conditional means, each as in Ghahramani & Jordan 1994). Thread-safe.
  void impute(const ConstRows& x, RowMatrix& out) const;
  /// Draws first .. first+count-1 (count × D) and their components (count); draw i is a
  /// pure function of (seed, i): one stream CounterRng(seed, kSample, 0, i) gives the
  /// component (one uniform), z (L normals) and the noise (D normals).
  RowMatrix sample(Index first, Index count, std::uint64_t seed, std::vector<std::int64_t>& labels) const;

 private:
  // One pass over the components: log π_k + log p(x_o | k) (B × K); optionally E[z | x_o, k]
  // and the component-wise imputations.
  void infer(const ConstRows& x, RowMatrix& wlp, std::vector<RowMatrix>* latent, std::vector<RowMatrix>* imputed) const;
  Index k_, l_, d_;
  NoiseType noise_;
  RowVector weights_, log_weights_;
  std::vector<FactorModel> components_;
};

/// The `latent` model adapter (name "mfa"): score = log p(x_o), labels = argmax
/// responsibility, proba = responsibilities, transform = "latent_mean" (E[z | x_o, k*], width
/// L), impute, sample; handles missing values; a mixture.
std::unique_ptr<FittedModel> make_fitted(Mfa model);

/// Writes an MFA model file atomically (local, call on one rank): /weights (K), /means
/// (K × D), /components (K × L × D), /noise_variance (K × D for diagonal noise, K for
/// isotropic); root attributes noise_type ("diagonal" | "isotropic"), n_components,
/// n_factors, n_features_in and the common fit record (model "mfa"). Throws Error(kOutput)
/// if the file exists and !overwrite, Error(kIo) if writing fails.
void save_mfa(const Mfa& model, const FitRecord& record, const std::string& path, bool overwrite);

/// The parameters of an MFA model file. Local. Throws Error(kNoInput) if it does not exist,
/// Error(kInput) naming the file and dataset/attribute for anything missing, mis-shaped or
/// out of range (including a `model` attribute other than "mfa").
Mfa read_mfa(const io::H5Reader& file);
/// read_mfa as a FittedModel (with the fit summary for describe()); the path form opens the
/// file, the reader form suits a registry of loaders keyed by the `model` attribute.
std::unique_ptr<FittedModel> load_mfa(const io::H5Reader& file);
std::unique_ptr<FittedModel> load_mfa(const std::string& path);

/// "diagonal" | "isotropic".
std::string noise_name(NoiseType noise);

}  // namespace latent::models
