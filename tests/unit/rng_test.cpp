#include "latent/core/rng.hpp"

#include <gtest/gtest.h>

namespace latent {
namespace {

TEST(CounterRng, PureFunctionOfItsKey) {
  CounterRng a(42, RngPurpose::kSample, 3, 1000), b(42, RngPurpose::kSample, 3, 1000);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(a.next_u64(), b.next_u64());
  CounterRng c(42, RngPurpose::kSample, 3, 1001), d(42, RngPurpose::kRandomInit, 3, 1000);
  CounterRng e(42, RngPurpose::kSample, 3, 1000);
  const auto first = e.next_u64();
  EXPECT_NE(c.next_u64(), first);
  EXPECT_NE(d.next_u64(), first);
}

TEST(CounterRng, UniformAndNormalMoments) {
  double sum = 0, sq = 0, nsum = 0, nsq = 0, lo = 1, hi = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    CounterRng r(1, RngPurpose::kSample, 0, static_cast<std::uint64_t>(i));
    const double u = r.next_uniform();
    lo = std::min(lo, u);
    hi = std::max(hi, u);
    sum += u;
    sq += u * u;
    const double z = r.next_normal();
    nsum += z;
    nsq += z * z;
  }
  EXPECT_GT(lo, 0.0);
  EXPECT_LT(hi, 1.0);
  EXPECT_NEAR(sum / n, 0.5, 0.005);
  EXPECT_NEAR(sq / n - 0.25, 1.0 / 12.0, 0.002);
  EXPECT_NEAR(nsum / n, 0.0, 0.01);
  EXPECT_NEAR(nsq / n, 1.0, 0.02);
}

}  // namespace
}  // namespace latent
