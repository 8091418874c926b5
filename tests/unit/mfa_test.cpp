// Mixture of factor analysers: K = 1 against fit_factor, L = 0 against fit_gmm (diag),
// inference with missing values against the dense conditional Gaussians C_k = W_kᵀW_k + Ψ_k,
// monotone EM, recovery of planted parameters, bitwise thread invariance, resume, the
// model file round trip, configuration errors, and the float32 pass (--matmul-precision
// high) against the double one.
#include "latent/models/mfa/mfa.hpp"

#include <gtest/gtest.h>

#include <Eigen/Cholesky>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <numbers>

#include "../support/fixtures.hpp"
#include "../support/pipeline.hpp"
#include "latent/core/error.hpp"
#include "latent/core/rng.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/models/factor/factor_fit.hpp"
#include "latent/models/gmm/gmm_fit.hpp"
#include "latent/models/mfa/mfa_fit.hpp"
#include "latent/train/checkpoint.hpp"
#include "latent/train/data_summary.hpp"

namespace latent::models {
namespace {

using latent::testing::TempDir;
const double kNaN = std::numeric_limits<double>::quiet_NaN();

// Random parameters: means spread·N(0, 1), W_k entries N(0, 1), Ψ_k in [0.1, 0.5) (isotropic:
// one value per component), weights ∝ 1 + k.
Mfa planted(Index k, Index l, Index d, NoiseType noise, std::uint64_t seed, double spread) {
  CounterRng p(seed, RngPurpose::kSample, 7, 0);
  RowVector weights(k);
  RowMatrix means(k, d), w(k * l, d), psi(k, d);
  for (Index c = 0; c < k; ++c) {
    weights[c] = 1.0 + static_cast<double>(c);
    for (Index j = 0; j < d; ++j) means(c, j) = spread * p.next_normal();
    for (Index i = 0; i < l; ++i)
      for (Index j = 0; j < d; ++j) w(c * l + i, j) = p.next_normal();
    for (Index j = 0; j < d; ++j) psi(c, j) = 0.1 + 0.4 * p.next_uniform();
    if (noise == NoiseType::kIsotropic) psi.row(c).setConstant(psi(c, 0));
  }
  Mfa m(k, l, d, noise);
  m.set_parameters(weights / weights.sum(), means, w, psi);
  return m;
}

RowMatrix with_missing(RowMatrix x, double fraction, std::uint64_t seed) {
  for (Index i = 0; i < x.rows(); ++i)
    for (Index j = 0; j < x.cols(); ++j)
      if (CounterRng(seed, RngPurpose::kSample, 3, static_cast<std::uint64_t>(i * x.cols() + j)).next_uniform() < fraction)
        x(i, j) = kNaN;
  return x;
}

// C_k = W_kᵀ W_k + Ψ_k (D × D), for the reference computations only.
Eigen::MatrixXd dense_covariance(const FactorModel& m) {
  Eigen::MatrixXd c = m.components().transpose() * m.components();
  c.diagonal() += m.noise_variance().transpose();
  return c;
}

struct MfaRun {
  MfaFitResult fit;
  std::vector<double> history;
};

MfaRun run_mfa(const std::string& dir, MfaConfig c, int threads = 1, train::FitControl* control = nullptr,
               Index block_rows = 97) {
  const auto comm = comm::Communicator::world();
  auto source = latent::testing::make_source(comm, dir, block_rows, 0, false, c.missing_values);
  const auto summary = train::summarize(comm, *source, threads);
  c.threads = threads;
  std::vector<double> history;
  auto fit = fit_mfa(comm, *source, summary, c, Logger::silent(), [&](const train::IterationRecord& r) { history.push_back(r.objective); },
                     control);
  return {std::move(fit), std::move(history)};
}

void expect_monotone(const std::vector<double>& h, const std::string& what) {
  ASSERT_GT(h.size(), 2u) << what;
  for (std::size_t i = 1; i < h.size(); ++i) EXPECT_GE(h[i], h[i - 1] - 1e-10 * std::abs(h[i - 1])) << what << " iteration " << i;
}

bool same_bits(const RowMatrix& a, const RowMatrix& b) {
  // memcmp of an empty matrix (L = 0 components: data() is null) would be undefined.
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         (a.size() == 0 || std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.size()) * sizeof(double)) == 0);
}

