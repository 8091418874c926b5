#include "latent/models/gmm/gmm.hpp"

#include <Eigen/Cholesky>
#include <immintrin.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

#include "latent/core/error.hpp"
#include "latent/core/flush_denormals.hpp"
#include "latent/core/kernel.hpp"
#include "latent/core/lane_sum.hpp"
#include "latent/core/matmul.hpp"
#include "latent/core/vector_exp.hpp"
#include "latent/models/gmm/float32_tiles.hpp"
#include "latent/models/gmm/gmm_diag_kernel.hpp"

namespace latent::models {
namespace {

constexpr double kLog2Pi = 1.8378770664093453;
constexpr double kNkFloor = 10.0 * std::numeric_limits<double>::epsilon();

// Upper-triangular U with U Uᵀ = cov⁻¹, or false if cov is not positive definite.
bool precision_cholesky(const Eigen::MatrixXd& cov, Eigen::MatrixXd& u) {
  Eigen::LLT<Eigen::MatrixXd> llt(cov);
  if (llt.info() != Eigen::Success) return false;
  const Eigen::MatrixXd l = llt.matrixL();
  if ((l.diagonal().array() <= 0).any()) return false;
  const Eigen::MatrixXd linv = l.triangularView<Eigen::Lower>().solve(Eigen::MatrixXd::Identity(cov.rows(), cov.cols()));
  u = linv.transpose();
  return true;
}

[[noreturn]] void ill_defined(Index component) {
  throw_numerical(
      "Fitting the mixture model failed because component " + std::to_string(component) +
      " has an ill-defined empirical covariance (for instance caused by singleton or collapsed samples). "
      "Try to decrease the number of components, or increase reg_covar.");
}

// exp(z) for z ≤ 0, bit for bit std::exp: below ln(2⁻¹⁰⁷⁵) ≈ −745.13 the correctly rounded
// result is +0, returned without the call (glibc's underflow path, which sets errno, cost
// about a tenth of a diagonal EM iteration on Fashion-MNIST, where most components of a row
// lie thousands of nats below its best).
inline double exp_nonpositive(double z) { return z < -746.0 ? 0.0 : std::exp(z); }

}  // namespace

void log_sum_exp_rows(RowMatrix& wlp, Vector& lse) {
  lse.resize(wlp.rows());
  for (Index i = 0; i < wlp.rows(); ++i) {
    const double m = wlp.row(i).maxCoeff();
    if (!std::isfinite(m)) {
      lse[i] = m;
      wlp.row(i).setConstant(std::isnan(m) ? m : 0.0);
      continue;
    }
    double s = 0;
    for (Index k = 0; k < wlp.cols(); ++k) s += exp_nonpositive(wlp(i, k) - m);
    lse[i] = m + std::log(s);
    for (Index k = 0; k < wlp.cols(); ++k) wlp(i, k) = exp_nonpositive(wlp(i, k) - lse[i]);
  }
}

CovarianceType parse_covariance_type(const std::string& name) {
  if (name == "full") return CovarianceType::kFull;
  if (name == "tied") return CovarianceType::kTied;
  if (name == "diag") return CovarianceType::kDiag;
  if (name == "spherical") return CovarianceType::kSpherical;
  throw_usage("invalid covariance type '" + name + "' (choose full, tied, diag or spherical)");
}

std::string to_string(CovarianceType type) {
  switch (type) {
    case CovarianceType::kFull: return "full";
    case CovarianceType::kTied: return "tied";
    case CovarianceType::kDiag: return "diag";
    case CovarianceType::kSpherical: return "spherical";
  }
  return "full";
}

Gmm::Gmm(Index num_components, Index num_features, CovarianceType type, double reg_covar)
    : k_(num_components), d_(num_features), type_(type), reg_covar_(reg_covar),
      center_(RowVector::Zero(num_features)), shift_(RowMatrix::Zero(num_components, num_features)),
      previous_objective_(-std::numeric_limits<double>::infinity()) {
  if (k_ < 1) throw_usage("n_components must be at least 1");
  if (reg_covar_ < 0) throw_usage("reg_covar must be non-negative");
}

Index Gmm::num_parameters() const noexcept {
  Index cov = 0;
  switch (type_) {
    case CovarianceType::kFull: cov = k_ * d_ * (d_ + 1) / 2; break;
    case CovarianceType::kTied: cov = d_ * (d_ + 1) / 2; break;
    case CovarianceType::kDiag: cov = k_ * d_; break;
    case CovarianceType::kSpherical: cov = k_; break;
  }
  return cov + k_ * d_ + k_ - 1;
}

void Gmm::save_state(train::TrainState& state) const {
  state.arrays["weights"] = weights_;
  state.arrays["means"] = means_;
  state.arrays["covariances"] = covariances_;
  state.scalars["previous_objective"] = previous_objective_;
}

void Gmm::load_state(const train::TrainState& state) {
  const RowMatrix& w = state.array("weights");
  set_parameters(RowVector(Eigen::Map<const RowVector>(w.data(), w.size())), state.array("means"), state.array("covariances"));
  previous_objective_ = state.scalar("previous_objective");
}

void Gmm::reset_objective() noexcept { previous_objective_ = -std::numeric_limits<double>::infinity(); }

void Gmm::set_center(const RowVector& center) {
  center_ = center;
  neg_center32_ = gmm_kernel::negated_float(center_.data(), center_.size());
}
void Gmm::set_component_shift(const RowMatrix& shift) { shift_ = shift; }

void Gmm::set_parameters(RowVector weights, RowMatrix means, RowMatrix covariances) {
  weights_ = std::move(weights);
  means_ = std::move(means);
  covariances_ = std::move(covariances);
  precisions_cholesky_.resizeLike(covariances_);
  switch (type_) {
    case CovarianceType::kFull:
      for (Index k = 0; k < k_; ++k) {
        Eigen::MatrixXd u;
        if (!precision_cholesky(covariances_.middleRows(k * d_, d_), u)) ill_defined(k);
        precisions_cholesky_.middleRows(k * d_, d_) = u;
      }
      break;
    case CovarianceType::kTied: {
      Eigen::MatrixXd u;
      if (!precision_cholesky(covariances_, u)) ill_defined(0);
      precisions_cholesky_ = u;
      break;
    }
    case CovarianceType::kDiag:
    case CovarianceType::kSpherical:
      for (Index k = 0; k < covariances_.rows(); ++k)
        for (Index j = 0; j < covariances_.cols(); ++j) {
          if (!(covariances_(k, j) > 0)) ill_defined(k);
          precisions_cholesky_(k, j) = 1.0 / std::sqrt(covariances_(k, j));
        }
      break;
  }
  if (type_ == CovarianceType::kFull) shift_ = means_;
  prepare();
}

void Gmm::prepare() {
  bias_.resize(k_);
  const RowMatrix mc = means_.rowwise() - center_;  // means in shifted coordinates
  for (Index k = 0; k < k_; ++k) bias_[k] = std::log(weights_[k]) - 0.5 * static_cast<double>(d_) * kLog2Pi;
  if (type_ == CovarianceType::kDiag || type_ == CovarianceType::kSpherical) {
    RowMatrix prec(k_, d_);
    for (Index k = 0; k < k_; ++k) {
      const double logdet = type_ == CovarianceType::kDiag
                                ? precisions_cholesky_.row(k).array().log().sum()
                                : static_cast<double>(d_) * std::log(precisions_cholesky_(k, 0));
      bias_[k] += logdet;
      prec.row(k) = type_ == CovarianceType::kDiag ? RowVector(precisions_cholesky_.row(k).array().square())
                                                   : RowVector::Constant(d_, precisions_cholesky_(k, 0) * precisions_cholesky_(k, 0));
      bias_[k] -= 0.5 * (mc.row(k).array().square() * prec.row(k).array()).sum();
    }
    w_diag_.resize(3 * d_, k_);
    w_diag_.topRows(d_) = (mc.array() * prec.array()).matrix().transpose();
    w_diag_.middleRows(d_, d_) = -0.5 * prec.transpose();
    // Per observed feature: −½ μ̃² p + ½ log p − ½ log 2π (rows with missing values).
    w_diag_.bottomRows(d_) =
        (-0.5 * mc.array().square() * prec.array() + 0.5 * prec.array().log() - 0.5 * kLog2Pi).matrix().transpose();
    // The float32 pass: (x̃ σ⁻¹ − μ̃ σ⁻¹)² summed by gmm_kernel::quadratic.
    gmm_kernel::scale_and_shift32(mc, precisions_cholesky_, inv_sd32_, shift32_);
    bias32_.resize(k_);
    for (Index k = 0; k < k_; ++k) {
      double logdet = 0;
      for (Index j = 0; j < d_; ++j) logdet += std::log(precisions_cholesky_(k, type_ == CovarianceType::kDiag ? j : 0));
      bias32_[k] = std::log(weights_[k]) - 0.5 * static_cast<double>(d_) * kLog2Pi + logdet;
    }
  } else if (type_ == CovarianceType::kTied) {
    bias_.array() += precisions_cholesky_.diagonal().array().log().sum();
    tied_means_u_ = mc * precisions_cholesky_;
  } else {
    for (Index k = 0; k < k_; ++k) bias_[k] += precisions_cholesky_.middleRows(k * d_, d_).diagonal().array().log().sum();
    // The float32 pass: float(μ_k − c) and U_k packed once per M-step.
    mean32_.resize(static_cast<std::size_t>(k_ * d_));
    prec32_.resize(static_cast<std::size_t>(k_));
    std::vector<float> u(static_cast<std::size_t>(d_ * d_));
    for (Index k = 0; k < k_; ++k) {
      for (Index j = 0; j < d_; ++j) mean32_[static_cast<std::size_t>(k * d_ + j)] = static_cast<float>(mc(k, j));
      const auto uk = precisions_cholesky_.middleRows(k * d_, d_);
      for (Index i = 0; i < d_; ++i)
        for (Index j = 0; j < d_; ++j) u[static_cast<std::size_t>(i * d_ + j)] = j >= i ? static_cast<float>(uk(i, j)) : 0.0f;
      prec32_[static_cast<std::size_t>(k)].pack_b(matmul::Precision::kHighest, u.data(), d_, d_, d_, 1);
    }
  }
}

void Gmm::weighted_log_prob(const ConstRows& x, RowMatrix& out) const {
  const Index b = x.rows();
  out.resize(b, k_);
  if (x.hasNaN()) {
    missing_tile(x, out, nullptr, nullptr);
    return;
  }
  if (type_ == CovarianceType::kDiag || type_ == CovarianceType::kSpherical) {
    RowMatrix z(b, 2 * d_);
    z.leftCols(d_) = x.rowwise() - center_;
    z.rightCols(d_) = z.leftCols(d_).array().square();
    out.noalias() = z * w_diag_.topRows(2 * d_);
  } else if (type_ == CovarianceType::kTied) {
    const RowMatrix y = (x.rowwise() - center_) * precisions_cholesky_;
    out.noalias() = y * tied_means_u_.transpose();
    out *= 2.0;
    out.colwise() -= y.rowwise().squaredNorm();
    out.rowwise() -= tied_means_u_.rowwise().squaredNorm().transpose();
    out *= 0.5;
  } else {
    RowMatrix y(b, d_);
    for (Index k = 0; k < k_; ++k) {
      const auto u = precisions_cholesky_.middleRows(k * d_, d_);
      y.noalias() = (x.rowwise() - means_.row(k)) * u.triangularView<Eigen::Upper>();
      out.col(k) = -0.5 * y.rowwise().squaredNorm();
    }
  }
  out.rowwise() += bias_;
}

void Gmm::e_step(const ConstRows& x, Vector& log_prob_norm, RowMatrix& resp) const {
  weighted_log_prob(x, resp);
  log_sum_exp_rows(resp, log_prob_norm);
}

bool Gmm::handles_missing() const noexcept { return true; }

double Gmm::conditional(const ConstRows& x, Index i, Index c, const std::vector<Index>& o, const std::vector<Index>& m,
                        Eigen::VectorXd& fill, Eigen::MatrixXd* cov_mm) const {
  const Index no = static_cast<Index>(o.size()), nm = static_cast<Index>(m.size());
  const auto cov = type_ == CovarianceType::kFull ? covariances_.middleRows(c * d_, d_) : covariances_.middleRows(0, d_);
  // Empty blocks are handled apart: Eigen's solvers must not see zero-size operands.
  if (no == 0 || nm == 0) {
    fill.resize(nm);
    for (Index e = 0; e < nm; ++e) fill[e] = means_(c, m[static_cast<std::size_t>(e)]);
    if (cov_mm) {
      cov_mm->resize(nm, nm);
      for (Index a = 0; a < nm; ++a)
        for (Index e = 0; e < nm; ++e) (*cov_mm)(a, e) = cov(m[static_cast<std::size_t>(a)], m[static_cast<std::size_t>(e)]);
    }
    if (no == 0) return 0.0;
  }
  Eigen::MatrixXd soo(no, no), smo(nm, no);
  Eigen::VectorXd r(no);
  for (Index a = 0; a < no; ++a) {
    r[a] = x(i, o[static_cast<std::size_t>(a)]) - means_(c, o[static_cast<std::size_t>(a)]);
    for (Index e = 0; e < no; ++e) soo(a, e) = cov(o[static_cast<std::size_t>(a)], o[static_cast<std::size_t>(e)]);
    for (Index e = 0; e < nm; ++e) smo(e, a) = cov(m[static_cast<std::size_t>(e)], o[static_cast<std::size_t>(a)]);
  }
  const Eigen::LLT<Eigen::MatrixXd> llt(soo);
  const Eigen::VectorXd sol = llt.solve(r);
  const double logdet = 2.0 * llt.matrixLLT().diagonal().array().log().sum();
  const double log_pdf = -0.5 * (static_cast<double>(no) * kLog2Pi + logdet + r.dot(sol));
  if (nm == 0) return log_pdf;
  fill = smo * sol;
  for (Index e = 0; e < nm; ++e) fill[e] += means_(c, m[static_cast<std::size_t>(e)]);
  if (cov_mm) {
    cov_mm->resize(nm, nm);
    for (Index a = 0; a < nm; ++a)
      for (Index e = 0; e < nm; ++e) (*cov_mm)(a, e) = cov(m[static_cast<std::size_t>(a)], m[static_cast<std::size_t>(e)]);
    cov_mm->noalias() -= smo * llt.solve(Eigen::MatrixXd(smo.transpose()));
  }
  return log_pdf;
}

void Gmm::missing_rows_dense(const ConstRows& x, RowMatrix& resp, Vector* lpn, RowMatrix* imputed) const {
  // full/tied: per row and component, the marginal N(x_o | μ_o, Σ_oo) and the conditional
  // mean μ_m + Σ_mo Σ_oo⁻¹ (x_o − μ_o); O(K |o|³) per row.
  const Index b = x.rows();
  resp.resize(b, k_);
  RowMatrix cond;
  if (imputed) {
    *imputed = x;
    cond.resize(k_, d_);
  }
  std::vector<Index> o, m;
  for (Index i = 0; i < b; ++i) {
    o.clear();
    m.clear();
    for (Index j = 0; j < d_; ++j) (std::isnan(x(i, j)) ? m : o).push_back(j);
    Eigen::VectorXd fill;
    for (Index c = 0; c < k_; ++c) {
      resp(i, c) = std::log(weights_[c]) + conditional(x, i, c, o, m, fill, nullptr);
      if (imputed)
        for (std::size_t e = 0; e < m.size(); ++e) cond(c, m[e]) = fill[static_cast<Index>(e)];
    }
    if (!lpn) continue;
    RowMatrix row = resp.row(i);
    Vector l;
    log_sum_exp_rows(row, l);
    resp.row(i) = row;
    (*lpn)[i] = l[0];
    if (imputed)
      for (const Index j : m) (*imputed)(i, j) = resp.row(i).dot(cond.col(j));
  }
}

void Gmm::missing_tile(const ConstRows& x, RowMatrix& resp, Vector* lpn, std::span<double>* partial) const {
  if (type_ == CovarianceType::kFull || type_ == CovarianceType::kTied) {
    if (lpn) lpn->resize(x.rows());
    missing_rows_dense(x, resp, lpn, nullptr);
    if (partial) {
      (*partial)[0] += lpn->sum();
      expected_stats_dense(x, resp, *partial);
    }
    return;
  }
  // z = [x̃ (0 where missing), x̃², observed mask]: the log-density of the observed
  // coordinates is one GEMM with [w_diag; per-feature constants].
  const Index b = x.rows();
  RowMatrix z(b, 3 * d_);
  for (Index i = 0; i < b; ++i)
    for (Index j = 0; j < d_; ++j) {
      const double v = x(i, j);
      const bool seen = !std::isnan(v);
      const double c = seen ? v - center_[j] : 0.0;
      z(i, j) = c;
      z(i, d_ + j) = c * c;
      z(i, 2 * d_ + j) = seen ? 1.0 : 0.0;
    }
  resp.noalias() = z * w_diag_;
  resp.rowwise() += weights_.array().log().matrix();
  if (!lpn) return;
  log_sum_exp_rows(resp, *lpn);
  if (!partial) return;
  (*partial)[0] += lpn->sum();
  expected_stats(x, resp, *partial);
}

void Gmm::expected_stats(const ConstRows& x, const RowMatrix& resp, std::span<double> p) const {
  if (type_ == CovarianceType::kFull || type_ == CovarianceType::kTied) {
    expected_stats_dense(x, resp, p);
    return;
  }
  // A missing x̃_d contributes μ̃_kd and μ̃_kd² + σ²_kd under component k (the current
  // parameters), an observed one x̃_d and x̃_d².
  const Index b = x.rows();
  RowMatrix xc(b, d_), miss(b, d_);
  for (Index i = 0; i < b; ++i)
    for (Index j = 0; j < d_; ++j) {
      const double v = x(i, j);
      const bool seen = !std::isnan(v);
      xc(i, j) = seen ? v - center_[j] : 0.0;
      miss(i, j) = seen ? 0.0 : 1.0;
    }
  p[1] += static_cast<double>(b);
  Eigen::Map<RowVector>(p.data() + 2, k_) += resp.colwise().sum();
  Eigen::Map<RowMatrix> first(p.data() + 2 + k_, k_, d_), second(p.data() + 2 + k_ + k_ * d_, k_, d_);
  first.noalias() += resp.transpose() * xc;
  second.noalias() += resp.transpose() * xc.array().square().matrix();
  const RowMatrix rm = resp.transpose() * miss;  // K × D: Σ_n r_nk [x_nd missing]
  const RowMatrix mc = means_.rowwise() - center_;
  RowMatrix var(k_, d_);
  for (Index k = 0; k < k_; ++k)
    var.row(k) = type_ == CovarianceType::kDiag ? RowVector(covariances_.row(k)) : RowVector::Constant(d_, covariances_(k, 0));
  first.array() += rm.array() * mc.array();
  second.array() += rm.array() * (mc.array().square() + var.array());
}

void Gmm::expected_stats_dense(const ConstRows& x, const RowMatrix& resp, std::span<double> p) const {
  // full/tied (Ghahramani & Jordan 1994): under component k a row contributes its
  // conditional mean x̂_k (x_o, and μ_m + Σ_mo Σ_oo⁻¹ (x_o − μ_o)) to the first moments and
  // (x̂_k − s)(x̂_k − s)ᵀ + [Σ_mm − Σ_mo Σ_oo⁻¹ Σ_om on the missing block] to the second
  // (lower triangles, about the same shifts as the complete-data statistics).
  const Index b = x.rows();
  p[1] += static_cast<double>(b);
  Eigen::Map<RowVector>(p.data() + 2, k_) += resp.colwise().sum();
  Eigen::Map<RowMatrix> first(p.data() + 2 + k_, k_, d_);
  double* second = p.data() + 2 + k_ + k_ * d_;
  std::vector<Index> o, m;
  RowVector xh(d_);
  for (Index i = 0; i < b; ++i) {
    o.clear();
    m.clear();
    for (Index j = 0; j < d_; ++j) (std::isnan(x(i, j)) ? m : o).push_back(j);
    const Index nm = static_cast<Index>(m.size());
    Eigen::VectorXd fill;
    Eigen::MatrixXd cond;
    for (Index c = 0; c < k_; ++c) {
      const double r = resp(i, c);
      if (r == 0) continue;
      conditional(x, i, c, o, m, fill, &cond);
      const RowVector& shift = type_ == CovarianceType::kFull ? RowVector(shift_.row(c)) : center_;
      for (Index j = 0; j < d_; ++j) xh[j] = x(i, j);
      for (Index a = 0; a < nm; ++a) xh[m[static_cast<std::size_t>(a)]] = fill[a];
      const RowVector dx = xh - shift;
      first.row(c) += r * dx;
      Eigen::Map<RowMatrix> s2(second + (type_ == CovarianceType::kFull ? c * d_ * d_ : 0), d_, d_);
      for (Index a = 0; a < d_; ++a)
        for (Index e = 0; e <= a; ++e) s2(a, e) += r * dx[a] * dx[e];
      for (Index a = 0; a < nm; ++a)
        for (Index e = 0; e < nm; ++e) {
          const Index ra = m[static_cast<std::size_t>(a)], re = m[static_cast<std::size_t>(e)];
          if (re <= ra) s2(ra, re) += r * cond(a, e);
        }
    }
  }
}

void Gmm::impute(const ConstRows& x, RowMatrix& out) const {
  out = x;
  if (!x.hasNaN()) return;
  RowMatrix resp;
  Vector lpn;
  if (type_ == CovarianceType::kFull || type_ == CovarianceType::kTied) {
    lpn.resize(x.rows());
    missing_rows_dense(x, resp, &lpn, &out);
    return;
  }
  missing_tile(x, resp, &lpn, nullptr);
  const RowMatrix fill = resp * means_;  // E[x | x_o] = Σ_k r_k μ_k for diagonal covariances
  for (Index i = 0; i < x.rows(); ++i)
    for (Index j = 0; j < d_; ++j)
      if (std::isnan(x(i, j))) out(i, j) = fill(i, j);
}

std::size_t Gmm::num_stats() const {
  Index second = 0;
  switch (type_) {
    case CovarianceType::kFull: second = k_ * d_ * d_; break;
    case CovarianceType::kTied: second = d_ * d_; break;
    case CovarianceType::kDiag:
    case CovarianceType::kSpherical: second = k_ * d_; break;
  }
  return static_cast<std::size_t>(2 + k_ + k_ * d_ + second);
}

void Gmm::accumulate(const ConstRows& x, const RowMatrix& resp, std::span<double> partial) const {
  const Index b = x.rows();
  if (x.hasNaN()) {
    expected_stats(x, resp, partial);
    return;
  }
  partial[1] += static_cast<double>(b);
  Eigen::Map<RowVector> nk(partial.data() + 2, k_);
  nk += resp.colwise().sum();
  double* first = partial.data() + 2 + k_;
  double* second = first + k_ * d_;
  if (type_ == CovarianceType::kDiag || type_ == CovarianceType::kSpherical) {
    RowMatrix z(b, 2 * d_);
    z.leftCols(d_) = x.rowwise() - center_;
    z.rightCols(d_) = z.leftCols(d_).array().square();
    Eigen::Map<RowMatrix>(first, k_, d_).noalias() += resp.transpose() * z.leftCols(d_);
    Eigen::Map<RowMatrix>(second, k_, d_).noalias() += resp.transpose() * z.rightCols(d_);
  } else if (type_ == CovarianceType::kTied) {
    const RowMatrix xc = x.rowwise() - center_;
    Eigen::Map<RowMatrix>(first, k_, d_).noalias() += resp.transpose() * xc;
    const RowMatrix weighted = xc.array().colwise() * resp.rowwise().sum().array().sqrt();
    Eigen::MatrixXd t = Eigen::MatrixXd::Zero(d_, d_);
    t.selfadjointView<Eigen::Lower>().rankUpdate(weighted.transpose());
    Eigen::Map<RowMatrix>(second, d_, d_) += t.triangularView<Eigen::Lower>().toDenseMatrix();
  } else {
    Eigen::Map<RowMatrix> s(first, k_, d_);
    RowMatrix xk(b, d_);
    Eigen::MatrixXd c(d_, d_);
    for (Index k = 0; k < k_; ++k) {
      xk = x.rowwise() - shift_.row(k);
      s.row(k).noalias() += resp.col(k).transpose() * xk;
      xk.array().colwise() *= resp.col(k).array().sqrt();
      c.setZero();
      c.selfadjointView<Eigen::Lower>().rankUpdate(xk.transpose());
      Eigen::Map<RowMatrix>(second + k * d_ * d_, d_, d_) += c.triangularView<Eigen::Lower>().toDenseMatrix();
    }
  }
}

void gmm_kernel::scale_and_shift32(const RowMatrix& shifted_means, const RowMatrix& sd_inv, LineFloats& inv_sd,
                                   LineFloats& shift) {
  const Index k_count = shifted_means.rows(), d = shifted_means.cols(), dp = padded(d);
  const bool per_feature = sd_inv.cols() > 1;
  inv_sd.assign(static_cast<std::size_t>(k_count * dp), 0.0f);
  shift.assign(static_cast<std::size_t>(k_count * dp), 0.0f);
  for (Index k = 0; k < k_count; ++k)
    for (Index j = 0; j < d; ++j) {
      const double s = sd_inv(k, per_feature ? j : 0);
      inv_sd[static_cast<std::size_t>(k * dp + j)] = static_cast<float>(s);
      shift[static_cast<std::size_t>(k * dp + j)] = static_cast<float>(-shifted_means(k, j) * s);
    }
}

RowVector gmm_kernel::float32_centre(const RowVector& mean, const RowVector& variance) {
  RowVector c = mean;
  for (Index j = 0; j < mean.size(); ++j) {
    const auto f = static_cast<double>(static_cast<float>(mean[j]));
    const double off = f - mean[j];
    if (std::isfinite(f) && off * off * 0x1p20 <= variance[j]) c[j] = f;
  }
  return c;
}

double gmm_kernel::softmax_rows(const float* q, Index n, Index k, const RowVector& bias, float* r, double* nk,
                                 std::vector<double>& w) {
  w.resize(static_cast<std::size_t>(n * k + n));
  double* z = w.data();
  double* row_max = z + n * k;
  for (Index i = 0; i < n; ++i) {
    double* zi = z + i * k;
    double m = -std::numeric_limits<double>::infinity();
    for (Index c = 0; c < k; ++c) {
      zi[c] = bias[c] - 0.5 * static_cast<double>(q[i * k + c]);
      m = std::max(m, zi[c]);
    }
    row_max[i] = m;
    if (std::isfinite(m))
      for (Index c = 0; c < k; ++c) zi[c] -= m;
    else
      for (Index c = 0; c < k; ++c) zi[c] = 0;  // not used
  }
  exp_nonpositive_array(z, z, n * k);
  double log_lik = 0;
  for (Index i = 0; i < n; ++i) {
    const double m = row_max[i];
    const double* ei = z + i * k;
    float* ri = r + i * k;
    if (!std::isfinite(m)) {  // as log_sum_exp_rows
      log_lik += m;
      for (Index c = 0; c < k; ++c) ri[c] = std::isnan(m) ? static_cast<float>(m) : 0.0f;
      continue;
    }
    double sum = 0;
    for (Index c = 0; c < k; ++c) sum += ei[c];
    log_lik += m + std::log(sum);
    for (Index c = 0; c < k; ++c) ri[c] = static_cast<float>(ei[c] / sum);
  }
  for (Index i = 0; i < n; ++i)
    for (Index c = 0; c < k; ++c) nk[c] += static_cast<double>(r[i * k + c]);
  return log_lik;
}

bool Gmm::float32_tile(const gmm_kernel::BlockRows& rows, Index r0, Index n, float* xf, Index dp,
                       std::span<double> partial) const {
  if (!rows.convert(r0, n, d_, center_.data(), xf, dp, neg_center32_)) return true;
  Vector lpn;
  RowMatrix resp;
  missing_tile(rows.widened(r0, n), resp, &lpn, &partial);
  return false;
}

void Gmm::e_step_block_f32(const io::DenseBlock& block, std::span<double> partial) const {
  // One pass per tile while it is in cache: convert (x − c) to float32 once, distances,
  // responsibilities (double log-sum-exp, one exp per entry), then the moments.
  const Index dp = gmm_kernel::padded(d_);
  LineFloats xf(static_cast<std::size_t>(kTileRows * dp), 0.0f);
  std::vector<float> q(static_cast<std::size_t>(kTileRows * k_)), rf(static_cast<std::size_t>(kTileRows * k_));
  std::vector<double> w(static_cast<std::size_t>(k_));
  double* nk = partial.data() + 2;
  double* first = nk + k_;
  double* second = first + k_ * d_;
  // A float32 block (io::BlockSourceOptions::float32) is read as stored; the conversion
  // gives the bits of the same rows widened to double.
  const gmm_kernel::BlockRows rows(block);
  for (Index r0 = 0; r0 < rows.rows(); r0 += kTileRows) {
    const Index n = std::min(kTileRows, rows.rows() - r0);
    if (!float32_tile(rows, r0, n, xf.data(), dp, partial)) continue;
    // The next tile's rows are read into cache while this tile's distances are computed.
    gmm_kernel::PrefetchRange pf = rows.next_tile(r0, n, kTileRows);
    gmm_kernel::quadratic(xf.data(), n, dp, inv_sd32_.data(), shift32_.data(), k_, q.data(), pf);
    partial[0] += gmm_kernel::softmax_rows(q.data(), n, k_, bias32_, rf.data(), nk, w);
    partial[1] += static_cast<double>(n);
    gmm_kernel::moments(xf.data(), n, dp, d_, rf.data(), k_, first, second, pf);
  }
}

namespace {

// For the 8 features of one panel of the full GMM's (r a)ᵀ, the rows idx[i], i < n, in
// order: a_i = x_i − m, acc += r_i a_i (in double: r_i a_i is exact there, so the FMA adds
// the same value as a multiply then an add), a_i stored at a_words + i·32 (the B operand's
// layout) and r_i a_i at ra_words + i·8 (the A operand's). x: rows ldx floats apart; r: ldr
// floats apart.
[[gnu::target("avx2,fma")]] void weighted_rows8(const float* x, Index ldx, const float* m, const float* r, Index ldr,
                                                const Index* idx, Index n, double* acc, std::uint32_t* a_words,
                                                std::uint32_t* ra_words) {
  const __m256 mv = _mm256_loadu_ps(m);
  __m256d lo = _mm256_loadu_pd(acc), hi = _mm256_loadu_pd(acc + 4);
  for (Index i = 0; i < n; ++i) {
    const float ri = r[idx[i] * ldr];
    const __m256 a = _mm256_sub_ps(_mm256_loadu_ps(x + idx[i] * ldx), mv);
    _mm256_storeu_ps(reinterpret_cast<float*>(a_words + i * matmul::Packed::kNr), a);
    _mm256_storeu_ps(reinterpret_cast<float*>(ra_words + i * matmul::Packed::kMr), _mm256_mul_ps(_mm256_set1_ps(ri), a));
    const __m256d rd = _mm256_set1_pd(static_cast<double>(ri));
    lo = _mm256_fmadd_pd(rd, _mm256_cvtps_pd(_mm256_castps256_ps128(a)), lo);
    hi = _mm256_fmadd_pd(rd, _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)), hi);
  }
  _mm256_storeu_pd(acc, lo);
  _mm256_storeu_pd(acc + 4, hi);
}

