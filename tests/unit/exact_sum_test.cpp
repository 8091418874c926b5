#include "latent/core/exact_sum.hpp"
#include "latent/train/column_moments.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <utility>

namespace latent {
namespace {

double sum_of(const std::vector<double>& v) {
  ExactSum s(1);
  for (double x : v) s.add(std::span<const double>(&x, 1));
  return s.values()[0];
}

TEST(ExactSum, CancellationThatPlainDoublesGetWrong) {
  // 1e16 + 1 - 1e16 is 0 in double arithmetic; the exact sum is 1.
  EXPECT_EQ(sum_of({1e16, 1.0, -1e16}), 1.0);
  EXPECT_EQ(sum_of({1.0, 0x1p-60, -1.0}), 0x1p-60);
  // Below the three-bin window (at least 64 bits under the largest addend) bits drop out.
  EXPECT_NEAR(sum_of({1.0, 1e-20, -1.0}), 1e-20, 0x1p-80);
  EXPECT_EQ(sum_of({}), 0.0);
  EXPECT_EQ(sum_of({-3.5}), -3.5);
}

TEST(ExactSum, MatchesLongDoubleOnSmallIntegers) {
  std::vector<double> v;
  long long expected = 0;
  for (int i = -1000; i < 3000; ++i) {
    v.push_back(i * 3.0);
    expected += i * 3;
  }
  EXPECT_EQ(sum_of(v), static_cast<double>(expected));
}

TEST(ExactSum, BitwiseIndependentOfOrderAndGrouping) {
  std::mt19937_64 gen(7);
  std::normal_distribution<double> normal;
  std::vector<double> v(5000);
  for (auto& x : v) x = normal(gen) * std::pow(10.0, static_cast<int>(gen() % 30) - 15);
  const double reference = sum_of(v);
  for (int trial = 0; trial < 5; ++trial) {
    std::shuffle(v.begin(), v.end(), gen);
    // Random grouping: partial sums merged in a random tree.
    std::vector<ExactSum> parts;
    for (std::size_t i = 0; i < v.size();) {
      const std::size_t len = 1 + gen() % 97;
      ExactSum p(1);
      for (std::size_t j = i; j < std::min(v.size(), i + len); ++j) p.add(std::span<const double>(&v[j], 1));
      parts.push_back(p);
      i += len;
    }
    while (parts.size() > 1) {
      const std::size_t a = gen() % parts.size();
      std::size_t b = gen() % parts.size();
      if (a == b) continue;
      parts[a].merge(parts[b]);
      parts.erase(parts.begin() + static_cast<std::ptrdiff_t>(b));
    }
    EXPECT_EQ(parts[0].values()[0], reference) << "trial " << trial;
  }
  // And it is accurate: compare with a long double Kahan-free sum of sorted magnitudes.
  std::sort(v.begin(), v.end(), [](double a, double b) { return std::abs(a) < std::abs(b); });
  long double ld = 0;
  for (double x : v) ld += x;
  EXPECT_NEAR(reference, static_cast<double>(ld), 1e-12 * std::abs(static_cast<double>(ld)) + 1e-300);
}

// ExactSum::add's inline path (a normal value in the cell's top bin) against exact_add()
// one value at a time: the same cells, limb for limb, over values that take every path
// (both signs, zeros, subnormals, values that raise the top, NaN/Inf poisoning).
TEST(ExactSum, VectorAddMatchesExactAddCellForCell) {
  std::mt19937_64 gen(11);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_int_distribution<int> kind(0, 19), exponent(-1070, 1020);
  const std::size_t n = 257;
  ExactSum fast(n);
  std::vector<ExactCell> slow(n, ExactSum::empty_cell());
  std::size_t inline_adds = 0;
  for (int round = 0; round < 200; ++round) {
    std::vector<double> values(n);
    for (std::size_t i = 0; i < n; ++i) {
      const int k = kind(gen);
      double x = (1.0 + 0.25 * normal(gen)) * std::ldexp(1.0, static_cast<int>(i % 90) - 45);
      if (k == 0) x = 0.0;
      else if (k == 1) x = -0.0;
      else if (k == 2) x = std::ldexp(normal(gen), -1060);  // subnormal or near it
      else if (k == 3) x = std::ldexp(normal(gen), exponent(gen));  // any top
      else if (k == 4 && round == 150 && i % 17 == 0) x = i % 2 ? std::numeric_limits<double>::infinity()
                                                                 : std::numeric_limits<double>::quiet_NaN();
      if (k >= 5 && slow[i].top != kEmptyTop && slow[i].top != std::numeric_limits<std::int64_t>::max()) ++inline_adds;
      values[i] = k % 2 ? -x : x;
    }
    fast.add(values);
    for (std::size_t i = 0; i < n; ++i) exact_add(slow[i], values[i]);
  }
  EXPECT_GT(inline_adds, n * 100);  // most additions took the inline path
  const auto cells = std::as_const(fast).cells();
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_EQ(cells[i].top, slow[i].top) << i;
    for (int j = 0; j < 3; ++j) ASSERT_EQ(cells[i].limb[j], slow[i].limb[j]) << i << " limb " << j;
  }
  const std::vector<double> values = fast.values();
  for (std::size_t i = 0; i < n; ++i) EXPECT_EQ(std::bit_cast<std::uint64_t>(values[i]),
                                                std::bit_cast<std::uint64_t>(exact_value(slow[i]))) << i;
}

TEST(ExactSum, SubnormalsAndHugeValues) {
  const double tiny = 4.9406564584124654e-324;  // smallest subnormal
  EXPECT_EQ(sum_of({tiny, tiny, tiny}), 3 * tiny);
  EXPECT_EQ(sum_of({1e300, 1e300, -1e300}), 1e300);
}

TEST(ExactSum, NonFiniteValuesPoisonTheCell) {
  EXPECT_TRUE(std::isnan(sum_of({1.0, std::nan(""), 2.0})));
  EXPECT_TRUE(std::isnan(sum_of({1.0, INFINITY})));
}

}  // namespace
}  // namespace latent

