#pragma once
/// \file The model registry (docs/ARCHITECTURE.md §3): one ModelSpec per model, holding
/// everything the command line needs to know about it (its options with types, defaults,
/// ranges and units; its memory estimate; how to fit it and load its file; the tasks it
/// supports). The command line is generated from these specs and names no model.
///
/// Standard library only, so any layer may include it. Adding a model: a spec function in
/// the model's folder and one line in registry() (src/models/registry.cpp).
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace latent::train {
class FitRun;
struct SelectRun;
class TaskRun;
}

namespace latent::models {

class FittedModel;

/// What a model's data look like: dense rows (DenseDataset shards) or documents of counts
/// (CountsDataset CSR shards).
enum class DataKind { kDense, kCounts };
std::string_view data_kind_name(DataKind kind);

/// The commands besides `fit` that a model may support.
enum class Task { kScore, kPredict, kTransform, kSample, kImpute, kSelect, kGenerate, kExport };
std::string_view task_name(Task task);

enum class OptionType {
  kInt,   ///< a 64-bit integer
  kReal,  ///< a double
  kText,  ///< a string, optionally one of `choices`
  kFlag,  ///< a switch without a value (false unless given)
};

/// One model option as `--flag VALUE`. The range is checked by validate_options() before
/// the fit starts, so a bad value exits 64 naming the flag.
struct OptionSpec {
  std::string flag;           ///< the command-line name without dashes: "n-components"
  OptionType type = OptionType::kInt;
  std::string default_value;  ///< as printed and parsed ("1e-06", "0.7"); empty: no default
  std::string help;           ///< one line (or a few); the unit goes in `unit`
  std::string unit;           ///< "nats/sample", "epochs", ...; empty if none
  bool required = false;
  std::optional<double> min, max;  ///< numeric range (kInt, kReal)
  bool min_exclusive = false, max_exclusive = false;
  /// A value outside the range that selects a documented default rule (e.g. -1 for "1/K").
  std::optional<double> sentinel;
  std::vector<std::string> choices;  ///< kText: the allowed values (empty: any text)
  /// This flag is another name of option `alias_of` (which holds the value); giving both
  /// is a usage error.
  std::string alias_of;
};

using OptionValue = std::variant<std::int64_t, double, std::string, bool>;

/// The parsed values of a model's options, by flag name (defaults filled in).
class OptionValues {
 public:
  void set(const std::string& flag, OptionValue value, bool given);
  /// Typed access. Throws std::out_of_range for an unknown flag, std::bad_variant_access
  /// for the wrong type (both programming errors).
  std::int64_t integer(std::string_view flag) const;
  double real(std::string_view flag) const;
  const std::string& text(std::string_view flag) const;
  bool flag(std::string_view flag) const;
  /// True if the value came from the command line (not the default).
  bool given(std::string_view flag) const;
  const std::map<std::string, std::pair<OptionValue, bool>, std::less<>>& all() const { return values_; }

