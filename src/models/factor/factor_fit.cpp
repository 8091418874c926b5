#include "latent/models/factor/factor_fit.hpp"

#include <Eigen/Cholesky>
#include <chrono>
#include <optional>
#include <cmath>
#include <limits>
#include <numbers>

#include <fmt/format.h>

#include "latent/core/control.hpp"
#include "latent/core/error.hpp"
#include "latent/core/gemm_f64.hpp"
#include "latent/core/matmul.hpp"
#include "latent/core/profile.hpp"
#include "latent/core/rng.hpp"
#include "latent/models/gmm/gmm_diag_kernel.hpp"
#include "latent/train/block_reduce.hpp"

namespace latent::models {
namespace {

// EM for x̃ = W̃ᵀ z̃ + ε with x̃ = x − c (c: the data mean, for numerically safe sums),
// W̃ = [W; μ̃] ((L+1) × D), z̃ = [z; 1]. Statistics: [Σ log p, N, A = Σ E[z̃z̃ᵀ] ((L+1)²),
// B = Σ E[x̃ z̃ᵀ] (D × (L+1), row-major), C = Σ E[x̃²] (D)].
class FactorEm final : public train::EmModel {
 public:
  FactorEm(FactorModel model, RowVector center, double floor)
      : model_(std::move(model)), center_(std::move(center)), floor_(floor),
        l_(model_.num_components()), d_(model_.num_features()) {}

  const FactorModel& model() const { return model_; }
  FactorModel& model() { return model_; }
  std::size_t num_stats() const override {
    return static_cast<std::size_t>(2 + (l_ + 1) * (l_ + 1) + d_ * (l_ + 1) + d_);
  }

  void e_step_block(const io::DenseBlock& block, std::span<double> partial) const override {
    const Index a = l_ + 1;
    Eigen::Map<RowMatrix> acc_a(partial.data() + 2, a, a), acc_b(partial.data() + 2 + a * a, d_, a);
    Eigen::Map<RowVector> acc_c(partial.data() + 2 + a * a + d_ * a, d_);
    const RowMatrix xt = block.x.rowwise() - center_;
    if (!xt.hasNaN()) {
      Vector log_prob;
      RowMatrix ez;
      model_.infer(xt, log_prob, &ez, nullptr);
      partial[0] = log_prob.sum();
      partial[1] = static_cast<double>(xt.rows());
      acc_a.topLeftCorner(l_, l_).noalias() = ez.transpose() * ez;
      acc_a.topLeftCorner(l_, l_) += static_cast<double>(xt.rows()) * model_.m_inverse();
      const RowVector sz = ez.colwise().sum();
      acc_a.block(0, l_, l_, 1) = sz.transpose();
      acc_a.block(l_, 0, 1, l_) = sz;
      acc_a(l_, l_) = static_cast<double>(xt.rows());
      acc_b.leftCols(l_).noalias() = xt.transpose() * ez;
      acc_b.col(l_) = xt.colwise().sum().transpose();
      acc_c = xt.array().square().colwise().sum().matrix();
      return;
    }
    // Row by row (add_factor_row_stats with weight 1).
    RowMatrix wt(a, d_);
    wt.topRows(l_) = model_.components();
    wt.row(l_) = model_.mean();
    RowMatrix cov;
    Vector ez;
    std::vector<Index> missing;
    FactorRowScratch scratch;
    partial[1] = static_cast<double>(xt.rows());
    for (Index i = 0; i < xt.rows(); ++i) {
      partial[0] += model_.missing_row_posterior(xt.row(i), missing, ez, &cov);
      add_factor_row_stats(model_, wt, xt.row(i), missing, ez, cov, 1.0, partial.data() + 2, scratch);
    }
  }

  Step m_step(std::span<const double> stats) override {
    const double n = stats[1];
    FactorUpdate u = factor_m_step(stats.data() + 2, n, l_, d_, model_.noise_type(), floor_, 0.0, "factor model M-step");
    const double objective = stats[0] / n;
    const double change = objective - previous_;
    previous_ = objective;
    model_.set_parameters(std::move(u.mean), std::move(u.components), std::move(u.noise_variance));
    return {objective, change};
  }

