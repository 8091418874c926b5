// `latent fit bmm` (dense data in [0, 1]) and `latent fit mmm` (count data): options,
// memory estimate, fit and file (the registry's entries; docs/ARCHITECTURE.md §3).
#include <fmt/format.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "../specs.hpp"
#include "latent/models/fitted_model.hpp"
#include "latent/models/mixture/discrete_fit.hpp"
#include "latent/models/kmeans/kmeans.hpp"
#include "latent/train/fit_run.hpp"

namespace latent::models {
namespace {

int fit_discrete_run(train::FitRun& run, DiscreteKind kind) {
  const bool bernoulli = kind == DiscreteKind::kBernoulli;
  const std::string name = bernoulli ? "bmm" : "mmm";
  const OptionValues& o = run.options();
  train::FitCommon& c = run.common();
  DiscreteConfig dc;
  dc.n_components = o.integer("n-components");
  dc.alpha = o.real("alpha");
  dc.weight_alpha = o.real("weight-alpha");
  dc.tol = o.real("tol");
  dc.max_iter = static_cast<int>(o.integer("max-iter"));
  dc.n_init = static_cast<int>(o.integer("n-init"));
  dc.init_params = o.text("init-params");
  dc.seed = c.seed;
  nlohmann::json config{{"model", name},           {"n_components", dc.n_components}, {"alpha", dc.alpha},
                        {"weight_alpha", dc.weight_alpha}, {"tol", dc.tol},               {"max_iter", dc.max_iter},
                        {"init_params", dc.init_params},   {"seed", c.seed},              {"block_rows", c.block_rows},
                        {"data", c.data}};
  // n_init came after the first files: recorded when not 1, so those files keep their bytes.
  if (dc.n_init != 1) config["n_init"] = dc.n_init;
  const auto observer = run.observer();
  const auto t0 = std::chrono::steady_clock::now();
  DiscreteFitResult fit{DiscreteMixture(1, 1, kind, 0, 0), {}};
  Index n = 0;
  std::vector<std::string> vocabulary;
  if (bernoulli) {
    train::DataSummary summary;
    auto source = run.open_dense(summary, false);
    dc.threads = c.threads;
    dc.row_state_bytes = c.row_state_bytes;
    train::FitControl* control = run.control(config, train::data_fingerprint(source->info()));
    fit = fit_bmm(run.comm(), *source, summary, dc, run.log(), observer, control);
    n = summary.num_samples;
  } else {
    const io::CountsDatasetInfo info = run.open_counts(vocabulary);
    dc.threads = c.threads;
    dc.row_state_bytes = c.row_state_bytes;
    auto source = run.counts_source(info);
    train::FitControl* control = run.control(config, train::data_fingerprint(info));
    fit = fit_mmm(run.comm(), *source, info.num_rows, dc, run.log(), observer, control);
    n = info.num_rows;
  }
  const double total = run.finish(fit.em, t0, [&] { save_discrete(fit.model, FitRecord{config.dump(), fit.em, n, c.data}, c.output, c.overwrite, vocabulary); });
  run.log().info(fmt::format("{} after {} iterations, mean log posterior {:.6f} nats/sample, {:.2f} s; wrote {}",
                             fit.em.converged ? "converged" : "stopped", fit.em.n_iter, fit.em.objective, total,
                             c.output));
  return 0;
}

ModelSpec discrete_spec(DiscreteKind kind) {
  using T = OptionType;
  const bool bernoulli = kind == DiscreteKind::kBernoulli;
  ModelSpec s;
  s.name = bernoulli ? "bmm" : "mmm";
  s.summary = bernoulli ? "Bernoulli mixture by EM (binary or [0, 1] data)"
                        : "multinomial mixture (mixture of unigrams) by EM on count data";
  s.data = bernoulli ? DataKind::kDense : DataKind::kCounts;
  s.options = {
      {.flag = "n-components", .type = T::kInt, .default_value = "2", .help = "number of mixture components K", .min = 1},
      {.flag = "alpha", .type = T::kReal, .default_value = "1",
       .help = bernoulli
                   ? "additive smoothing of the Bernoulli means: (S + alpha) / (N_k + 2 alpha) (Beta(1+alpha, 1+alpha) MAP)"
                   : "additive smoothing of the word probabilities: (S + alpha) / (S_k + V alpha) (Dirichlet(1+alpha) MAP)",
       .min = 0},
      {.flag = "weight-alpha", .type = T::kReal, .default_value = "0",
       .help = "Dirichlet pseudo-count added to each component's weight (0: maximum likelihood)", .min = 0},
      {.flag = "tol", .type = T::kReal, .default_value = "0.001", .help = "stop when the mean log posterior changes less",
       .unit = "nats/sample", .min = 0},
      {.flag = "max-iter", .type = T::kInt, .default_value = "100", .help = "EM iterations", .min = 1},
      {.flag = "n-init", .type = T::kInt, .default_value = "1",
       .help = "initialisations; the best mean log posterior is kept", .min = 1},
      {.flag = "init-params", .type = T::kText, .default_value = bernoulli ? "kmeans" : "random",
       .help = bernoulli ? "kmeans | random" : "random (uniform random responsibilities)",
       .choices = bernoulli ? std::vector<std::string>{"kmeans", "random"} : std::vector<std::string>{"random"}},
  };
  s.tasks = bernoulli ? std::vector<Task>{Task::kScore, Task::kPredict, Task::kTransform, Task::kSample}
                      : std::vector<Task>{Task::kScore, Task::kPredict, Task::kTransform, Task::kSample};
  s.examples = {bernoulli ? "latent fit bmm --data binary_shards/ --output bmm.h5 --n-components 10"
                          : "latent fit mmm --data corpus/ --output mmm.h5 --n-components 20"};
  s.memory = [](const OptionValues& o, std::int64_t d, std::int64_t block_rows) {
    const Index k = o.integer("n-components");
    return MemoryNeeds{2 + k * (1 + d), 3 * k * d, block_rows * k * 2, kmeans_init_row_state(o, d, block_rows),
                       static_cast<std::int64_t>(KmeansLloyd::kMaxBoundBytes)};
  };
  s.objective_name = "mean_log_posterior";
  s.memory_advice = bernoulli ? "use fewer components, smaller --block-rows or --cache-mb, or more nodes (or raise "
                                "--memory-budget if the limit is wrong)"
                              : "use fewer components, prune the vocabulary (--min-df/--max-df on import), fewer "
                                "--threads";
  s.fit = [kind](train::FitRun& run) { return fit_discrete_run(run, kind); };
  if (bernoulli) {
    s.load = load_model;
  } else {
    s.own_tasks = mmm_own_tasks();
    s.describe = describe_mmm_file;
  }
  return s;
}

}  // namespace

ModelSpec bmm_spec() { return discrete_spec(DiscreteKind::kBernoulli); }
ModelSpec mmm_spec() { return discrete_spec(DiscreteKind::kMultinomial); }

}  // namespace latent::models
