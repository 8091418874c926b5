#pragma once
/// \file Gaussian mixture model fitted by EM (Bishop PRML §9.2), with scikit-learn's
/// GaussianMixture semantics: covariance types, reg_covar added to the diagonal, nk
/// floored by 10·eps, the lower bound as mean log-likelihood of the parameters used in
/// the E-step, and the same fitted-attribute shapes.
///
/// Numerics: the E-step is in log space with log-sum-exp; data are shifted before second
/// moments are accumulated (by the data mean for diag/spherical/tied, by each
/// component's previous mean for full), so one-pass streaming statistics do not cancel
/// catastrophically; the shift cancels exactly in the algebra of the M-step.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "latent/core/matmul.hpp"
#include "latent/core/types.hpp"
#include "latent/io/block_source.hpp"
#include "latent/train/batch_em.hpp"

namespace latent::models {
namespace gmm_kernel {
class BlockRows;
}  // namespace gmm_kernel

enum class CovarianceType { kFull, kTied, kDiag, kSpherical };
/// "full" | "tied" | "diag" | "spherical"; throws Error(kUsage) otherwise.
CovarianceType parse_covariance_type(const std::string& name);
std::string to_string(CovarianceType type);

/// In place, per row of wlp (B × K, log π_k + log p(x | k) in nats): the row becomes the
/// responsibilities p(k | x) and lse[i] its log-sum-exp log p(x), with the row maximum
/// subtracted before exponentiating. A row whose maximum is not finite gets lse = that
/// maximum (and responsibilities 0, or NaN for NaN).
void log_sum_exp_rows(RowMatrix& wlp, Vector& lse);

class Gmm final : public train::EmModel {
 public:
  /// An unfitted mixture of K components in D dimensions.
  Gmm(Index num_components, Index num_features, CovarianceType type, double reg_covar);

  /// Sets weights (K), means (K × D) and covariances (shape by type, see covariances())
  /// and computes the Cholesky factors of the precisions. Throws Error(kNumerical) naming
  /// the first component whose covariance is not positive definite.
  void set_parameters(RowVector weights, RowMatrix means, RowMatrix covariances);

  Index num_components() const noexcept { return k_; }
  Index num_features() const noexcept { return d_; }
  CovarianceType covariance_type() const noexcept { return type_; }
  double reg_covar() const noexcept { return reg_covar_; }
  const RowVector& weights() const noexcept { return weights_; }
  const RowMatrix& means() const noexcept { return means_; }
  /// full: (K·D) × D, component k in rows [kD, kD+D); tied: D × D; diag: K × D;
  /// spherical: K × 1. As scikit-learn's covariances_ (full reshaped to (K, D, D)).
  const RowMatrix& covariances() const noexcept { return covariances_; }
  /// Same shapes; full/tied blocks are upper triangular U with precision = U Uᵀ.
  const RowMatrix& precisions_cholesky() const noexcept { return precisions_cholesky_; }
  /// Free parameters (scikit-learn's _n_parameters), for BIC/AIC.
  Index num_parameters() const noexcept;

  /// Shift applied before accumulating second moments (D); set to the data mean, or near
  /// it (gmm_kernel::float32_centre: float32 rows then centred in float32).
  void set_center(const RowVector& center);
  /// For full covariances: per-component shift (K × D) used by the next accumulate().
  void set_component_shift(const RowMatrix& shift);
  /// With `on`, e_step_block() of diag and spherical mixtures runs the fused float32 pass
  /// (gmm_diag_kernel.hpp: products in float32, each tile's sums added to double), and of
  /// full mixtures the float32 products of matmul::multiply (docs/ARCHITECTURE.md §5.9);
  /// tied, rows with missing values, and every other method stay in double. Off by default
  /// (scoring, imputing and the initialisation are double); `latent fit gmm
  /// --matmul-precision high` (the default) turns it on for the EM iterations.
  void set_float32_products(bool on) noexcept { float32_products_ = on; }
  /// Whether covariance type `t` has a float32 pass (diag, spherical, full).
  static bool has_float32_pass(CovarianceType t) noexcept {
    return t == CovarianceType::kDiag || t == CovarianceType::kSpherical || t == CovarianceType::kFull;
  }
  bool float32_products() const noexcept { return float32_products_; }

