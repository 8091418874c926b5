#pragma once
/// \file What a model's own task function (ModelSpec::own_tasks[i].run) gets from its
/// caller: the parsed options and the services every apply command shares
/// (docs/ARCHITECTURE.md §3): the output file checked and locked, per-row outputs written
/// by every rank and assembled on rank 0, the result line printed once. The command line
/// implements it; the model's task function owns only its computation and its JSON.
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "latent/comm/communicator.hpp"
#include "latent/core/log.hpp"
#include "latent/core/types.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/models/registry.hpp"

namespace latent::train {

/// The options every model task takes, after parsing.
struct TaskCommon {
  std::string model;   ///< --model: the model file
  std::string data;    ///< --data (empty if the task reads none)
  std::string output;  ///< the output flag's value (--output or --per-sample); empty if none
  bool overwrite = false;
  int threads = 1;  ///< resolved (never 0)
  Index block_rows = 2048;
  int prefetch = 4;
};

/// One dataset of a per-row output: `cols` columns of `type`, or one value per row if 0.
struct OutputColumn {
  std::string name;
  io::DType type = io::DType::kFloat64;
  Index cols = 0;
};

/// Per-row outputs of a data pass: each rank writes its contiguous rows (row 0 = its first
/// row) as it goes; finish() assembles every rank's rows in rank order into the output
/// file on rank 0, written atomically (docs/FORMATS.md "Predictions"). Destroying it before
/// finish() removes what this rank wrote.
class RowOutput {
 public:
  virtual ~RowOutput() = default;
  /// Local; one thread at a time. Throws io errors (exit 74 on a full disk).
  virtual void write_rows(const std::string& name, Index local_row, const RowMatrix& rows) = 0;
  virtual void write_rows(const std::string& name, Index local_row, std::span<const std::int64_t> rows) = 0;
  /// Collective (errors agreed): root attributes format_version, model (the kind),
  /// data, and every rank's rows; `total_rows` is the global row count.
  virtual void finish(Index total_rows) = 0;
};

/// A progress line (done/total, rate, time left) of a long local loop; see
/// TaskRun::progress.
class ProgressLine {
 public:
  virtual ~ProgressLine() = default;
  /// `done` units of the total so far (non-decreasing). Local; cheap (redraws at most
  /// twice a second).
  virtual void update(Index done) = 0;
  /// Ends the line. Local.
  virtual void finish() = 0;
};

class TaskRun {
 public:
  virtual ~TaskRun() = default;
  virtual const comm::Communicator& comm() const = 0;
  /// Rank 0's progress lines (stderr); silent elsewhere.
  virtual const Logger& log() const = 0;
  /// The task's own options (TaskSpec::options), validated.
  virtual const models::OptionValues& options() const = 0;
  virtual const TaskCommon& common() const = 0;
  /// Checks that common().output may be written (absent, or --overwrite); exit 73
  /// otherwise. Collective, errors agreed. Call before reading any data.
  virtual void check_output() = 0;
  /// A per-row output to common().output with these columns and this rank's row count.
  /// Collective (the output is locked by rank 0).
  virtual std::unique_ptr<RowOutput> row_output(std::vector<OutputColumn> columns, Index local_rows) = 0;
  /// Prints the command's result (one JSON line on stdout) on rank 0; local.
  virtual void print(const nlohmann::json& result) = 0;
  /// A progress line for `total` `unit`s of this rank's work: drawn on rank 0's stderr
  /// when it is a terminal (rank 0's own part stands for all: the ranks' parts are equal
  /// in size), silent elsewhere and in logs. Local. The default draws nothing.
  virtual std::unique_ptr<ProgressLine> progress(const std::string& label, Index total, const std::string& unit) {
    (void)label, (void)total, (void)unit;
    struct Silent final : ProgressLine {
      void update(Index) override {}
      void finish() override {}
    };
    return std::make_unique<Silent>();
  }
};

}  // namespace latent::train
