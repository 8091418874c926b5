// PPCA and factor analysis: inference against the D × D Gaussian it implies, EM against
// the closed-form PPCA solution (Tipping & Bishop 1999 eq. 7-8) and the FA stationarity
// conditions, the two solvers against each other, missing values, monotone EM.
#include "latent/models/factor/factor.hpp"

#include <gtest/gtest.h>

#include <Eigen/Cholesky>
#include <Eigen/Eigenvalues>
#include <cmath>
#include <cstring>
#include <memory>
#include <limits>
#include <numbers>

#include "../support/fixtures.hpp"
#include "../support/pipeline.hpp"
#include "latent/core/error.hpp"
#include "latent/core/kernel.hpp"
#include "latent/core/rng.hpp"
#include "latent/models/factor/factor_fit.hpp"
#include "latent/models/gmm/gmm.hpp"
#include "latent/models/gmm/gmm_fit.hpp"
#include "latent/train/block_reduce.hpp"
#include "latent/train/data_summary.hpp"

namespace latent::models {
namespace {

using latent::testing::TempDir;
const double kNaN = std::numeric_limits<double>::quiet_NaN();

// n rows of x = μ + Wᵀ z + ε with known W (l × d) and Ψ.
RowMatrix factor_data(Index n, Index d, Index l, std::uint64_t seed, RowMatrix* w_out = nullptr, RowVector* psi_out = nullptr) {
  RowMatrix w(l, d);
  RowVector psi(d), mu(d);
  CounterRng p(seed, RngPurpose::kSample, 1, 0);
  for (Index i = 0; i < l; ++i)
    for (Index j = 0; j < d; ++j) w(i, j) = p.next_normal();
  for (Index j = 0; j < d; ++j) {
    psi[j] = 0.1 + 0.9 * p.next_uniform();
    mu[j] = 3.0 * p.next_normal();
  }
  RowMatrix x(n, d);
  for (Index r = 0; r < n; ++r) {
    CounterRng g(seed, RngPurpose::kSample, 2, static_cast<std::uint64_t>(r));
    RowVector z(l);
    for (Index i = 0; i < l; ++i) z[i] = g.next_normal();
    x.row(r) = mu + z * w;
    for (Index j = 0; j < d; ++j) x(r, j) += std::sqrt(psi[j]) * g.next_normal();
  }
  if (w_out) *w_out = w;
  if (psi_out) *psi_out = psi;
  return x;
}

RowMatrix with_missing(RowMatrix x, double fraction, std::uint64_t seed) {
  for (Index i = 0; i < x.rows(); ++i)
    for (Index j = 0; j < x.cols(); ++j)
      if (CounterRng(seed, RngPurpose::kSample, 3, static_cast<std::uint64_t>(i * x.cols() + j)).next_uniform() < fraction)
        x(i, j) = kNaN;
  return x;
}

// log N(x_o | μ_o, C_oo) computed from the dense covariance.
double dense_log_density(const RowVector& x, const RowVector& mu, const Eigen::MatrixXd& c) {
  std::vector<Index> o;
  for (Index j = 0; j < x.size(); ++j)
    if (!std::isnan(x[j])) o.push_back(j);
  const Index m = static_cast<Index>(o.size());
  Eigen::MatrixXd coo(m, m);
  Eigen::VectorXd r(m);
  for (Index a = 0; a < m; ++a) {
    r[a] = x[o[a]] - mu[o[a]];
    for (Index b = 0; b < m; ++b) coo(a, b) = c(o[a], o[b]);
  }
  const Eigen::LLT<Eigen::MatrixXd> llt(coo);
  const double logdet = 2.0 * llt.matrixLLT().diagonal().array().log().sum();
  return -0.5 * (static_cast<double>(m) * std::log(2 * std::numbers::pi) + logdet + r.dot(llt.solve(r)));
}

struct Fitted {
  FactorFitResult fit;
  std::vector<double> history;
};

Fitted fit_dir(const std::string& dir, FactorConfig c, int threads = 1, bool missing = false) {
  const auto comm = comm::Communicator::world();
  auto source = latent::testing::make_source(comm, dir, 97, 0, false, missing);
  const auto summary = train::summarize(comm, *source, threads);
  c.threads = threads;
  c.missing_values = missing;
  std::vector<double> history;
  auto fit = fit_factor(comm, *source, summary, c, Logger::silent(), [&](const train::IterationRecord& r) { history.push_back(r.objective); });
  return {std::move(fit), std::move(history)};
}

TEST(FactorModel, InferenceMatchesTheDenseGaussianWithAndWithoutMissingValues) {
  const Index d = 7, l = 3;
  RowMatrix w;
  RowVector psi;
  const RowMatrix x = factor_data(40, d, l, 4, &w, &psi);
  const RowVector mu = x.colwise().mean();
  for (const NoiseType noise : {NoiseType::kDiagonal, NoiseType::kIsotropic}) {
    FactorModel m(l, d, noise);
    const RowVector p = noise == NoiseType::kIsotropic ? RowVector::Constant(d, 0.4) : psi;
    m.set_parameters(mu, w, p);
    Eigen::MatrixXd c = w.transpose() * w;
    c.diagonal() += p.transpose();
    RowMatrix xm = with_missing(x, 0.3, 8);
    xm.row(5).setConstant(kNaN);  // nothing observed: log p = 0, E[z] = 0, imputed = μ
    Vector lp;
    RowMatrix ez, imputed;
    m.infer(xm, lp, &ez, &imputed);
    for (Index i = 0; i < xm.rows(); ++i) {
      std::vector<Index> o, mi;
      for (Index j = 0; j < d; ++j) (std::isnan(xm(i, j)) ? mi : o).push_back(j);
      if (o.empty()) {
        EXPECT_EQ(lp[i], 0.0);
        EXPECT_LT((imputed.row(i) - mu).norm(), 1e-12);
        continue;
      }
      EXPECT_NEAR(lp[i], dense_log_density(xm.row(i), mu, c), 1e-10 * std::abs(lp[i]) + 1e-10) << "row " << i;
      // E[z | x_o] = W_o C_oo⁻¹ (x_o − μ_o); E[x_m | x_o] = μ_m + C_mo C_oo⁻¹ (x_o − μ_o).
      const Index no = static_cast<Index>(o.size());
      Eigen::MatrixXd coo(no, no), wo(l, no), cmo(static_cast<Index>(mi.size()), no);
      Eigen::VectorXd r(no);
      for (Index a = 0; a < no; ++a) {
        r[a] = xm(i, o[a]) - mu[o[a]];
        wo.col(a) = w.col(o[a]);
        for (Index b = 0; b < no; ++b) coo(a, b) = c(o[a], o[b]);
        for (std::size_t b = 0; b < mi.size(); ++b) cmo(static_cast<Index>(b), a) = c(mi[b], o[a]);
      }
      const Eigen::VectorXd sol = coo.ldlt().solve(r);
      EXPECT_LT((ez.row(i).transpose() - wo * sol).norm(), 1e-10);
      const Eigen::VectorXd xmiss = cmo * sol;
      for (std::size_t b = 0; b < mi.size(); ++b) EXPECT_NEAR(imputed(i, mi[b]), mu[mi[b]] + xmiss[static_cast<Index>(b)], 1e-10);
      for (const Index j : o) EXPECT_EQ(imputed(i, j), xm(i, j));
    }
  }
}

TEST(FactorModel, ParametersAreValidated) {
  FactorModel m(2, 4, NoiseType::kDiagonal);
  EXPECT_THROW(m.set_parameters(RowVector::Zero(4), RowMatrix::Zero(2, 4), RowVector::Zero(4)), Error);
  EXPECT_THROW(m.set_parameters(RowVector::Zero(3), RowMatrix::Zero(2, 4), RowVector::Ones(4)), Error);
  EXPECT_EQ(m.num_parameters(), 4 + 8 - 1 + 4);
  EXPECT_EQ(FactorModel(2, 4, NoiseType::kIsotropic).num_parameters(), 4 + 8 - 1 + 1);
}

TEST(FactorFit, PpcaEmReachesTheClosedFormOnBothSolvers) {
  TempDir dir("ppca");
  const Index d = 9, l = 2;
  const RowMatrix x = factor_data(1500, d, l, 11);
  latent::testing::write_shards(dir / "d", x, {700, 800});
  // Closed form: W Wᵀ-equivalent U_L (Λ_L − σ² I) U_Lᵀ, σ² = mean of the discarded eigenvalues.
  const RowVector mu = x.colwise().mean();
  const Eigen::MatrixXd s = (x.rowwise() - mu).transpose() * (x.rowwise() - mu) / static_cast<double>(x.rows());
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(s);
  const Eigen::VectorXd ev = eig.eigenvalues().reverse();
  const double sigma2 = ev.tail(d - l).mean();
  Eigen::MatrixXd c = Eigen::MatrixXd::Identity(d, d) * sigma2;
  for (Index i = 0; i < l; ++i) {
    const Eigen::VectorXd u = eig.eigenvectors().col(d - 1 - i);
    c += (ev[i] - sigma2) * u * u.transpose();
  }
  const Eigen::LLT<Eigen::MatrixXd> llt(c);
  const double ll_closed = -0.5 * (static_cast<double>(d) * std::log(2 * std::numbers::pi) +
                                   2.0 * llt.matrixLLT().diagonal().array().log().sum() + (llt.solve(s)).trace());
  for (const char* solver : {"covariance", "streaming"}) {
    FactorConfig cfg;
    cfg.noise = NoiseType::kIsotropic;
    cfg.n_components = l;
    cfg.tol = 1e-12;
    cfg.max_iter = 3000;
    cfg.solver = solver;
    const Fitted f = fit_dir(dir / "d", cfg);
    ASSERT_TRUE(f.fit.em.converged) << solver;
    EXPECT_EQ(f.fit.solver, solver);
    const auto& m = f.fit.model;
    EXPECT_NEAR(m.noise_variance()[0], sigma2, 1e-6 * sigma2) << solver;
    Eigen::MatrixXd cf = m.components().transpose() * m.components();
    cf.diagonal() += m.noise_variance().transpose();
    EXPECT_LT((cf - c).norm(), 1e-5 * c.norm()) << solver;
    EXPECT_LT((m.mean() - mu).norm(), 1e-9 * mu.norm());
    EXPECT_NEAR(f.fit.em.objective, ll_closed, 1e-8 * std::abs(ll_closed)) << solver;
    for (std::size_t i = 1; i < f.history.size(); ++i) EXPECT_GE(f.history[i], f.history[i - 1] - 1e-9) << solver << " iteration " << i;
  }
}

TEST(FactorFit, FaSatisfiesTheMaximumLikelihoodConditionsAndBothSolversAgree) {
  TempDir dir("fa");
  const Index d = 8, l = 2;
  const RowMatrix x = factor_data(2000, d, l, 12);
  latent::testing::write_shards(dir / "d", x, {1000, 1, 999});
  FactorConfig cfg;
  cfg.n_components = l;
  cfg.tol = 1e-13;
  cfg.max_iter = 20000;
  cfg.solver = "covariance";
  const Fitted a = fit_dir(dir / "d", cfg);
  cfg.solver = "streaming";
  cfg.max_iter = 40;
  cfg.tol = 0;
  const Fitted b = fit_dir(dir / "d", cfg, 2);
  // The two solvers run the same EM: the same objective at every iteration.
  ASSERT_EQ(b.history.size(), 40u);
  for (std::size_t i = 0; i < b.history.size(); ++i) EXPECT_NEAR(a.history[i], b.history[i], 1e-10 * std::abs(a.history[i]));
  for (std::size_t i = 1; i < a.history.size(); ++i) EXPECT_GE(a.history[i], a.history[i - 1] - 1e-10);
  ASSERT_TRUE(a.fit.em.converged);
  // Stationarity (PRML §12.2.4): Ψ = diag(S − Wᵀ W) and S C⁻¹ Wᵀ = Wᵀ at the maximum.
  const auto& m = a.fit.model;
  const RowVector mu = x.colwise().mean();
  const Eigen::MatrixXd s = (x.rowwise() - mu).transpose() * (x.rowwise() - mu) / static_cast<double>(x.rows());
  const Eigen::MatrixXd wtw = m.components().transpose() * m.components();
  for (Index j = 0; j < d; ++j) EXPECT_NEAR(m.noise_variance()[j], s(j, j) - wtw(j, j), 1e-8 * s(j, j));
  Eigen::MatrixXd c = wtw;
  c.diagonal() += m.noise_variance().transpose();
  const Eigen::MatrixXd lhs = s * c.ldlt().solve(Eigen::MatrixXd(m.components().transpose()));
  EXPECT_LT((lhs - m.components().transpose()).norm(), 1e-5 * m.components().norm());
}

// --matmul-precision high (the CLI's default): the scatter from float32 products agrees
// with the double one to 1e-6 of its largest entry, the fit's mean log-likelihood to 1e-7
// relative, and the scatter has the same bits in every kernel variant and thread count
// (D = 150: a partial feature block and a partial panel).
TEST(FactorFit, Float32ScatterAgreesWithDoubleAndHasTheSameBitsInEveryVariant) {
  TempDir dir("fa32");
  const Index d = 150, l = 4;
  RowMatrix x = factor_data(1300, d, l, 13);
  x.array() += 30.0;
  latent::testing::write_shards(dir / "d", x, {600, 700});
  const auto comm = comm::Communicator::world();
  auto source = latent::testing::make_source(comm, dir / "d", 97, 0, false, false);
  const auto summary = train::summarize(comm, *source, 1);
  const Scatter ref = scatter_pass(comm, *source, summary.mean, 1, false);
  std::vector<RowMatrix> ts;
  for (const auto v : kernel::all_variants()) {
    if (!kernel::supported(v)) continue;
    const kernel::ScopedVariant scope(v);
    for (const int threads : {1, 2}) {
      const Scatter f = scatter_pass(comm, *source, summary.mean, threads, true);
      EXPECT_EQ(f.s, ref.s);
      ts.push_back(f.t);
    }
  }
  ASSERT_GE(ts.size(), 2u);
  for (std::size_t i = 1; i < ts.size(); ++i) EXPECT_EQ(ts[i], ts[0]) << "run " << i;
  EXPECT_LT((ts[0] - ref.t).cwiseAbs().maxCoeff(), 1e-6 * ref.t.cwiseAbs().maxCoeff());
  FactorConfig cfg;
  cfg.n_components = l;
  cfg.tol = 1e-10;
  cfg.solver = "covariance";
  const Fitted a = fit_dir(dir / "d", cfg);
  cfg.matmul_precision = "high";
  const Fitted b = fit_dir(dir / "d", cfg);
  EXPECT_NEAR(b.fit.em.objective, a.fit.em.objective, 1e-7 * std::abs(a.fit.em.objective));
}

TEST(FactorFit, MissingValueEmApproachesTheCompleteDataFit) {
  TempDir dir("fa-miss");
  const Index d = 8, l = 2;
  const RowMatrix x = factor_data(3000, d, l, 13);
  latent::testing::write_shards(dir / "full", x, {1500, 1500});
  FactorConfig cfg;
  cfg.n_components = l;
  cfg.tol = 1e-10;
  cfg.max_iter = 3000;
  const Fitted complete = fit_dir(dir / "full", cfg);
  Eigen::MatrixXd c0 = complete.fit.model.components().transpose() * complete.fit.model.components();
  c0.diagonal() += complete.fit.model.noise_variance().transpose();
  std::vector<double> errors;
  for (const double fraction : {0.0, 0.02, 0.1, 0.3}) {
    const std::string sub = dir / ("m" + std::to_string(static_cast<int>(fraction * 100)));
    latent::testing::write_shards(sub, with_missing(x, fraction, 21), {1500, 1500});
    const Fitted f = fit_dir(sub, cfg, 2, true);
    ASSERT_EQ(f.fit.solver, "streaming");
    for (std::size_t i = 1; i < f.history.size(); ++i) EXPECT_GE(f.history[i], f.history[i - 1] - 1e-9) << fraction;
    Eigen::MatrixXd c = f.fit.model.components().transpose() * f.fit.model.components();
    c.diagonal() += f.fit.model.noise_variance().transpose();
    errors.push_back((c - c0).norm() / c0.norm() + (f.fit.model.mean() - complete.fit.model.mean()).norm());
  }
  EXPECT_LT(errors[0], 1e-6);  // no missing value: the complete-data fit
  EXPECT_LT(errors[1], 0.02);
  EXPECT_LT(errors[1], errors[3]);
  EXPECT_LT(errors[2], errors[3]);
  EXPECT_LT(errors[3], 0.15);
}

TEST(FactorFit, RefusesBadConfigurations) {
  TempDir dir("fa-bad");
  latent::testing::write_shards(dir / "d", factor_data(50, 4, 1, 3), {50});
  FactorConfig cfg;
  cfg.n_components = 4;  // L must be < D
  EXPECT_THROW(fit_dir(dir / "d", cfg), Error);
  cfg.n_components = 2;
  cfg.solver = "svd";
  EXPECT_THROW(fit_dir(dir / "d", cfg), Error);
  cfg.solver = "covariance";
  cfg.missing_values = true;
  EXPECT_THROW(resolve_factor_solver(cfg, 4), Error);
}

TEST(GmmMissing, ObservedDensityImputationAndMonotoneEm) {
  const Index d = 5, k = 3;
  Gmm g(k, d, CovarianceType::kDiag, 0.0);
  RowMatrix means(k, d), var(k, d);
  CounterRng p(1, RngPurpose::kSample, 4, 0);
  for (Index i = 0; i < k; ++i)
    for (Index j = 0; j < d; ++j) {
      means(i, j) = 3 * p.next_normal();
      var(i, j) = 0.5 + p.next_uniform();
    }
  g.set_center(RowVector::Constant(d, 0.7));
  g.set_parameters((RowVector(3) << 0.2, 0.3, 0.5).finished(), means, var);
  RowMatrix x = with_missing(latent::testing::blobs(30, d, k, 2), 0.4, 5);
  Vector lpn;
  RowMatrix resp, imputed;
  g.e_step(x, lpn, resp);
  g.impute(x, imputed);
  for (Index i = 0; i < x.rows(); ++i) {
    RowVector lk(k);
    for (Index c = 0; c < k; ++c) {
      double s = std::log(g.weights()[c]);
      for (Index j = 0; j < d; ++j)
        if (!std::isnan(x(i, j)))
          s += -0.5 * (std::log(2 * std::numbers::pi * var(c, j)) + std::pow(x(i, j) - means(c, j), 2) / var(c, j));
      lk[c] = s;
    }
    const double mx = lk.maxCoeff();
    const double ref = mx + std::log((lk.array() - mx).exp().sum());
    EXPECT_NEAR(lpn[i], ref, 1e-10 * std::abs(ref));
    const RowVector r = (lk.array() - ref).exp().matrix();
    EXPECT_LT((resp.row(i) - r).norm(), 1e-10);
    const RowVector fill = r * means;
    for (Index j = 0; j < d; ++j) EXPECT_NEAR(imputed(i, j), std::isnan(x(i, j)) ? fill[j] : x(i, j), 1e-12);
  }
  Gmm full(k, d, CovarianceType::kFull, 1e-6);
  EXPECT_TRUE(full.handles_missing());
  // Full covariances: scoring and imputing rows with NaN (not fitting) through Σ_oo.
  {
    RowMatrix covs(k * d, d);
    for (Index c = 0; c < k; ++c) {
      RowMatrix a = RowMatrix::Random(d, d);
      covs.middleRows(c * d, d) = a * a.transpose() + RowMatrix::Identity(d, d);
    }
    full.set_parameters((RowVector(3) << 0.2, 0.3, 0.5).finished(), means, covs);
    Vector flp;
    RowMatrix fresp, fimp;
    full.e_step(x, flp, fresp);
    full.impute(x, fimp);
    for (Index i = 0; i < x.rows(); ++i) {
      RowVector lk(k);
      RowMatrix cond(k, d);
      std::vector<Index> o, mi;
      for (Index j = 0; j < d; ++j) (std::isnan(x(i, j)) ? mi : o).push_back(j);
      for (Index c = 0; c < k; ++c) {
        const Eigen::MatrixXd cv = covs.middleRows(c * d, d);
        lk[c] = std::log(full.weights()[c]) + (o.empty() ? 0.0 : dense_log_density(x.row(i), means.row(c), cv));
        Eigen::MatrixXd soo(o.size(), o.size()), smo(mi.size(), o.size());
        Eigen::VectorXd r(o.size());
        for (std::size_t a = 0; a < o.size(); ++a) {
          r[static_cast<Index>(a)] = x(i, o[a]) - means(c, o[a]);
          for (std::size_t e = 0; e < o.size(); ++e) soo(static_cast<Index>(a), static_cast<Index>(e)) = cv(o[a], o[e]);
          for (std::size_t e = 0; e < mi.size(); ++e) smo(static_cast<Index>(e), static_cast<Index>(a)) = cv(mi[e], o[a]);
        }
        const Eigen::VectorXd f = smo * soo.inverse() * r;
        for (std::size_t e = 0; e < mi.size(); ++e) cond(c, mi[e]) = means(c, mi[e]) + f[static_cast<Index>(e)];
      }
      const double mx = lk.maxCoeff();
      const double ref = mx + std::log((lk.array() - mx).exp().sum());
      EXPECT_NEAR(flp[i], ref, 1e-9 * std::abs(ref)) << "row " << i;
      const RowVector r = (lk.array() - ref).exp().matrix();
      for (const Index j : mi) EXPECT_NEAR(fimp(i, j), r.dot(cond.col(j)), 1e-9);
      for (const Index j : o) EXPECT_EQ(fimp(i, j), x(i, j));
    }
  }

  // EM on data with missing values never lowers the observed-data likelihood.
  TempDir dir("gmm-miss");
  latent::testing::write_shards(dir / "d", with_missing(latent::testing::blobs(1200, 4, 3, 9), 0.25, 6), {600, 600});
  const auto comm = comm::Communicator::world();
  auto source = latent::testing::make_source(comm, dir / "d", 128, 0, false, true);
  const auto summary = train::summarize(comm, *source, 2);
  EXPECT_GT(summary.num_missing, 1000);
  GmmConfig c;
  c.n_components = 3;
  c.covariance_type = CovarianceType::kDiag;
  c.tol = 1e-10;
  c.max_iter = 200;
  c.threads = 2;
  std::vector<double> history;
  const auto fit = fit_gmm(comm, *source, summary, c, Logger::silent(), [&](const train::IterationRecord& r) { history.push_back(r.objective); });
  ASSERT_GT(history.size(), 3u);
  for (std::size_t i = 1; i < history.size(); ++i) EXPECT_GE(history[i], history[i - 1] - 1e-9) << "iteration " << i;
  // Full and tied covariances: the conditional-Gaussian expected statistics keep EM monotone.
  for (const CovarianceType type : {CovarianceType::kFull, CovarianceType::kTied}) {
    c.covariance_type = type;
    c.max_iter = 60;
    history.clear();
    const auto f = fit_gmm(comm, *source, summary, c, Logger::silent(), [&](const train::IterationRecord& r) { history.push_back(r.objective); });
    ASSERT_GT(history.size(), 3u);
    for (std::size_t i = 1; i < history.size(); ++i) EXPECT_GE(history[i], history[i - 1] - 1e-9) << to_string(type) << " " << i;
  }
}

}  // namespace
}  // namespace latent::models

