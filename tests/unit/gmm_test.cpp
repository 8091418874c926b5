#include "latent/models/gmm/gmm.hpp"

#include <gtest/gtest.h>

#include <iomanip>

#include <Eigen/Cholesky>
#include <Eigen/LU>
#include <cmath>
#include <filesystem>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <numbers>

#include "../support/fixtures.hpp"
#include "../support/pipeline.hpp"
#include "latent/core/error.hpp"
#include "latent/core/exact_sum.hpp"
#include "latent/core/kernel.hpp"
#include "latent/models/gmm/float32_tiles.hpp"
#include "latent/models/gmm/gmm_diag_kernel.hpp"
#include "latent/models/gmm/gmm_fit.hpp"
#include "latent/train/data_summary.hpp"

namespace latent::models {
namespace {

using latent::testing::blobs;
using latent::testing::TempDir;
const double kLog2Pi = std::log(2 * std::numbers::pi);

RowMatrix cov_in_shape(CovarianceType t, const std::vector<Eigen::MatrixXd>& full) {
  const Index k = static_cast<Index>(full.size()), d = full[0].rows();
  RowMatrix c;
  switch (t) {
    case CovarianceType::kFull:
      c.resize(k * d, d);
      for (Index i = 0; i < k; ++i) c.middleRows(i * d, d) = full[static_cast<std::size_t>(i)];
      break;
    case CovarianceType::kTied: c = full[0]; break;
    case CovarianceType::kDiag:
      c.resize(k, d);
      for (Index i = 0; i < k; ++i) c.row(i) = full[static_cast<std::size_t>(i)].diagonal().transpose();
      break;
    case CovarianceType::kSpherical:
      c.resize(k, 1);
      for (Index i = 0; i < k; ++i) c(i, 0) = full[static_cast<std::size_t>(i)](0, 0);
      break;
  }
  return c;
}

TEST(GmmEStep, HandComputedOneDimensional) {
  // x = 1; components N(0, 1) with weight 0.3 and N(2, 4) with weight 0.7.
  RowMatrix x(1, 1);
  x << 1.0;
  const double expected0 = std::log(0.3) - 0.5 * kLog2Pi - 0.5;
  const double expected1 = std::log(0.7) - 0.5 * kLog2Pi - 0.5 * std::log(4.0) - 0.125;
  for (auto t : {CovarianceType::kFull, CovarianceType::kDiag, CovarianceType::kSpherical}) {
    Gmm g(2, 1, t, 0.0);
    RowMatrix means(2, 1);
    means << 0, 2;
    g.set_parameters(RowVector{{0.3, 0.7}}, means, cov_in_shape(t, {Eigen::MatrixXd::Constant(1, 1, 1.0), Eigen::MatrixXd::Constant(1, 1, 4.0)}));
    RowMatrix lp;
    g.weighted_log_prob(x, lp);
    EXPECT_NEAR(lp(0, 0), expected0, 1e-14) << to_string(t);
    EXPECT_NEAR(lp(0, 1), expected1, 1e-14) << to_string(t);
    Vector lpn;
    RowMatrix resp;
    g.e_step(x, lpn, resp);
    const double lse = std::log(std::exp(expected0) + std::exp(expected1));
    EXPECT_NEAR(lpn[0], lse, 1e-14);
    EXPECT_NEAR(resp(0, 0), std::exp(expected0 - lse), 1e-14);
    EXPECT_NEAR(resp.row(0).sum(), 1.0, 1e-15);
  }
}

TEST(GmmEStep, HandComputedCorrelatedTwoDimensional) {
  // Σ = [[2, 1], [1, 2]]: det 3, Σ⁻¹ = [[2, -1], [-1, 2]] / 3; x - μ = (1, 0) gives 2/3.
  Eigen::MatrixXd cov(2, 2);
  cov << 2, 1, 1, 2;
  RowMatrix x(1, 2);
  x << 1, 5;
  RowMatrix means(1, 2);
  means << 0, 5;
  const double expected = -kLog2Pi - 0.5 * std::log(3.0) - 1.0 / 3.0;
  for (auto t : {CovarianceType::kFull, CovarianceType::kTied}) {
    Gmm g(1, 2, t, 0.0);
    g.set_parameters(RowVector::Ones(1), means, cov_in_shape(t, {cov}));
    RowMatrix lp;
    g.weighted_log_prob(x, lp);
    EXPECT_NEAR(lp(0, 0), expected, 1e-14) << to_string(t);
  }
}

TEST(GmmMStep, HandComputedFromEqualResponsibilities) {
  // Points 0 and 2, both components responsible half: means 1, variance 1 + reg.
  RowMatrix x(2, 1);
  x << 0, 2;
  RowMatrix resp = RowMatrix::Constant(2, 2, 0.5);
  for (auto t : {CovarianceType::kFull, CovarianceType::kTied, CovarianceType::kDiag, CovarianceType::kSpherical}) {
    Gmm g(2, 1, t, 0.25);
    std::vector<double> stats(g.num_stats(), 0.0);
    g.accumulate(x, resp, stats);
    g.m_step(stats);
    EXPECT_NEAR(g.weights()[0], 0.5, 1e-15);
    EXPECT_NEAR(g.means()(0, 0), 1.0, 1e-14) << to_string(t);
    EXPECT_NEAR(g.means()(1, 0), 1.0, 1e-14);
    EXPECT_NEAR(g.covariances()(0, 0), 1.25, 1e-14) << to_string(t);
  }
}

// An independent, straightforward EM (per-sample loops, explicit inverses), following
// scikit-learn's definitions, used as the reference.
struct NaiveGmm {
  CovarianceType type;
  double reg;
  Vector w;
  RowMatrix mu;
  std::vector<Eigen::MatrixXd> cov;