TEST(Mfa, OneComponentEqualsFactorAnalysis) {
  TempDir dir("mfa-k1");
  const Mfa truth = planted(1, 2, 8, NoiseType::kDiagonal, 1, 3.0);
  std::vector<std::int64_t> labels;
  const RowMatrix x = truth.sample(0, 1500, 2, labels);
  latent::testing::write_shards(dir / "c", x, {700, 800});
  latent::testing::write_shards(dir / "m", with_missing(x, 0.15, 4), {700, 800});
  const auto comm = comm::Communicator::world();
  for (const bool missing : {false, true})
    for (const NoiseType noise : {NoiseType::kDiagonal, NoiseType::kIsotropic}) {
      if (missing && noise == NoiseType::kIsotropic) continue;
      const std::string what = std::string(missing ? "missing " : "complete ") + noise_name(noise);
      auto source = latent::testing::make_source(comm, dir / (missing ? "m" : "c"), 97, 0, false, missing);
      const auto summary = train::summarize(comm, *source, 1);
      FactorConfig fc;
      fc.n_components = 2;
      fc.noise = noise;
      fc.solver = "streaming";
      fc.missing_values = missing;
      fc.tol = 0;
      fc.max_iter = 40;
      fc.seed = 5;
      std::vector<double> fa_history;
      const auto fa = fit_factor(comm, *source, summary, fc, Logger::silent(),
                                 [&](const train::IterationRecord& r) { fa_history.push_back(r.objective); });
      MfaConfig mc;
      mc.n_components = 1;
      mc.n_factors = 2;
      mc.noise = noise;
      mc.reg_covar = 0;
      mc.missing_values = missing;
      mc.tol = 0;
      mc.max_iter = 40;
      mc.seed = 5;
      const MfaRun m = run_mfa(dir / (missing ? "m" : "c"), mc);
      ASSERT_EQ(m.history.size(), fa_history.size()) << what;
      for (std::size_t i = 0; i < fa_history.size(); ++i)
        EXPECT_NEAR(m.history[i], fa_history[i], 1e-8 * std::abs(fa_history[i])) << what << " iteration " << i;
      EXPECT_NEAR(m.fit.em.objective, fa.em.objective, 1e-8 * std::abs(fa.em.objective)) << what;
      // The same iterates: the same W (not only up to rotation), mean and noise.
      const FactorModel& c = m.fit.model.component(0);
      EXPECT_LT((c.components() - fa.model.components()).norm(), 1e-8 * fa.model.components().norm()) << what;
      EXPECT_LT((c.mean() - fa.model.mean()).norm(), 1e-8 * fa.model.mean().norm()) << what;
      EXPECT_LT((c.noise_variance() - fa.model.noise_variance()).norm(), 1e-8 * fa.model.noise_variance().norm()) << what;
      EXPECT_EQ(m.fit.model.weights()[0], 1.0);
      expect_monotone(m.history, what);
    }
}

TEST(Mfa, NoFactorsEqualsDiagonalGmm) {
  TempDir dir("mfa-l0");
  // Overlapping clusters, so EM takes many iterations to settle.
  const Mfa truth = planted(3, 1, 5, NoiseType::kDiagonal, 3, 1.5);
  std::vector<std::int64_t> labels;
  latent::testing::write_shards(dir / "d", truth.sample(0, 1200, 4, labels), {500, 700});
  const auto comm = comm::Communicator::world();
  auto source = latent::testing::make_source(comm, dir / "d", 97);
  const auto summary = train::summarize(comm, *source, 1);
  for (const char* init : {"kmeans", "random"}) {
    GmmConfig gc;
    gc.n_components = 3;
    gc.covariance_type = CovarianceType::kDiag;
    gc.reg_covar = 1e-6;
    gc.tol = 0;
    gc.max_iter = 60;
    gc.n_init = 2;
    gc.init_params = init;
    gc.seed = 11;
    gc.matmul_precision = "highest";  // the same double arithmetic as the MFA's
    std::vector<double> gmm_history;
    const auto g = fit_gmm(comm, *source, summary, gc, Logger::silent(),
                           [&](const train::IterationRecord& r) { gmm_history.push_back(r.objective); });
    MfaConfig mc;
    mc.n_components = 3;
    mc.n_factors = 0;
    mc.reg_covar = 1e-6;
    mc.tol = 0;
    mc.max_iter = 60;
    mc.n_init = 2;
    mc.init_params = init;
    mc.seed = 11;
    const MfaRun m = run_mfa(dir / "d", mc);
    ASSERT_EQ(m.history.size(), gmm_history.size()) << init;
    for (std::size_t i = 0; i < gmm_history.size(); ++i)
      EXPECT_NEAR(m.history[i], gmm_history[i], 1e-8 * std::abs(gmm_history[i])) << init << " iteration " << i;
    EXPECT_NEAR(m.fit.em.objective, g.em.objective, 1e-8 * std::abs(g.em.objective)) << init;
    EXPECT_EQ(m.fit.best_init, g.best_init) << init;
    EXPECT_LT((m.fit.model.weights() - g.model.weights()).cwiseAbs().maxCoeff(), 1e-8) << init;
    EXPECT_LT((m.fit.model.means() - g.model.means()).cwiseAbs().maxCoeff(), 1e-7) << init;
    EXPECT_LT(((m.fit.model.noise_variances() - g.model.covariances()).array() / g.model.covariances().array()).abs().maxCoeff(),
              1e-7)
        << init;
    // The observer saw both restarts, 60 iterations each.
    ASSERT_EQ(m.history.size(), 120u);
    expect_monotone(std::vector<double>(m.history.begin(), m.history.begin() + 60), std::string(init) + " restart 0");
    expect_monotone(std::vector<double>(m.history.begin() + 60, m.history.end()), std::string(init) + " restart 1");
    // The log-likelihood of the fitted models agrees row by row.
    const RowMatrix x = truth.sample(5000, 50, 4, labels);
    Vector lm, lg;
    RowMatrix rm, rg;
    m.fit.model.e_step(x, lm, rm);
    g.model.e_step(x, lg, rg);
    EXPECT_LT((lm - lg).cwiseAbs().maxCoeff(), 1e-7) << init;
    EXPECT_LT((rm - rg).cwiseAbs().maxCoeff(), 1e-7) << init;
  }
}

