// LDA: special functions, the per-document E-step against a direct implementation, the
// fixed-point statistics, Newton updates of the priors on known cases, the
// document-completion split, CSR validation, and whole fits (monotone bound in batch mode,
// recovery of planted topics).
#include <gtest/gtest.h>

#include <algorithm>

#include <cmath>
#include <numbers>
#include <random>

#include "../support/fixtures.hpp"
#include "latent/comm/communicator.hpp"
#include "latent/core/error.hpp"
#include "latent/core/log.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/models/lda/lda.hpp"
#include "latent/models/lda/lda_apply.hpp"
#include "latent/models/lda/lda_fit.hpp"
#include "latent/models/lda/lda_generate.hpp"

namespace latent::models {
namespace {

TEST(LdaSpecial, DigammaAndTrigammaClosedForms) {
  constexpr double euler = 0.57721566490153286061;
  EXPECT_NEAR(digamma(1.0), -euler, 1e-14);
  EXPECT_NEAR(digamma(0.5), -euler - 2 * std::numbers::ln2, 1e-14);
  EXPECT_NEAR(digamma(10.0), 2.251752589066721, 1e-14);
  EXPECT_NEAR(trigamma(1.0), std::numbers::pi * std::numbers::pi / 6, 1e-13);
  EXPECT_NEAR(trigamma(0.5), std::numbers::pi * std::numbers::pi / 2, 1e-12);
  // Recurrences ψ(x+1) = ψ(x) + 1/x and ψ'(x+1) = ψ'(x) − 1/x² across the switch at 6.
  for (double x : {1e-3, 0.37, 2.5, 5.9, 6.1, 37.0, 1e4}) {
    EXPECT_NEAR(digamma(x + 1), digamma(x) + 1 / x, 1e-12 * std::max(1.0, std::abs(digamma(x)))) << x;
    EXPECT_NEAR(trigamma(x + 1), trigamma(x) - 1 / (x * x), 1e-12 * trigamma(x)) << x;
  }
}

// The single-precision exp(ψ(x) − m) of the E-step against the double digamma: relative
// error ~1e-6 across the shift at 8 and over the range of λ and γ (η ≈ 1e-3 to 1e6), for
// every lane position (46 entries: two full packets and a padded one with AVX-512).
TEST(LdaSpecial, ExpDigammaMinusMatchesDouble) {
  std::vector<double> x;
  for (double v = 1e-3; v < 2e6; v *= 1.7) x.push_back(v);
  for (double v : {7.999, 8.0, 8.001, 0.5, 1.0}) x.push_back(v);
  ASSERT_EQ(x.size(), 46u);
  std::vector<float> minus(48), out(48, -1.0f), out1(48, -1.0f);  // padded to 16
  for (std::size_t i = 0; i < x.size(); ++i) minus[i] = static_cast<float>(std::log(x[i] + 10.0));  // keeps exp in range
  exp_digamma_minus(x, minus, out);
  exp_digamma_minus(x, 2.5f, out1);
  EXPECT_EQ(out[46], 0.0f);
  EXPECT_EQ(out1[47], 0.0f);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double want = std::exp(digamma(x[i]) - static_cast<double>(minus[i]));
    // The exponent is formed in float: its absolute error grows with |ψ(x)|.
    const double tol = 1e-6 + 3e-7 * std::abs(digamma(x[i]));
    EXPECT_NEAR(out[i], want, tol * want + 1e-30) << "x = " << x[i];
    const double want1 = std::exp(digamma(x[i]) - 2.5);
    if (want1 > 1e-37) {
      EXPECT_NEAR(out1[i], want1, tol * want1) << "x = " << x[i];
    }
  }
}

Lda random_model(Index k, Index v, unsigned seed) {
  std::mt19937 gen(seed);
  std::gamma_distribution<double> g(2.0, 1.0);
  Vector alpha(k);
  for (Index t = 0; t < k; ++t) alpha(t) = 0.1 + 0.2 * static_cast<double>(t);
  Lda m(k, v, alpha, 0.05);
  for (Index w = 0; w < v; ++w)
    for (Index t = 0; t < k; ++t) m.lambda_vk()(w, t) = 0.05 + g(gen);
  m.refresh(1);
  return m;
}

// The textbook coordinate ascent with explicit φ (Blei et al. 2003 eqs. 6-7).
struct Naive {
  Vector gamma;
  double word_term = 0, theta_term = 0;
  RowMatrix expected_counts;  // n × K: n_w φ_wk
};
Naive naive_e_step(const Lda& m, const std::vector<std::int32_t>& ids, const std::vector<double>& cts, double tol) {
  const Index k = m.num_topics(), n = static_cast<Index>(ids.size());
  RowMatrix elog_beta(n, k);
  for (Index i = 0; i < n; ++i)
    for (Index t = 0; t < k; ++t) {
      double total = 0;
      for (Index w = 0; w < m.vocab_size(); ++w) total += m.lambda_vk()(w, t);
      elog_beta(i, t) = digamma(m.lambda_vk()(ids[static_cast<std::size_t>(i)], t)) - digamma(total);
    }
  double length = 0;
  for (double c : cts) length += c;
  Naive r;
  r.gamma = Vector::Constant(k, 1.0);  // scikit-learn's transform start
  (void)length;
  RowMatrix phi(n, k);
  auto elog_theta = [&](const Vector& g) {
    Vector e(k);
    double s = 0;
    for (Index t = 0; t < k; ++t) s += g(t);
    for (Index t = 0; t < k; ++t) e(t) = digamma(g(t)) - digamma(s);
    return e;
  };
  for (int it = 0; it < 10000; ++it) {
    const Vector et = elog_theta(r.gamma);
    for (Index i = 0; i < n; ++i) {
      double z = 0;
      for (Index t = 0; t < k; ++t) z += phi(i, t) = std::exp(et(t) + elog_beta(i, t));
      phi.row(i) /= z;
    }
    Vector next = m.alpha();
    for (Index i = 0; i < n; ++i) next += cts[static_cast<std::size_t>(i)] * phi.row(i).transpose();
    const double change = (next - r.gamma).cwiseAbs().mean();
    r.gamma = next;
    if (change < tol) break;
  }
  const Vector et = elog_theta(r.gamma);
  // With φ optimal for the final γ, E[log p(w|z,β)] + E[log p(z|θ)] − E[log q(z)] is
  // Σ_w n_w log Σ_k exp(E[log θ_k] + E[log β_kw]).
  r.expected_counts.resize(n, k);
  for (Index i = 0; i < n; ++i) {
    double z = 0;
    for (Index t = 0; t < k; ++t) z += phi(i, t) = std::exp(et(t) + elog_beta(i, t));
    phi.row(i) /= z;
    double term = 0;
    for (Index t = 0; t < k; ++t) term += phi(i, t) * (et(t) + elog_beta(i, t) - std::log(phi(i, t)));
    r.word_term += cts[static_cast<std::size_t>(i)] * term;
    r.expected_counts.row(i) = cts[static_cast<std::size_t>(i)] * phi.row(i);
  }
  double sum_alpha = 0, sum_gamma = 0;
  for (Index t = 0; t < k; ++t) {
    sum_alpha += m.alpha()(t);
    sum_gamma += r.gamma(t);
    r.theta_term += (m.alpha()(t) - r.gamma(t)) * et(t) + std::lgamma(r.gamma(t)) - std::lgamma(m.alpha()(t));
  }
  r.theta_term += std::lgamma(sum_alpha) - std::lgamma(sum_gamma);
  return r;
}

// take_rows over disjoint row ranges (as the fit's threads take them) gives what zeroing,
// merge_into of each accumulator and clear() give, and leaves the accumulators empty.
TEST(LdaStatsAccumulator, TakeRowsByRangesIsMergeIntoThenClear) {
  const Index k = 5, v = 40;
  const Lda m = random_model(k, v, 11);
  LdaEStepOptions o;
  LdaWorkspace work;
  Vector gamma;
  const std::vector<std::vector<std::int32_t>> docs{{0, 3, 4, 7, 11}, {1, 3, 39}, {2, 4, 20, 21, 22, 23}, {5}, {3, 38, 39}};
  auto filled = [&](LdaStatsAccumulator& a, std::size_t first) {
    for (std::size_t d = first; d < docs.size(); d += 2) {
      const std::vector<double> cts(docs[d].size(), 2.0 + static_cast<double>(d));
      m.e_step_document(docs[d], cts, o, work, gamma);
      a.add_document(docs[d], cts, work);
    }
  };
  LdaStatsAccumulator a(v, k, 30), b(v, k, 30), a2(v, k, 30), b2(v, k, 30);
  filled(a, 0);
  filled(b, 1);
  filled(a2, 0);
  filled(b2, 1);
  std::vector<std::int64_t> expect(static_cast<std::size_t>(v * k), 0), got(expect.size(), -7);
  a.merge_into(expect);
  b.merge_into(expect);
  std::vector<LdaStatsAccumulator*> accs{&a2, &b2};
  for (const auto& [r0, r1] : {std::pair<Index, Index>{27, 40}, {0, 13}, {13, 27}}) {
    const std::span<std::int64_t> rows(got.data() + r0 * k, static_cast<std::size_t>((r1 - r0) * k));
    LdaStatsAccumulator::take_rows(accs, r0, r1, rows);
  }
  for (LdaStatsAccumulator* x : accs) x->end_take();
  EXPECT_EQ(got, expect);
  EXPECT_GT(std::count_if(expect.begin(), expect.end(), [](std::int64_t c) { return c > 0; }), 3 * k);
  // Emptied: nothing touched, and a later take gives zeros.
  EXPECT_TRUE(a2.touched().empty());
  EXPECT_TRUE(b2.touched().empty());
  LdaStatsAccumulator::take_rows(accs, 0, v, got);
  EXPECT_EQ(got, std::vector<std::int64_t>(got.size(), 0));
}

TEST(LdaEStep, MatchesTheTextbookCoordinateAscent) {
  const Lda m = random_model(4, 12, 3);
  const std::vector<std::int32_t> ids{0, 3, 4, 7, 11};
  const std::vector<double> cts{3, 1, 5, 2, 1};
  LdaEStepOptions o;
  o.max_doc_update_iter = 10000;
  o.mean_change_tol = 1e-13;
  LdaWorkspace work;
  Vector gamma;
  const LdaDocResult r = m.e_step_document(ids, cts, o, work, gamma);
  const Naive expect = naive_e_step(m, ids, cts, 1e-13);
  EXPECT_GT(r.iterations, 2);
  // The coordinate-ascent products run in float32 (single precision: ~1e-7 relative per
  // update); the fixed point agrees to that precision, the bound terms are then evaluated
  // in double at the returned γ.
  for (Index t = 0; t < 4; ++t) EXPECT_NEAR(gamma(t), expect.gamma(t), 1e-6 * std::max(1.0, expect.gamma(t))) << t;
  EXPECT_NEAR(r.word_term, expect.word_term, 1e-6 * std::abs(expect.word_term));
  EXPECT_NEAR(r.theta_term, expect.theta_term, 1e-6 * std::abs(expect.word_term));
  EXPECT_NEAR(r.word_term + r.theta_term, expect.word_term + expect.theta_term, 1e-6 * std::abs(expect.word_term));
  // γ − α sums to the document length (every token is assigned).
  EXPECT_NEAR((gamma - m.alpha()).sum(), 12.0, 1e-5);

  // Fixed-point statistics: each cell within half a grid step of n_w φ_wk.
  LdaStatsAccumulator acc(12, 4, 30);
  acc.add_document(ids, cts, work);
  std::vector<std::int64_t> dense(12 * 4, 0);
  acc.merge_into(dense);
  for (std::size_t i = 0; i < ids.size(); ++i)
    for (Index t = 0; t < 4; ++t)
      EXPECT_NEAR(std::ldexp(static_cast<double>(dense[static_cast<std::size_t>(ids[i]) * 4 + static_cast<std::size_t>(t)]), -30),
                  expect.expected_counts(static_cast<Index>(i), t), 1e-6);
  acc.clear();
  std::vector<std::int64_t> after(12 * 4, 0);
  acc.merge_into(after);
  EXPECT_EQ(after, std::vector<std::int64_t>(12 * 4, 0));
}

// The double-precision transform reaches the textbook fixed point to rounding (the float32
// kernel only to ~1e-6); an empty document gets θ = α / Σα.
TEST(LdaEStep, ExactTransformMatchesTheTextbookFixedPointInDouble) {
  const Lda m = random_model(4, 12, 3);
  const std::vector<std::int32_t> ids{0, 3, 4, 7, 11};
  const std::vector<double> cts{3, 1, 5, 2, 1};
  LdaEStepOptions o;
  o.max_doc_update_iter = 10000;
  o.mean_change_tol = 1e-15;
  const LdaExactTransform exact(m);
  const Vector theta = exact.theta(ids, cts, o);
  const Naive expect = naive_e_step(m, ids, cts, 1e-15);
  const Vector want = expect.gamma / expect.gamma.sum();
  for (Index t = 0; t < 4; ++t) EXPECT_NEAR(theta(t), want(t), 1e-12) << t;
  EXPECT_NEAR(theta.sum(), 1.0, 1e-15);
  const Vector empty = exact.theta({}, {}, o);
  for (Index t = 0; t < 4; ++t) EXPECT_NEAR(empty(t), m.alpha()(t) / m.alpha().sum(), 1e-15);
}

TEST(LdaEStep, EmptyDocumentKeepsThePrior) {
  const Lda m = random_model(3, 5, 4);
  LdaWorkspace work;
  Vector gamma;
  const LdaDocResult r = m.e_step_document({}, {}, {}, work, gamma);
  EXPECT_EQ(r.iterations, 0);
  EXPECT_TRUE(gamma.isApprox(m.alpha()));
  EXPECT_DOUBLE_EQ(r.word_term, 0);
  EXPECT_NEAR(r.theta_term, 0, 1e-14);
}

TEST(LdaPriors, NewtonRecoversAlphaFromExactStatistics) {
  // For Dir(α*), E[log θ_k] = ψ(α*_k) − ψ(Σα*): the maximum-likelihood α is α* exactly.
  Vector truth(4);
  truth << 0.05, 0.3, 1.7, 4.0;
  Vector stats(4);
  for (Index t = 0; t < 4; ++t) stats(t) = digamma(truth(t)) - digamma(truth.sum());
  const Vector fitted = newton_alpha(Vector::Constant(4, 1.0), stats, 1.0, 200);
  for (Index t = 0; t < 4; ++t) EXPECT_NEAR(fitted(t), truth(t), 1e-8 * truth(t)) << t;
  // A damped (online) step is the full Newton step scaled by ρ (near the optimum the full
  // step stays positive, so no halving happens).
  const Vector start = 1.2 * truth;
  const Vector full = newton_alpha(start, stats, 1.0, 1), damped = newton_alpha(start, stats, 0.3, 1);
  ASSERT_TRUE((full.array() > 0).all());
  for (Index t = 0; t < 4; ++t) EXPECT_NEAR(damped(t) - start(t), 0.3 * (full(t) - start(t)), 1e-14) << t;

  const double eta = 0.02;
  const Index k = 5, v = 300;
  const double sum = static_cast<double>(k * v) * (digamma(eta) - digamma(static_cast<double>(v) * eta));
  EXPECT_NEAR(newton_eta(1.0, k, v, sum, 1.0, 200), eta, 1e-9);
}

TEST(LdaScore, CompletionSplitTakesEvenPositions) {
  // Tokens in word order: w0 w0 w0 | w1 | w2 w2 -> positions 0 1 2 | 3 | 4 5.
  std::vector<double> observed, held_out;
  completion_split(std::vector<double>{3, 1, 2}, observed, held_out);
  EXPECT_EQ(observed, (std::vector<double>{2, 0, 1}));
  EXPECT_EQ(held_out, (std::vector<double>{1, 1, 1}));
}

TEST(LdaData, CsrValidationNamesTheRow) {
  const std::vector<std::int64_t> indptr{10, 12, 12, 15};
  const std::vector<std::int64_t> ok_ids{1, 4, 0, 2, 9};
  const std::vector<double> ok_counts{1, 2, 3, 1, 1};
  EXPECT_NO_THROW(io::validate_csr(indptr, ok_ids, ok_counts, 10, 10, "file f", 100));
  auto message = [&](std::vector<std::int64_t> p, std::vector<std::int64_t> ids, std::vector<double> c) {
    try {
      io::validate_csr(p, ids, c, 10, 10, "file f", 100);
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInput);
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(indptr, {1, 4, 0, 2, 10}, ok_counts).find("row 102: word id 10 is outside"), std::string::npos);
  EXPECT_NE(message(indptr, {1, 4, 0, 2, -1}, ok_counts).find("row 102"), std::string::npos);
  EXPECT_NE(message(indptr, {4, 1, 0, 2, 9}, ok_counts).find("row 100: word ids are not strictly increasing"), std::string::npos);
  EXPECT_NE(message(indptr, ok_ids, {1, 2, -3, 1, 1}).find("row 102: count -3"), std::string::npos);
  EXPECT_NE(message(indptr, ok_ids, {1, 2.5, 3, 1, 1}).find("row 100: count 2.5"), std::string::npos);
  EXPECT_NE(message(indptr, ok_ids, {1, 2, 3, 1, std::nan("")}).find("row 102"), std::string::npos);
  EXPECT_NE(message({10, 13, 12, 15}, {1, 4, 5, 2, 9}, ok_counts).find("row 101: indptr is not monotone"), std::string::npos);
  EXPECT_NE(message({10, 12, 12, 14}, ok_ids, ok_counts).find("offsets end at 14"), std::string::npos);
}

// Total variation distance between each true topic and its closest fitted topic.
double topic_recovery_error(const Lda& fitted, const RowMatrix& truth_kv) {
  double worst = 0;
  for (Index t = 0; t < truth_kv.rows(); ++t) {
    double best = 2;
    for (Index f = 0; f < fitted.num_topics(); ++f) {
      const Vector p = fitted.lambda_vk().col(f) / fitted.lambda_vk().col(f).sum();
      best = std::min(best, 0.5 * (p - truth_kv.row(t).transpose()).cwiseAbs().sum());
    }
    worst = std::max(worst, best);
  }
  return worst;
}

class LdaFit : public ::testing::Test {
 protected:
  void SetUp() override {
    generate_lda(400, 40, 3, 60, 0.2, 0.05, 11, 150, dir_ / "corpus", dir_ / "truth.h5");
    info_ = io::open_counts_dataset(dir_ / "corpus");
  }
  latent::testing::TempDir dir_{"lda"};
  io::CountsDatasetInfo info_;
};

TEST_F(LdaFit, BatchBoundNeverDecreasesAndPlantedTopicsAreRecovered) {
  const auto comm = comm::Communicator::world();
  if (comm.size() != 1) GTEST_SKIP();
  LdaConfig c;
  c.n_topics = 3;
  c.max_iter = 40;
  c.tol = 0;
  c.e_step.mean_change_tol = 1e-10;
  c.e_step.max_doc_update_iter = 2000;
  c.block_rows = 64;
  const Logger log(nullptr, false);
  const LdaFitResult fit = fit_lda(comm, info_, c, log, {}, nullptr);
  ASSERT_EQ(fit.em.history.size(), 40u);
  for (std::size_t i = 1; i < fit.em.history.size(); ++i)
    EXPECT_GE(fit.em.history[i].objective, fit.em.history[i - 1].objective - 1e-9) << "pass " << i + 1;
  EXPECT_EQ(fit.num_documents, 400);
  const Lda truth = load_lda(dir_ / "truth.h5");
  const RowMatrix truth_kv = truth.lambda_vk().transpose();
  EXPECT_LT(topic_recovery_error(fit.model, truth_kv), 0.1);
  // The fitted model explains held-out-like data better than the prior mean topics do.
  Lda flat(3, 40, Vector::Constant(3, 1.0 / 3), 1.0 / 3);
  flat.lambda_vk().setConstant(1.0);
  flat.refresh(1);
  Lda fitted = fit.model;
  fitted.refresh(1);
  const LdaScore good = score_lda(comm, info_, fitted, {}, 1, 64);
  const LdaScore bad = score_lda(comm, info_, flat, {}, 1, 64);
  EXPECT_LT(good.doc_completion_perplexity, 0.8 * bad.doc_completion_perplexity);
  EXPECT_LT(good.bound_perplexity, bad.bound_perplexity);
  EXPECT_NEAR(bad.doc_completion_perplexity, 40.0, 1e-9);  // uniform topics: every word has p = 1/V
}

TEST_F(LdaFit, OnlineRecoversPlantedTopicsAndLearnsAlpha) {
  const auto comm = comm::Communicator::world();
  if (comm.size() != 1) GTEST_SKIP();
  LdaConfig c;
  c.n_topics = 3;
  c.method = "online";
  c.batch_size = 50;
  c.max_iter = 30;
  c.tol = 0;
  c.learning_offset = 1;
  c.learning_decay = 0.6;
  c.learn_alpha = true;
  const Logger log(nullptr, false);
  const LdaFitResult fit = fit_lda(comm, info_, c, log, {}, nullptr);
  EXPECT_EQ(fit.num_updates, 30 * 8);
  const Lda truth = load_lda(dir_ / "truth.h5");
  EXPECT_LT(topic_recovery_error(fit.model, truth.lambda_vk().transpose()), 0.15);
  // Documents were drawn with α = 0.2 per topic; the learned α moves from 1/3 towards it.
  EXPECT_LT(fit.model.alpha().mean(), 1.0 / 3);
  EXPECT_GT(fit.model.alpha().minCoeff(), 0.05);
}

}  // namespace
}  // namespace latent::models
