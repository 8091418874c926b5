// Bernoulli and multinomial mixtures: log-densities against the product formula, one EM
// step against the MAP update by hand, monotone EM, parameter recovery.
#include "latent/models/mixture/discrete.hpp"

#include <gtest/gtest.h>

#include <cmath>

#include "../support/fixtures.hpp"
#include "../support/pipeline.hpp"
#include "latent/core/error.hpp"
#include "latent/core/rng.hpp"
#include "latent/models/mixture/discrete_fit.hpp"
#include "latent/train/data_summary.hpp"

namespace latent::models {
namespace {

RowMatrix bernoulli_data(Index n, const RowMatrix& mu, const RowVector& w, std::uint64_t seed, std::vector<std::int64_t>* z) {
  RowMatrix x(n, mu.cols());
  for (Index i = 0; i < n; ++i) {
    CounterRng r(seed, RngPurpose::kSample, 7, static_cast<std::uint64_t>(i));
    double u = r.next_uniform();
    Index c = 0;
    while (c + 1 < w.size() && u > w[c]) u -= w[c++];
    for (Index j = 0; j < mu.cols(); ++j) x(i, j) = r.next_uniform() < mu(c, j) ? 1.0 : 0.0;
    if (z) z->push_back(c);
  }
  return x;
}

TEST(DiscreteMixture, BernoulliLogDensityAndOneEmStepByHand) {
  const RowMatrix mu = (RowMatrix(2, 3) << 0.9, 0.2, 0.5, 0.1, 0.7, 0.3).finished();
  const RowVector w = (RowVector(2) << 0.25, 0.75).finished();
  DiscreteMixture m(2, 3, DiscreteKind::kBernoulli, 0.5, 2.0);
  m.set_parameters(w, mu);
  const RowMatrix x = (RowMatrix(4, 3) << 1, 0, 1, 0, 1, 1, 1, 1, 0, 0.5, 0, 1).finished();
  RowMatrix resp;
  Vector lp;
  m.weighted_log_prob(x, resp);
  for (Index i = 0; i < 4; ++i)
    for (Index k = 0; k < 2; ++k) {
      double ref = std::log(w[k]);
      for (Index j = 0; j < 3; ++j) ref += x(i, j) * std::log(mu(k, j)) + (1 - x(i, j)) * std::log(1 - mu(k, j));
      EXPECT_NEAR(resp(i, k), ref, 1e-12);
    }
  RowMatrix r = resp;
  DiscreteMixture::normalize(r, lp);
  DiscreteEm em(m);
  std::vector<double> stats(em.num_stats(), 0.0);
  stats[0] = lp.sum();
  em.accumulate(x, r, stats);
  const double prior = m.log_prior();
  const auto step = em.m_step(stats);
  EXPECT_NEAR(step.objective, (lp.sum() + prior) / 4.0, 1e-12);
  EXPECT_NEAR(prior, 0.5 * (mu.array().log() + (1 - mu.array()).log()).sum() + 2.0 * w.array().log().sum(), 1e-12);
  for (Index k = 0; k < 2; ++k) {
    const double nk = r.col(k).sum();
    EXPECT_NEAR(em.model().weights()[k], (nk + 2.0) / (4.0 + 4.0), 1e-12);
    for (Index j = 0; j < 3; ++j)
      EXPECT_NEAR(em.model().probabilities()(k, j), (r.col(k).dot(x.col(j)) + 0.5) / (nk + 1.0), 1e-12);
  }
}

TEST(DiscreteMixture, MultinomialSparseMatchesDenseFormula) {
  const RowMatrix beta = (RowMatrix(2, 4) << 0.1, 0.2, 0.3, 0.4, 0.4, 0.3, 0.2, 0.1).finished();
  DiscreteMixture m(2, 4, DiscreteKind::kMultinomial, 0.1, 0);
  m.set_parameters((RowVector(2) << 0.5, 0.5).finished(), beta);
  io::CsrBlock docs;
  docs.indptr = {0, 2, 2, 5};
  docs.indices = {0, 3, 0, 1, 2};
  docs.counts = {2, 1, 1, 3, 4};
  RowMatrix wlp;
  m.weighted_log_prob(docs, wlp);
  const RowMatrix dense = (RowMatrix(3, 4) << 2, 0, 0, 1, 0, 0, 0, 0, 1, 3, 4, 0).finished();
  for (Index i = 0; i < 3; ++i)
    for (Index k = 0; k < 2; ++k) {
      double ref = std::log(0.5);
      for (Index j = 0; j < 4; ++j) ref += dense(i, j) * std::log(beta(k, j));
      EXPECT_NEAR(wlp(i, k), ref, 1e-12);
    }
  // Statistics: S_kw = Σ_d r_dk c_dw, as the dense product.
  RowMatrix r = wlp;
  Vector lp;
  DiscreteMixture::normalize(r, lp);
  DiscreteEm em(m);
  std::vector<double> stats(em.num_stats(), 0.0);
  em.accumulate(docs, r, stats);
  const RowMatrix s = r.transpose() * dense;
  for (Index k = 0; k < 2; ++k)
    for (Index j = 0; j < 4; ++j) EXPECT_NEAR(stats[static_cast<std::size_t>(2 + 2 + k * 4 + j)], s(k, j), 1e-12);
  EXPECT_EQ(m.num_parameters(), 1 + 2 * 3);
}

TEST(DiscreteFit, BernoulliMixtureRecoversItsParametersAndEmIsMonotone) {
  latent::testing::TempDir dir("bmm");
  RowMatrix mu(3, 20);
  for (Index k = 0; k < 3; ++k)
    for (Index j = 0; j < 20; ++j) mu(k, j) = ((j + 7 * k) % 3 == 0) ? 0.85 : 0.1;
  const RowVector w = (RowVector(3) << 0.2, 0.3, 0.5).finished();
  std::vector<std::int64_t> z;
  const RowMatrix x = bernoulli_data(6000, mu, w, 5, &z);
  latent::testing::write_shards(dir / "d", x, {3000, 1, 2999});
  const auto comm = comm::Communicator::world();
  auto source = latent::testing::make_source(comm, dir / "d", 256);
  const auto summary = train::summarize(comm, *source, 2);
  DiscreteConfig c;
  c.n_components = 3;
  c.tol = 1e-9;
  c.threads = 2;
  c.init_params = "random";
  std::vector<double> history;
  const auto fit = fit_bmm(comm, *source, summary, c, Logger::silent(), [&](const train::IterationRecord& r) { history.push_back(r.objective); });
  ASSERT_GT(history.size(), 2u);
  for (std::size_t i = 1; i < history.size(); ++i) EXPECT_GE(history[i], history[i - 1] - 1e-10) << i;
  // Every true component has a fitted one within 0.03 (max abs), with its weight within 0.02.
  for (Index k = 0; k < 3; ++k) {
    double best = 1e9;
    Index at = 0;
    for (Index f = 0; f < 3; ++f) {
      const double e = (fit.model.probabilities().row(f) - mu.row(k)).cwiseAbs().maxCoeff();
      if (e < best) best = e, at = f;
    }
    EXPECT_LT(best, 0.03) << "component " << k;
    EXPECT_NEAR(fit.model.weights()[at], w[k], 0.02);
  }
}

TEST(DiscreteFit, BernoulliMixtureRefusesValuesOutsideTheUnitInterval) {
  latent::testing::TempDir dir("bmm-bad");
  RowMatrix x = RowMatrix::Zero(50, 4);
  x(37, 2) = 1.5;
  latent::testing::write_shards(dir / "d", x, {50});
  const auto comm = comm::Communicator::world();
  auto source = latent::testing::make_source(comm, dir / "d", 16);
  const auto summary = train::summarize(comm, *source, 1);
  DiscreteConfig c;
  try {
    fit_bmm(comm, *source, summary, c, Logger::silent(), {});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInput);
    EXPECT_NE(std::string(e.what()).find("row 37, column 2"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace latent::models