TEST(Mfa, EmNeverDecreasesTheLogLikelihood) {
  TempDir dir("mfa-mono");
  // The model is misspecified (5 true components, 3 fitted with 1 factor) so EM moves a lot.
  const Mfa truth = planted(5, 3, 7, NoiseType::kDiagonal, 5, 2.0);
  std::vector<std::int64_t> labels;
  latent::testing::write_shards(dir / "d", truth.sample(0, 1000, 6, labels), {1000});
  for (const NoiseType noise : {NoiseType::kDiagonal, NoiseType::kIsotropic}) {
    for (const char* init : {"kmeans", "random"}) {
      MfaConfig c;
      c.n_components = 3;
      c.n_factors = 1;
      c.noise = noise;
      c.init_params = init;
      c.tol = 0;
      c.max_iter = 80;
      c.seed = 2;
      const MfaRun m = run_mfa(dir / "d", c);
      EXPECT_EQ(m.history.size(), 80u);
      expect_monotone(m.history, noise_name(noise) + " " + init);
      EXPECT_GT(m.history.back(), m.history.front() + 0.05) << noise_name(noise) << " " << init;
    }
  }
}

TEST(Mfa, RecoversPlantedParameters) {
  TempDir dir("mfa-rec");
  const Index k = 3, l = 2, d = 10;
  const Mfa truth = planted(k, l, d, NoiseType::kDiagonal, 8, 10.0);
  std::vector<std::int64_t> labels;
  const RowMatrix x = truth.sample(0, 6000, 9, labels);
  latent::testing::write_shards(dir / "d", x, {3000, 3000});
  MfaConfig c;
  c.n_components = k;
  c.n_factors = l;
  c.tol = 1e-7;
  c.max_iter = 1000;
  c.seed = 1;
  const MfaRun m = run_mfa(dir / "d", c, 2);
  EXPECT_TRUE(m.fit.em.converged);
  expect_monotone(m.history, "recovery");
  const Mfa& fit = m.fit.model;
  for (Index t = 0; t < k; ++t) {
    // The fitted component nearest to true component t.
    Index f = 0;
    (fit.means().rowwise() - truth.component(t).mean()).rowwise().norm().minCoeff(&f);
    // The clusters are far apart, so the maximum-likelihood weight and mean are the
    // fraction and the mean of the rows component t generated...
    RowVector sample_mean = RowVector::Zero(d);
    double n = 0;
    for (Index i = 0; i < x.rows(); ++i)
      if (labels[static_cast<std::size_t>(i)] == t) {
        sample_mean += x.row(i);
        n += 1;
      }
    sample_mean /= n;
    EXPECT_NEAR(fit.weights()[f], n / static_cast<double>(x.rows()), 1e-9) << "component " << t;
    EXPECT_LT((fit.component(f).mean() - sample_mean).cwiseAbs().maxCoeff(), 1e-9) << "component " << t;
    // ... which are within sampling error of the truth: |π̂ − π| < 4 sd, n eᵀ C⁻¹ e ~ χ²_D.
    const double pi = truth.weights()[t];
    EXPECT_LT(std::abs(fit.weights()[f] - pi), 4 * std::sqrt(pi * (1 - pi) / static_cast<double>(x.rows()))) << "component " << t;
    const Eigen::MatrixXd ct = dense_covariance(truth.component(t)), cf = dense_covariance(fit.component(f));
    const Eigen::VectorXd e = (fit.component(f).mean() - truth.component(t).mean()).transpose();
    EXPECT_LT(n * e.dot(ct.ldlt().solve(e)), 40.0) << "component " << t;  // P(χ²_10 > 40) < 2e-5
    // Covariance W_kᵀW_k + Ψ_k (W itself is identified only up to rotation) and the noise.
    EXPECT_LT((cf - ct).norm() / ct.norm(), 0.15) << "component " << t;
    EXPECT_LT((fit.component(f).noise_variance() - truth.component(t).noise_variance()).cwiseAbs().maxCoeff(), 0.15)
        << "component " << t;
  }
  // Labels: every row goes to the component that generated it.
  Vector lp;
  RowMatrix resp;
  fit.e_step(x, lp, resp);
  Index agree = 0;
  for (Index i = 0; i < x.rows(); ++i) {
    Index f = 0, t = 0;
    resp.row(i).maxCoeff(&f);
    (truth.means().rowwise() - fit.component(f).mean()).rowwise().norm().minCoeff(&t);
    agree += t == labels[static_cast<std::size_t>(i)];
  }
  EXPECT_EQ(agree, x.rows());
  // The fitted mean log-likelihood is at least the true parameters' (it is the maximum).
  fit.e_step(x, lp, resp);
  const double ll_fit = lp.mean();
  truth.e_step(x, lp, resp);
  EXPECT_GE(ll_fit, lp.mean());
  EXPECT_LT(ll_fit - lp.mean(), 0.02);
}

