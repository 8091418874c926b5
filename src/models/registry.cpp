#include "latent/models/registry.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "latent/core/error.hpp"
#include "specs.hpp"

namespace latent::models {

const std::vector<ModelSpec>& registry() {
  // One line per model, in the order of the help text.
  static const std::vector<ModelSpec> specs{
      gmm_spec(),
      bgmm_spec(),
      kmeans_spec(),
      bmm_spec(),
      mmm_spec(),
      ppca_spec(),
      fa_spec(),
      mfa_spec(),
      lda_spec(),
      vae_spec(),
  };
  return specs;
}

const ModelSpec* find_model(std::string_view name) {
  for (const ModelSpec& s : registry())
    if (s.name == name) return &s;
  return nullptr;
}

std::string model_names() {
  std::string out;
  for (const ModelSpec& s : registry()) out += (out.empty() ? "" : ", ") + s.name;
  return out;
}

std::string_view data_kind_name(DataKind kind) { return kind == DataKind::kDense ? "dense" : "counts"; }

std::string_view task_name(Task task) {
  switch (task) {
    case Task::kScore: return "score";
    case Task::kPredict: return "predict";
    case Task::kTransform: return "transform";
    case Task::kSample: return "sample";
    case Task::kImpute: return "impute";
    case Task::kSelect: return "select";
    case Task::kGenerate: return "generate";
    case Task::kExport: return "export";
  }
  return "?";
}

bool ModelSpec::supports(Task task) const { return std::find(tasks.begin(), tasks.end(), task) != tasks.end(); }

const TaskSpec* ModelSpec::own_task(Task task) const {
  for (const TaskSpec& t : own_tasks)
    if (t.task == task) return &t;
  return nullptr;
}

const OptionSpec* ModelSpec::find_option(std::string_view flag) const {
  for (const OptionSpec& o : options)
    if (o.flag == flag) return &o;
  return nullptr;
}

void OptionValues::set(const std::string& flag, OptionValue value, bool given) {
  values_[flag] = {std::move(value), given};
}

const std::pair<OptionValue, bool>& OptionValues::at(std::string_view flag) const {
  const auto it = values_.find(flag);
  if (it == values_.end()) throw std::out_of_range("no option --" + std::string(flag));
  return it->second;
}

std::int64_t OptionValues::integer(std::string_view flag) const { return std::get<std::int64_t>(at(flag).first); }
double OptionValues::real(std::string_view flag) const { return std::get<double>(at(flag).first); }
const std::string& OptionValues::text(std::string_view flag) const { return std::get<std::string>(at(flag).first); }
bool OptionValues::flag(std::string_view flag) const { return std::get<bool>(at(flag).first); }
bool OptionValues::given(std::string_view flag) const {
  const auto it = values_.find(flag);
  return it != values_.end() && it->second.second;
}

namespace {

std::string number_text(double v) { return fmt::format("{:g}", v); }

std::string range_text(const OptionSpec& o) {
  const std::string lo = o.min ? number_text(*o.min) : "", hi = o.max ? number_text(*o.max) : "";
  if (o.min && o.max) return fmt::format("in {}{}, {}{}", o.min_exclusive ? "(" : "[", lo, hi, o.max_exclusive ? ")" : "]");
  if (o.min) return fmt::format("{} {}", o.min_exclusive ? ">" : ">=", lo);
  return fmt::format("{} {}", o.max_exclusive ? "<" : "<=", hi);
}

}  // namespace

void validate_options(const ModelSpec& spec, const OptionValues& values) {
  validate_options(spec.options, values, spec.name);
}

void validate_options(const std::vector<OptionSpec>& options, const OptionValues& values, const std::string& owner) {
  for (const OptionSpec& o : options) {
    if (!o.alias_of.empty()) {
      if (values.given(o.flag) && values.given(o.alias_of))
        throw_usage(fmt::format("--{} is another name of --{}; give one of them", o.flag, o.alias_of));
      continue;
    }
    if (!values.all().count(o.flag)) continue;
    if (o.required && !values.given(o.flag)) throw_usage(fmt::format("--{} is required for {}", o.flag, owner));
    if (o.type == OptionType::kText && !o.choices.empty()) {
      const std::string& v = values.text(o.flag);
      if (std::find(o.choices.begin(), o.choices.end(), v) == o.choices.end()) {
        std::string list;
        for (std::size_t i = 0; i < o.choices.size(); ++i)
          list += (i == 0 ? "" : i + 1 == o.choices.size() ? " or " : ", ") + o.choices[i];
        const std::string near = nearest(v, o.choices);
        throw_usage(fmt::format("--{} must be {} (got '{}'){}", o.flag, list, v,
                                near.empty() ? "" : "; did you mean " + near + "?"));
      }
    }
    if ((o.type == OptionType::kInt || o.type == OptionType::kReal) && (o.min || o.max)) {
      const double v =
          o.type == OptionType::kInt ? static_cast<double>(values.integer(o.flag)) : values.real(o.flag);
      if (o.sentinel && v == *o.sentinel) continue;
      const bool ok = std::isfinite(v) && (!o.min || (o.min_exclusive ? v > *o.min : v >= *o.min)) &&
                      (!o.max || (o.max_exclusive ? v < *o.max : v <= *o.max));
      if (!ok)
        throw_usage(fmt::format("--{} must be {}{} (got {})", o.flag, range_text(o),
                                o.sentinel ? fmt::format(", or {} for the default", number_text(*o.sentinel)) : "",
                                number_text(v)));
    }
  }
}

std::string nearest(std::string_view word, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_d = std::string::npos;
  for (const std::string& c : candidates) {
    // Levenshtein distance, two rows.
    std::vector<std::size_t> prev(c.size() + 1), cur(c.size() + 1);
    for (std::size_t j = 0; j <= c.size(); ++j) prev[j] = j;
    for (std::size_t i = 1; i <= word.size(); ++i) {
      cur[0] = i;
      for (std::size_t j = 1; j <= c.size(); ++j)
        cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (word[i - 1] == c[j - 1] ? 0 : 1)});
      std::swap(prev, cur);
    }
    std::size_t d = prev[c.size()];
    // A prefix of a candidate ("--n-comp") counts as close.
    if (word.size() >= 3 && c.compare(0, word.size(), word) == 0) d = std::min<std::size_t>(d, 1);
    if (d < best_d) best_d = d, best = c;
  }
  const std::size_t limit = std::max<std::size_t>(2, word.size() / 3);
  return best_d <= limit ? best : "";
}

}  // namespace latent::models
