// `latent fit kmeans`: options, memory estimate, fit and file (the registry's entry;
// docs/ARCHITECTURE.md §3).
#include <fmt/format.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "../specs.hpp"
#include "latent/models/fitted_model.hpp"
#include "latent/models/kmeans/kmeans.hpp"
#include "latent/train/fit_run.hpp"

namespace latent::models {

std::int64_t kmeans_init_row_state(const OptionValues& o, std::int64_t d, std::int64_t block_rows) {
  return o.text("init-params") == "kmeans" ? KmeansLloyd::state_bytes_per_row(o.integer("n-components"), d, block_rows) : 0;
}
namespace {

int fit_kmeans_run(train::FitRun& run) {
  const OptionValues& o = run.options();
  train::FitCommon& c = run.common();
  KmeansConfig k;
  k.n_clusters = o.integer("n-clusters");
  k.init = o.text("init");
  k.max_iter = static_cast<int>(o.integer("max-iter"));
  k.tol = o.real("tol");
  k.n_init = static_cast<int>(o.integer("n-init"));
  k.seed = c.seed;
  train::DataSummary summary;
  auto source = run.open_dense(summary, false, true);  // Lloyd's E-step reads float32 shards as stored
  k.threads = c.threads;
  // elkan: the bounds' state takes what the budget left (FitCommon::row_state_bytes);
  // lloyd: none. The same centres, labels and inertia either way.
  k.max_bound_bytes = o.text("algorithm") == "lloyd" ? 0 : bound_bytes_for(c.row_state_bytes);
  nlohmann::json config{{"model", "kmeans"}, {"n_clusters", k.n_clusters}, {"init", k.init},
                        {"max_iter", k.max_iter}, {"tol", k.tol}, {"n_init", k.n_init}, {"seed", c.seed},
                        {"block_rows", c.block_rows}, {"data", c.data}};
  train::FitControl* control = run.control(config, train::data_fingerprint(source->info()));
  const auto observer = run.observer();
  const auto t0 = std::chrono::steady_clock::now();
  KmeansResult fit = fit_kmeans(run.comm(), *source, summary.num_samples, summary.mean, k, run.log(),
                                observer, control);
  const double total = run.finish(fit.em, t0, [&] {
    save_kmeans(fit.centers, fit.inertia, FitRecord{config.dump(), fit.em, summary.num_samples, c.data}, c.output,
                c.overwrite);
  });
  run.log().info(fmt::format("{} after {} iterations, inertia {:.6g}, {:.2f} s; wrote {}",
                             fit.em.converged ? "converged" : "stopped", fit.em.n_iter, fit.inertia, total, c.output));
  return 0;
}

}  // namespace

ModelSpec kmeans_spec() {
  using T = OptionType;
  ModelSpec s;
  s.name = "kmeans";
  s.summary = "k-means (Lloyd) with k-means|| seeding";
  s.data = DataKind::kDense;
  s.options = {
      {.flag = "n-clusters", .type = T::kInt, .default_value = "8", .help = "number of clusters K", .min = 1},
      {.flag = "init", .type = T::kText, .default_value = "k-means||", .help = "k-means|| | k-means++ | random",
       .choices = {"k-means||", "k-means++", "random"}},
      {.flag = "max-iter", .type = T::kInt, .default_value = "300", .help = "Lloyd iterations per initialisation",
       .min = 1},
      {.flag = "tol", .type = T::kReal, .default_value = "0.0001",
       .help = "stop when the squared center shift is below tol times the mean feature variance", .min = 0},
      {.flag = "n-init", .type = T::kInt, .default_value = "1", .help = "initialisations; the lowest inertia is kept",
       .min = 1},
      {.flag = "algorithm", .type = T::kText, .default_value = "elkan",
       .help = "elkan: per-row distance bounds (Elkan 2003; 8 + 4 K bytes a row, at most 256 MiB a rank) skip the rows "
               "and distances they settle | lloyd: every distance, no per-row state. The same results either way",
       .choices = {"elkan", "lloyd"}},
  };
  s.tasks = {Task::kScore, Task::kPredict, Task::kTransform};
  s.examples = {"latent fit kmeans --data shards/ --output km.h5 --n-clusters 10 --n-init 3"};
  s.memory = [](const OptionValues& o, std::int64_t d, std::int64_t block_rows) {
    const Index k = o.integer("n-clusters");
    const bool bounds = o.text("algorithm") != "lloyd";
    return MemoryNeeds{1 + k + k * d, 11 * k * d /* centers plus the k-means|| candidates (10 K) */, 128 * (k + d),
                       bounds ? KmeansLloyd::state_bytes_per_row(k, d, block_rows) : 0,
                       bounds ? static_cast<std::int64_t>(KmeansLloyd::kMaxBoundBytes) : 0};
  };
  s.objective_name = "inertia";
  s.objective_unit = "squared distance, summed over samples";
  s.change_name = "center shift (squared, over the mean feature variance)";
  s.memory_advice =
      "use fewer clusters, smaller --block-rows or --cache-mb, or more nodes (or raise --memory-budget if the limit is "
      "wrong)";
  s.fit = fit_kmeans_run;
  s.load = load_model;
  return s;
}

}  // namespace latent::models