TEST(Mfa, MissingValuesMatchTheDenseConditionalGaussians) {
  const Index k = 3, l = 2, d = 6;
  for (const NoiseType noise : {NoiseType::kDiagonal, NoiseType::kIsotropic}) {
    const Mfa m = planted(k, l, d, noise, 12, 2.0);
    std::vector<std::int64_t> labels;
    RowMatrix x = with_missing(m.sample(0, 60, 13, labels), 0.35, 14);
    x.row(0).setConstant(kNaN);  // nothing observed
    x.row(1) = m.sample(100, 1, 13, labels);  // complete
    Vector lp;
    RowMatrix resp, imputed, z;
    m.e_step(x, lp, resp);
    m.impute(x, imputed);
    std::vector<std::int64_t> k_star;
    m.transform(x, z, &k_star);
    std::vector<RowMatrix> ez(static_cast<std::size_t>(k));
    for (Index c = 0; c < k; ++c) m.factor_means(x, c, ez[static_cast<std::size_t>(c)]);
    for (Index i = 0; i < x.rows(); ++i) {
      std::vector<Index> o, mi;
      for (Index j = 0; j < d; ++j) (std::isnan(x(i, j)) ? mi : o).push_back(j);
      const Index no = static_cast<Index>(o.size()), nm = static_cast<Index>(mi.size());
      RowVector lk(k);
      RowMatrix cond(k, d), zk(k, l);
      for (Index c = 0; c < k; ++c) {
        const FactorModel& f = m.component(c);
        const Eigen::MatrixXd cv = dense_covariance(f);
        Eigen::MatrixXd coo(no, no), cmo(nm, no), wo(l, no);
        Eigen::VectorXd r(no);
        for (Index a = 0; a < no; ++a) {
          r[a] = x(i, o[a]) - f.mean()[o[a]];
          wo.col(a) = f.components().col(o[a]);
          for (Index b = 0; b < no; ++b) coo(a, b) = cv(o[a], o[b]);
          for (Index b = 0; b < nm; ++b) cmo(b, a) = cv(mi[b], o[a]);
        }
        double log_density = 0;
        Eigen::VectorXd sol = Eigen::VectorXd::Zero(no);
        if (no > 0) {
          const Eigen::LLT<Eigen::MatrixXd> llt(coo);
          sol = llt.solve(r);
          log_density = -0.5 * (static_cast<double>(no) * std::log(2 * std::numbers::pi) +
                                2.0 * llt.matrixLLT().diagonal().array().log().sum() + r.dot(sol));
        }
        lk[c] = std::log(m.weights()[c]) + log_density;
        const Eigen::VectorXd fill = cmo * sol;  // C_mo C_oo⁻¹ (x_o − μ_o)
        for (Index b = 0; b < nm; ++b) cond(c, mi[b]) = f.mean()[mi[b]] + fill[b];
        zk.row(c) = (wo * sol).transpose();  // E[z | x_o, k] = W_o C_oo⁻¹ (x_o − μ_o)
      }
      const double mx = lk.maxCoeff();
      const double ref = no == 0 ? 0.0 : mx + std::log((lk.array() - mx).exp().sum());
      EXPECT_NEAR(lp[i], ref, 1e-10 * std::abs(ref) + 1e-12) << noise_name(noise) << " row " << i;
      const RowVector r = (lk.array() - (mx + std::log((lk.array() - mx).exp().sum()))).exp().matrix();
      EXPECT_LT((resp.row(i) - r).cwiseAbs().maxCoeff(), 1e-10) << noise_name(noise) << " row " << i;
      for (const Index j : mi)
        EXPECT_NEAR(imputed(i, j), r.dot(cond.col(j)), 1e-9 * (1 + std::abs(imputed(i, j)))) << noise_name(noise) << " row " << i;
      for (const Index j : o) EXPECT_EQ(imputed(i, j), x(i, j));
      for (Index c = 0; c < k; ++c)
        EXPECT_LT((ez[static_cast<std::size_t>(c)].row(i) - zk.row(c)).cwiseAbs().maxCoeff(), 1e-9) << "row " << i;
      Index best = 0;
      r.maxCoeff(&best);
      EXPECT_EQ(k_star[static_cast<std::size_t>(i)], best) << "row " << i;
      EXPECT_TRUE(same_bits(z.row(i), ez[static_cast<std::size_t>(best)].row(i))) << "row " << i;
    }
    EXPECT_EQ(lp[0], 0.0);
  }

  // EM with missing values runs and never lowers the observed-data log-likelihood.
  TempDir dir("mfa-miss");
  const Mfa truth = planted(3, 2, 6, NoiseType::kDiagonal, 15, 3.0);
  std::vector<std::int64_t> labels;
  latent::testing::write_shards(dir / "d", with_missing(truth.sample(0, 900, 16, labels), 0.2, 17), {450, 450});
  MfaConfig c;
  c.n_components = 3;
  c.n_factors = 2;
  c.tol = 0;
  c.max_iter = 40;
  c.missing_values = true;
  for (const NoiseType noise : {NoiseType::kDiagonal, NoiseType::kIsotropic}) {
    c.noise = noise;
    const MfaRun m = run_mfa(dir / "d", c, 2);
    expect_monotone(m.history, "missing " + noise_name(noise));
    EXPECT_GT(m.history.back(), m.history.front());
  }
  // Without --missing-values the NaN are refused.
  c.missing_values = false;
  const auto comm = comm::Communicator::world();
  auto source = latent::testing::make_source(comm, dir / "d", 97, 0, false, true);
  const auto summary = train::summarize(comm, *source, 1);
  try {
    fit_mfa(comm, *source, summary, c, Logger::silent(), {});
    ADD_FAILURE() << "NaN accepted without --missing-values";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUsage);
    EXPECT_NE(std::string(e.what()).find("--missing-values"), std::string::npos) << e.what();
  }
}