// weighted_rows8 for 16 features (two panels of (r a)ᵀ, ra_words0 and ra_words1) with
// AVX-512 (kernel variant avx512 and up): the same operations per feature, so the same bits.
[[gnu::target("avx512f")]] void weighted_rows16(const float* x, Index ldx, const float* m, const float* r, Index ldr,
                                                const Index* idx, Index n, double* acc, std::uint32_t* a_words,
                                                std::uint32_t* ra_words0, std::uint32_t* ra_words1) {
  const __m512 mv = _mm512_loadu_ps(m);
  __m512d lo = _mm512_loadu_pd(acc), hi = _mm512_loadu_pd(acc + 8);
  for (Index i = 0; i < n; ++i) {
    const float ri = r[idx[i] * ldr];
    const __m512 a = _mm512_sub_ps(_mm512_loadu_ps(x + idx[i] * ldx), mv);
    _mm512_storeu_ps(a_words + i * matmul::Packed::kNr, a);
    const __m512 ra = _mm512_mul_ps(_mm512_set1_ps(ri), a);
    _mm256_storeu_ps(reinterpret_cast<float*>(ra_words0 + i * matmul::Packed::kMr), _mm512_castps512_ps256(ra));
    _mm256_storeu_ps(reinterpret_cast<float*>(ra_words1 + i * matmul::Packed::kMr),
                     _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(ra), 1)));
    const __m512d rd = _mm512_set1_pd(static_cast<double>(ri));
    lo = _mm512_fmadd_pd(rd, _mm512_cvtps_pd(_mm512_castps512_ps256(a)), lo);
    hi = _mm512_fmadd_pd(rd, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1))), hi);
  }
  _mm512_storeu_pd(acc, lo);
  _mm512_storeu_pd(acc + 8, hi);
}

}  // namespace

