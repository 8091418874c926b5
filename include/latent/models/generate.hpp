#pragma once
/// \file What every synthetic-data generator (`latent generate NAME`, a model's
/// Task::kGenerate) shares: the common options, the shard layout over ranks, the output
/// directory published whole, and the closing log line. Row (document) i of any generator
/// is a pure function of (seed, i), so the data do not depend on the rank count, the thread
/// count or the number of shards.
#include <cstdint>
#include <string>
#include <vector>

#include "latent/io/block_plan.hpp"
#include "latent/models/registry.hpp"

namespace latent::train {
class TaskRun;
}

namespace latent::models {

/// --n-samples, --n-components, --shards, --rows-per-shard, --seed, --true-model, with
/// `rows` and `components` naming what N and K count ("rows N", "mixture components K").
std::vector<OptionSpec> generate_options(const std::string& rows, const std::string& components);

struct GeneratePlan {
  Index n_samples = 0, n_components = 0, num_shards = 0;
  std::uint64_t seed = 0;
  std::string output;  ///< the data directory to create (no trailing slash)
  std::string truth;   ///< where the generating model goes; empty: not written
  std::string config;  ///< JSON: generated, seed, n_samples, n_components, n_features
  io::ShardLayout layout;
  io::BlockRange mine;  ///< this rank's shards [first, last)
};

/// Reads and checks the common options (N in [1, 2^46), K >= 1, 1 <= S <= N, S < 10^5;
/// the aliases --n-documents, --n-topics, --docs-per-shard where the spec declares them)
/// and this rank's shards. `n_features` (D or V) goes into the config. Throws
/// Error(kUsage). Local.
GeneratePlan plan_generate(const train::TaskRun& run, Index n_features, const std::string& model);

/// The closing log line on rank 0: what was written, where, on how many ranks, how fast.
void log_generated(const train::TaskRun& run, const GeneratePlan& plan, const std::string& rows,
                   const std::string& features, Index n_features, double seconds);

}  // namespace latent::models
