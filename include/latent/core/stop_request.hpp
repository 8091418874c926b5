#pragma once
/// \file Stop requests from a host that embeds the engine (the Python module, where Ctrl-C
/// must end a fit running on another thread): the same flag SIGTERM/SIGUSR1 set
/// (latent/core/control.hpp), so a fit stops at its next iteration boundary with
/// Error(kRequeue), exactly as on a stop signal. Kept apart from control.hpp so that
/// the streaming headers need not change.
namespace latent {

/// Requests a stop as if signal `signo` had arrived (e.g. SIGINT). Thread-safe.
void request_stop(int signo) noexcept;
/// Forgets a stop request or signal, so the next run starts afresh. Call only when no run
/// is in progress.
void clear_stop() noexcept;

}  // namespace latent