void gmm_kernel::full_moments(const float* xf, Index n, Index dp, Index d, const float* r, Index ldr, const float* mk,
                              double* f, double* s2, FullScratch& scratch, bool skip_zeros) {
  constexpr Index kBlock = matmul::kLowerBlock, kMr = matmul::Packed::kMr, kNr = matmul::Packed::kNr;
  static_assert(kBlock == kNr && kBlock % kMr == 0);
  const auto sz = [](Index v) { return static_cast<std::size_t>(v); };
  const Index blocks = (d + kBlock - 1) / kBlock;
  std::vector<Index>& idx = scratch.rows;
  std::vector<matmul::Packed>& pw = scratch.ra;  // blocks of (r a)ᵀ
  std::vector<matmul::Packed>& pb = scratch.a;   // blocks of a
  std::vector<float>& c2 = scratch.product;
  if (static_cast<Index>(idx.size()) < n) idx.resize(sz(n));
  if (static_cast<Index>(pw.size()) < blocks) {
    pw.resize(sz(blocks));
    pb.resize(sz(blocks));
  }
  c2.resize(sz(d * d));
  // Only the rows whose responsibility is not exactly zero: a zero row adds r a = ±0 to
  // Σ r a and (r a) aᵀ = ±0 words to every chain of the product (one chain per entry over
  // the rows in order, matmul.hpp), which changes no sum, so leaving it out gives the same
  // bits with less work (in many dimensions most rows belong to one component). A
  // component with no such row adds nothing at all.
  Index nz = 0;
  for (Index i = 0; i < n; ++i) {
    idx[sz(nz)] = i;
    nz += !skip_zeros || r[i * ldr] != 0.0f;
  }
  if (nz == 0) return;
  for (Index b = 0; b < blocks; ++b) {
    const Index wb = std::min(kBlock, d - b * kBlock);
    pw[sz(b)].shape(wb, nz, true);   // block b of (r a)ᵀ: features × rows
    pb[sz(b)].shape(wb, nz, false);  // block b of a: rows × features
  }
  // By groups of 8 features (one panel of (r a)ᵀ; 16 with AVX-512 where two whole panels
  // remain), the rows in order: each Σ r a keeps its order over the rows, and its sums
  // stay in registers across them.
  const bool wide = kernel::active() >= kernel::Variant::kAvx512;
  for (Index j0 = 0; j0 < d;) {
    const Index b = j0 / kBlock, wg = std::min(kMr, d - j0);
    if (wide && j0 + 2 * kMr <= d && (j0 % kBlock) + 2 * kMr <= kBlock) {
      double acc[2 * kMr];
      std::copy(f + j0, f + j0 + 2 * kMr, acc);
      const Index p = (j0 % kBlock) / kMr;
      weighted_rows16(xf + j0, dp, mk + j0, r, ldr, idx.data(), nz, acc, pb[sz(b)].panel_words(0) + j0 % kBlock,
                      pw[sz(b)].panel_words(p), pw[sz(b)].panel_words(p + 1));
      std::copy(acc, acc + 2 * kMr, f + j0);
      j0 += 2 * kMr;
      continue;
    }
    std::uint32_t* bw = pb[sz(b)].panel_words(0) + j0 % kBlock;
    std::uint32_t* aw = pw[sz(b)].panel_words((j0 % kBlock) / kMr);
    double acc[kMr];
    float m[kMr];
    for (Index t = 0; t < kMr; ++t) {
      acc[t] = t < wg ? f[j0 + t] : 0.0;
      m[t] = t < wg ? mk[j0 + t] : 0.0f;
    }
    // Fewer than 8 features left (wg < 8): x̃'s padding and m's are zeros, so the extra
    // lanes write a = +0 and r a = +0 into the panels' padding, which shape() zeroed.
    weighted_rows8(xf + j0, dp, m, r, ldr, idx.data(), nz, acc, bw, aw);
    for (Index t = 0; t < wg; ++t) f[j0 + t] = acc[t];
    j0 += kMr;
  }
  // The lower triangle of Σ_i (r_i a_i) a_iᵀ = (r a)ᵀ a.
  matmul::multiply_lower_packed(pw, pb, d, c2.data());
  for (Index i = 0; i < d; ++i)
    for (Index j = 0; j <= i; ++j) s2[i * d + j] += static_cast<double>(c2[sz(i * d + j)]);
}