// The data summary's one-pass column moments: within the recursive-sum bound of the exact
// sums (far from the origin too), exact minima and maxima, and for an empty block zeros and untouched
// bounds.
TEST(ColumnMoments, MatchExactSumsAndBounds) {
  std::mt19937_64 gen(11);
  std::normal_distribution<double> normal;
  for (const latent::Index n : {0, 1, 2, 5, 100, 1001})
    for (const latent::Index d : {1, 3, 37, 784}) {
      latent::RowMatrix x(n, d);
      for (latent::Index i = 0; i < n; ++i)
        for (latent::Index j = 0; j < d; ++j) x(i, j) = normal(gen) * 1e3 + 1e4 * static_cast<double>(j % 3);
      latent::RowVector s(d), q(d), lo = latent::RowVector::Constant(d, 1e300), hi = latent::RowVector::Constant(d, -1e300);
      latent::train::column_moments(x, s.data(), q.data(), lo.data(), hi.data());
      for (latent::Index j = 0; j < d; ++j) {
        latent::ExactSum es(2);
        for (latent::Index i = 0; i < n; ++i) {
          const double v[2] = {x(i, j), x(i, j) * x(i, j)};
          es.add(std::span<const double>(v, 2));
        }
        const auto exact = es.values();
        // The bound of a recursive sum: (n − 1) ε Σ |x| (Higham 2002, §4.2).
        const double bound = static_cast<double>(n) * 0x1p-53 * x.col(j).cwiseAbs().sum();
        ASSERT_LE(std::abs(s[j] - exact[0]), bound) << n << "x" << d << " column " << j;
        ASSERT_LE(std::abs(q[j] - exact[1]), 2.0 * static_cast<double>(n) * 0x1p-53 * exact[1]) << n << "x" << d << " column " << j;
        ASSERT_EQ(lo[j], n ? x.col(j).minCoeff() : 1e300);
        ASSERT_EQ(hi[j], n ? x.col(j).maxCoeff() : -1e300);
      }
    }
}
