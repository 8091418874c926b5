#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <thread>

#include "latent/core/profile.hpp"

namespace {

using latent::profile::Counter;
using latent::profile::ScopedTimer;
using latent::profile::snapshot;
using Clock = std::chrono::steady_clock;

double delta(const latent::profile::Snapshot& a, const latent::profile::Snapshot& b, Counter c) {
  return b[static_cast<std::size_t>(c)] - a[static_cast<std::size_t>(c)];
}

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

// A collective inside an M-step (LDA's totals, the VAE's fence) is counted once, as a
// collective: the parts of an iteration add up to at most its wall time (--profile's
// read wait + compute + allreduce + M-step = seconds).
TEST(Profile, NestedTimersCountExclusiveTime) {
  const auto before = snapshot();
  const auto t0 = Clock::now();
  {
    const ScopedTimer m_step(Counter::kMstepSeconds);
    sleep_ms(20);
    {
      const ScopedTimer comm(Counter::kCommSeconds);
      sleep_ms(30);
    }
    sleep_ms(10);
  }
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  const auto after = snapshot();
  const double m = delta(before, after, Counter::kMstepSeconds);
  const double c = delta(before, after, Counter::kCommSeconds);
  EXPECT_GE(c, 0.030);
  EXPECT_GE(m, 0.030 - 1e-6);     // the two sleeps outside the collective
  EXPECT_LE(m + c, wall + 1e-6);  // not 0.03 s twice
}

// Three deep, ended through std::optional as the drivers do.
TEST(Profile, NestingIsRestoredAfterEachTimer) {
  const auto before = snapshot();
  const auto t0 = Clock::now();
  {
    std::optional<ScopedTimer> outer(std::in_place, Counter::kMstepSeconds);
    {
      const ScopedTimer wait(Counter::kReadWaitSeconds);
      { const ScopedTimer comm(Counter::kCommSeconds); sleep_ms(15); }
      sleep_ms(15);
    }
    { const ScopedTimer comm(Counter::kCommSeconds); sleep_ms(15); }
    outer.reset();
    const ScopedTimer after_outer(Counter::kCommSeconds);  // not nested in the ended timer
    sleep_ms(15);
  }
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  const auto after = snapshot();
  const double m = delta(before, after, Counter::kMstepSeconds);
  const double w = delta(before, after, Counter::kReadWaitSeconds);
  const double c = delta(before, after, Counter::kCommSeconds);
  EXPECT_GE(c, 0.045);
  EXPECT_GE(w, 0.015 - 1e-6);
  EXPECT_LE(m + w + c, wall + 1e-6);
}

// The I/O thread's reading overlaps compute: it is a separate view, neither subtracted
// from an enclosing timer nor subtracting from one.
TEST(Profile, ReadSecondsStayOutsideTheNesting) {
  const auto before = snapshot();
  {
    const ScopedTimer wait(Counter::kReadWaitSeconds);
    const ScopedTimer read(Counter::kReadSeconds);
    sleep_ms(20);
  }
  const auto after = snapshot();
  EXPECT_GE(delta(before, after, Counter::kReadWaitSeconds), 0.020);
  EXPECT_GE(delta(before, after, Counter::kReadSeconds), 0.020);
}

}  // namespace
