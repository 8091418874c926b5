#include "latent/core/profile.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <atomic>

namespace latent::profile {
namespace {

// Fixed point: nanoseconds for seconds, whole units for bytes and counts.
constexpr double kScale[] = {1e9, 1e9, 1e9, 1.0, 1.0, 1e9, 1.0, 1.0};
static_assert(sizeof(kScale) / sizeof(kScale[0]) == kNumCounters, "one scale per profile::Counter");

std::array<std::atomic<std::int64_t>, kNumCounters>& counters() {
  static std::array<std::atomic<std::int64_t>, kNumCounters> c{};
  return c;
}

// Set and read only by the thread that runs the iterations (profile.hpp).
Snapshot& baseline() {
  static Snapshot b{};
  return b;
}

// The innermost partition timer alive on this thread (ScopedTimer's nesting).
thread_local ScopedTimer* current_timer = nullptr;

}  // namespace

ScopedTimer::ScopedTimer(Counter c) noexcept : counter_(c), start_(std::chrono::steady_clock::now()) {
  if (counter_ == Counter::kReadSeconds) return;
  parent_ = current_timer;
  current_timer = this;
}

ScopedTimer::~ScopedTimer() {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  if (counter_ == Counter::kReadSeconds) {
    add(counter_, elapsed);
    return;
  }
  add(counter_, std::max(0.0, elapsed - nested_seconds_));
  if (parent_) parent_->nested_seconds_ += elapsed;
  current_timer = parent_;
}

void add(Counter c, double value) noexcept {
  const int i = static_cast<int>(c);
  counters()[static_cast<std::size_t>(i)].fetch_add(static_cast<std::int64_t>(value * kScale[i]), std::memory_order_relaxed);
}

Snapshot snapshot() noexcept {
  Snapshot s{};
  for (int i = 0; i < kNumCounters; ++i)
    s[static_cast<std::size_t>(i)] =
        static_cast<double>(counters()[static_cast<std::size_t>(i)].load(std::memory_order_relaxed)) / kScale[i];
  return s;
}

double max_rss_bytes() noexcept {
  rusage u{};
  if (getrusage(RUSAGE_SELF, &u) != 0) return 0;
  return static_cast<double>(u.ru_maxrss) * 1024.0;  // Linux: kilobytes
}

void begin_iteration() noexcept { baseline() = snapshot(); }

Snapshot iteration_start() noexcept { return baseline(); }

}  // namespace latent::profile