void Gmm::e_step_block_full_f32(const io::DenseBlock& block, std::span<double> partial) const {
  // Per tile: x̃ = float(x − c) once, packed once as a product operand; per component
  // y = a U_k with a = x̃ − float(μ_k − c) formed from that packing panel by panel
  // (matmul::multiply_upper_minus, float32, skipping U_k's zero lower triangle), the
  // distance ‖y‖² summed in double; responsibilities as in the diagonal pass; then per
  // component gmm_kernel::full_moments (Σ r a and the lower triangle of Σ r a aᵀ over the
  // tile's rows with r ≠ 0). Every sum has a fixed order (matmul.hpp), so the bits depend
  // on neither the kernel variant nor the rows outside the tile.
  constexpr Index kRows = 256;
  const Index dp = gmm_kernel::padded(d_);
  const auto sz = [](Index v) { return static_cast<std::size_t>(v); };
  std::vector<float> xf(sz(kRows * dp), 0.0f), y(sz(kRows * d_)), q(sz(kRows * k_)), rf(sz(kRows * k_));
  std::vector<double> w;
  matmul::Packed px;
  gmm_kernel::FullScratch scratch;
  double* nk = partial.data() + 2;
  double* first = nk + k_;
  double* second = first + k_ * d_;
  const gmm_kernel::BlockRows rows(block);
  for (Index r0 = 0; r0 < rows.rows(); r0 += kRows) {
    const Index n = std::min(kRows, rows.rows() - r0);
    if (!float32_tile(rows, r0, n, xf.data(), dp, partial)) continue;
    px.pack_a(matmul::Precision::kHighest, xf.data(), n, d_, dp, 1);
    for (Index k = 0; k < k_; ++k) {
      matmul::multiply_upper_minus(px, mean32_.data() + k * d_, prec32_[sz(k)], y.data(), d_);
      for (Index i = 0; i < n; ++i) q[sz(i * k_ + k)] = static_cast<float>(lanes::sum_squares(y.data() + i * d_, d_));
    }
    partial[0] += gmm_kernel::softmax_rows(q.data(), n, k_, bias_, rf.data(), nk, w);
    partial[1] += static_cast<double>(n);
    for (Index k = 0; k < k_; ++k)
      gmm_kernel::full_moments(xf.data(), n, dp, d_, rf.data() + k, k_, mean32_.data() + k * d_, first + k * d_,
                               second + k * d_ * d_, scratch);
  }
}