  using ConstRows = Eigen::Ref<const RowMatrix>;
  /// log w_k + log N(x_n | μ_k, Σ_k) in nats: out is B × K. Thread-safe.
  void weighted_log_prob(const ConstRows& x, RowMatrix& out) const;
  /// Per-row log p(x_n) (B) and responsibilities (B × K). Thread-safe.
  void e_step(const ConstRows& x, Vector& log_prob_norm, RowMatrix& resp) const;
  /// Adds the sufficient statistics of (x, resp) to partial (size num_stats()). Thread-safe.
  void accumulate(const ConstRows& x, const RowMatrix& resp, std::span<double> partial) const;
  /// Whether NaN entries (missing values) are marginalised: true for every covariance
  /// type. diag/spherical need no per-row factorisation; full/tied rows with NaN cost one
  /// Cholesky of Σ_oo per row and component (O(K (|o|³ + D²))) in scoring, imputing and
  /// the EM's expected statistics (Ghahramani & Jordan 1994).
  bool handles_missing() const noexcept;
  /// x (B × D) with each NaN replaced by E[x_m | x_o] = Σ_k p(k | x_o) E[x_m | x_o, k]
  /// (diag/spherical: μ_km; full/tied: μ_m + Σ_mo Σ_oo⁻¹ (x_o − μ_o)). Thread-safe.
  void impute(const ConstRows& x, RowMatrix& out) const;
  /// Rows per tile inside a block: the E-step and statistics of a tile stay in cache.
  /// Fixed, so the summation order within a block never depends on anything else.
  static constexpr Index kTileRows = 128;
  static constexpr Index kFullTileRows = 2048;  ///< full/tied: the D × D products need long tiles (measured)

  // EmModel. Statistics: [Σ log p(x), rows, Nk (K), first moments, second moments].
  std::size_t num_stats() const override;
  /// Blocks may be float32 (io::DenseBlock::xf) when accepts_float32_blocks(): with float32
  /// products on, for diag, spherical and full mixtures; the result is the same bits as for
  /// the rows widened to double.
  void e_step_block(const io::DenseBlock& block, std::span<double> partial) const override;
  bool accepts_float32_blocks() const override;
  /// M-step; objective = mean log-likelihood (nats per sample) under the previous
  /// parameters; change = objective - previous objective.
  Step m_step(std::span<const double> stats) override;
  /// Checkpoint state: weights, means, covariances, previous objective.
  void save_state(train::TrainState& state) const override;
  void load_state(const train::TrainState& state) override;
  /// Forgets the previous objective (after an initialising M-step).
  void reset_objective() noexcept;

 private:
  void prepare();  // precomputes the E-step's GEMM operands from the parameters
  // Rows with NaN: weighted log-probabilities of the observed coordinates (resp, B × K);
  // with lpn, responsibilities and log p(x_o); with partial, also the expected statistics.
  void missing_tile(const ConstRows& x, RowMatrix& resp, Vector* lpn, std::span<double>* partial) const;
  void expected_stats(const ConstRows& x, const RowMatrix& resp, std::span<double> partial) const;
  // full/tied rows with NaN: weighted log-probabilities (resp; with lpn, responsibilities
  // and log p(x_o)) and, with imputed, the conditional means.
  void missing_rows_dense(const ConstRows& x, RowMatrix& resp, Vector* lpn, RowMatrix* imputed) const;
  void expected_stats_dense(const ConstRows& x, const RowMatrix& resp, std::span<double> partial) const;
  // Row i of x under full/tied component c, with observed coordinates o and missing m:
  // returns log N(x_o | μ_o, Σ_oo); fill = μ_m + Σ_mo Σ_oo⁻¹ (x_o − μ_o); cov_mm (if not
  // null) = Σ_mm − Σ_mo Σ_oo⁻¹ Σ_om.
  double conditional(const ConstRows& x, Index i, Index c, const std::vector<Index>& o, const std::vector<Index>& m,
                     Eigen::VectorXd& fill, Eigen::MatrixXd* cov_mm) const;
  Index k_, d_;
  CovarianceType type_;
  double reg_covar_;
  RowVector weights_;
  RowMatrix means_, covariances_, precisions_cholesky_;
  RowVector center_;
  std::vector<float> neg_center32_;  // gmm_kernel::negated_float(center_): empty unless each entry is a float
  RowMatrix shift_;  // full: K × D
  double previous_objective_;
  // E-step operands
  RowMatrix w_diag_;        // diag/spherical: 3D × K (x̃, x̃², observed-feature constants)
  RowVector bias_;          // K
  RowMatrix tied_means_u_;  // tied: K × D, (μ_k - c) U
  // The float32 pass (diag/spherical): σ⁻¹ and −(μ − c) σ⁻¹ as K × padded(D) floats (zero
  // padding), and log w_k − ½ D log 2π + Σ_j log σ⁻¹_kj.
  bool float32_products_ = false;
  LineFloats inv_sd32_, shift32_;  // on cache lines: the float32 pass reads them 64 bytes at a time
  RowVector bias32_;
  void e_step_block_f32(const io::DenseBlock& block, std::span<double> partial) const;
  // Both float32 passes: tile [r0, r0 + n) of `rows` converted into xf (n × dp); false if
  // it has a missing value, whose statistics the double path has then added to partial.
  bool float32_tile(const gmm_kernel::BlockRows& rows, Index r0, Index n, float* xf, Index dp,
                    std::span<double> partial) const;
  // The float32 pass (full): float(μ_k − c) (K × D) and each U_k (the upper Cholesky factor
  // of Σ_k⁻¹, rounded to float) packed as the B operand of matmul::multiply.
  std::vector<float> mean32_;
  std::vector<matmul::Packed> prec32_;
  void e_step_block_full_f32(const io::DenseBlock& block, std::span<double> partial) const;
};

}  // namespace latent::models