TEST(Mfa, ThreadInvarianceAndSaveLoadRoundTrip) {
  TempDir dir("mfa-inv");
  const Mfa truth = planted(3, 2, 6, NoiseType::kDiagonal, 18, 3.0);
  std::vector<std::int64_t> labels;
  const RowMatrix x = with_missing(truth.sample(0, 1100, 19, labels), 0.05, 20);
  latent::testing::write_shards(dir / "d", x, {300, 500, 300});
  MfaConfig c;
  c.n_components = 3;
  c.n_factors = 2;
  c.tol = 0;
  c.max_iter = 15;
  c.n_init = 2;
  c.missing_values = true;
  const MfaRun one = run_mfa(dir / "d", c, 1), two = run_mfa(dir / "d", c, 2);
  ASSERT_EQ(one.history.size(), two.history.size());
  EXPECT_EQ(std::memcmp(one.history.data(), two.history.data(), one.history.size() * sizeof(double)), 0);
  const Mfa& m = one.fit.model;
  EXPECT_TRUE(same_bits(m.weights(), two.fit.model.weights()));
  EXPECT_TRUE(same_bits(m.means(), two.fit.model.means()));
  EXPECT_TRUE(same_bits(m.stacked_components(), two.fit.model.stacked_components()));
  EXPECT_TRUE(same_bits(m.noise_variances(), two.fit.model.noise_variances()));

  // Save and load: the same predictions, bit for bit, for diagonal and isotropic noise.
  for (const NoiseType noise : {NoiseType::kDiagonal, NoiseType::kIsotropic}) {
    const Mfa model = noise == NoiseType::kDiagonal ? m : planted(3, 2, 6, NoiseType::kIsotropic, 21, 3.0);
    FitRecord record;
    record.config_json = "{}";
    record.em = one.fit.em;
    record.n_samples = x.rows();
    const std::string path = dir / ("model-" + noise_name(noise) + ".h5");
    save_mfa(model, record, path, false);
    EXPECT_THROW(save_mfa(model, record, path, false), Error);  // exists
    {
      const io::H5Reader r(path);
      EXPECT_EQ(r.attr_string("/", "model"), "mfa");
      EXPECT_EQ(r.attr_string("/", "noise_type"), noise_name(noise));
      EXPECT_EQ(r.shape("components"), (std::vector<Index>{3, 2, 6}));
      EXPECT_EQ(r.shape("means"), (std::vector<Index>{3, 6}));
      EXPECT_EQ(r.shape("weights"), (std::vector<Index>{3}));
      EXPECT_EQ(r.shape("noise_variance"), noise == NoiseType::kIsotropic ? (std::vector<Index>{3}) : (std::vector<Index>{3, 6}));
    }
    const auto loaded = load_mfa(path);
    const auto direct = make_fitted(model);
    EXPECT_EQ(loaded->name(), "mfa");
    EXPECT_TRUE(loaded->is_mixture());
    EXPECT_TRUE(loaded->handles_missing());
    EXPECT_TRUE(loaded->has_likelihood());
    EXPECT_EQ(loaded->num_components(), 3);
    EXPECT_EQ(loaded->num_features(), 6);
    EXPECT_EQ(loaded->transform_dim(), 2);
    EXPECT_EQ(loaded->transform_name(), "latent_mean");
    EXPECT_EQ(loaded->num_parameters(), 2 + 3 * (6 + 2 * 6 - 1 + (noise == NoiseType::kIsotropic ? 1 : 6)));
    EXPECT_NE(loaded->describe().find("mixture of factor analysers"), std::string::npos);
    const RowMatrix block = x.topRows(200);
    Vector s1, s2;
    std::vector<std::int64_t> l1, l2;
    RowMatrix p1, p2, t1, t2, i1, i2;
    loaded->predict_block(block, s1, l1, &p1);
    direct->predict_block(block, s2, l2, &p2);
    EXPECT_TRUE(same_bits(s1.transpose(), s2.transpose()));
    EXPECT_EQ(l1, l2);
    EXPECT_TRUE(same_bits(p1, p2));
    loaded->transform_block(block, t1);
    direct->transform_block(block, t2);
    EXPECT_TRUE(same_bits(t1, t2));
    EXPECT_EQ(t1.cols(), 2);
    loaded->impute_block(block, i1);
    direct->impute_block(block, i2);
    EXPECT_TRUE(same_bits(i1, i2));
    EXPECT_FALSE(i1.hasNaN());
    // Draw i depends only on (seed, i): chunks give the same rows.
    std::vector<std::int64_t> la, lb;
    const RowMatrix all = loaded->sample(0, 20, 9, la), part = loaded->sample(5, 10, 9, lb);
    EXPECT_TRUE(same_bits(all.middleRows(5, 10), part));
    EXPECT_TRUE(std::equal(lb.begin(), lb.end(), la.begin() + 5));
  }

  // A damaged file: the error names the file and the dataset.
  const std::string bad = dir / "bad.h5";
  {
    io::H5Writer w(bad, false);
    write_fit_record(w, "mfa", FitRecord{});
    w.attr("/", "noise_type", std::string("isotropic"));
    w.write("weights", std::vector<double>{0.5, 0.5});
    w.write("means", RowMatrix::Zero(2, 3));
    const std::vector<double> comps(2 * 1 * 3, 0.0);
    w.write("components", comps, {2, 1, 3});
    w.write("noise_variance", RowMatrix::Ones(2, 3));  // isotropic needs shape (2,)
    w.commit();
  }
  try {
    load_mfa(bad);
    ADD_FAILURE() << "a mis-shaped /noise_variance was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInput);
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("/noise_variance"), std::string::npos) << e.what();
  }
}