namespace latent::train {
namespace {

// Kernels fill their statistics through Eigen maps; Eigen's vectorised reductions peel a
// number of scalars that depends on the destination's alignment, so the buffers must sit
// on a boundary of Eigen's widest packet on every rank and run (EIGEN_MAX_ALIGN_BYTES, 64
// in every build: a cache line, and a multiple of the 32-byte AVX2 and 64-byte AVX-512
// packets; a heap-dependent alignment once changed the summary's last bits from run to run).
TEST(BlockReduce, KernelBuffersAreAlignedAndPassesRepeatBitForBit) {
  latent::testing::TempDir dir("align");
  latent::testing::write_shards(dir / "d", latent::testing::blobs(3000, 12, 3, 4), {1700, 1300});
  const auto comm = comm::Communicator::world();
  std::vector<std::vector<double>> runs;
  for (int run = 0; run < 6; ++run) {
    std::vector<std::unique_ptr<double[]>> heap_noise;  // shifts the heap between runs
    for (int i = 0; i <= run; ++i) heap_noise.emplace_back(new double[static_cast<std::size_t>(3 + 5 * i)]);
    auto source = latent::testing::make_source(comm, dir / "d", 256);
    const auto stats = reduce_global(comm, *source, 12, 1 + run % 2, [&](const io::DenseBlock& b, std::span<double> p) {
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p.data()) % EIGEN_MAX_ALIGN_BYTES, 0u);
      Eigen::Map<RowVector>(p.data() + 1, 11) = b.x.rightCols(11).colwise().sum();
    });
    const DataSummary summary = summarize(comm, *source, 1 + run % 2);
    std::vector<double> all(stats.begin(), stats.end());
    all.insert(all.end(), summary.mean.data(), summary.mean.data() + summary.mean.size());
    all.insert(all.end(), summary.variance.data(), summary.variance.data() + summary.variance.size());
    runs.push_back(all);
  }
  for (const auto& r : runs) EXPECT_EQ(std::memcmp(r.data(), runs[0].data(), r.size() * sizeof(double)), 0);
}

}  // namespace
}  // namespace latent::train
