// `latent fit gmm` and `latent fit bgmm`: the options, memory estimate, fit and file of the
// Gaussian mixtures (the registry's entries; docs/ARCHITECTURE.md §3).
#include <fmt/format.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "../specs.hpp"
#include "latent/models/fitted_model.hpp"
#include "latent/models/gmm/bgmm.hpp"
#include "latent/models/gmm/gmm_fit.hpp"
#include "latent/models/kmeans/kmeans.hpp"
#include "latent/train/fit_run.hpp"

namespace latent::models {
namespace {

using Clock = std::chrono::steady_clock;
using T = OptionType;

const std::vector<std::string> kCovarianceTypes{"full", "tied", "diag", "spherical"};

Index covariance_doubles(const std::string& cov, Index k, Index d) {
  return cov == "full" ? k * d * d : cov == "tied" ? d * d : k * d;
}

// The GmmConfig of the spec's options (fit and select read them the same way).
GmmConfig gmm_config(const OptionValues& o, std::uint64_t seed, int threads) {
  GmmConfig g;
  g.n_components = o.integer("n-components");
  g.covariance_type = parse_covariance_type(o.text("covariance-type"));
  g.reg_covar = o.real("reg-covar");
  g.tol = o.real("tol");
  g.max_iter = static_cast<int>(o.integer("max-iter"));
  g.n_init = static_cast<int>(o.integer("n-init"));
  g.init_params = o.text("init-params");
  g.init_model = o.text("init-model");
  g.matmul_precision = o.text("matmul-precision");
  g.seed = seed;
  g.threads = threads;
  return g;
}

int fit_gmm_run(train::FitRun& run) {
  const OptionValues& o = run.options();
  train::FitCommon& c = run.common();
  GmmConfig g = gmm_config(o, c.seed, 0);
  const std::string cov = o.text("covariance-type"), missing = o.text("missing-values");
  train::DataSummary summary;
  // The fused float32 pass reads float32 shards as stored: half the bytes streamed and cached.
  auto source = run.open_dense(summary, missing == "nan",
                               g.matmul_precision == "high" && Gmm::has_float32_pass(g.covariance_type));
  g.threads = c.threads;  // resolved by open_dense
  g.row_state_bytes = c.row_state_bytes;
  nlohmann::json config{{"model", "gmm"},           {"n_components", g.n_components}, {"covariance_type", cov},
                        {"reg_covar", g.reg_covar}, {"tol", g.tol},                   {"max_iter", g.max_iter},
                        {"n_init", g.n_init},       {"init_params", g.init_params},   {"init_model", g.init_model},
                        {"missing_values", missing}, {"matmul_precision", g.matmul_precision}, {"seed", c.seed},                {"block_rows", c.block_rows},
                        {"data", c.data}};
  train::FitControl* control = run.control(config, train::data_fingerprint(source->info()));
  const auto observer = run.observer();
  const auto t0 = Clock::now();
  GmmFitResult fit = fit_gmm(run.comm(), *source, summary, g, run.log(), observer, control);
  const double total = run.finish(fit.em, t0, [&] { save_gmm(fit.model, FitRecord{config.dump(), fit.em, summary.num_samples, c.data}, c.output, c.overwrite); });
  run.log().info(fmt::format("{} after {} iterations, lower bound {:.6f} nats/sample, {:.2f} s; wrote {}",
                             fit.em.converged ? "converged" : "stopped", fit.em.n_iter, fit.em.objective, total, c.output));
  return 0;
}

// One `latent select` candidate (ModelSpec::select).
void select_gmm(train::SelectRun& run, const OptionValues& o) {
  const GmmConfig g = gmm_config(o, run.seed, run.threads);
  GmmFitResult r = fit_gmm(run.comm, run.source, run.summary, g, Logger::silent(), {});
  run.result.em = r.em;
  run.result.model = make_fitted(r.model);
  run.result.save = [r = std::move(r), data = run.data, n = run.summary.num_samples](const std::string& path, bool overwrite) {
    save_gmm(r.model, FitRecord{"{}", r.em, n, data}, path, overwrite);
  };
}

int fit_bgmm_run(train::FitRun& run) {
  const OptionValues& o = run.options();
  train::FitCommon& c = run.common();
  BgmmConfig b;
  b.n_components = o.integer("n-components");
  const std::string cov = o.text("covariance-type");
  b.covariance_type = parse_covariance_type(cov);
  b.weight_concentration_prior_type = o.text("weight-concentration-prior-type");
  b.weight_concentration_prior = o.real("weight-concentration-prior");
  b.mean_precision_prior = o.real("mean-precision-prior");
  b.degrees_of_freedom_prior = o.real("degrees-of-freedom-prior");
  b.reg_covar = o.real("reg-covar");
  b.tol = o.real("tol");
  b.max_iter = static_cast<int>(o.integer("max-iter"));
  b.n_init = static_cast<int>(o.integer("n-init"));
  b.init_params = o.text("init-params");
  b.seed = c.seed;
  train::DataSummary summary;
  auto source = run.open_dense(summary, false);
  b.threads = c.threads;
  b.row_state_bytes = c.row_state_bytes;
  nlohmann::json config{{"model", "bgmm"},
                        {"n_components", b.n_components},
                        {"covariance_type", cov},
                        {"weight_concentration_prior_type", b.weight_concentration_prior_type},
                        {"weight_concentration_prior", b.weight_concentration_prior},
                        {"mean_precision_prior", b.mean_precision_prior},
                        {"degrees_of_freedom_prior", b.degrees_of_freedom_prior},
                        {"reg_covar", b.reg_covar},
                        {"tol", b.tol},
                        {"max_iter", b.max_iter},
                        {"init_params", b.init_params},
                        {"seed", c.seed},
                        {"block_rows", c.block_rows},
                        {"data", c.data}};
  // n_init came after the first files: recorded when not 1, so those files keep their bytes.
  if (b.n_init != 1) config["n_init"] = b.n_init;
  train::FitControl* control = run.control(config, train::data_fingerprint(source->info()));
  const auto observer = run.observer();
  const auto t0 = Clock::now();
  BgmmFitResult fit = fit_bgmm(run.comm(), *source, summary, b, run.log(), observer, control);
  const double total = run.finish(fit.em, t0, [&] {
    save_gmm(fit.mixture, FitRecord{config.dump(), fit.em, summary.num_samples, c.data}, c.output, c.overwrite, "bgmm",
             [&](io::H5Writer& w) {
               w.write("weight_concentration", fit.weight_concentration);
               w.write("mean_precision", std::span<const double>(fit.mean_precision.data(),
                                                                static_cast<std::size_t>(fit.mean_precision.size())));
               w.write("degrees_of_freedom", std::span<const double>(fit.degrees_of_freedom.data(),
                                                                    static_cast<std::size_t>(fit.degrees_of_freedom.size())));
             });
  });
  Index active = 0;
  for (Index j = 0; j < fit.mixture.num_components(); ++j) active += fit.mixture.weights()[j] > 1e-2 ? 1 : 0;
  run.log().info(fmt::format("{} after {} iterations, lower bound {:.6f} nats/sample, {} of {} components with weight "
                             "> 0.01, {:.2f} s; wrote {}",
                             fit.em.converged ? "converged" : "stopped", fit.em.n_iter, fit.em.objective, active,
                             b.n_components, total, c.output));
  return 0;
}

}  // namespace

ModelSpec gmm_spec() {
  ModelSpec s;
  s.name = "gmm";
  s.summary = "Gaussian mixture by EM (covariance full|tied|diag|spherical; missing values: --missing-values nan)";
  s.data = DataKind::kDense;
  s.options = {
      {.flag = "n-components", .type = T::kInt, .default_value = "1", .help = "number of mixture components K", .min = 1},
      {.flag = "covariance-type", .type = T::kText, .default_value = "full", .help = "full | tied | diag | spherical",
       .choices = kCovarianceTypes},
      {.flag = "reg-covar", .type = T::kReal, .default_value = "1e-06", .help = "added to the diagonal of covariances",
       .min = 0},
      {.flag = "tol", .type = T::kReal, .default_value = "0.001",
       .help = "stop when the lower bound (mean log-likelihood) changes less", .unit = "nats/sample", .min = 0},
      {.flag = "max-iter", .type = T::kInt, .default_value = "100", .help = "EM iterations per initialisation", .min = 1},
      {.flag = "n-init", .type = T::kInt, .default_value = "1", .help = "initialisations; the best lower bound is kept",
       .min = 1},
      {.flag = "init-params", .type = T::kText, .default_value = "kmeans",
       .help = "kmeans | k-means++ | random | random_from_data",
       .choices = {"kmeans", "k-means++", "random", "random_from_data"}},
      {.flag = "init-model", .type = T::kText, .default_value = "",
       .help = "start EM from the weights, means and covariances of this GMM model file (overrides --init-params)"},
      {.flag = "missing-values", .type = T::kText, .default_value = "error",
       .help = "error (NaN is an input error) | nan (NaN entries are missing and marginalised by the EM; full/tied cost "
               "O(K |o|^3) per row with NaN)",
       .choices = {"error", "nan"}},
      {.flag = "matmul-precision", .type = T::kText, .default_value = "high",
       .help = "high (diag, spherical and full EM iterations with float32 products and double sums; the mean "
               "log-likelihood agrees with highest to about 1e-7) | highest (double throughout; tied always is), as "
               "PyTorch's torch.set_float32_matmul_precision",
       .choices = {"high", "highest"}},
  };
  s.tasks = {Task::kScore, Task::kPredict, Task::kTransform, Task::kSample, Task::kImpute, Task::kSelect, Task::kGenerate};
  s.examples = {"latent fit gmm --data shards/ --output gmm.h5 --n-components 10 --covariance-type diag",
                "mpirun -n 4 latent fit gmm --data shards/ --output gmm.h5 --n-components 50 --n-init 3 "
                "--checkpoint-dir ckpt/ --resume"};
  s.memory = [](const OptionValues& o, std::int64_t d, std::int64_t block_rows) {
    const Index k = o.integer("n-components");
    const std::string cov = o.text("covariance-type");
    const Index cd = covariance_doubles(cov, k, d);
    return MemoryNeeds{2 + k + k * d + cd, k + k * d + 2 * cd,
                       (cov == "full" ? Gmm::kFullTileRows : Gmm::kTileRows) * (2 * d + 2 * k) + d * d,
                       kmeans_init_row_state(o, d, block_rows), static_cast<std::int64_t>(KmeansLloyd::kMaxBoundBytes)};
  };
  s.memory_advice =
      "use fewer components, a cheaper --covariance-type, smaller --block-rows or --cache-mb, or more nodes (or raise "
      "--memory-budget if the limit is wrong)";
  s.fit = fit_gmm_run;
  s.load = load_model;
  s.select = select_gmm;
  s.select_grid = {"n-components"};
  s.own_tasks = gmm_own_tasks();
  return s;
}

ModelSpec bgmm_spec() {
  ModelSpec s;
  s.name = "bgmm";
  s.summary = "variational Bayesian Gaussian mixture (Dirichlet process or Dirichlet prior on the weights)";
  s.data = DataKind::kDense;
  s.options = {
      {.flag = "n-components", .type = T::kInt, .default_value = "1",
       .help = "upper bound on the number of components K", .min = 1},
      {.flag = "covariance-type", .type = T::kText, .default_value = "full", .help = "full | tied | diag | spherical",
       .choices = kCovarianceTypes},
      {.flag = "weight-concentration-prior-type", .type = T::kText, .default_value = "dirichlet_process",
       .help = "dirichlet_process (stick-breaking) | dirichlet_distribution",
       .choices = {"dirichlet_process", "dirichlet_distribution"}},
      {.flag = "weight-concentration-prior", .type = T::kReal, .default_value = "-1",
       .help = "gamma0 (default 1/K); small values leave more components empty", .min = 0, .min_exclusive = true,
       .sentinel = -1.0},
      {.flag = "mean-precision-prior", .type = T::kReal, .default_value = "-1", .help = "beta0 (default 1)", .min = 0,
       .min_exclusive = true, .sentinel = -1.0},
      {.flag = "degrees-of-freedom-prior", .type = T::kReal, .default_value = "-1",
       .help = "nu0 (default D; must exceed D - 1)", .min = 0, .min_exclusive = true, .sentinel = -1.0},
      {.flag = "reg-covar", .type = T::kReal, .default_value = "1e-06",
       .help = "added to the diagonal of the covariance statistics", .min = 0},
      {.flag = "tol", .type = T::kReal, .default_value = "0.001", .help = "stop when the lower bound per sample changes less",
       .unit = "nats/sample", .min = 0},
      {.flag = "max-iter", .type = T::kInt, .default_value = "100", .help = "iterations", .min = 1},
      {.flag = "n-init", .type = T::kInt, .default_value = "1", .help = "initialisations; the best lower bound is kept",
       .min = 1},
      {.flag = "init-params", .type = T::kText, .default_value = "kmeans", .help = "kmeans | random",
       .choices = {"kmeans", "random"}},
  };
  s.tasks = {Task::kScore, Task::kPredict, Task::kTransform, Task::kSample, Task::kImpute};
  s.examples = {"latent fit bgmm --data shards/ --output bgmm.h5 --n-components 20 --weight-concentration-prior 0.01"};
  s.memory = [](const OptionValues& o, std::int64_t d, std::int64_t block_rows) {
    const Index k = o.integer("n-components");
    const std::string cov = o.text("covariance-type");
    const bool dense = cov == "full" || cov == "tied";
    const Index cd = covariance_doubles(cov, k, d);
    return MemoryNeeds{3 + k + k * d + cd + (dense ? d * d : 0), 3 * (k + k * d + 2 * cd),
                       Gmm::kFullTileRows * (2 * d + 2 * k) + d * d, kmeans_init_row_state(o, d, block_rows),
                       static_cast<std::int64_t>(KmeansLloyd::kMaxBoundBytes)};
  };
  s.objective_name = "lower_bound_per_sample";  // scikit-learn's lower_bound_ / N
  s.memory_advice = gmm_spec().memory_advice;
  s.fit = fit_bgmm_run;
  s.load = load_model;
  return s;
}

}  // namespace latent::models
