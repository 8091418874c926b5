// The command line's half of ModelSpec::own_tasks: for a model file whose spec serves a
// task with its own code, the task's options (the common ones plus TaskSpec::options) are
// parsed, validated and handed to the spec's run function through a TaskRun. Names no
// model (docs/ARCHITECTURE.md §3).
#include <filesystem>
#include <utility>

#include <fmt/format.h>

#include "common.hpp"
#include "latent/core/error.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/train/task_run.hpp"

namespace latent::cli {
namespace {

using models::Task;

class RowPartsOutput final : public train::RowOutput {
 public:
  RowPartsOutput(const Context& ctx, const train::TaskCommon& common, std::vector<RowParts::Column> columns,
                 Index local_rows)
      : common_(common), parts_(ctx, common.output, std::move(columns), local_rows) {}
  void write_rows(const std::string& name, Index local_row, const RowMatrix& rows) override {
    parts_.write_rows(name, local_row, rows);
  }
  void write_rows(const std::string& name, Index local_row, std::span<const std::int64_t> rows) override {
    parts_.write_rows(name, local_row, rows);
  }
  void finish(Index total_rows) override { parts_.finish(common_.overwrite, common_.model, common_.data, total_rows); }

 private:
  const train::TaskCommon& common_;
  RowParts parts_;
};

class CliTaskRun final : public train::TaskRun {
 public:
  CliTaskRun(const Context& ctx, models::OptionValues values, train::TaskCommon common)
      : ctx_(ctx), values_(std::move(values)), common_(std::move(common)) {}
  const comm::Communicator& comm() const override { return ctx_.comm; }
  const Logger& log() const override { return ctx_.log; }
  const models::OptionValues& options() const override { return values_; }
  const train::TaskCommon& common() const override { return common_; }
  void check_output() override {
    comm::run_agreed(ctx_.comm, [&] {
      if (ctx_.comm.is_root()) io::check_output_path(common_.output, common_.overwrite);
    });
  }
  std::unique_ptr<train::RowOutput> row_output(std::vector<train::OutputColumn> columns, Index local_rows) override {
    std::vector<RowParts::Column> cols;
    for (auto& c : columns) cols.push_back({std::move(c.name), c.type, c.cols});
    return std::make_unique<RowPartsOutput>(ctx_, common_, std::move(cols), local_rows);
  }
  void print(const nlohmann::json& result) override {
    if (ctx_.comm.is_root()) ctx_.out << result.dump() << '\n';
  }
  std::unique_ptr<train::ProgressLine> progress(const std::string& label, Index total, const std::string& unit) override {
    struct Line final : train::ProgressLine {
      Progress bar;
      Line(const Context& ctx, const std::string& l, Index t, const std::string& u)
          : bar(ctx.err, ctx.comm.is_root() && stderr_is_tty(), l, t, u) {}
      void update(Index done) override { bar.update(done); }
      void finish() override { bar.finish(); }
    };
    return std::make_unique<Line>(ctx_, label, total, unit);
  }

