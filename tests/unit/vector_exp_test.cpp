#include "latent/core/vector_exp.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace latent {
namespace {

// Distance in units in the last place between two positive finite doubles.
std::int64_t ulps(double a, double b) {
  const auto ia = std::bit_cast<std::int64_t>(a), ib = std::bit_cast<std::int64_t>(b);
  return ia > ib ? ia - ib : ib - ia;
}

TEST(VectorExp, WithinOneUlpOfGlibcOverTheRange) {
  std::mt19937_64 gen(7);
  std::uniform_real_distribution<double> wide(-708.0, 0.0), narrow(-1.0, 0.0), tiny(-1e-6, 0.0);
  std::vector<double> z;
  for (int i = 0; i < 100000; ++i) z.push_back(wide(gen));
  for (int i = 0; i < 100000; ++i) z.push_back(narrow(gen));
  for (int i = 0; i < 10000; ++i) z.push_back(tiny(gen));
  // Around the reduction's boundaries (r near ±ln2/2) and whole multiples of ln 2.
  for (int k = 1; k < 1021; ++k)
    for (double off : {-0.5, -0.4999999, 0.0, 0.4999999, 0.5}) z.push_back(-(k + off) * std::log(2.0));
  std::vector<double> out(z.size());
  exp_nonpositive_array(z.data(), out.data(), static_cast<std::ptrdiff_t>(z.size()));
  std::int64_t worst = 0;
  for (std::size_t i = 0; i < z.size(); ++i) {
    if (z[i] < -708.0) continue;
    worst = std::max(worst, ulps(out[i], std::exp(z[i])));
  }
  EXPECT_LE(worst, 1);
}

TEST(VectorExp, EdgesAndTailsMatchTheVectorLanes) {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  std::vector<double> z = {0.0, -0.0, -708.0, -708.0000001, -745.0, -1e300, -inf, nan, -1.0};
  std::vector<double> out(z.size());
  exp_nonpositive_array(z.data(), out.data(), static_cast<std::ptrdiff_t>(z.size()));
  EXPECT_EQ(out[0], 1.0);
  EXPECT_EQ(out[1], 1.0);
  EXPECT_GT(out[2], 0.0);
  EXPECT_LE(ulps(out[2], std::exp(-708.0)), 1);
  EXPECT_EQ(out[3], 0.0);
  EXPECT_EQ(out[4], 0.0);
  EXPECT_EQ(out[5], 0.0);
  EXPECT_EQ(out[6], 0.0);
  EXPECT_TRUE(std::isnan(out[7]));
  EXPECT_LE(ulps(out[8], std::exp(-1.0)), 2);
  // Every length 1..9: an element's bits do not depend on its place in a vector or the tail.
  for (std::size_t n = 1; n <= 9; ++n) {
    std::vector<double> part(n);
    exp_nonpositive_array(z.data() + (9 - n), part.data(), static_cast<std::ptrdiff_t>(n));
    for (std::size_t i = 0; i < n; ++i) {
      const double want = out[9 - n + i];
      if (std::isnan(want))
        EXPECT_TRUE(std::isnan(part[i]));
      else
        EXPECT_EQ(std::bit_cast<std::uint64_t>(part[i]), std::bit_cast<std::uint64_t>(want)) << "n " << n << " i " << i;
    }
  }
  // In place.
  std::vector<double> same = z;
  exp_nonpositive_array(same.data(), same.data(), static_cast<std::ptrdiff_t>(same.size()));
  EXPECT_EQ(same[8], out[8]);
}

}  // namespace
}  // namespace latent
