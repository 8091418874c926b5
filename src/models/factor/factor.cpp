#include "latent/models/factor/factor.hpp"

#include <Eigen/Cholesky>
#include <cmath>
#include <numbers>
#include <vector>

#include "latent/core/error.hpp"
#include "latent/core/rng.hpp"

namespace latent::models {

std::string model_name(NoiseType noise) { return noise == NoiseType::kIsotropic ? "ppca" : "fa"; }

FactorModel::FactorModel(Index num_components, Index num_features, NoiseType noise)
    : l_(num_components), d_(num_features), noise_(noise) {
  // L = 0 is allowed: a Gaussian with diagonal covariance Ψ (M, M⁻¹ and β are empty; Eigen
  // handles the zero-size factorisations), as a component of a mixture of factor analysers.
  if (l_ < 0 || d_ < 1) throw_usage("a factor model needs n_components >= 0 and n_features >= 1");
  mean_ = RowVector::Zero(d_);
  w_ = RowMatrix::Zero(l_, d_);
  psi_ = RowVector::Ones(d_);
  prepare();
}

void FactorModel::set_parameters(RowVector mean, RowMatrix components, RowVector noise_variance) {
  if (mean.size() != d_ || components.rows() != l_ || components.cols() != d_ || noise_variance.size() != d_)
    throw_usage("factor model parameters have the wrong shapes");
  for (Index j = 0; j < d_; ++j)
    if (!(noise_variance[j] > 0) || !std::isfinite(noise_variance[j]))
      throw_numerical("factor model: noise variance of feature " + std::to_string(j) + " is " +
                      std::to_string(noise_variance[j]) + " (must be positive and finite)");
  if (!components.allFinite() || !mean.allFinite()) throw_numerical("factor model: components or mean are not finite");
  mean_ = std::move(mean);
  w_ = std::move(components);
  psi_ = std::move(noise_variance);
  prepare();
}

Index FactorModel::num_parameters() const noexcept {
  return d_ + l_ * d_ - l_ * (l_ - 1) / 2 + (noise_ == NoiseType::kIsotropic ? 1 : d_);
}

void FactorModel::prepare() {
  inv_psi_ = psi_.cwiseInverse();
  sum_log_psi_ = psi_.array().log().sum();
  w_inv_psi_ = w_ * inv_psi_.asDiagonal();
  m_ = RowMatrix::Identity(l_, l_);
  m_.noalias() += w_inv_psi_ * w_.transpose();
  const Eigen::LLT<Eigen::MatrixXd> llt(m_);
  if (llt.info() != Eigen::Success) throw_numerical("factor model: I + W Psi^-1 W^T is not positive definite");
  log_det_m_ = 2.0 * llt.matrixLLT().diagonal().array().log().sum();
  m_inv_ = llt.solve(Eigen::MatrixXd::Identity(l_, l_));
  beta_.noalias() = m_inv_ * w_inv_psi_;
}

void FactorModel::infer(const ConstRows& x, Vector& log_prob, RowMatrix* latent_mean, RowMatrix* imputed) const {
  const Index b = x.rows();
  const double log2pi = std::log(2.0 * std::numbers::pi);
  log_prob.resize(b);
  if (latent_mean) latent_mean->resize(b, l_);
  if (imputed) *imputed = x;
  std::vector<Index> complete, partial;
  for (Index i = 0; i < b; ++i) (x.row(i).array().isNaN().any() ? partial : complete).push_back(i);
  if (!complete.empty()) {
    // Complete rows: U = (x − μ) Ψ⁻¹ Wᵀ, E[z] = U M⁻¹, quadratic form by Woodbury.
    const bool all = partial.empty();
    RowMatrix r = all ? RowMatrix(x.rowwise() - mean_) : RowMatrix(static_cast<Index>(complete.size()), d_);
    if (!all)
      for (std::size_t i = 0; i < complete.size(); ++i) r.row(static_cast<Index>(i)) = x.row(complete[i]) - mean_;
    RowMatrix u(r.rows(), l_);
    u.noalias() = r * w_inv_psi_.transpose();
    RowMatrix ez(r.rows(), l_);
    ez.noalias() = u * m_inv_;
    const Vector quad = (r.array().square().matrix() * inv_psi_.transpose()) - (ez.array() * u.array()).rowwise().sum().matrix();
    const double c = static_cast<double>(d_) * log2pi + log_det_m_ + sum_log_psi_;
    for (std::size_t i = 0; i < complete.size(); ++i) {
      const Index row = complete[i];
      log_prob[row] = -0.5 * (c + quad[static_cast<Index>(i)]);
      if (latent_mean) latent_mean->row(row) = ez.row(static_cast<Index>(i));
    }
  }
  // Rows with missing values: one posterior each.
  Vector ez;
  std::vector<Index> missing;
  for (const Index row : partial) {
    log_prob[row] = missing_row_posterior(x.row(row), missing, ez, nullptr);
    if (latent_mean) latent_mean->row(row) = ez.transpose();
    if (imputed)
      for (const Index j : missing) (*imputed)(row, j) = mean_[j] + w_.col(j).dot(ez);
  }
}

double FactorModel::missing_row_posterior(const Eigen::Ref<const RowVector>& x, std::vector<Index>& missing, Vector& ez,
                                          RowMatrix* cov) const {
  // M_o = M − W_m Ψ_m⁻¹ W_mᵀ as one GEMM over the gathered missing columns; v = W_o Ψ_o⁻¹ r_o.
  missing.clear();
  RowVector r(d_);
  double quad = 0, sum_log_psi = 0;
  for (Index j = 0; j < d_; ++j) {
    if (std::isnan(x[j])) {
      missing.push_back(j);
      r[j] = 0;
    } else {
      r[j] = x[j] - mean_[j];
      quad += r[j] * r[j] * inv_psi_[j];
      sum_log_psi += std::log(psi_[j]);
    }
  }
  const Index nm = static_cast<Index>(missing.size());
  RowMatrix m_o = m_;
  if (nm > 0) {
    RowMatrix wm(l_, nm), wm_psi(l_, nm);
    for (Index a = 0; a < nm; ++a) {
      wm.col(a) = w_.col(missing[static_cast<std::size_t>(a)]);
      wm_psi.col(a) = w_inv_psi_.col(missing[static_cast<std::size_t>(a)]);
    }
    m_o.noalias() -= wm_psi * wm.transpose();
  }
  const Vector v = w_inv_psi_ * r.transpose();
  const Eigen::LLT<Eigen::MatrixXd> llt(m_o);
  ez = llt.solve(v);
  if (cov) *cov = llt.solve(Eigen::MatrixXd::Identity(l_, l_));
  if (nm == d_) return 0.0;
  const double log_det = 2.0 * llt.matrixLLT().diagonal().array().log().sum();
  return -0.5 * (static_cast<double>(d_ - nm) * std::log(2.0 * std::numbers::pi) + log_det + sum_log_psi + quad - ez.dot(v));
}

RowMatrix FactorModel::sample(Index first, Index count, std::uint64_t seed) const {
  RowMatrix out(count, d_);
  Vector z(l_);
  const RowVector sd = psi_.cwiseSqrt();
  for (Index i = 0; i < count; ++i) {
    CounterRng rng(seed, RngPurpose::kSample, 0, static_cast<std::uint64_t>(first + i));
    for (Index j = 0; j < l_; ++j) z[j] = rng.next_normal();
    out.row(i) = mean_ + z.transpose() * w_;
    for (Index j = 0; j < d_; ++j) out(i, j) += sd[j] * rng.next_normal();
  }
  return out;
}

}  // namespace latent::models
