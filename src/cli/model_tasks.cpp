// The command line's half of the registry: the tasks whose output a model's files produce
// through command-line code of their own (count data, the VAE's estimators) rather than
// the generic FittedModel path of apply.cpp, one line per (model, task); and the `info`
// text of those files. The commands themselves name no model (docs/ARCHITECTURE.md §3).
#include <filesystem>
#include <map>
#include <utility>

#include <fmt/format.h>

#include "common.hpp"
#include "latent/core/error.hpp"
#include "latent/io/h5_file.hpp"

namespace latent::cli {
namespace {

using models::Task;

const std::map<std::pair<std::string, Task>, TaskHandler>& handlers() {
  static const std::map<std::pair<std::string, Task>, TaskHandler> table{
      {{"lda", Task::kScore}, score_lda},
      {{"lda", Task::kTransform}, transform_lda},
      {{"vae", Task::kScore}, score_vae},
      {{"vae", Task::kTransform}, transform_vae},
      {{"vae", Task::kSample}, sample_vae},
      {{"mmm", Task::kScore}, [](const auto& a, const Context& c) { return apply_mmm("score", a, c); }},
      {{"mmm", Task::kPredict}, [](const auto& a, const Context& c) { return apply_mmm("predict", a, c); }},
      {{"mmm", Task::kTransform}, [](const auto& a, const Context& c) { return apply_mmm("transform", a, c); }},
      {{"mmm", Task::kSample}, sample_mmm},
  };
  return table;
}

}  // namespace

std::string model_kind_of(const std::vector<std::string>& args) {
  for (std::size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i] == "--model") {
      std::error_code ec;
      if (!std::filesystem::is_regular_file(args[i + 1], ec)) return "";
      try {
        const io::H5Reader r(args[i + 1]);
        if (r.has_attr("/", "model")) return r.attr_string("/", "model");
        return r.has("doc_topic_prior") ? "lda" : "";
      } catch (const Error&) {
        return "";
      }
    }
  return "";
}

TaskHandler model_task_handler(const std::vector<std::string>& args, Task task) {
  for (const auto& a : args)
    if (a == "--help" || a == "-h") return {};
  const std::string kind = model_kind_of(args);
  const models::ModelSpec* spec = models::find_model(kind);
  if (!spec) return {};
  if (!spec->supports(task)) {
    std::string list;
    for (Task t : spec->tasks) list += (list.empty() ? "" : ", ") + std::string(models::task_name(t));
    throw_usage(fmt::format("a {} model does not support `latent {}` (it supports: {})", kind, models::task_name(task),
                            list));
  }
  const auto it = handlers().find({kind, task});
  return it == handlers().end() ? TaskHandler{} : it->second;
}

std::string describe_model_file(const std::string& kind, const std::string& path, int top_words) {
  if (kind == "lda") return describe_lda(path, top_words);
  if (kind == "vae") return describe_vae(path);
  if (kind == "mmm") return describe_mmm(path, top_words);
  return "";
}

}  // namespace latent::cli