  /// The statistics of complete data from T = Σ x̃ x̃ᵀ (D × D, both triangles),
  /// s = Σ x̃ and N, under the current parameters (the covariance solver).
  AlignedDoubles stats_from_scatter(const RowMatrix& t, const RowVector& s, double n) const {
    const Index a = l_ + 1;
    AlignedDoubles out(num_stats(), 0.0);
    Eigen::Map<RowMatrix> acc_a(out.data() + 2, a, a), acc_b(out.data() + 2 + a * a, d_, a);
    Eigen::Map<RowVector> acc_c(out.data() + 2 + a * a + d_ * a, d_);
    const RowMatrix& beta = model_.posterior_map();
    const RowVector& mu = model_.mean();
    // T βᵀ, then R βᵀ with R = Σ (x̃ − μ̃)(x̃ − μ̃)ᵀ = T − s μ̃ᵀ − μ̃ sᵀ + N μ̃ μ̃ᵀ. The two
    // D-deep products (T βᵀ: 2·D²·L flops, most of an iteration) are matmul::multiply_f64's,
    // the same bits in every kernel variant and AVX-512 wide where the variant has it.
    const RowMatrix beta_t = beta.transpose();  // D × L
    RowMatrix tb(d_, l_);
    matmul::multiply_f64(t.data(), d_, beta_t.data(), l_, tb.data(), l_, d_, d_, l_);  // t holds both triangles (scatter_pass)
    const RowVector mu_b = mu * beta.transpose(), s_b = s * beta.transpose();  // 1 × L
    RowMatrix rb = tb;
    rb.noalias() -= s.transpose() * mu_b;
    rb.noalias() -= mu.transpose() * s_b;
    rb.noalias() += n * (mu.transpose() * mu_b);
    const RowVector sum_ez = s_b - n * mu_b;
    matmul::multiply_f64(beta.data(), d_, rb.data(), l_, out.data() + 2, a, l_, d_, l_);  // β R βᵀ into A's L × L corner
    acc_a.topLeftCorner(l_, l_) += n * model_.m_inverse();
    acc_a.block(0, l_, l_, 1) = sum_ez.transpose();
    acc_a.block(l_, 0, 1, l_) = sum_ez;
    acc_a(l_, l_) = n;
    acc_b.leftCols(l_) = tb;
    acc_b.leftCols(l_).noalias() -= s.transpose() * mu_b;
    acc_b.col(l_) = s.transpose();
    acc_c = t.diagonal().transpose();
    // log-likelihood: −½ [N (D log 2π + log|M| + Σ log ψ) + Σ_d R_dd/ψ_d − tr(β R Ψ⁻¹ Wᵀ)]
    const RowVector r_diag = t.diagonal().transpose() - 2.0 * s.cwiseProduct(mu) + n * mu.cwiseProduct(mu);
    const double trace = r_diag.dot(model_.inverse_noise()) - (rb.transpose().cwiseProduct(model_.components_over_noise())).sum();
    out[0] = -0.5 * (n * (static_cast<double>(d_) * std::log(2.0 * std::numbers::pi) + model_.log_det_m() +
                          model_.sum_log_noise()) +
                     trace);
    out[1] = n;
    return out;
  }

  void save_state(train::TrainState& state) const override {
    state.arrays["components"] = model_.components();
    state.arrays["mean"] = model_.mean();
    state.arrays["noise_variance"] = model_.noise_variance();
    state.scalars["previous_objective"] = previous_;
  }
  void load_state(const train::TrainState& state) override {
    model_.set_parameters(state.array("mean"), state.array("components"), state.array("noise_variance"));
    previous_ = state.scalar("previous_objective");
  }

