#pragma once
// Shared pieces of the commands: option parsing, the runtime options every data pass takes,
// progress bars and the JSON log. Boost.Program_options lives only in src/cli.
#include <boost/program_options.hpp>
#include <array>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "latent/comm/communicator.hpp"
#include "latent/core/log.hpp"
#include "latent/io/block_source.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/models/registry.hpp"
#include "latent/train/batch_em.hpp"
#include "latent/train/metrics.hpp"

namespace latent::cli {

namespace po = boost::program_options;

/// Everything a command needs from its caller.
struct Context {
  const comm::Communicator& comm;
  std::ostream& out;
  std::ostream& err;
  Logger log;  // rank 0 only
};

/// Parses `args` against `desc` (positional names optional). Returns false if --help was
/// given (usage printed to ctx.out). Throws Error(kUsage) on bad options.
/// `help_tail` is printed after the options (EXAMPLES and the like); every help ends with
/// the EXIT STATUS section. An unknown option's error suggests the nearest one.
bool parse(const std::vector<std::string>& args, const po::options_description& desc, po::variables_map& vm,
           const Context& ctx, const std::string& usage, const po::positional_options_description* positional = nullptr,
           const std::string& help_tail = "");
/// A model's options (ModelSpec::options) as Boost options whose values land in RawValues
/// by flag; `as_text` names options parsed as text instead (select's comma-separated grids).
struct RawValues {
  std::map<std::string, std::int64_t> ints;
  std::map<std::string, double> reals;
  std::map<std::string, std::string> texts;
  std::map<std::string, bool> flags;
};
std::string help_text(const models::OptionSpec& o);
void add_model_options(po::options_description& desc, const std::vector<models::OptionSpec>& options, RawValues& raw,
                       const std::vector<std::string>& as_text = {});
/// The parsed values, typed as the spec says (defaults filled in; a given value is marked
/// given). Options in `as_text` are left out.
models::OptionValues typed_values(const std::vector<models::OptionSpec>& options, const RawValues& raw,
                                  const po::variables_map& vm, const std::vector<std::string>& as_text = {});

/// The EXIT STATUS section of every --help (docs/FAULTS.md "Exit codes").
std::string exit_status_text();
/// One line per registered model for the top-level and `fit` help.
std::string fit_models_help();

/// Options of every streamed pass: --threads, --block-rows, --prefetch, --cache-mb.
struct StreamOptions {
  int threads = 0;  // 0: auto
  Index block_rows = 2048;
  int prefetch = 4;
  Index cache_mb = 0;
  double memory_budget_gib = 0;  // 0: detect (cgroup limit / MemAvailable, per rank on the node)
  bool allow_missing = false;    // NaN entries are missing values (set by commands, not an option)
  bool float32 = false;          // keep float32 shards as float32 (set by commands, not an option)
};
void add_stream_options(po::options_description& desc, StreamOptions& o);
/// --max-chunk-mb (io::set_max_chunk_bytes), `default_mb` unless given. add_stream_options adds it.
void add_chunk_option(boost::program_options::options_description& desc, int default_mb = 64);
/// The cores a rank has: SLURM_CPUS_PER_TASK, else the node's cores
/// (std::thread::hardware_concurrency) divided by the ranks on this node, at least 1.
int cores_per_rank();
/// --threads 0 resolves to cores_per_rank().
int resolve_threads(int requested);
/// Whether a rank running `threads` threads (0: auto) has a core left for an I/O thread
/// (io::BlockSourceOptions::io_thread): cores_per_rank() > threads.
bool io_thread_has_core(int threads);
/// MPI ranks on this node (OMPI_COMM_WORLD_LOCAL_SIZE, SLURM_NTASKS_PER_NODE, else 1).
int ranks_on_node();

/// Whether a pass reads /labels.
enum class Labels { kNo, kRequired, kIfPresent };
/// Opens a dense dataset on every rank and builds this rank's BlockSource. Collective.
std::unique_ptr<io::BlockSource> open_source(const Context& ctx, const std::string& data, const StreamOptions& o,
                                             Labels labels);

/// Per-row outputs of a data pass (predict, transform, per-sample scores). Each rank writes
/// its contiguous rows to a part file OUT.part-R-of-N as it goes (memory: a block); finish()
/// assembles the parts in rank order into OUT on rank 0 (written atomically) and removes
/// them. The constructor and finish() are collective (errors agreed); write_rows is local,
/// from one thread at a time.
class RowParts {
 public:
  struct Column {
    std::string name;
    io::DType type;
    Index cols;  ///< 0: one value per row (a vector)
  };
  RowParts(const Context& ctx, std::string output, std::vector<Column> columns, Index local_rows);
  /// Removes this rank's part file if finish() did not complete (an error on the way).
  ~RowParts();
  RowParts(const RowParts&) = delete;
  RowParts& operator=(const RowParts&) = delete;
  void write_rows(const std::string& name, Index local_row, const RowMatrix& rows) { part_->write_rows(name, local_row, rows); }
  void write_rows(const std::string& name, Index local_row, std::span<const std::int64_t> rows) {
    part_->write_rows(name, local_row, rows);
  }
  /// Root attributes format_version, model (the model's kind, read from its file),
  /// model_path, data and, if `kind` is not empty, kind (an output that is a data shard,
  /// such as impute's: "dense"), then every rank's rows.
  /// Collective.
  void finish(bool overwrite, const std::string& model, const std::string& data, Index total_rows,
              const std::string& kind = "");

