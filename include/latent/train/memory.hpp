#pragma once
/// \file Memory prediction before allocation (docs/ARCHITECTURE.md §6 rule 5): a configuration that
/// cannot fit is refused in seconds with an estimate, instead of dying of OOM hours later.
#include <cstddef>
#include <string>

#include "latent/core/types.hpp"

namespace latent::train {

/// What a batch-EM fit holds per rank, in doubles unless stated.
struct EmMemoryInputs {
  Index num_features = 0;      ///< D
  Index block_rows = 0;        ///< B
  int prefetch = 0;            ///< blocks read ahead
  int threads = 1;             ///< TBB threads
  std::size_t cache_bytes = 0; ///< in-memory data cache actually used (0 if streaming)
  Index num_stats = 0;         ///< length of the statistics buffer
  Index parameter_doubles = 0; ///< model parameters (one copy)
  Index scratch_doubles = 0;   ///< per-thread kernel scratch (tiles, responsibilities)
  double row_state_bytes = 0;  ///< kept per local row between passes, in all (already capped)
};

struct MemoryEstimate {
  double bytes = 0;
  std::string breakdown;  ///< "blocks 0.2 GiB, statistics 1.1 GiB, ..."
};

/// Peak bytes per rank: blocks in flight ((prefetch + threads + 2) × B × D, as float32
/// read buffer plus doubles), per-thread statistics (a double buffer and an exact
/// accumulator of 32 bytes per statistic) and scratch, the reduced statistics, the model
/// (four copies: current, next, best, checkpoint snapshot), the cache and any per-row state.
MemoryEstimate estimate_em_memory(const EmMemoryInputs& in);

/// Bytes available to this rank: `budget_gib` if positive, else the smaller of the cgroup
/// limit and MemAvailable, divided by `ranks_on_node`.
double available_memory_bytes(double budget_gib, int ranks_on_node);

/// `bytes` in GiB to three significant digits and at least one decimal ("12.3", "1.23",
/// "0.0523"), as check_memory prints them. Local.
std::string gib_text(double bytes);

/// Throws Error(kUsage) if the estimate exceeds what is available, with both in GiB
/// (gib_text) and `advice`. Local.
void check_memory(const MemoryEstimate& need, double available_bytes, const std::string& advice);

}  // namespace latent::train
