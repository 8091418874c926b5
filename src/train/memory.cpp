#include "latent/train/memory.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <string>

#include "latent/core/error.hpp"
#include "latent/train/fit_run.hpp"

namespace latent::train {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

double read_number(const std::string& path) {
  std::ifstream f(path);
  std::string s;
  if (!(f >> s) || s == "max") return std::numeric_limits<double>::infinity();
  try {
    return std::stod(s);
  } catch (const std::exception&) {
    return std::numeric_limits<double>::infinity();
  }
}

double mem_available() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  double kb = 0;
  std::string unit;
  while (f >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024.0;
  return std::numeric_limits<double>::infinity();
}

}  // namespace

MemoryEstimate estimate_em_memory(const EmMemoryInputs& in) {
  const double d = static_cast<double>(in.num_features), b = static_cast<double>(in.block_rows);
  const double t = std::max(1, in.threads);
  const double blocks = (in.prefetch + t + 2) * b * d * (8.0 + 4.0);
  const double stats = (t + 2) * static_cast<double>(in.num_stats) * (8.0 + 32.0);
  const double scratch = t * static_cast<double>(in.scratch_doubles) * 8.0;
  const double model = 4.0 * static_cast<double>(in.parameter_doubles) * 8.0;
  const double cache = static_cast<double>(in.cache_bytes);
  MemoryEstimate e;
  e.bytes = blocks + stats + scratch + model + cache + in.row_state_bytes + 64.0 * 1024 * 1024;  // + libraries and runtime
  e.breakdown = fmt::format("blocks {:.2f} GiB, statistics {:.2f} GiB, scratch {:.2f} GiB, model {:.2f} GiB, cache {:.2f} GiB",
                            blocks / kGiB, stats / kGiB, scratch / kGiB, model / kGiB, cache / kGiB);
  if (in.row_state_bytes > 0) e.breakdown += fmt::format(", row state {:.2f} GiB", in.row_state_bytes / kGiB);
  return e;
}

double available_memory_bytes(double budget_gib, int ranks_on_node) {
  if (budget_gib > 0) return budget_gib * kGiB;
  const double limit = std::min({read_number("/sys/fs/cgroup/memory.max"),
                                 read_number("/sys/fs/cgroup/memory/memory.limit_in_bytes"), mem_available()});
  return limit / std::max(1, ranks_on_node);
}

std::string gib_text(double bytes) {
  const double g = bytes / kGiB;
  // Three significant digits (at least one decimal), so a need just above a small budget
  // does not print as the budget: 0.0523 against 0.0500, not 0.1 against 0.1.
  const int decimals = g > 0 ? std::clamp(2 - static_cast<int>(std::floor(std::log10(g))), 1, 6) : 1;
  return fmt::format("{:.{}f}", g, decimals);
}

void check_memory(const MemoryEstimate& need, double available_bytes, const std::string& advice) {
  if (need.bytes <= available_bytes) return;
  throw_usage(fmt::format("this fit needs about {} GiB per rank ({}), but only {} GiB are available per rank; {}",
                          gib_text(need.bytes), need.breakdown, gib_text(available_bytes), advice));
}

double check_fit_memory(const models::ModelSpec& spec, const models::OptionValues& values, const FitCommon& c,
                        Index data_features, Index model_features, Index local_rows, std::size_t cache_bytes,
                        double available_bytes) {
  EmMemoryInputs m;
  m.num_features = data_features;
  m.block_rows = c.block_rows;
  m.prefetch = c.prefetch;
  m.threads = c.threads;
  m.cache_bytes = cache_bytes;
  if (spec.memory) {
    const models::MemoryNeeds n = spec.memory(values, model_features, c.block_rows);
    m.num_stats = n.num_stats;
    m.parameter_doubles = n.parameter_doubles;
    m.scratch_doubles = n.scratch_doubles;
    m.row_state_bytes = std::min(static_cast<double>(n.row_state_bytes) * static_cast<double>(local_rows),
                                 static_cast<double>(n.max_row_state_bytes));
  }
  // Refused only if the fit cannot run without its per-row state; the state takes what is
  // left (up to the model's cap where the rows are not known here: documents).
  const double wanted = local_rows > 0 || !spec.memory
                            ? m.row_state_bytes
                            : static_cast<double>(spec.memory(values, model_features, c.block_rows).max_row_state_bytes);
  m.row_state_bytes = 0;
  const MemoryEstimate base = estimate_em_memory(m);
  check_memory(base, available_bytes, spec.memory_advice);
  return std::clamp(available_bytes - base.bytes, 0.0, wanted);
}

}  // namespace latent::train