// --matmul-precision high: every iteration's mean log-likelihood within 1e-6 (relative) of
// the double pass's from the same start, the fitted parameters close, and the bits
// independent of the threads. Blocks of 600 rows give tiles of 256, 256 and 88 rows, and a
// 5-row shard a 5-row tile (where Eigen would take coefficient-based products); D = 37 is
// not a multiple of the kernels' 16 lanes; with missing values, a few rows have NaNs (their
// tiles take the double path) and the others the float32 one. L = 2, 1 and 0.
TEST(Mfa, Float32PassAgreesWithTheDoublePassAndIsThreadInvariant) {
  TempDir dir("mfa-f32");
  const Mfa truth = planted(3, 2, 37, NoiseType::kDiagonal, 31, 2.0);
  std::vector<std::int64_t> labels;
  RowMatrix x = truth.sample(0, 2000, 32, labels);
  latent::testing::write_shards(dir / "d", x, {700, 5, 1295});
  for (Index i = 900; i < 2000; i += 250) x(i, i % 37) = kNaN;  // 5 rows, 5 tiles
  latent::testing::write_shards(dir / "m", x, {700, 5, 1295});
  for (const bool missing : {false, true}) {
    for (const Index l : {2, 1, 0}) {
      const std::string what = std::string(missing ? "missing" : "complete") + " L=" + std::to_string(l);
      MfaConfig c;
      c.n_components = 3;
      c.n_factors = l;
      c.tol = 0;
      c.max_iter = 12;
      c.seed = 4;
      c.missing_values = missing;
      const std::string data = dir / (missing ? "m" : "d");
      c.matmul_precision = "highest";
      const MfaRun ref = run_mfa(data, c, 1, nullptr, 600);
      c.matmul_precision = "high";
      const MfaRun one = run_mfa(data, c, 1, nullptr, 600), two = run_mfa(data, c, 2, nullptr, 600);
      ASSERT_EQ(one.history.size(), ref.history.size()) << what;
      for (std::size_t i = 0; i < ref.history.size(); ++i)
        EXPECT_NEAR(one.history[i], ref.history[i], 1e-6 * std::abs(ref.history[i])) << what << " iteration " << i;
      // Not the same bits: the float32 pass did run.
      EXPECT_NE(one.fit.em.objective, ref.fit.em.objective) << what;
      const Mfa& a = one.fit.model;
      const Mfa& b = ref.fit.model;
      EXPECT_LT((a.weights() - b.weights()).cwiseAbs().maxCoeff(), 1e-5) << what;
      EXPECT_LT((a.means() - b.means()).cwiseAbs().maxCoeff(), 1e-4) << what;
      EXPECT_LT(((a.noise_variances() - b.noise_variances()).array() / b.noise_variances().array()).abs().maxCoeff(), 1e-4)
          << what;
      if (l > 0) {
        // W is defined up to a rotation; W Wᵀ is not.
        for (Index k = 0; k < 3; ++k) {
          const Eigen::MatrixXd wa = a.component(k).components().transpose() * a.component(k).components();
          const Eigen::MatrixXd wb = b.component(k).components().transpose() * b.component(k).components();
          EXPECT_LT((wa - wb).cwiseAbs().maxCoeff(), 1e-4 * (1 + wb.cwiseAbs().maxCoeff())) << what << " component " << k;
        }
      }
      ASSERT_EQ(one.history.size(), two.history.size()) << what;
      EXPECT_EQ(std::memcmp(one.history.data(), two.history.data(), one.history.size() * sizeof(double)), 0) << what;
      EXPECT_TRUE(same_bits(a.weights(), two.fit.model.weights())) << what;
      EXPECT_TRUE(same_bits(a.means(), two.fit.model.means())) << what;
      EXPECT_TRUE(same_bits(a.stacked_components(), two.fit.model.stacked_components())) << what;
      EXPECT_TRUE(same_bits(a.noise_variances(), two.fit.model.noise_variances())) << what;
    }
  }
}

