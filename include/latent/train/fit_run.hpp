#pragma once
/// \file What a model's fit function (ModelSpec::fit) gets from its caller: the parsed
/// options, and the services every fit shares (docs/ARCHITECTURE.md §4): locking the
/// output, opening and validating the data with the memory check from the model's spec,
/// checkpoint control, the iteration log, and saving on rank 0 with errors agreed. The
/// command line implements it; the model's fit function owns only its own configuration,
/// its training call and its file.
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "latent/comm/communicator.hpp"
#include "latent/core/log.hpp"
#include "latent/io/block_source.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/models/fitted_model.hpp"
#include "latent/models/registry.hpp"
#include "latent/train/batch_em.hpp"
#include "latent/train/checkpoint.hpp"
#include "latent/train/data_summary.hpp"

namespace latent::train {

/// The options every fit takes (docs/COMMANDS.md "latent fit"), after parsing.
struct FitCommon {
  std::string data, output, log_json;
  bool overwrite = false, profile = false;
  std::uint64_t seed = 0;
  int threads = 0;              ///< resolved by open_dense/open_counts (0 before: auto)
  Index block_rows = 2048;
  int prefetch = 4;
  Index cache_mb = 0;
  double memory_budget_gib = 0;
  CheckpointOptions checkpoint;
  bool checkpoint_every_given = false;  ///< --checkpoint-every was on the command line
  double watchdog_seconds = 0;
  /// Bytes of per-row state (k-means' distance bounds) a rank may keep: set by
  /// check_fit_memory to what the budget leaves; the state only saves time.
  double row_state_bytes = std::numeric_limits<double>::infinity();
};

/// The memory check of a fit before its first pass (docs/ARCHITECTURE.md §6 rule 5), the
/// one every FitRun (the command line's, the Python module's) makes: the model's needs
/// (spec.memory from `values`, with `model_features` = D for dense data or V for counts)
/// plus `c`'s block rows, prefetch and (resolved) threads, blocks of `data_features`
/// columns (D; 1 for documents), `cache_bytes` of cached data and the model's per-row
/// state for `local_rows` rows, against `available_bytes`. Throws Error(kUsage) with the
/// estimate and spec.memory_advice if it cannot fit without the per-row state; the state
/// (a cache that saves time, never a result) gets what is left, at most what the model
/// keeps: returned, in bytes, for FitCommon::row_state_bytes. Local.
double check_fit_memory(const models::ModelSpec& spec, const models::OptionValues& values, const FitCommon& c,
                        Index data_features, Index model_features, Index local_rows, std::size_t cache_bytes,
                        double available_bytes);

class FitRun {
 public:
  virtual ~FitRun() = default;
  virtual const comm::Communicator& comm() const = 0;
  virtual const Logger& log() const = 0;
  /// The model's own options (ModelSpec::options), validated.
  virtual const models::OptionValues& options() const = 0;
  virtual FitCommon& common() = 0;

  /// Checks and locks --output, resolves --threads, opens the dense data (NaN allowed if
  /// `allow_missing`), refuses the fit if the spec's memory estimate cannot fit, and runs
  /// the validating summary pass (train::summarize). With `float32_blocks` float32 shards
  /// stay float32 in the stream and the cache (io::BlockSourceOptions::float32), for a
  /// model whose E-step accepts them (EmModel::accepts_float32_blocks). Collective; errors
  /// agreed.
  virtual std::unique_ptr<io::BlockSource> open_dense(DataSummary& summary, bool allow_missing,
                                                      bool float32_blocks = false) = 0;
  /// Checks and locks --output, resolves --threads, opens a count dataset (rank 0 also
  /// reads its vocabulary into `vocabulary`) and checks the memory estimate with V as D.
  /// Collective.
  virtual io::CountsDatasetInfo open_counts(std::vector<std::string>& vocabulary) = 0;
  /// Checks and locks --output, resolves --threads and opens the dense data's shard list
  /// (no data pass, no memory check: for models that check their own, such as the VAE).
  /// Collective.
  virtual io::DenseDatasetInfo open_dense_info() = 0;
  /// Bytes this rank may plan for (--memory-budget, else cgroup limit / MemAvailable shared
  /// by the ranks on the node).
  virtual double available_memory_bytes() const = 0;
  /// This rank's CountsSource over `info` with the run's block rows, prefetch and cache.
  virtual std::unique_ptr<io::CountsSource> counts_source(const io::CountsDatasetInfo& info) = 0;
  /// Checkpoint store (with --checkpoint-dir), stop-signal control and watchdog for this
  /// fit; `config` (its "data" entry is dropped) and `fingerprint` identify the run in
  /// every checkpoint. Collective. The control lives as long as the FitRun.
  virtual FitControl* control(nlohmann::json config, const std::string& fingerprint) = 0;
  /// The iteration log (rank 0 prints; --log-json; --profile). Collective per iteration
  /// with --profile.
  virtual IterationObserver observer() = 0;
  /// The run's closing log line with totals. Collective with --profile.
  virtual void done(const EmResult& result, double seconds) = 0;
  /// Runs `write` on rank 0 (the model file), with its error agreed on every rank.
  virtual void save(const std::function<void()>& write) = 0;
  /// Ends a fit: done() with the seconds since `start`, then save(write). Returns the
  /// seconds. Collective.
  double finish(const EmResult& result, std::chrono::steady_clock::time_point start, const std::function<void()>& write) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    done(result, seconds);
    save(write);
    return seconds;
  }
};

/// One `latent select` candidate fit (ModelSpec::select): the training rows and what
/// the candidates share. Filled by the command; the spec's select function sets `result`.
struct SelectRun {
  const comm::Communicator& comm;
  io::BlockSource& source;  ///< this rank's training blocks
  const DataSummary& summary;
  std::string data;  ///< the --data path, for the model files' fit record
  std::uint64_t seed = 0;
  int threads = 1;
  /// State shared by the candidates of one select (e.g. the factor models' scatter
  /// matrix), keyed by the model.
  std::map<std::string, std::shared_ptr<void>> cache;
  struct Candidate {
    std::unique_ptr<models::FittedModel> model;
    EmResult em;
    /// Writes the candidate's model file (rank 0 only; called by the command).
    std::function<void(const std::string& path, bool overwrite)> save;
  };
  Candidate result;
};

}  // namespace latent::train
