#pragma once
/// \file Process-wide time and traffic counters for `latent fit --profile` (docs/COMMANDS.md,
/// `--profile`). Always on: each event is one relaxed atomic add (a block read,
/// a wait for a block, a collective, an M-step), never per row.
///
/// Counters are cumulative since process start; a report takes two snapshots and
/// subtracts. Compute time is not counted: it is what remains of an iteration's wall time
/// after reading waits, collectives and the M-step.
#include <array>
#include <chrono>
#include <cstdint>

namespace latent::profile {

enum class Counter : int {
  kReadSeconds = 0,  ///< the I/O thread reading and validating blocks (overlaps compute)
  kReadWaitSeconds,  ///< the compute pipeline waiting for the next block (reading not hidden)
  kCommSeconds,      ///< inside MPI collectives, including waiting for slower ranks
  kCommBytes,        ///< payload bytes of this rank's collectives (send side)
  kCollectives,      ///< number of collectives
  kMstepSeconds,     ///< parameter updates (M-steps, optimiser steps)
  kSettledRows,      ///< rows whose label a distance bound settled without the other distances (k-means)
  kKmeansRows,       ///< rows the k-means E-step visited (kSettledRows' denominator)
  kCount
};
constexpr int kNumCounters = static_cast<int>(Counter::kCount);

/// Adds `value` (seconds, bytes or a count) to a counter. Thread-safe, wait-free.
void add(Counter c, double value) noexcept;

/// All counters, in Counter order.
using Snapshot = std::array<double, kNumCounters>;
Snapshot snapshot() noexcept;

/// Peak resident set size of this process so far, bytes (getrusage ru_maxrss).
double max_rss_bytes() noexcept;

/// Adds the wall time of its scope to a seconds counter.
///
/// The iteration's parts (read wait, collectives, M-step) partition its wall time, so these
/// timers count exclusive time: a timer started inside another on the same thread (a
/// collective inside an M-step) is subtracted from the outer one, and each second lands in
/// one counter only. kReadSeconds is a separate view (the I/O thread's work, which overlaps
/// compute) and neither nests nor is nested. Timers on one thread must end in reverse order
/// of their start (scopes, or std::optional reset in that order).
class ScopedTimer {
 public:
  explicit ScopedTimer(Counter c) noexcept;
  ~ScopedTimer();
  ScopedTimer(const ScopedTimer&) = delete;
  ScopedTimer& operator=(const ScopedTimer&) = delete;

 private:
  Counter counter_;
  ScopedTimer* parent_ = nullptr;  ///< the enclosing partition timer on this thread, if any
  double nested_seconds_ = 0;      ///< wall time of the partition timers inside this one
  std::chrono::steady_clock::time_point start_;
};

/// Marks the start of a training iteration: the next report's deltas start here (drivers
/// call it where they start the iteration's clock). Call this and iteration_start() from
/// the thread that runs the iterations only.
void begin_iteration() noexcept;
/// The counters at the last begin_iteration().
Snapshot iteration_start() noexcept;

}  // namespace latent::profile
