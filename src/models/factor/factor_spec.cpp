// `latent fit ppca` and `latent fit fa`: options, memory estimate, fit and file (the
// registry's entries; docs/ARCHITECTURE.md §3).
#include <fmt/format.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "../specs.hpp"
#include "latent/models/factor/factor_fit.hpp"
#include "latent/models/fitted_model.hpp"
#include "latent/train/fit_run.hpp"

namespace latent::models {
namespace {

FactorConfig factor_config(const OptionValues& o, NoiseType noise) {
  FactorConfig f;
  f.noise = noise;
  f.n_components = o.integer("n-components");
  f.tol = o.real("tol");
  f.max_iter = static_cast<int>(o.integer("max-iter"));
  f.solver = o.text("solver");
  f.missing_values = o.text("missing-values") == "nan";
  f.noise_variance_floor = o.real("noise-variance-floor");
  f.matmul_precision = o.text("matmul-precision");
  return f;
}

int fit_factor_run(train::FitRun& run, NoiseType noise) {
  const std::string name = model_name(noise);
  const OptionValues& o = run.options();
  train::FitCommon& c = run.common();
  FactorConfig f = factor_config(o, noise);
  const std::string missing = o.text("missing-values");
  f.seed = c.seed;
  train::DataSummary summary;
  // Float32 shards kept as float32 in the stream and the cache where only the float32
  // scatter reads them (the covariance solver with --matmul-precision high).
  auto source = run.open_dense(summary, f.missing_values,
                               !f.missing_values && f.solver != "streaming" && f.matmul_precision == "high");
  if (summary.num_missing > 0)
    run.log().info(fmt::format("{} of {} entries are missing ({:.2f} %)", summary.num_missing,
                               summary.num_samples * source->info().num_features,
                               100.0 * static_cast<double>(summary.num_missing) /
                                   static_cast<double>(summary.num_samples * source->info().num_features)));
  f.threads = c.threads;
  nlohmann::json config{{"model", name},        {"n_components", f.n_components}, {"tol", f.tol},
                        {"max_iter", f.max_iter}, {"solver", f.solver},           {"missing_values", missing},
                        {"noise_variance_floor", f.noise_variance_floor},         {"matmul_precision", f.matmul_precision},
                        {"seed", c.seed},
                        {"block_rows", c.block_rows},                             {"data", c.data}};
  train::FitControl* control = run.control(config, train::data_fingerprint(source->info()));
  const auto observer = run.observer();
  const auto t0 = std::chrono::steady_clock::now();
  FactorFitResult fit = fit_factor(run.comm(), *source, summary, f, run.log(), observer, control);
  const double total = run.finish(fit.em, t0, [&] {
    save_factor(fit.model, FitRecord{config.dump(), fit.em, summary.num_samples, c.data}, c.output, c.overwrite);
  });
  run.log().info(fmt::format("{} after {} iterations, mean log-likelihood {:.6f} nats/sample, {:.2f} s; wrote {}",
                             fit.em.converged ? "converged" : "stopped", fit.em.n_iter, fit.em.objective, total,
                             c.output));
  return 0;
}

// One `latent select` candidate (ModelSpec::select); the candidates share one scatter
// matrix when the covariance solver is used.
void select_factor(train::SelectRun& run, const OptionValues& o, NoiseType noise) {
  FactorConfig f = factor_config(o, noise);
  f.seed = run.seed;
  f.threads = run.threads;
  const Index d = run.source.info().num_features;
  std::shared_ptr<void>& cached = run.cache["scatter"];
  if (!cached && resolve_factor_solver(f, d) == "covariance")
    cached = std::make_shared<Scatter>(
        scatter_pass(run.comm, run.source, run.summary.mean, run.threads, f.matmul_precision == "high"));
  FactorFitResult r = fit_factor(run.comm, run.source, run.summary, f, Logger::silent(), {}, nullptr,
                                 static_cast<const Scatter*>(cached.get()));
  run.result.em = r.em;
  run.result.model = make_fitted(r.model);
  run.result.save = [r = std::move(r), data = run.data, n = run.summary.num_samples](const std::string& path, bool overwrite) {
    save_factor(r.model, FitRecord{"{}", r.em, n, data}, path, overwrite);
  };
}

ModelSpec factor_spec(NoiseType noise) {
  using T = OptionType;
  ModelSpec s;
  s.name = model_name(noise);
  s.summary = noise == NoiseType::kIsotropic
                  ? "probabilistic PCA by EM (missing values: --missing-values nan)"
                  : "factor analysis by EM (diagonal noise; missing values: --missing-values nan)";
  s.data = DataKind::kDense;
  s.options = {
      {.flag = "n-components", .type = T::kInt, .default_value = "2", .help = "latent dimension L (1 <= L < D)",
       .min = 1},
      {.flag = "tol", .type = T::kReal, .default_value = "1e-06",
       .help = "stop when the mean log-likelihood changes by less", .unit = "nats/sample", .min = 0},
      {.flag = "max-iter", .type = T::kInt, .default_value = "1000", .help = "EM iterations at most", .min = 1},
      {.flag = "solver", .type = T::kText, .default_value = "auto",
       .help = "auto | covariance (one pass for the D x D scatter matrix, then EM in memory) | streaming (one pass per "
               "iteration, O(D L) memory; needed for missing values)",
       .choices = {"auto", "covariance", "streaming"}},
      {.flag = "missing-values", .type = T::kText, .default_value = "error",
       .help = "error (NaN is an input error) | nan (NaN entries are missing and marginalised by the EM)",
       .choices = {"error", "nan"}},
      {.flag = "noise-variance-floor", .type = T::kReal, .default_value = "1e-12",
       .help = "lower bound of the noise variances (scikit-learn's FactorAnalysis uses 1e-12)", .min = 0,
       .min_exclusive = true},
      {.flag = "matmul-precision", .type = T::kText, .default_value = "high",
       .help = "high (the covariance solver's scatter pass in float32 products with double sums per 512 rows; the "
               "mean log-likelihood agrees with highest to about 1e-7) | highest (double throughout; the streaming "
               "solver always is), as PyTorch's torch.set_float32_matmul_precision",
       .choices = {"high", "highest"}},
  };
  s.tasks = {Task::kScore, Task::kPredict, Task::kTransform, Task::kSample, Task::kImpute, Task::kSelect};
  s.examples = {"latent fit " + s.name + " --data shards/ --output " + s.name + ".h5 --n-components 10",
                "latent fit " + s.name + " --data shards/ --output " + s.name +
                    ".h5 --n-components 10 --missing-values nan"};
  s.memory = [noise](const OptionValues& o, std::int64_t d, std::int64_t block_rows) {
    const Index l = o.integer("n-components");
    const bool cov = resolve_factor_solver(factor_config(o, noise), d) == "covariance";
    return MemoryNeeds{cov ? d * (d + 1) / 2 + d : 2 + (l + 1) * (l + 1) + d * (l + 2), 6 * l * d + (cov ? 2 * d * d : 0),
                       block_rows * (d + 2 * l) + (cov ? d * d : 0)};
  };
  s.memory_advice =
      "use fewer components, --solver streaming, smaller --block-rows or --cache-mb, or more nodes (or raise "
      "--memory-budget if the limit is wrong)";
  s.fit = [noise](train::FitRun& run) { return fit_factor_run(run, noise); };
  s.select = [noise](train::SelectRun& run, const OptionValues& o) { select_factor(run, o, noise); };
  s.select_grid = {"n-components"};
  s.load = load_model;
  return s;
}

}  // namespace

ModelSpec ppca_spec() { return factor_spec(NoiseType::kIsotropic); }
ModelSpec fa_spec() { return factor_spec(NoiseType::kDiagonal); }

}  // namespace latent::models
