#include "latent/core/control.hpp"
#include "latent/core/stop_request.hpp"

#include <csignal>
#include <cstdlib>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <sstream>
#include <thread>

#include "latent/core/error.hpp"

namespace latent {
namespace {

volatile std::sig_atomic_t g_stop_signal = 0;
std::atomic<std::int64_t> g_heartbeat_ns{0};

std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

extern "C" void on_stop_signal(int signo) { g_stop_signal = signo; }

FaultPlan parse_fault(const char* text) {
  FaultPlan plan;
  if (text == nullptr || *text == '\0') return plan;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto eq = item.find('=');
    if (eq == std::string::npos) throw_usage(std::string("LATENT_FAULT: expected key=value, got '") + item + "'");
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    try {
      if (key == "rank") plan.rank = std::stoi(value);
      else if (key == "iteration") plan.iteration = std::stoll(value);
      else if (key == "kind") plan.kind = value;
      else throw_usage("LATENT_FAULT: unknown key '" + key + "'");
    } catch (const std::logic_error&) {
      throw_usage("LATENT_FAULT: bad value '" + value + "' for " + key);
    }
  }
  static const char* kinds[] = {"kill", "throw", "nan", "enospc", "hang", "signal", "stop"};
  bool known = false;
  for (const char* k : kinds) known |= plan.kind == k;
  if (!known) throw_usage("LATENT_FAULT: kind must be kill, throw, nan, enospc, hang, signal or stop");
  return plan;
}

}  // namespace

void install_stop_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = &on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGUSR1, &sa, nullptr);
  heartbeat();
}

int stop_signal() noexcept { return g_stop_signal; }

void request_stop(int signo) noexcept { g_stop_signal = signo; }
void clear_stop() noexcept { g_stop_signal = 0; }

namespace {
std::atomic<bool> g_stop_aborts{false};
}

void set_stop_aborts(bool aborts) noexcept { g_stop_aborts.store(aborts, std::memory_order_relaxed); }

void stop_point() {
  const int signo = g_stop_signal;
  if (signo == 0 || !g_stop_aborts.load(std::memory_order_relaxed)) return;
  throw Error(ErrorKind::kRequeue, std::string("stopped by ") + (signo == SIGUSR1 ? "SIGUSR1" : signo == SIGTERM ? "SIGTERM" : "a signal") +
                                       "; nothing was written (rerun the command)");
}

void heartbeat() noexcept { g_heartbeat_ns.store(now_ns(), std::memory_order_relaxed); }

double seconds_since_heartbeat() noexcept {
  const std::int64_t last = g_heartbeat_ns.load(std::memory_order_relaxed);
  return last == 0 ? 0.0 : static_cast<double>(now_ns() - last) * 1e-9;
}

const FaultPlan& FaultPlan::get() {
  static const FaultPlan plan = parse_fault(std::getenv("LATENT_FAULT"));
  return plan;
}

void inject_boundary_faults(int rank, std::int64_t iteration) {
  const FaultPlan& f = FaultPlan::get();
  if (f.due(rank, iteration, "kill")) ::kill(::getpid(), SIGKILL);
  if (f.due(rank, iteration, "signal")) ::kill(::getpid(), SIGTERM);
  if (f.due(rank, iteration, "stop")) ::raise(SIGSTOP);  // the whole process, watchdog thread included
  if (f.due(rank, iteration, "hang"))
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}

}  // namespace latent