 private:
  FactorModel model_;
  RowVector center_;
  double floor_;
  Index l_, d_;
  double previous_ = -std::numeric_limits<double>::infinity();
};

constexpr Index kMaxCovarianceFeatures = 4096;

}  // namespace

void add_factor_row_stats(const FactorModel& model, const RowMatrix& wt, const Eigen::Ref<const RowVector>& xt,
                          const std::vector<Index>& missing, const Vector& ez, const RowMatrix& cov, double weight,
                          double* stats, FactorRowScratch& scratch) {
  // G = E[z̃z̃ᵀ | x_o]; an observed x_d adds x_d [E[z]; 1] to B_d and x_d² to C_d; a missing
  // one adds E[x_d z̃ᵀ] = w̃_d G and E[x_d²] = w̃_d G w̃_dᵀ + ψ_d (the missing columns of W̃
  // gathered, so both are one GEMM per row). Everything is scaled by the row's weight.
  const Index l = model.num_components(), d = model.num_features(), a = l + 1;
  Eigen::Map<RowMatrix> acc_a(stats, a, a), acc_b(stats + a * a, d, a);
  Eigen::Map<RowVector> acc_c(stats + a * a + d * a, d);
  RowMatrix& g = scratch.g;
  g.resize(a, a);
  g.topLeftCorner(l, l) = cov;
  g.topLeftCorner(l, l).noalias() += ez * ez.transpose();
  g.block(0, l, l, 1) = ez;
  g.block(l, 0, 1, l) = ez.transpose();
  g(l, l) = 1.0;
  acc_a += weight * g;
  for (Index j = 0; j < d; ++j) {
    const double x = xt[j];
    if (std::isnan(x)) continue;
    const double wx = weight * x;
    acc_b.row(j).head(l).noalias() += wx * ez.transpose();
    acc_b(j, l) += wx;
    acc_c[j] += wx * x;
  }
  const Index nm = static_cast<Index>(missing.size());
  if (nm == 0) return;
  scratch.wm.resize(nm, a);
  for (Index k = 0; k < nm; ++k) scratch.wm.row(k) = wt.col(missing[static_cast<std::size_t>(k)]).transpose();
  scratch.wg.noalias() = scratch.wm * g;  // |m| × (L+1): rows w̃_d G
  for (Index k = 0; k < nm; ++k) {
    const Index j = missing[static_cast<std::size_t>(k)];
    acc_b.row(j) += weight * scratch.wg.row(k);
    acc_c[j] += weight * (scratch.wg.row(k).dot(scratch.wm.row(k)) + model.noise_variance()[j]);
  }
}

FactorUpdate factor_m_step(const double* stats, double n, Index l, Index d, NoiseType noise, double floor,
                           double add_to_noise, const std::string& what) {
  const Index a = l + 1;
  const Eigen::Map<const RowMatrix> acc_a(stats, a, a), acc_b(stats + a * a, d, a);
  const Eigen::Map<const RowVector> acc_c(stats + a * a + d * a, d);
  const Eigen::LLT<Eigen::MatrixXd> llt{Eigen::MatrixXd(acc_a)};
  if (llt.info() != Eigen::Success)
    throw_numerical(what + ": the expected latent second moments are singular (fewer informative rows than components?)");
  const RowMatrix wt = llt.solve(Eigen::MatrixXd(acc_b.transpose()));  // (L+1) × D
  RowVector psi(d);
  for (Index j = 0; j < d; ++j) psi[j] = (acc_c[j] - wt.col(j).dot(acc_b.row(j).transpose())) / n;
  if (noise == NoiseType::kIsotropic) psi.setConstant(psi.mean());
  if (add_to_noise != 0) psi.array() += add_to_noise;
  psi = psi.cwiseMax(floor);
  // Parameter expansion (PX-EM; Liu, Rubin & Wu 1998 §5): the same M-step with z ~ N(m, Σ)
  // free, then reduced to z ~ N(0, I): W = Lᵀ W*, μ = μ* + W*ᵀ m with Σ = L Lᵀ.
  const RowVector m = acc_a.block(l, 0, 1, l) / n;
  RowMatrix sigma = acc_a.topLeftCorner(l, l) / n;
  sigma.noalias() -= m.transpose() * m;
  const Eigen::LLT<Eigen::MatrixXd> chol{Eigen::MatrixXd(sigma)};
  if (chol.info() != Eigen::Success) throw_numerical(what + ": the latent covariance is singular");
  const RowMatrix lower = chol.matrixL();
  FactorUpdate out;
  out.components.resize(l, d);
  out.components.noalias() = lower.transpose() * wt.topRows(l);
  out.mean = wt.row(l);
  out.mean.noalias() += m * wt.topRows(l);
  out.noise_variance = std::move(psi);
  return out;
}

namespace {

// The lower triangle of (x − c)ᵀ(x − c) (x: n × d rows, row-major), packed row by row into
// out (which holds zeros): per tile of kRows rows, the rows converted once to float32
// (gmm_kernel::convert: float(x − c), one rounding, no centred double copy), then the float32
// product's blocks on and below the diagonal (matmul::multiply_lower_tn: each entry a fixed
// order over the tile's rows, the same bits in every kernel variant), added to the doubles.
template <class Rows>  // RowMatrix, or RowMatrixF (a float32 block: the same bits as it widened)
void scatter_float32(const Rows& x, const RowVector& center, double* out) {
  constexpr Index kRows = 512;
  const Index n = x.rows(), d = x.cols();
  std::vector<float> xf(static_cast<std::size_t>(std::min(n, kRows) * d)), c(static_cast<std::size_t>(d * d));
  std::vector<matmul::Packed> a, b;
  for (Index r0 = 0; r0 < n; r0 += kRows) {
    const Index m = std::min(kRows, n - r0);
    if (gmm_kernel::convert(x.data() + r0 * d, m, d, d, center.data(), xf.data(), d))
      for (Index i = 0; i < m; ++i)  // a NaN stops convert(): the same rounding, element by element
        for (Index j = 0; j < d; ++j)
          xf[static_cast<std::size_t>(i * d + j)] = static_cast<float>(static_cast<double>(x(r0 + i, j)) - center[j]);
    matmul::multiply_lower_tn(matmul::Precision::kHighest, xf.data(), xf.data(), m, d, d, c.data(), a, b);
    std::size_t at = 0;
    for (Index i = 0; i < d; ++i)
      for (Index j = 0; j <= i; ++j) out[at++] += static_cast<double>(c[static_cast<std::size_t>(i * d + j)]);
  }
}

}  // namespace

Scatter scatter_pass(const comm::Communicator& comm, io::BlockSource& source, const RowVector& center, int threads,
                     bool float32) {
  // Per block the lower triangle of (x − c)ᵀ(x − c), packed row by row, then Σ (x − c).
  const Index d = center.size();
  const std::size_t packed = static_cast<std::size_t>(d * (d + 1) / 2);
  // With float32 products a float32 source's blocks arrive as stored (and are read widened
  // value by value: the same bits as the widened block), not widened into a new block.
  const io::BlockSource::Float32Scope float32_scope(source, float32);
  const std::vector<double> stats =
      train::reduce_global(comm, source, packed + static_cast<std::size_t>(d), threads,
                           [&](const io::DenseBlock& b, std::span<double> partial) {
                             Eigen::Map<RowVector> s(partial.data() + packed, d);
                             s.setZero();
                             if (b.is_float32()) {
                               for (Index i = 0; i < b.xf.rows(); ++i) s += b.xf.row(i).cast<double>() - center;
                               scatter_float32(b.xf, center, partial.data());
                               return;
                             }
                             for (Index i = 0; i < b.x.rows(); ++i) s += b.x.row(i) - center;
                             if (float32) {
                               scatter_float32(b.x, center, partial.data());
                               return;
                             }
                             const RowMatrix xt = b.x.rowwise() - center;
                             Eigen::MatrixXd local = Eigen::MatrixXd::Zero(d, d);
                             local.selfadjointView<Eigen::Lower>().rankUpdate(xt.transpose());
                             std::size_t at = 0;
                             for (Index i = 0; i < d; ++i)
                               for (Index j = 0; j <= i; ++j) partial[at++] = local(i, j);
                           });
  Scatter out;
  out.t.resize(d, d);
  std::size_t at = 0;
  for (Index i = 0; i < d; ++i)
    for (Index j = 0; j <= i; ++j) out.t(i, j) = out.t(j, i) = stats[at++];
  out.s = Eigen::Map<const RowVector>(stats.data() + packed, d);
  return out;
}

std::string resolve_factor_solver(const FactorConfig& c, Index num_features) {
  if (c.solver == "auto") return !c.missing_values && num_features <= kMaxCovarianceFeatures ? "covariance" : "streaming";
  if (c.solver == "covariance" && c.missing_values)
    throw_usage("--solver covariance needs complete data; with --missing-values nan use --solver streaming (or auto)");
  if (c.solver != "covariance" && c.solver != "streaming")
    throw_usage("invalid --solver '" + c.solver + "' (choose auto, covariance or streaming)");
  return c.solver;
}

FactorFitResult fit_factor(const comm::Communicator& comm, io::BlockSource& source, const train::DataSummary& summary,
                           const FactorConfig& c, const Logger& log, const train::IterationObserver& observer,
                           train::FitControl* control, const Scatter* scatter) {
  const Index l = c.n_components, d = source.info().num_features;
  if (l < 1 || l >= d)
    throw_usage(fmt::format("--n-components must be between 1 and n_features - 1 = {} (got {})", d - 1, l));
  if (c.max_iter < 1) throw_usage("--max-iter must be at least 1");
  if (c.tol < 0) throw_usage("--tol must be non-negative");
  if (!(c.noise_variance_floor > 0)) throw_usage("--noise-variance-floor must be positive");
  if (summary.num_samples <= l) throw_usage(fmt::format("{} samples cannot fit {} components", summary.num_samples, l));
  const std::string solver = resolve_factor_solver(c, d);
  // Initial parameters (in the shifted coordinates x̃ = x − mean).
  FactorModel start(l, d, c.noise);
  {
    const double scale = 0.1 * std::sqrt(std::max(summary.variance.mean(), 1e-300));
    RowMatrix w(l, d);
    for (Index i = 0; i < l; ++i) {
      CounterRng rng(c.seed, RngPurpose::kFactorInit, 0, static_cast<std::uint64_t>(i));
      for (Index j = 0; j < d; ++j) w(i, j) = scale * rng.next_normal();
    }
    RowVector psi = summary.variance.cwiseMax(c.noise_variance_floor);
    if (c.noise == NoiseType::kIsotropic) psi.setConstant(std::max(summary.variance.mean(), c.noise_variance_floor));
    start.set_parameters(RowVector::Zero(d), w, psi);
  }
  FactorEm em(std::move(start), summary.mean, c.noise_variance_floor);
  const std::optional<train::TrainState> resumed = control ? control->resume() : std::nullopt;
  train::EmResult result;
  if (resumed) {
    em.load_state(*resumed);
    result = train::load_history(*resumed);
  }
  const train::IterationHook hook = train::checkpoint_hook(control, em);
  log.info(fmt::format("{}: {} components, solver {}", model_name(c.noise), l, solver));
  if (solver == "streaming") {
    result = train::run_batch_em(comm, source, summary.num_samples, em, {c.max_iter, c.tol, c.threads}, observer,
                                 std::move(result), hook);
  } else if (result.history.empty() || std::abs(result.history.back().change) >= c.tol) {
    const auto t0 = std::chrono::steady_clock::now();
    Scatter own;
    if (!scatter) {
      own = scatter_pass(comm, source, summary.mean, c.threads, c.matmul_precision == "high");
      log.info(fmt::format("scatter matrix ({} x {}) in {:.3f} s; EM iterations run in memory", d, d,
                           std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()));
    }
    const RowMatrix& t = scatter ? scatter->t : own.t;
    const RowVector& s = scatter ? scatter->s : own.s;
    const double n = static_cast<double>(summary.num_samples);
    const FaultPlan& fault = FaultPlan::get();
    train::EmIterations its;  // all in memory: no data pass per iteration
    its.in_memory = true;
    its.statistics = [&](int it) {
      AlignedDoubles stats = em.stats_from_scatter(t, s, n);
      if (fault.due(comm.rank(), it, "nan")) stats[0] = std::numeric_limits<double>::quiet_NaN();
      return stats;
    };
    its.m_step = [&](std::span<const double> stats) { return em.m_step(stats); };
    its.nan_note = "";
    its.nan_advice = "Try a larger --noise-variance-floor or standardise the data";
    result = train::run_em_iterations(its, {c.max_iter, c.tol, c.threads}, observer, std::move(result), hook);
  } else {
    result.converged = true;
  }
  if (!result.converged)
    log.warn(fmt::format("{} did not converge in {} iterations (|last change| {:.3g} nats/sample, not below tol {:.3g}); "
                         "raise --max-iter or --tol",
                         model_name(c.noise), result.n_iter,
                         result.history.empty() ? 0.0 : std::abs(result.history.back().change), c.tol));
  FactorModel out = em.model();
  out.set_parameters(em.model().mean() + summary.mean, em.model().components(), em.model().noise_variance());
  return FactorFitResult{std::move(out), std::move(result), solver};
}

}  // namespace latent::models