// B_k's factor columns in the float32 pass: over each component's rows with a non-zero
// responsibility only (LATENT_MFA_SPARSE_COLUMNS=1), one product over every row (=0), or
// chosen per tile by the cost (unset) give the same bits, on data where most
// responsibilities are exactly zero (well separated, as high-dimensional data are) and
// with a few missing values (tiles that take the double path).
TEST(Mfa, SparseFactorColumnsGiveTheSameBitsAsOneProduct) {
  TempDir dir("mfa-sparse");
  const Mfa truth = planted(6, 3, 40, NoiseType::kDiagonal, 41, 3.0);
  std::vector<std::int64_t> labels;
  RowMatrix x = truth.sample(0, 1500, 42, labels);
  {
    RowMatrix resp;
    Vector lp;
    truth.e_step(x, lp, resp);
    EXPECT_GT((resp.array() == 0.0).count(), resp.size() / 2) << "the responsibilities should be mostly zero";
  }
  for (Index i = 700; i < 1500; i += 400) x(i, i % 40) = kNaN;
  latent::testing::write_shards(dir / "d", x, {900, 600});
  MfaConfig c;
  c.n_components = 6;
  c.n_factors = 3;
  c.tol = 0;
  c.max_iter = 6;
  c.seed = 5;
  c.missing_values = true;
  c.matmul_precision = "high";
  std::vector<MfaRun> runs;
  for (const char* mode : {"0", "1", ""}) {
    ::setenv("LATENT_MFA_SPARSE_COLUMNS", mode, 1);
    runs.push_back(run_mfa(dir / "d", c, 2, nullptr, 600));
  }
  ::unsetenv("LATENT_MFA_SPARSE_COLUMNS");
  const Mfa& dense = runs[0].fit.model;
  for (std::size_t r = 1; r < runs.size(); ++r) {
    const Mfa& m = runs[r].fit.model;
    ASSERT_EQ(runs[r].history.size(), runs[0].history.size()) << r;
    EXPECT_EQ(std::memcmp(runs[r].history.data(), runs[0].history.data(), runs[0].history.size() * sizeof(double)), 0) << r;
    EXPECT_TRUE(same_bits(m.weights(), dense.weights())) << r;
    EXPECT_TRUE(same_bits(m.means(), dense.means())) << r;
    EXPECT_TRUE(same_bits(m.stacked_components(), dense.stacked_components())) << r;
    EXPECT_TRUE(same_bits(m.noise_variances(), dense.noise_variances())) << r;
  }
  // And each is a real fit: EM raised the mean log-likelihood at every iteration.
  expect_monotone(runs[0].history, "one product");
  EXPECT_GT(runs[0].history.back(), runs[0].history.front() + 1.0);
}