 private:
  const Context& ctx_;
  models::OptionValues values_;
  train::TaskCommon common_;
};

int run_own_task(const models::ModelSpec& spec, const models::TaskSpec& task, const std::vector<std::string>& args,
                 const Context& ctx) {
  train::TaskCommon common;
  StreamOptions stream;
  RawValues raw;
  const std::string command(models::task_name(task.task));
  po::options_description desc(fmt::format("latent {} options ({})", command, spec.name));
  if (task.reads_model)
    desc.add_options()("model", po::value(&common.model)->required(),
                       fmt::format("model file written by `latent fit {}`", spec.name).c_str());
  if (task.reads_data)
    desc.add_options()("data", po::value(&common.data)->required(),
                       (task.data_help.empty() ? std::string("data directory") : task.data_help).c_str());
  if (!task.output_flag.empty()) {
    auto* v = po::value(&common.output);
    if (task.output_required) v->required();
    else v->default_value("");
    desc.add_options()(task.output_flag.c_str(), v, task.output_help.c_str())(
        "overwrite", po::bool_switch(&common.overwrite), "replace an existing output (atomically)");
  }
  add_model_options(desc, task.options, raw);
  if (task.reads_data) add_stream_options(desc, stream);
  else if (task.takes_threads)
    desc.add_options()("threads", po::value(&stream.threads)->default_value(0), "TBB threads per rank (0: auto)");
  po::variables_map vm;
  std::string help_tail;
  if (!task.examples.empty()) {
    help_tail = "EXAMPLES\n";
    for (const std::string& e : task.examples) help_tail += "  " + e + "\n";
    help_tail += "\n" + exit_status_text();
  }
  if (!parse(args, desc, vm, ctx, task.usage, nullptr, help_tail)) return 0;
  const models::OptionValues values = typed_values(task.options, raw, vm);
  models::validate_options(task.options, values, fmt::format("`latent {}` of a {} model", command, spec.name));
  common.threads = resolve_threads(stream.threads);
  common.block_rows = stream.block_rows;
  common.prefetch = stream.prefetch;
  CliTaskRun run(ctx, values, std::move(common));
  return task.run(run);
}

}  // namespace

int cmd_generate(const std::vector<std::string>& args, const Context& ctx) {
  std::vector<std::string> names;
  for (const models::ModelSpec& s : models::registry())
    if (s.own_task(Task::kGenerate)) names.push_back(s.name);
  std::string usage, list;
  for (const std::string& n : names) {
    usage += (usage.empty() ? "" : "\n       ") + models::find_model(n)->own_task(Task::kGenerate)->usage;
    list += (list.empty() ? "" : ", ") + n;
  }
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    if (!args.empty()) {
      if (ctx.comm.is_root()) ctx.out << "Usage: " << usage << "\n(see latent generate NAME --help; NAME: " << list << ")\n";
      return 0;
    }
    throw_usage("usage: " + usage);
  }
  const models::ModelSpec* spec = models::find_model(args[0]);
  const models::TaskSpec* task = spec ? spec->own_task(Task::kGenerate) : nullptr;
  if (!task) {
    const std::string near = models::nearest(args[0], names);
    throw_usage(fmt::format("latent generate: no generator '{}' (generators: {}){}", args[0], list,
                            near.empty() ? "" : "; did you mean " + near + "?"));
  }
  return run_own_task(*spec, *task, std::vector<std::string>(args.begin() + 1, args.end()), ctx);
}

int cmd_export(const std::vector<std::string>& args, const Context& ctx) {
  if (const auto handler = model_task_handler(args, Task::kExport)) return handler(args, ctx);
  // No readable model file of a kind that exports (--help, no --model, a missing or damaged
  // file): the first exporting model's task parses the options and reports the error, so
  // `latent export --help` shows the options and a missing file exits 66 as elsewhere.
  for (const models::ModelSpec& s : models::registry())
    if (const models::TaskSpec* task = s.own_task(Task::kExport)) return run_own_task(s, *task, args, ctx);
  throw_usage("latent export: no registered model exports");
}

std::string model_kind_of(const std::vector<std::string>& args) {
  for (std::size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i] == "--model") {
      std::error_code ec;
      if (!std::filesystem::is_regular_file(args[i + 1], ec)) return "";
      try {
        const io::H5Reader r(args[i + 1]);
        return r.has_attr("/", "model") ? r.attr_string("/", "model") : "";
      } catch (const Error&) {
        return "";
      }
    }
  return "";
}

TaskHandler model_task_handler(const std::vector<std::string>& args, Task task) {
  const std::string kind = model_kind_of(args);
  const models::ModelSpec* spec = models::find_model(kind);
  if (!spec) return {};
  if (!spec->supports(task)) {
    std::string list;
    for (Task t : spec->tasks) list += (list.empty() ? "" : ", ") + std::string(models::task_name(t));
    throw_usage(fmt::format("a {} model does not support `latent {}` (it supports: {})", kind, models::task_name(task),
                            list));
  }
  const models::TaskSpec* own = spec->own_task(task);
  if (!own) return {};
  return [spec, own](const std::vector<std::string>& a, const Context& ctx) { return run_own_task(*spec, *own, a, ctx); };
}

std::string describe_model_file(const std::string& kind, const std::string& path, int top_words) {
  const models::ModelSpec* spec = models::find_model(kind);
  return spec && spec->describe ? spec->describe(path, top_words) : "";
}

}  // namespace latent::cli