 private:
  const std::pair<OptionValue, bool>& at(std::string_view flag) const;
  std::map<std::string, std::pair<OptionValue, bool>, std::less<>> values_;
};

/// What a fit holds per rank besides the data blocks, in doubles (train::EmMemoryInputs):
/// the statistics buffer, one copy of the parameters, per-thread scratch; and state kept
/// per local row between passes, in bytes (k-means' distance bounds), up to a cap.
struct MemoryNeeds {
  std::int64_t num_stats = 0;
  std::int64_t parameter_doubles = 0;
  std::int64_t scratch_doubles = 0;
  std::int64_t row_state_bytes = 0;      ///< per local row
  std::int64_t max_row_state_bytes = 0;  ///< per rank, at most
};

/// A task that a model serves with code of its own (count data, the VAE's estimators)
/// rather than through the generic FittedModel path. The command line adds the options
/// every task takes (--model; --data and the stream options if `reads_data`; the output
/// flag and --overwrite if `output_flag` is set) to the task's own `options`, parses and
/// validates them, and calls `run` (docs/ARCHITECTURE.md §3).
struct TaskSpec {
  Task task = Task::kScore;
  std::string usage;  ///< the usage line of --help: "latent score --model LDA.h5 --data DIR"
  bool reads_data = true;
  std::string data_help;    ///< what --data must be ("count dataset directory, same vocabulary")
  std::string output_flag;  ///< "output", "per-sample" or "" (no output file)
  bool output_required = true;
  std::string output_help;  ///< the output file's layout
  std::vector<OptionSpec> options;
  /// Runs the task (collective); returns the exit code. Throws latent::Error.
  std::function<int(train::TaskRun&)> run;
  std::vector<std::string> examples;  ///< command lines for the EXAMPLES section of --help
  bool reads_model = true;    ///< takes --model (generate does not: `latent generate NAME`)
  bool takes_threads = false;  ///< takes --threads without reading data (generate)
};

struct ModelSpec {
  std::string name;     ///< `latent fit NAME`, and the `model` attribute of its files
  std::string summary;  ///< one line for the top-level help
  DataKind data = DataKind::kDense;
  std::vector<OptionSpec> options;  ///< the model's own options (the common ones are added by the CLI)
  std::vector<Task> tasks;
  std::vector<std::string> examples;  ///< command lines for the EXAMPLES section of --help
  /// Memory from the options, D (dense) or the vocabulary size V (counts), and the block rows.
  std::function<MemoryNeeds(const OptionValues&, std::int64_t num_features, std::int64_t block_rows)> memory;
  std::string memory_advice;  ///< what to change when the estimate does not fit
  /// What the fit's per-iteration objective and change are, for the iteration log's labels
  /// (`--log-json` lines carry objective_name, objective_unit and change_name).
  std::string objective_name = "mean_log_likelihood";
  std::string objective_unit = "nats/sample";
  std::string change_name = "objective change";
  /// Runs the fit (collective); returns the exit code. Throws latent::Error.
  std::function<int(train::FitRun&)> fit;
  /// Opens a model file of this kind for score/predict/transform/sample/impute/info;
  /// empty if the model's tasks go through their own code (lda, vae, mmm for now).
  std::function<std::unique_ptr<FittedModel>(const std::string& path)> load;
  /// `latent select`: fits one candidate with `values` (the grid's values filled in) on
  /// the run's training rows and stores it in run.result. Collective. Empty unless the
  /// model declares Task::kSelect.
  std::function<void(train::SelectRun& run, const OptionValues& values)> select;
  /// The integer options `latent select` may range over (comma-separated lists), e.g.
  /// {"n-components"}, or {"n-components", "n-factors"} for a grid over K and L.
  std::vector<std::string> select_grid;
  /// The tasks this model serves with its own code (each also listed in `tasks`).
  std::vector<TaskSpec> own_tasks;
  /// `latent info` text of a model file of this kind (local, rank 0); empty: the generic
  /// FittedModel::describe() of `load`.
  std::function<std::string(const std::string& path, int top_words)> describe;

  bool supports(Task task) const;
  /// The model's own TaskSpec for `task`, or nullptr (the generic path serves it).
  const TaskSpec* own_task(Task task) const;
  const OptionSpec* find_option(std::string_view flag) const;
};

/// Every registered model, in the order of the help text.
const std::vector<ModelSpec>& registry();
/// The spec named `name`, or nullptr.
const ModelSpec* find_model(std::string_view name);
/// The registered names joined by ", ".
std::string model_names();

/// Checks every value against its spec (range, sentinel, choices, aliases given twice).
/// Throws Error(kUsage) naming the flag: "--tol must be >= 0 (got -1)".
void validate_options(const ModelSpec& spec, const OptionValues& values);
/// The same for any list of options; `owner` ends the "--x is required for OWNER" message.
void validate_options(const std::vector<OptionSpec>& options, const OptionValues& values, const std::string& owner);

/// The candidate nearest to `word` by edit distance (for "did you mean"), or "" if none is
/// close (distance more than a third of the word's length, at least 2).
std::string nearest(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace latent::models
