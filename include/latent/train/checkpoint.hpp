#pragma once
/// \file Checkpoints and the iteration-boundary protocol (docs/ARCHITECTURE.md §6 rules 2-4).
///
/// A checkpoint is an HDF5 file `ckpt-<run>-<iteration>.h5` in the checkpoint directory,
/// written by rank 0 to a temporary name, fsynced and renamed; the newest `keep` are kept.
/// It records the format version, the model, the configuration (JSON) and its hash, a
/// fingerprint of the input shards, a CRC-32 per dataset, and the training state: every
/// array and scalar needed to continue exactly (parameters, iteration, history, best run
/// so far). Training state is global (identical on all ranks), so a checkpoint can be
/// resumed with any number of ranks and gives the same bits as an uninterrupted fit.
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "latent/comm/communicator.hpp"
#include "latent/core/log.hpp"
#include "latent/core/types.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/io/dense_dataset.hpp"

namespace latent::train {

inline constexpr int kCheckpointFormatVersion = 1;

/// Named arrays and scalars: what a trainer needs to continue.
struct TrainState {
  std::map<std::string, RowMatrix> arrays;
  std::map<std::string, double> scalars;
  /// Throw Error(kInput) naming the key if it is missing.
  const RowMatrix& array(const std::string& name) const;
  double scalar(const std::string& name) const;
};

struct CheckpointOptions {
  std::string dir;               ///< empty: no checkpoints
  int every = 1;                 ///< write every N iterations (0: only on stop)
  double interval_seconds = 0;   ///< also write when this much time passed (0: off)
  bool resume = false;           ///< start from the newest valid checkpoint in dir
  int keep = 3;                  ///< checkpoints kept
};

/// The input's identity: shard names, rows, features, dtypes and byte sizes, as JSON.
std::string data_fingerprint(const io::DenseDatasetInfo& info);
/// The same for a count dataset (shards, documents, nonzeros, bytes, vocabulary size).
std::string data_fingerprint(const io::CountsDatasetInfo& info);

/// Who a checkpoint belongs to: one fit, continued across resumes (a resume adopts the
/// identity of the checkpoint it starts from). Recorded as root attributes run_id,
/// run_started, output and writer (host and pid of the process that wrote the file).
struct RunIdentity {
  std::string id;       ///< 16 hex digits, drawn when the fit first started
  std::string started;  ///< UTC, ISO 8601
  std::string output;   ///< the fit's --output
};

/// A new identity for a fit writing `output` (rank 0 draws it; broadcast it). Local.
RunIdentity new_run_identity(const std::string& output);

/// Checkpoint files in one directory. Local; rank 0 writes, any rank may read.
class CheckpointStore {
 public:
  CheckpointStore(CheckpointOptions options, std::string model, std::string config_json, std::string fingerprint);
  /// The shards' content hashes (content_json, latent/train/content_hash.hpp), recorded in
  /// every checkpoint written after this call and compared by find_latest.
  void set_data_content(std::string content_json) { content_ = std::move(content_json); }
  /// The run identity written into every checkpoint from now on.
  void set_run(RunIdentity run) { run_ = std::move(run); }
  const RunIdentity& run() const noexcept { return run_; }
  /// The identity recorded in checkpoint `path` (empty fields for files written before
  /// identities were recorded). Throws Error(kInput) if the file is not readable.
  RunIdentity read_run(const std::string& path) const;
  /// Whether the directory holds any checkpoint file (valid or not). Local.
  bool has_checkpoints() const;
  /// Writes state as checkpoint (run, iteration) atomically and prunes old ones. Throws
  /// Error(kOutput/kIo) (the previous checkpoints stay valid; no temporary is left).
  std::string write(const TrainState& state, std::int64_t run, std::int64_t iteration) const;
  /// The newest checkpoint that opens and passes its checksums; damaged ones are
  /// skipped with a warning naming why. Throws Error(kUsage) if the newest valid one was
  /// made with another configuration or input, naming what changed (with data content
  /// set: the shards whose bytes differ). nullopt if none.
  std::optional<std::string> find_latest(const Logger& log) const;
  TrainState read(const std::string& path) const;
  const CheckpointOptions& options() const noexcept { return options_; }

 private:
  CheckpointOptions options_;
  std::string model_, config_json_, fingerprint_, content_;
  RunIdentity run_;
};

/// The interruption points of a long initialisation (k-means|| seeding, the k-means that
/// starts a mixture; docs/FAULTS.md "Checkpoints, preemption and faults"). The initialisation
/// calls at() at each of its boundaries with a snapshot of its progress; after a stop
/// there, the fit resumes with `resumed` pointing at that snapshot and continues from it
/// with the same bits. Both empty: no checkpoints (at() does nothing) and a fresh start.
struct InitPoints {
  const TrainState* resumed = nullptr;
  std::function<void(const std::function<TrainState()>& snapshot)> point;
  void at(const std::function<TrainState()>& snapshot) const {
    if (point) point(snapshot);
  }
  /// The resumed snapshot if it was taken in `stage` (its scalar "stage"), else null.
  const TrainState* resumed_in(double stage) const {
    if (resumed == nullptr) return nullptr;
    const auto it = resumed->scalars.find("stage");
    return it != resumed->scalars.end() && it->second == stage ? resumed : nullptr;
  }
};

/// Drives checkpoints, stop signals and boundary faults for one fit. Collective calls.
class FitControl {
 public:
  /// `store` may be null (no checkpointing; a stop signal then exits 75 without one).
  FitControl(const comm::Communicator& comm, CheckpointStore* store, const Logger& log);

  /// Records the shards' content hashes (content_json) for the checkpoints to carry and
  /// resume() to compare. Call on every rank before resume() (a fit's validating pass
  /// computes them).
  void set_data_content(const std::string& content_json) {
    if (store_ != nullptr) store_->set_data_content(content_json);
  }
  /// Whether checkpoints are written (a --checkpoint-dir was given).
  bool checkpoints() const noexcept { return store_ != nullptr; }

  /// The state to resume from (newest valid checkpoint), when --resume was given and one
  /// exists. Collective: rank 0 chooses, every rank reads the same file.
  std::optional<TrainState> resume();

  /// At the end of an iteration: injects planned faults, agrees across ranks whether a
  /// stop was requested and whether a checkpoint is due, writes `snapshot()` if so, and
  /// throws Error(kRequeue) on every rank after a stop.
  void boundary(std::int64_t run, std::int64_t iteration, const std::function<TrainState()>& snapshot);

  /// Inside an initialisation (after a k-means|| seeding round, a Lloyd iteration of the
  /// k-means that starts a mixture): agrees across ranks whether a stop was requested and
  /// whether `--checkpoint-interval` makes a checkpoint due (`--checkpoint-every` counts EM
  /// iterations and is not applied here), writes `snapshot()` as checkpoint (run, 0) if
  /// so, and throws Error(kRequeue) on every rank after a stop. Collective.
  void init_boundary(std::int64_t run, const std::function<TrainState()>& snapshot);

 private:
  const comm::Communicator& comm_;
  CheckpointStore* store_;
  const Logger& log_;
  double last_write_ = 0;
};

}  // namespace latent::train