bool Gmm::accepts_float32_blocks() const { return float32_products_ && has_float32_pass(type_); }

void Gmm::e_step_block(const io::DenseBlock& block, std::span<double> partial) const {
  if (block.is_float32() && !accepts_float32_blocks())
    throw Error(ErrorKind::kInternal, "Gmm::e_step_block: a float32 block reached the double path");
  Vector lpn;
  RowMatrix resp;
  if (accepts_float32_blocks()) {
    // Responsibilities of far components below FLT_MIN would cost a microcode assist per
    // product in the moments on Intel cores (diag, Fashion-MNIST, K = 10, Intel Xeon family
    // 6 model 167: 0.041 → 0.037 s an iteration, the same model file).
    const FlushDenormals flush;
    if (type_ != CovarianceType::kFull) {
      e_step_block_f32(block, partial);
      return;
    }
    // The statistics' shift is the means after every M-step; a caller that set another
    // (set_component_shift) gets the double path.
    if (shift_ == means_) {
      e_step_block_full_f32(block, partial);
      return;
    }
  }
  if (type_ == CovarianceType::kDiag || type_ == CovarianceType::kSpherical) {
    // Fused: z = [x - c, (x - c)²] is built once per tile and feeds both GEMMs.
    RowMatrix z;
    Eigen::Map<RowVector> nk(partial.data() + 2, k_);
    Eigen::Map<RowMatrix> first(partial.data() + 2 + k_, k_, d_), second(partial.data() + 2 + k_ + k_ * d_, k_, d_);
    for (Index r0 = 0; r0 < block.x.rows(); r0 += kTileRows) {
      const Index n = std::min(kTileRows, block.x.rows() - r0);
      if (block.x.middleRows(r0, n).hasNaN()) {
        missing_tile(block.x.middleRows(r0, n), resp, &lpn, &partial);
        continue;
      }
      partial[1] += static_cast<double>(n);
      z.resize(n, 2 * d_);
      z.leftCols(d_) = block.x.middleRows(r0, n).rowwise() - center_;
      z.rightCols(d_) = z.leftCols(d_).array().square();
      resp.noalias() = z * w_diag_.topRows(2 * d_);
      resp.rowwise() += bias_;
      log_sum_exp_rows(resp, lpn);
      partial[0] += lpn.sum();
      nk += resp.colwise().sum();
      first.noalias() += resp.transpose() * z.leftCols(d_);
      second.noalias() += resp.transpose() * z.rightCols(d_);
    }
    return;
  }
  // Full with another statistics shift may still be handed float32 blocks: widened here.
  const RowMatrix widened = block.is_float32() ? RowMatrix(block.xf.cast<double>()) : RowMatrix();
  const RowMatrix& x = block.is_float32() ? widened : block.x;
  for (Index r0 = 0; r0 < x.rows(); r0 += kFullTileRows) {
    const auto tile = x.middleRows(r0, std::min(kFullTileRows, x.rows() - r0));
    e_step(tile, lpn, resp);
    partial[0] += lpn.sum();
    accumulate(tile, resp, partial);
  }
}