  double step(const RowMatrix& x) {
    const Index n = x.rows(), d = x.cols(), k = mu.rows();
    RowMatrix r(n, k);
    double ll = 0;
    for (Index i = 0; i < n; ++i) {
      for (Index j = 0; j < k; ++j) {
        const Eigen::MatrixXd& c = cov[static_cast<std::size_t>(j)];
        const Eigen::VectorXd diff = (x.row(i) - mu.row(j)).transpose();
        r(i, j) = std::log(w[j]) - 0.5 * (d * kLog2Pi + std::log(c.determinant()) + diff.dot(c.inverse() * diff));
      }
      const double m = r.row(i).maxCoeff();
      const double lse = m + std::log((r.row(i).array() - m).exp().sum());
      ll += lse;
      r.row(i) = (r.row(i).array() - lse).exp();
    }
    const Vector nk = r.colwise().sum().transpose().array() + 10 * std::numeric_limits<double>::epsilon();
    for (Index j = 0; j < k; ++j) mu.row(j) = (r.col(j).transpose() * x) / nk[j];
    Eigen::MatrixXd tied = Eigen::MatrixXd::Zero(d, d);
    for (Index j = 0; j < k; ++j) {
      Eigen::MatrixXd c = Eigen::MatrixXd::Zero(d, d);
      for (Index i = 0; i < n; ++i) {
        const Eigen::VectorXd diff = (x.row(i) - mu.row(j)).transpose();
        c += r(i, j) * diff * diff.transpose();
      }
      tied += c;
      c /= nk[j];
      if (type == CovarianceType::kDiag) c = Eigen::MatrixXd(c.diagonal().asDiagonal());
      if (type == CovarianceType::kSpherical) c = Eigen::MatrixXd::Identity(d, d) * (c.diagonal().mean());
      c.diagonal().array() += reg;
      cov[static_cast<std::size_t>(j)] = c;
    }
    if (type == CovarianceType::kTied) {
      tied /= nk.sum();
      tied.diagonal().array() += reg;
      for (auto& c : cov) c = tied;
    }
    w = nk / nk.sum();
    return ll / static_cast<double>(n);
  }
};

TEST(GmmEm, MatchesNaiveReferenceForEveryCovarianceType) {
  const RowMatrix x = blobs(240, 3, 3, 11, nullptr, 3.0, 1.0);
  for (auto t : {CovarianceType::kFull, CovarianceType::kTied, CovarianceType::kDiag, CovarianceType::kSpherical}) {
    NaiveGmm ref{t, 1e-3, Vector::Constant(3, 1.0 / 3), RowMatrix(3, 3), {}};
    ref.mu << x.row(0), x.row(1), x.row(2);
    std::vector<Eigen::MatrixXd> init(3, Eigen::MatrixXd::Identity(3, 3) * 2.0);
    ref.cov = init;
    Gmm g(3, 3, t, 1e-3);
    g.set_center(x.colwise().mean());
    g.set_parameters(ref.w.transpose(), ref.mu, cov_in_shape(t, init));
    for (int it = 0; it < 15; ++it) {
      // Three uneven blocks combined exactly, as the trainer does.
      ExactSum sum(g.num_stats());
      for (auto [b0, bn] : {std::pair<Index, Index>{0, 100}, {100, 37}, {137, 103}}) {
        io::DenseBlock block;
        block.x = x.middleRows(b0, bn);
        std::vector<double> partial(g.num_stats(), 0.0);
        g.e_step_block(block, partial);
        sum.add(partial);
      }
      const double ours = g.m_step(sum.values()).objective;
      const double theirs = ref.step(x);
      ASSERT_NEAR(ours, theirs, 1e-10 * std::abs(theirs)) << to_string(t) << " iteration " << it;
    }
    EXPECT_LT((g.weights().transpose() - ref.w).cwiseAbs().maxCoeff(), 1e-10) << to_string(t);
    EXPECT_LT((g.means() - ref.mu).cwiseAbs().maxCoeff(), 1e-8) << to_string(t);
    const RowMatrix expected_cov = cov_in_shape(t, ref.cov);
    EXPECT_LT((g.covariances() - expected_cov).cwiseAbs().maxCoeff(), 1e-8 * expected_cov.cwiseAbs().maxCoeff())
        << to_string(t);
  }
}

// The float32 kernels against a double evaluation of the same float inputs, and the avx2
// and avx512 variants against each other bit for bit (D = 37 and K = 7 exercise every
// remainder of the register blocking).
// quadratic_unit (k-means: x + t on the adders) is quadratic() with s = 1 bit for bit, in
// every variant and for every remainder of the register blocking (rows 37, k 1..7).
TEST(GmmFloat32, UnitQuadraticIsQuadraticWithOnesBitForBit) {
  const Index rows = 37, d = 37, dp = gmm_kernel::padded(d);
  std::mt19937_64 gen(9);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> x(rows * dp, 0.0f);
  for (Index i = 0; i < rows; ++i)
    for (Index j = 0; j < d; ++j) x[i * dp + j] = normal(gen);
  x[5] = -0.0f;
  for (Index k = 1; k <= 7; ++k) {
    std::vector<float> ones(k * dp, 0.0f), t(k * dp, 0.0f);
    for (Index c = 0; c < k; ++c)
      for (Index j = 0; j < d; ++j) {
        ones[c * dp + j] = 1.0f;
        t[c * dp + j] = normal(gen);
      }
    t[5] = 0.0f;
    for (const auto v : kernel::all_variants()) {
      if (!kernel::supported(v)) continue;
      kernel::ScopedVariant scope(v);
      std::vector<float> a(rows * k), b(rows * k);
      gmm_kernel::PrefetchRange pa, pb;
      gmm_kernel::quadratic(x.data(), rows, dp, ones.data(), t.data(), k, a.data(), pa);
      gmm_kernel::quadratic_unit(x.data(), rows, dp, t.data(), k, b.data(), pb);
      ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << kernel::to_string(v) << " k " << k;
      double want = 0;  // and it is the distance: row 1 to centre 0 in double
      for (Index j = 0; j < d; ++j) want += (double(x[dp + j]) + t[j]) * (double(x[dp + j]) + t[j]);
      ASSERT_NEAR(b[k], want, 2e-6 * want);
    }
  }
}

// convert_pairs (k-means with bounds) gives convert()'s rows and, for each row, the bits of
// quadratic_unit()'s entry of its chosen centre, in every variant, from double and float32
// rows (37 rows: every remainder of its groups of four), and reports a NaN.
TEST(GmmFloat32, ConvertPairsIsConvertThenUnitQuadraticBitForBit) {
  const Index rows = 37, d = 37, k = 7, dp = gmm_kernel::padded(d);
  std::mt19937_64 gen(11);
  std::normal_distribution<double> normal(0.0, 3.0);
  std::vector<double> xd(rows * d), origin(d);
  for (auto& v : xd) v = normal(gen);
  for (auto& v : origin) v = 0.1 * normal(gen);
  std::vector<float> xs(xd.begin(), xd.end());
  std::vector<float> t(k * dp, 0.0f);
  for (Index c = 0; c < k; ++c)
    for (Index j = 0; j < d; ++j) t[c * dp + j] = static_cast<float>(normal(gen));
  std::vector<std::int32_t> comps(rows);
  for (Index i = 0; i < rows; ++i) comps[i] = static_cast<std::int32_t>((i * 5) % k);
  for (const auto v : kernel::all_variants()) {
    if (!kernel::supported(v)) continue;
    kernel::ScopedVariant scope(v);
    for (const bool f32 : {false, true}) {
      std::vector<float> xf(rows * dp, 0.0f), xp(rows * dp, 0.0f), q(rows * k), qp(rows, -1.0f);
      const bool bad = f32 ? gmm_kernel::convert(xs.data(), rows, d, d, origin.data(), xf.data(), dp)
                           : gmm_kernel::convert(xd.data(), rows, d, d, origin.data(), xf.data(), dp);
      ASSERT_FALSE(bad);
      gmm_kernel::PrefetchRange pf;
      gmm_kernel::quadratic_unit(xf.data(), rows, dp, t.data(), k, q.data(), pf);
      const bool bad_p = f32 ? gmm_kernel::convert_pairs(xs.data(), rows, d, d, origin.data(), xp.data(), dp, t.data(),
                                                         comps.data(), qp.data())
                             : gmm_kernel::convert_pairs(xd.data(), rows, d, d, origin.data(), xp.data(), dp, t.data(),
                                                         comps.data(), qp.data());
      ASSERT_FALSE(bad_p);
      ASSERT_EQ(0, std::memcmp(xf.data(), xp.data(), xf.size() * sizeof(float))) << kernel::to_string(v);
      for (Index i = 0; i < rows; ++i) {
        const float want = q[i * k + comps[i]];
        ASSERT_EQ(0, std::memcmp(&want, &qp[i], sizeof(float))) << kernel::to_string(v) << " f32 " << f32 << " row " << i;
      }
    }
    std::vector<double> with_nan = xd;
    with_nan[30 * d + 4] = std::nan("");
    std::vector<float> xp(rows * dp, 0.0f), qp(rows);
    EXPECT_TRUE(gmm_kernel::convert_pairs(with_nan.data(), rows, d, d, origin.data(), xp.data(), dp, t.data(),
                                          comps.data(), qp.data()));
  }
}

// From float32 rows and an origin whose entries are floats (the k-means frame's), convert()
// and convert_pairs() given negated_float(c) subtract in float32: still the bits of
// float(double(x) − c), in every variant, for values of any exponent (differences far below
// and above one ulp, overflow to ±inf, signed zeros), and a NaN reported; an origin with a
// value that is not a float has no negated_float() and takes the double route.
TEST(GmmFloat32, ConvertFromAFloatOriginGivesTheBitsOfTheDoubleRoute) {
  std::mt19937_64 gen(17);
  std::uniform_real_distribution<double> mant(-1.0, 1.0);
  std::uniform_int_distribution<int> expo(-40, 40);
  const auto any_float = [&] { return static_cast<float>(std::ldexp(mant(gen), expo(gen))); };
  for (const Index d : {Index{37}, Index{100}, Index{4097}}) {
    const Index rows = 9, dp = gmm_kernel::padded(d), k = 3;
    std::vector<float> xs(rows * d);
    for (auto& v : xs) v = any_float();
    std::vector<double> origin(d);
    for (auto& v : origin) v = static_cast<double>(any_float());
    xs[0] = origin[0] == 0 ? 1.0f : static_cast<float>(origin[0]);  // a zero difference
    xs[1] = -0.0f;
    origin[1] = 0.0;
    xs[2] = std::numeric_limits<float>::max();
    origin[2] = -static_cast<double>(std::numeric_limits<float>::max());  // overflows to +inf
    std::vector<float> t(k * dp, 0.0f);
    for (Index c = 0; c < k; ++c)
      for (Index j = 0; j < d; ++j) t[c * dp + j] = static_cast<float>(mant(gen));
    std::vector<std::int32_t> comps(rows);
    for (Index i = 0; i < rows; ++i) comps[i] = static_cast<std::int32_t>(i % k);
    for (const bool float_valued : {true, false}) {
      std::vector<double> c = origin;
      if (!float_valued) c[d - 1] = 0.1;  // one column not a float: the double route
      std::vector<float> want(rows * dp, 0.0f);
      for (Index i = 0; i < rows; ++i)
        for (Index j = 0; j < d; ++j)
          want[i * dp + j] = static_cast<float>(static_cast<double>(xs[i * d + j]) - c[j]);
      for (const auto v : kernel::all_variants()) {
        if (!kernel::supported(v)) continue;
        kernel::ScopedVariant scope(v);
        const std::vector<float> neg = gmm_kernel::negated_float(c.data(), d);
        ASSERT_EQ(neg.empty(), !float_valued);
        const float* nc = neg.empty() ? nullptr : neg.data();
        std::vector<float> out(rows * dp, 0.0f), pairs(rows * dp, 0.0f), q(rows), qp(rows), qw(rows);
        ASSERT_FALSE(gmm_kernel::convert(xs.data(), rows, d, d, c.data(), out.data(), dp, nc));
        ASSERT_EQ(0, std::memcmp(out.data(), want.data(), out.size() * sizeof(float)))
            << kernel::to_string(v) << " d " << d << " float origin " << float_valued;
        ASSERT_FALSE(gmm_kernel::convert_pairs(xs.data(), rows, d, d, c.data(), pairs.data(), dp, t.data(), comps.data(),
                                               qp.data(), nc));
        ASSERT_EQ(0, std::memcmp(pairs.data(), want.data(), pairs.size() * sizeof(float))) << kernel::to_string(v);
        ASSERT_FALSE(gmm_kernel::convert_pairs(xs.data(), rows, d, d, c.data(), pairs.data(), dp, t.data(), comps.data(),
                                               qw.data()));  // the double route: the same distances
        ASSERT_EQ(0, std::memcmp(qp.data(), qw.data(), qp.size() * sizeof(float))) << kernel::to_string(v);
        std::vector<float> xn = xs;
        xn[(rows - 1) * d + d - 2] = std::numeric_limits<float>::quiet_NaN();
        EXPECT_TRUE(gmm_kernel::convert(xn.data(), rows, d, d, c.data(), out.data(), dp, nc)) << kernel::to_string(v);
        EXPECT_TRUE(gmm_kernel::convert_pairs(xn.data(), rows, d, d, c.data(), pairs.data(), dp, t.data(),
                                              comps.data(), qp.data(), nc));
      }
    }
  }
}

TEST(GmmFloat32, KernelsMatchDoubleSumsAndEveryVariantGivesTheSameBits) {
  const Index rows = 37, d = 37, k = 7, dp = gmm_kernel::padded(d);
  ASSERT_EQ(dp, 48);
  std::mt19937_64 gen(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  std::vector<float> x(rows * dp, 0.0f), s(k * dp, 0.0f), t(k * dp, 0.0f), r(rows * k);
  for (Index i = 0; i < rows; ++i)
    for (Index j = 0; j < d; ++j) x[i * dp + j] = normal(gen);
  for (Index c = 0; c < k; ++c)
    for (Index j = 0; j < d; ++j) {
      s[c * dp + j] = 0.5f + unit(gen);
      t[c * dp + j] = normal(gen);
    }
  for (auto& v : r) v = unit(gen);
  std::vector<double> ref_q(rows * k, 0.0), ref_first(k * d, 0.0), ref_second(k * d, 0.0);
  for (Index i = 0; i < rows; ++i)
    for (Index c = 0; c < k; ++c)
      for (Index j = 0; j < d; ++j) {
        const double y = double(x[i * dp + j]) * s[c * dp + j] + t[c * dp + j];
        ref_q[i * k + c] += y * y;
        ref_first[c * d + j] += double(r[i * k + c]) * x[i * dp + j];
        ref_second[c * d + j] += double(r[i * k + c]) * x[i * dp + j] * x[i * dp + j];
      }
  std::vector<std::vector<float>> qs;
  std::vector<std::vector<double>> firsts, seconds;
  for (const auto v : kernel::all_variants()) {
    if (!kernel::supported(v)) continue;
    kernel::ScopedVariant scope(v);
    std::vector<float> q(rows * k);
    gmm_kernel::PrefetchRange pf{reinterpret_cast<const char*>(x.data()), reinterpret_cast<const char*>(x.data() + 256)};
    gmm_kernel::quadratic(x.data(), rows, dp, s.data(), t.data(), k, q.data(), pf);
    std::vector<double> first(k * d, 1.0), second(k * d, 2.0);  // moments() adds to what is there
    gmm_kernel::moments(x.data(), rows, dp, d, r.data(), k, first.data(), second.data(), pf);
    for (Index e = 0; e < rows * k; ++e) ASSERT_NEAR(q[e], ref_q[e], 2e-6 * ref_q[e]) << kernel::to_string(v) << " " << e;
    for (Index e = 0; e < k * d; ++e) {
      const double scale = [&] {
        double a = 0;
        for (Index i = 0; i < rows; ++i) a += std::abs(double(r[i * k + e / d]) * x[i * dp + e % d]);
        return a;
      }();
      ASSERT_NEAR(first[e] - 1.0, ref_first[e], 2e-6 * scale) << kernel::to_string(v) << " " << e;
      ASSERT_NEAR(second[e] - 2.0, ref_second[e], 2e-6 * (ref_second[e] + 1e-30)) << kernel::to_string(v) << " " << e;
    }
    qs.push_back(q);
    firsts.push_back(first);
    seconds.push_back(second);
  }
  ASSERT_FALSE(qs.empty());
  for (std::size_t v = 1; v < qs.size(); ++v) {
    EXPECT_EQ(0, std::memcmp(qs[v].data(), qs[0].data(), qs[0].size() * sizeof(float))) << "variant " << v;
    EXPECT_EQ(firsts[v], firsts[0]) << "variant " << v;
    EXPECT_EQ(seconds[v], seconds[0]) << "variant " << v;
  }
  // convert(): one rounding of (x − c), NaN reported.
  RowMatrix xd(3, d);
  for (Index i = 0; i < 3; ++i)
    for (Index j = 0; j < d; ++j) xd(i, j) = 1e3 + 0.1 * static_cast<double>(i * d + j);
  const std::vector<double> center(d, 1e3);
  std::vector<float> out(3 * dp, 0.0f);
  EXPECT_FALSE(gmm_kernel::convert(xd.data(), 3, d, d, center.data(), out.data(), dp));
  for (Index i = 0; i < 3; ++i)
    for (Index j = 0; j < d; ++j) ASSERT_EQ(out[i * dp + j], static_cast<float>(xd(i, j) - 1e3));
  // From float32 rows: the bits of the same rows widened to double.
  {
    const RowMatrixF xs = xd.cast<float>();
    const RowMatrix xw = xs.cast<double>();
    std::vector<float> a(3 * dp, 0.0f), b(3 * dp, 0.0f);
    EXPECT_FALSE(gmm_kernel::convert(xw.data(), 3, d, d, center.data(), a.data(), dp));
    EXPECT_FALSE(gmm_kernel::convert(xs.data(), 3, d, d, center.data(), b.data(), dp));
    EXPECT_EQ(a, b);
    RowMatrixF xn = xs;
    xn(0, d - 1) = std::numeric_limits<float>::quiet_NaN();
    EXPECT_TRUE(gmm_kernel::convert(xn.data(), 3, d, d, center.data(), b.data(), dp));
  }
  xd(2, d - 1) = std::numeric_limits<double>::quiet_NaN();
  EXPECT_TRUE(gmm_kernel::convert(xd.data(), 3, d, d, center.data(), out.data(), dp));
  xd(2, d - 1) = 0;
  xd(1, 4) = std::numeric_limits<double>::quiet_NaN();
  EXPECT_TRUE(gmm_kernel::convert(xd.data(), 3, d, d, center.data(), out.data(), dp));
}

// moments() is, bit for bit, one float32 FMA chain per component and column over the rows in
// order (x² rounded first), whichever way it runs: the dense blocks (r mostly non-zero, or a
// tile longer than the sparse path's lists), or the sparse path that skips exact zeros (most
// of r zero, as in high dimensions). Checked against that scalar chain in every variant,
// with negative values, a component without any non-zero, denormal responsibilities, and
// every remainder of the lane-group panels (d = 37 and 100).
TEST(GmmFloat32, MomentsAreTheRowOrderChainWhetherZerosAreSkippedOrNot) {
  std::mt19937_64 gen(21);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  struct Case {
    Index rows, d, k;
    double nonzero;  // fraction of r non-zero
  };
  for (const Case cs : {Case{128, 100, 10, 0.11}, Case{37, 37, 7, 0.2}, Case{128, 37, 3, 0.9}, Case{300, 37, 5, 0.1},
                        Case{1, 100, 2, 0.5}}) {
    const Index dp = gmm_kernel::padded(cs.d);
    std::vector<float> x(cs.rows * dp, 0.0f), r(cs.rows * cs.k, 0.0f);
    for (Index i = 0; i < cs.rows; ++i)
      for (Index j = 0; j < cs.d; ++j) x[i * dp + j] = normal(gen);
    for (Index i = 0; i < cs.rows; ++i)
      for (Index c = 0; c + 1 < cs.k; ++c)  // the last component gets no row
        if (unit(gen) < cs.nonzero) r[i * cs.k + c] = unit(gen) < 0.1f ? 1e-40f : unit(gen);
    std::vector<double> want1(cs.k * cs.d), want2(cs.k * cs.d);
    for (Index c = 0; c < cs.k; ++c)
      for (Index j = 0; j < cs.d; ++j) {
        float a1 = 0.0f, a2 = 0.0f;
        for (Index i = 0; i < cs.rows; ++i) {
          const float v = x[i * dp + j], rv = r[i * cs.k + c];
          a1 = std::fma(rv, v, a1);
          a2 = std::fma(rv, v * v, a2);
        }
        want1[c * cs.d + j] = 1.0 + static_cast<double>(a1);
        want2[c * cs.d + j] = 2.0 + static_cast<double>(a2);
      }
    int ran = 0;
    for (const auto v : kernel::all_variants()) {
      if (!kernel::supported(v)) continue;
      kernel::ScopedVariant scope(v);
      std::vector<double> first(cs.k * cs.d, 1.0), second(cs.k * cs.d, 2.0);
      gmm_kernel::PrefetchRange pf;
      gmm_kernel::moments(x.data(), cs.rows, dp, cs.d, r.data(), cs.k, first.data(), second.data(), pf);
      for (Index e = 0; e < cs.k * cs.d; ++e) {
        ASSERT_EQ(first[e], want1[e]) << kernel::to_string(v) << " rows " << cs.rows << " k " << cs.k << " e " << e;
        ASSERT_EQ(second[e], want2[e]) << kernel::to_string(v) << " rows " << cs.rows << " k " << cs.k << " e " << e;
      }
      ++ran;
    }
    ASSERT_GT(ran, 0);
  }
}

// The full GMM's per-component statistics of a float32 tile (gmm_kernel::full_moments) are
// the row-order chains, bit for bit: Σ r a as a double FMA chain, each entry of the lower
// triangle of Σ (r a) aᵀ as a float32 FMA chain, both checked against scalar chains; and
// leaving out the rows whose r is exactly zero (the default) gives the same bits as
// keeping them. Every variant; d = 37 (tail panels) and 70 (three feature blocks, the
// 16-wide AVX-512 sweep); a component without any non-zero row; denormal responsibilities.
TEST(GmmFloat32, FullMomentsAreTheRowOrderChainsWithOrWithoutTheZeroRows) {
  std::mt19937_64 gen(23);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  for (const Index d : {37, 70})
    for (const Index n : {256, 9}) {
      const Index dp = gmm_kernel::padded(d), ldr = 3;
      std::vector<float> x(n * dp, 0.0f), m(d), r(n * ldr, 0.0f);
      for (Index i = 0; i < n; ++i)
        for (Index j = 0; j < d; ++j) x[i * dp + j] = normal(gen);
      for (auto& v : m) v = normal(gen);
      for (Index i = 0; i < n; ++i) {
        if (unit(gen) < 0.15f) r[i * ldr] = unit(gen) < 0.1f ? 1e-40f : unit(gen);  // component 0: sparse
        r[i * ldr + 1] = unit(gen);                                                 // component 1: dense
      }                                                                             // component 2: all zero
      for (Index c = 0; c < ldr; ++c) {
        std::vector<double> want1(d, 0.5), want2(d * d, 0.25);
        for (Index j = 0; j < d; ++j) {
          double acc = 0.5;
          for (Index i = 0; i < n; ++i)
            acc = std::fma(double(r[i * ldr + c]), double(x[i * dp + j] - m[j]), acc);
          want1[j] = acc;
          for (Index l = 0; l <= j; ++l) {
            float a2 = 0.0f;
            for (Index i = 0; i < n; ++i) {
              const float aj = x[i * dp + j] - m[j], al = x[i * dp + l] - m[l];
              a2 = std::fma(r[i * ldr + c] * aj, al, a2);
            }
            want2[j * d + l] = 0.25 + double(a2);
          }
        }
        int ran = 0;
        for (const auto v : kernel::all_variants()) {
          if (!kernel::supported(v)) continue;
          kernel::ScopedVariant scope(v);
          for (const bool skip : {true, false}) {
            std::vector<double> first(d, 0.5), second(d * d, 0.25);
            gmm_kernel::FullScratch scratch;
            gmm_kernel::full_moments(x.data(), n, dp, d, r.data() + c, ldr, m.data(), first.data(), second.data(),
                                     scratch, skip);
            const std::string what = kernel::to_string(v) + " d " + std::to_string(d) + " n " + std::to_string(n) +
                                     " component " + std::to_string(c) + (skip ? " skipping zeros" : " every row");
            ASSERT_EQ(first, want1) << what;
            ASSERT_EQ(second, want2) << what;
          }
          ++ran;
        }
        ASSERT_GT(ran, 0);
      }
    }
}

// The fused float32 pass (the default of `latent fit gmm`) against the double path: the
// mean log-likelihood to 1e-6 relative after every one of 20 EM iterations, with data far
// from the origin, a tile with a missing value (which takes the double path) and blocks
// that end inside a tile.
TEST(GmmFloat32, FusedPassAgreesWithTheDoublePathTo1e6) {
  RowMatrix x = blobs(700, 23, 4, 3, nullptr, 3.0, 1.0);
  x.array() += 50.0;
  x(300, 5) = std::numeric_limits<double>::quiet_NaN();
  const RowVector center = [&] {
    RowVector c = RowVector::Zero(23);
    for (Index j = 0; j < 23; ++j) {
      double sum = 0, n = 0;
      for (Index i = 0; i < x.rows(); ++i)
        if (!std::isnan(x(i, j))) sum += x(i, j), ++n;
      c[j] = sum / n;
    }
    return c;
  }();
  for (auto t : {CovarianceType::kDiag, CovarianceType::kSpherical, CovarianceType::kFull}) {
    std::vector<Gmm> g;
    for (int precision = 0; precision < 2; ++precision) {
      Gmm m(4, 23, t, 1e-3);
      m.set_center(center);
      RowMatrix mu(4, 23);
      mu << x.row(0), x.row(1), x.row(2), x.row(3);
      RowMatrix cov;
      if (t == CovarianceType::kFull) {
        cov = RowMatrix::Zero(4 * 23, 23);
        for (Index c = 0; c < 4; ++c) cov.middleRows(c * 23, 23).diagonal().setConstant(4.0);
      } else {
        cov = RowMatrix::Constant(4, t == CovarianceType::kDiag ? 23 : 1, 4.0);
      }
      m.set_parameters(RowVector::Constant(4, 0.25), mu, cov);
      m.set_float32_products(precision == 1);
      g.push_back(std::move(m));
    }
    for (int it = 0; it < 20; ++it) {
      double objective[2];
      std::vector<double> stats[2];
      for (int p = 0; p < 2; ++p) {
        ExactSum sum(g[p].num_stats());
        for (auto [b0, bn] : {std::pair<Index, Index>{0, 450}, {450, 250}}) {
          io::DenseBlock block;
          block.x = x.middleRows(b0, bn);
          std::vector<double> partial(g[p].num_stats(), 0.0);
          g[p].e_step_block(block, partial);
          sum.add(partial);
        }
        stats[p] = sum.values();
        objective[p] = g[p].m_step(stats[p]).objective;
      }
      ASSERT_NEAR(objective[1], objective[0], 1e-6 * std::abs(objective[0])) << to_string(t) << " iteration " << it;
      ASSERT_EQ(stats[1][1], 700.0);
      for (Index c = 0; c < 4; ++c) ASSERT_NEAR(stats[1][2 + c], stats[0][2 + c], 1e-4) << to_string(t) << " Nk " << c;
    }
    EXPECT_LT((g[1].means() - g[0].means()).cwiseAbs().maxCoeff(), 1e-4) << to_string(t);
    const double scale = g[0].covariances().cwiseAbs().maxCoeff();
    EXPECT_LT((g[1].covariances() - g[0].covariances()).cwiseAbs().maxCoeff(), 1e-4 * scale) << to_string(t);
    if (t != CovarianceType::kFull) {
      EXPECT_LT(((g[1].covariances() - g[0].covariances()).array() / g[0].covariances().array()).abs().maxCoeff(), 1e-4)
          << to_string(t);
    }
  }
}

// The full covariance type's float32 pass (matmul::multiply products) gives the same
// statistics bit for bit in every kernel variant the CPU runs, on blocks that end inside
// a tile (D = 37: every remainder of the product's panels), and the same bits for a block
// whether it holds float32 rows or the same rows widened to double.
TEST(GmmFloat32, FullPassGivesTheSameBitsInEveryVariant) {
  const Index d = 37, k = 3;
  RowMatrix x = blobs(600, d, k, 5, nullptr, 3.0, 1.0);
  x = RowMatrix(x.cast<float>().cast<double>());
  Gmm g(k, d, CovarianceType::kFull, 1e-3);
  g.set_center(x.colwise().mean());
  RowMatrix cov = RowMatrix::Zero(k * d, d);
  for (Index c = 0; c < k; ++c) {
    cov.middleRows(c * d, d).diagonal().setConstant(2.0 + static_cast<double>(c));
    cov(c * d + 1, 0) = cov(c * d, 1) = 0.5;
  }
  g.set_parameters(RowVector::Constant(k, 1.0 / 3), x.topRows(k), cov);
  g.set_float32_products(true);
  ASSERT_TRUE(g.accepts_float32_blocks());
  std::vector<std::vector<double>> results;
  for (const auto v : kernel::all_variants()) {
    if (!kernel::supported(v)) continue;
    kernel::ScopedVariant scope(v);
    for (const bool f32 : {false, true}) {
      std::vector<double> partial(g.num_stats(), 0.0);
      for (auto [b0, bn] : {std::pair<Index, Index>{0, 300}, {300, 300}}) {
        io::DenseBlock block;
        if (f32)
          block.xf = x.middleRows(b0, bn).cast<float>();
        else
          block.x = x.middleRows(b0, bn);
        g.e_step_block(block, partial);
      }
      results.push_back(partial);
    }
  }
  ASSERT_GE(results.size(), 2u);
  EXPECT_EQ(results[0][1], 600.0);
  for (std::size_t i = 1; i < results.size(); ++i) EXPECT_EQ(results[i], results[0]) << "run " << i;
}

// The fit reads float32 shards as float32 blocks (BlockSourceOptions::float32, cached and
// streamed) and gives the bits of the same data read as double, with a NaN in a float32
// block taking the double path too.
TEST(GmmFloat32, Float32BlocksGiveTheBitsOfDoubleBlocks) {
  TempDir dir("gmmf32");
  RowMatrix x = blobs(900, 19, 3, 4, nullptr, 4.0, 1.0);
  x(500, 3) = std::numeric_limits<double>::quiet_NaN();
  const auto comm = comm::Communicator::world();
  for (const auto type : {CovarianceType::kDiag, CovarianceType::kFull}) {
  const auto results = latent::testing::fit_float32_shards_four_ways(
      dir.path(), x, 400, 300, true, [&](io::BlockSource& source, const train::DataSummary& summary) {
        GmmConfig c;
        c.n_components = 3;
        c.covariance_type = type;
        c.max_iter = 12;
        c.tol = 0;
        c.threads = 2;
        const auto fit = fit_gmm(comm, source, summary, c, Logger::silent(), {});
        std::vector<double> r(fit.model.means().data(), fit.model.means().data() + fit.model.means().size());
        r.insert(r.end(), fit.model.covariances().data(), fit.model.covariances().data() + fit.model.covariances().size());
        r.push_back(fit.em.objective);
        return r;
      });
  for (std::size_t i = 1; i < results.size(); ++i)
    EXPECT_EQ(results[i], results[0]) << to_string(type) << " configuration " << i;
  }
}

TEST(GmmEm, CollapsedComponentIsNamed) {
  Gmm g(2, 2, CovarianceType::kDiag, 0.0);
  RowMatrix means = RowMatrix::Zero(2, 2);
  RowMatrix cov(2, 2);
  cov << 1, 1, 0, 1;
  try {
    g.set_parameters(RowVector::Constant(2, 0.5), means, cov);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNumerical);
    EXPECT_NE(std::string(e.what()).find("component 1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("reg_covar"), std::string::npos);
  }
}

class GmmFitTest : public ::testing::TestWithParam<CovarianceType> {};

TEST_P(GmmFitTest, RecoversParametersAndNeverDecreasesTheLikelihood) {
  const auto comm = comm::Communicator::world();
  TempDir dir("gmmfit");
  std::vector<std::int64_t> labels;
  RowMatrix centers;
  const RowMatrix x = blobs(3000, 4, 3, 5, &labels, 8.0, 1.0, &centers);
  auto source = latent::testing::write_and_open(comm, dir / "data", x, {1000, 1500, 500}, 256);
  const auto summary = train::summarize(comm, *source, 2);
  GmmConfig c;
  c.n_components = 3;
  c.covariance_type = GetParam();
  c.threads = 2;
  c.tol = 1e-8;
  std::vector<double> history;
  const auto fit = fit_gmm(comm, *source, summary, c, Logger::silent(), [&](const train::IterationRecord& r) { history.push_back(r.objective); });
  ASSERT_GE(history.size(), 2u);
  // Never decreasing, up to the float32 products' rounding once converged: the full
  // covariances' objective is summed from float32 quadratic forms, whose noise here is a few
  // 1e-9 relative (a drop of 2.5e-8 nats at −6.8 seen; 1e-9 absolute held by chance).
  for (std::size_t i = 1; i < history.size(); ++i)
    EXPECT_GE(history[i], history[i - 1] - 1e-8 * std::abs(history[i - 1]))
        << "iteration " << i << " " << std::setprecision(17) << history[i] - history[i - 1];
  EXPECT_LT(latent::testing::worst_center_error(fit.model.means(), centers), 0.15);
  for (Index k = 0; k < 3; ++k) EXPECT_NEAR(fit.model.weights()[k], 1.0 / 3.0, 0.01);
  // Unit variances were generated: every covariance estimate should be near 1.
  const RowMatrix& cov = fit.model.covariances();
  if (GetParam() == CovarianceType::kDiag || GetParam() == CovarianceType::kSpherical)
    EXPECT_NEAR(cov.mean(), 1.0, 0.08);
  else
    EXPECT_NEAR(cov.diagonal().mean(), 1.0, 0.08);
}

INSTANTIATE_TEST_SUITE_P(AllTypes, GmmFitTest,
                         ::testing::Values(CovarianceType::kFull, CovarianceType::kTied, CovarianceType::kDiag,
                                           CovarianceType::kSpherical),
                         [](const auto& p) { return to_string(p.param); });

TEST(GmmFit, RefusesMoreComponentsThanSamples) {
  const auto comm = comm::Communicator::world();
  TempDir dir("gmmk");
  if (comm.is_root()) latent::testing::write_shards(dir / "d", blobs(5, 2, 1, 1), {5});
  comm.barrier();
  auto source = latent::testing::make_source(comm, dir / "d", 4);
  const auto summary = train::summarize(comm, *source, 1);
  GmmConfig c;
  c.n_components = 6;
  try {
    fit_gmm(comm, *source, summary, c, Logger::silent(), {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUsage);
    EXPECT_NE(std::string(e.what()).find("n_samples = 5"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace latent::models
