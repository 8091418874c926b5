#pragma once
/// \file Process-wide run control: stop signals, the progress heartbeat the watchdog reads,
/// and fault injection for tests (docs/FAULTS.md, "Fault injection").
///
/// Signals only set a flag (docs/ARCHITECTURE.md §6 rule 2): SIGTERM and SIGUSR1 (SLURM's warning
/// before the time limit) request a stop; ranks agree on it at the next iteration
/// boundary, checkpoint that iteration, and exit with code 75.
#include <cstdint>
#include <string>

namespace latent {

/// Installs the SIGTERM/SIGUSR1 handlers (idempotent). Call once, early, in main().
void install_stop_signal_handlers();
/// The signal number received since start (0 if none). Async-signal-safe to set.
int stop_signal() noexcept;

/// Whether a stop signal ends the command at the next stop_point() (commands other than
/// `fit`: import, generate, predict, transform, score, sample, impute, select) instead of
/// waiting for an iteration boundary (`fit`, where FitControl checkpoints first). Default
/// false. Set once, early, before any thread reads blocks.
void set_stop_aborts(bool aborts) noexcept;

/// In a command whose stop aborts: throws Error(kRequeue) ("stopped by SIGTERM ...; nothing
/// was written") once a stop signal has arrived, so that the command's error agreement
/// ends it on every rank and its writers remove their temporaries (exit 75). Nothing
/// otherwise. Called by the block streams for every block, and by the loops of import,
/// generate and sample.
void stop_point();

/// Marks progress (a block or an iteration finished). Thread-safe, wait-free.
void heartbeat() noexcept;
/// Seconds since the last heartbeat (or since start).
double seconds_since_heartbeat() noexcept;

/// A fault to inject, parsed once from LATENT_FAULT="rank=R,iteration=I,kind=K"
/// (kind: kill | throw | nan | enospc | hang | signal | stop). A testing aid, always compiled in.
struct FaultPlan {
  int rank = -1;
  std::int64_t iteration = -1;
  std::string kind;
  /// The plan from the environment (empty kind if LATENT_FAULT is unset). Throws
  /// Error(kUsage) if LATENT_FAULT is malformed.
  static const FaultPlan& get();
  /// True if `kind` is planned for this rank and iteration.
  bool due(int at_rank, std::int64_t at_iteration, const char* what) const noexcept {
    return kind == what && rank == at_rank && iteration == at_iteration;
  }
};

/// Executes the boundary faults planned for (rank, iteration): kill (SIGKILL to self),
/// signal (SIGTERM to self), hang (the calling thread sleeps until killed), stop (SIGSTOP
/// to self: every thread stops, as on a frozen node). Others are handled where they act.
void inject_boundary_faults(int rank, std::int64_t iteration);

}  // namespace latent