train::EmModel::Step Gmm::m_step(std::span<const double> stats) {
  const double n = stats[1];
  const double objective = stats[0] / n;
  RowVector nk = Eigen::Map<const RowVector>(stats.data() + 2, k_).array() + kNkFloor;
  const double* first = stats.data() + 2 + k_;
  const double* second = first + k_ * d_;
  const RowMatrix mean_shifted = Eigen::Map<const RowMatrix>(first, k_, d_).array().colwise() / nk.transpose().array();
  RowMatrix means(k_, d_), cov;
  switch (type_) {
    case CovarianceType::kDiag:
    case CovarianceType::kSpherical: {
      means = mean_shifted.rowwise() + center_;
      const RowMatrix var = (Eigen::Map<const RowMatrix>(second, k_, d_).array().colwise() / nk.transpose().array() -
                             mean_shifted.array().square() + reg_covar_).matrix();
      cov = type_ == CovarianceType::kDiag ? var : RowMatrix(var.rowwise().mean());
      break;
    }
    case CovarianceType::kTied: {
      means = mean_shifted.rowwise() + center_;
      Eigen::MatrixXd t = Eigen::Map<const RowMatrix>(second, d_, d_);
      t = t.selfadjointView<Eigen::Lower>();
      const RowMatrix weighted = mean_shifted.array().colwise() * nk.transpose().array();
      t -= weighted.transpose() * mean_shifted;
      t /= nk.sum();
      t.diagonal().array() += reg_covar_;
      cov = t;
      break;
    }
    case CovarianceType::kFull: {
      means = mean_shifted + shift_;
      cov.resize(k_ * d_, d_);
      for (Index k = 0; k < k_; ++k) {
        Eigen::MatrixXd c = Eigen::Map<const RowMatrix>(second + k * d_ * d_, d_, d_);
        c = c.selfadjointView<Eigen::Lower>();
        c /= nk[k];
        c -= mean_shifted.row(k).transpose() * mean_shifted.row(k);
        c.diagonal().array() += reg_covar_;
        cov.middleRows(k * d_, d_) = c;
      }
      break;
    }
  }
  set_parameters(nk / nk.sum(), std::move(means), std::move(cov));
  const Step step{objective, objective - previous_objective_};
  previous_objective_ = objective;
  return step;
}

}  // namespace latent::models
