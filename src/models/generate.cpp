#include "latent/models/generate.hpp"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "latent/core/error.hpp"
#include "latent/train/task_run.hpp"
#include "specs.hpp"

namespace latent::models {
namespace {

constexpr Index kMaxShards = 100000;  // part-%05d.h5 sorts in row order below this

// The value of `flag`, or of its alias if the spec declares one and it was given; 0 if neither.
Index value_or_alias(const OptionValues& o, const std::string& flag, const std::string& alias) {
  if (o.all().count(alias) && o.given(alias)) return o.integer(alias);
  return o.all().count(flag) ? o.integer(flag) : 0;
}

}  // namespace

std::vector<OptionSpec> generate_options(const std::string& rows, const std::string& components) {
  using T = OptionType;
  return {
      {.flag = "n-samples", .type = T::kInt, .help = rows, .min = 1},
      {.flag = "n-components", .type = T::kInt, .help = components, .min = 1},
      {.flag = "shards", .type = T::kInt, .default_value = "0",
       .help = "shard files S (0: N / --rows-per-shard, rounded up); shard s holds rows [sN/S, (s+1)N/S) and rank r "
               "writes shards [rS/P, (r+1)S/P)",
       .min = 0, .max = static_cast<double>(kMaxShards), .max_exclusive = true},
      {.flag = "rows-per-shard", .type = T::kInt, .default_value = "65536", .help = "rows per shard when --shards is 0",
       .min = 1},
      {.flag = "seed", .type = T::kInt, .default_value = "0", .help = "random seed (row i depends only on seed and i)",
       .min = 0},
      {.flag = "true-model", .type = T::kText, .default_value = "",
       .help = "where to write the generating model (default OUTPUT.truth.h5 beside the directory; 'none': not written)"},
  };
}

GeneratePlan plan_generate(const train::TaskRun& run, Index n_features, const std::string& model) {
  const OptionValues& o = run.options();
  GeneratePlan p;
  p.n_samples = value_or_alias(o, "n-samples", "n-documents");
  p.n_components = value_or_alias(o, "n-components", "n-topics");
  const Index per_shard = value_or_alias(o, "rows-per-shard", "docs-per-shard");
  if (p.n_samples < 1 || p.n_samples >= (Index{1} << 46)) throw_usage("--n-samples must be between 1 and 2^46");
  if (p.n_components < 1) throw_usage("--n-components must be at least 1");
  if (per_shard < 1) throw_usage("--rows-per-shard must be at least 1");
  p.num_shards = o.integer("shards");
  if (p.num_shards == 0) p.num_shards = (p.n_samples + per_shard - 1) / per_shard;
  if (p.num_shards < 1 || p.num_shards > p.n_samples)
    throw_usage(fmt::format("--shards must be between 1 and N = {}", p.n_samples));
  if (p.num_shards >= kMaxShards) throw_usage(fmt::format("--shards must be below {}", kMaxShards));
  p.seed = static_cast<std::uint64_t>(o.integer("seed"));
  p.output = run.common().output;
  while (p.output.size() > 1 && p.output.back() == '/') p.output.pop_back();
  p.truth = o.text("true-model");
  if (p.truth.empty()) p.truth = p.output + ".truth.h5";
  if (p.truth == "none") p.truth.clear();
  p.config = nlohmann::json{{"generated", model},         {"seed", p.seed},          {"n_samples", p.n_samples},
                            {"n_components", p.n_components}, {"n_features", n_features}}
                 .dump();
  p.layout = io::ShardLayout{p.n_samples, p.num_shards};
  p.mine = io::rank_block_range(p.num_shards, run.comm().rank(), run.comm().size());
  return p;
}

void log_generated(const train::TaskRun& run, const GeneratePlan& p, const std::string& rows, const std::string& features,
                   Index n_features, double seconds) {
  run.log().info(fmt::format("wrote {} {} ({} = {}, K = {}) in {} shards to {} on {} rank(s) in {:.1f} s{}", p.n_samples,
                             rows, features, n_features, p.n_components, p.num_shards, p.output, run.comm().size(),
                             seconds, p.truth.empty() ? "" : "; true model: " + p.truth));
}

}  // namespace latent::models