TEST(Mfa, ResumeFromACheckpointGivesTheSameBits) {
  TempDir dir("mfa-resume");
  const Mfa truth = planted(2, 1, 5, NoiseType::kDiagonal, 22, 2.0);
  std::vector<std::int64_t> labels;
  latent::testing::write_shards(dir / "d", truth.sample(0, 500, 23, labels), {250, 250});
  const auto comm = comm::Communicator::world();
  for (const Index l : {1, 0}) {  // L = 0: empty component arrays in the checkpoints
    MfaConfig c;
    c.n_components = 2;
    c.n_factors = l;
    c.tol = 0;
    c.max_iter = 8;
    c.n_init = 2;
    train::CheckpointOptions o;
    o.dir = dir / ("ckpt" + std::to_string(l));
    o.keep = 100;
    std::filesystem::create_directories(o.dir);
    train::CheckpointStore store(o, "mfa", "{}", "data");
    const Logger quiet = Logger::silent();  // FitControl keeps a reference to it
    train::FitControl control(comm, &store, quiet);
    const MfaRun full = run_mfa(dir / "d", c, 1, &control);
    // Interrupted in the second restart after iteration 3: drop the later checkpoints.
    int removed = 0;
    for (const auto& e : std::filesystem::directory_iterator(o.dir)) {
      const std::string name = e.path().filename().string();
      if (name > "ckpt-001-000003.h5") {
        std::filesystem::remove(e.path());
        ++removed;
      }
    }
    EXPECT_EQ(removed, 5);
    o.resume = true;
    train::CheckpointStore again(o, "mfa", "{}", "data");
    train::FitControl resume(comm, &again, quiet);
    const MfaRun resumed = run_mfa(dir / "d", c, 2, &resume);
    EXPECT_EQ(resumed.history.size(), 5u) << l;  // iterations 4-8 of the second restart
    EXPECT_EQ(resumed.fit.em.n_iter, full.fit.em.n_iter) << l;
    EXPECT_EQ(resumed.fit.best_init, full.fit.best_init) << l;
    EXPECT_EQ(resumed.fit.em.objective, full.fit.em.objective) << l;
    EXPECT_TRUE(same_bits(resumed.fit.model.weights(), full.fit.model.weights())) << l;
    EXPECT_TRUE(same_bits(resumed.fit.model.means(), full.fit.model.means())) << l;
    EXPECT_TRUE(same_bits(resumed.fit.model.stacked_components(), full.fit.model.stacked_components())) << l;
    EXPECT_TRUE(same_bits(resumed.fit.model.noise_variances(), full.fit.model.noise_variances())) << l;
    if (l == 0) {  // and the model file with /components of shape (K, 0, D)
      const std::string path = dir / "l0.h5";
      save_mfa(resumed.fit.model, FitRecord{}, path, false);
      EXPECT_EQ(io::H5Reader(path).shape("components"), (std::vector<Index>{2, 0, 5}));
      const Mfa back = read_mfa(io::H5Reader(path));
      EXPECT_EQ(back.num_factors(), 0);
      EXPECT_TRUE(same_bits(back.means(), resumed.fit.model.means()));
      EXPECT_TRUE(same_bits(back.noise_variances(), resumed.fit.model.noise_variances()));
    }
  }
}

TEST(Mfa, RefusesBadConfigurations) {
  TempDir dir("mfa-bad");
  std::vector<std::int64_t> labels;
  latent::testing::write_shards(dir / "d", planted(2, 1, 4, NoiseType::kDiagonal, 24, 2.0).sample(0, 60, 25, labels), {60});
  const auto expect_usage = [&](const MfaConfig& c, const std::string& flag) {
    try {
      run_mfa(dir / "d", c);
      ADD_FAILURE() << "accepted a bad " << flag;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kUsage) << flag;
      EXPECT_NE(std::string(e.what()).find(flag), std::string::npos) << e.what();
    }
  };
  MfaConfig c;
  c.n_components = 0;
  expect_usage(c, "--n-components");
  c = MfaConfig{};
  c.n_components = 61;  // more than the samples
  expect_usage(c, "--n-components");
  c = MfaConfig{};
  c.n_factors = 4;  // L must be < D
  expect_usage(c, "--n-factors");
  c.n_factors = -1;
  expect_usage(c, "--n-factors");
  c = MfaConfig{};
  c.tol = -1;
  expect_usage(c, "--tol");
  c = MfaConfig{};
  c.max_iter = 0;
  expect_usage(c, "--max-iter");
  c = MfaConfig{};
  c.n_init = 0;
  expect_usage(c, "--n-init");
  c = MfaConfig{};
  c.reg_covar = -1e-3;
  expect_usage(c, "--reg-covar");
  c = MfaConfig{};
  c.init_params = "k-means++";
  expect_usage(c, "--init-params");
  c = MfaConfig{};
  c.matmul_precision = "medium";
  expect_usage(c, "--matmul-precision");
  EXPECT_THROW(Mfa(1, -1, 3, NoiseType::kDiagonal), Error);
  Mfa m(2, 1, 3, NoiseType::kDiagonal);
  EXPECT_THROW(m.set_parameters(RowVector::Constant(2, 0.5), RowMatrix::Zero(2, 3), RowMatrix::Zero(3, 3), RowMatrix::Ones(2, 3)),
               Error);  // components must be (K·L) × D = 2 × 3
  EXPECT_THROW(m.set_parameters(RowVector::Constant(2, 0.7), RowMatrix::Zero(2, 3), RowMatrix::Zero(2, 3), RowMatrix::Ones(2, 3)),
               Error);  // weights do not sum to 1
  EXPECT_EQ(m.num_parameters(), 1 + 2 * (3 + 3 + 3));
}

}  // namespace
}  // namespace latent::models