 private:
  std::string part_name(int rank) const;
  const Context& ctx_;
  std::string output_;
  std::unique_ptr<io::OutputLock> lock_;  // rank 0
  std::string suffix_;                    // rank 0's io::temp_suffix(), on every rank
  bool finished_ = false;
  std::vector<Column> columns_;
  Index local_rows_;
  std::unique_ptr<io::H5Writer> part_;
};

/// Prints iteration lines on rank 0 and writes them as JSON lines to --log-json.
/// With `profile` (--profile) every iteration line also holds, per rank, where the
/// iteration's time went (docs/COMMANDS.md, `--profile`), and done() prints the run's
/// totals; both are then collective (one allgather of 10 doubles), so every rank must make
/// the same calls.
class IterationLog {
 public:
  /// An existing JSON log is appended to, never truncated; the first line this run writes
  /// is a "start" event (time, model, output, ranks, threads, resume, kernel_variant). Every line has an
  /// ISO 8601 UTC "time", the rank count, and the objective's name and unit
  /// (ModelSpec::objective_name, objective_unit). `threads`: per rank, recorded.
  IterationLog(const Context& ctx, std::string model, const std::string& json_path, const std::string& output,
               bool resume = false, bool profile = false, int threads = 0);
  void operator()(const train::IterationRecord& r);
  /// The "done" line: totals, the output path and exit_status 0.
  void done(const train::EmResult& result, double total_seconds);
  /// The line of a fit that ended with an error or a stop signal: event "stopped" (exit
  /// 75) or "failed", exit_status and the message. Local (rank 0 writes).
  void ended(int exit_status, const std::string& message);
  /// On a terminal, iteration lines then show "i/max" and the time left (0: unknown).
  void set_max_iterations(Index max_iterations) { max_iterations_ = max_iterations; }
  train::IterationObserver observer() {
    return [this](const train::IterationRecord& r) { (*this)(r); };
  }

 private:
  /// Every rank's profile row (seconds, read wait, read, compute, allreduce, M-step,
  /// bytes, collectives, peak RSS, rows settled by distance bounds) as named per-rank
  /// arrays. Collective.
  nlohmann::json gather_profile(double seconds, const std::array<double, 8>& counters) const;
  /// The fields every JSON line carries.
  nlohmann::json line(const char* event) const;
  const Context& ctx_;
  std::string model_, output_;
  std::unique_ptr<std::ofstream> json_;
  bool profile_ = false;
  int threads_ = 0;
  Index max_iterations_ = 0;
  double seconds_so_far_ = 0;  // this run's iterations, for the time left
  Index iterations_so_far_ = 0;
};

/// A progress bar on stderr when it is a terminal; silent otherwise.
/// Shows done/total as a bar with the percentage, the rate (`unit`/s) and the time left;
/// with an unknown total (< 0) the count and the rate. Redrawn at most twice a second.
class Progress {
 public:
  Progress(std::ostream& err, bool enabled, std::string label, Index total, std::string unit = "rows");
  void update(Index done);
  void finish();

 private:
  std::ostream& err_;
  bool enabled_;
  std::string label_, unit_;
  Index total_;
  int last_percent_ = -1;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};
/// "1:02:03" or "2:03" for a duration in seconds.
std::string clock_text(double seconds);
bool stderr_is_tty();

/// `latent score ... --per-sample --output OUT.h5` as `--per-sample OUT.h5` (both forms
/// are accepted). Throws Error(kUsage) for a --per-sample without a file.
std::vector<std::string> per_sample_output_form(std::vector<std::string> args);

int cmd_import(const std::vector<std::string>& args, const Context& ctx);
/// `latent import counts` (src/cli/import_counts.cpp); `args` follow the word "counts".
int cmd_import_counts(const std::vector<std::string>& args, const Context& ctx);
int cmd_fit(const std::vector<std::string>& args, const Context& ctx);
int cmd_score(const std::vector<std::string>& args, const Context& ctx);
int cmd_predict(const std::vector<std::string>& args, const Context& ctx);
int cmd_sample(const std::vector<std::string>& args, const Context& ctx);
int cmd_info(const std::vector<std::string>& args, const Context& ctx);
int cmd_transform(const std::vector<std::string>& args, const Context& ctx);
/// Adds adjusted_rand_index and purity (train::global_clustering_agreement) of this rank's
/// (predicted, true) label counts summed over the ranks to `j`. Collective (one allgather).
void add_agreement(const Context& ctx, const train::ContingencyTable& table, nlohmann::json& j);
int cmd_select(const std::vector<std::string>& args, const Context& ctx);
int cmd_impute(const std::vector<std::string>& args, const Context& ctx);
int cmd_generate(const std::vector<std::string>& args, const Context& ctx);
/// `latent export`: a model in another tool's format (ModelSpec::own_tasks, Task::kExport;
/// LDA: pyLDAvis inputs, gensim). (model_tasks.cpp)
int cmd_export(const std::vector<std::string>& args, const Context& ctx);
int cmd_bench_allreduce(const std::vector<std::string>& args, const Context& ctx);

/// The `model` attribute of the file named by --model in args, or "" if there is none or
/// it cannot be read. Local. (model_tasks.cpp)
std::string model_kind_of(const std::vector<std::string>& args);
using TaskHandler = std::function<int(const std::vector<std::string>&, const Context&)>;
/// For the model file named by --model in args: throws Error(kUsage) if its registered
/// spec does not declare `task`; returns a handler that parses the task's options and runs
/// the spec's own task (ModelSpec::own_tasks: count data, the VAE's estimators), or an
/// empty function when the generic FittedModel path serves it (or there is no readable
/// model: the command reports it). Local. (model_tasks.cpp)
TaskHandler model_task_handler(const std::vector<std::string>& args, models::Task task);
/// `latent info` text of a model file of this kind whose spec describes its own files
/// (ModelSpec::describe), or "". Local.
std::string describe_model_file(const std::string& kind, const std::string& path, int top_words);

}  // namespace latent::cli
