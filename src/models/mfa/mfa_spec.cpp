// `latent fit mfa`: options, memory estimate, fit and file of the mixture of factor
// analysers (the registry's entry; docs/ARCHITECTURE.md §3; §8 is the adding-a-model checklist it follows).
#include <fmt/format.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "../specs.hpp"
#include "latent/models/fitted_model.hpp"
#include "latent/models/gmm/gmm.hpp"
#include "latent/models/mfa/mfa.hpp"
#include "latent/models/mfa/mfa_fit.hpp"
#include "latent/train/fit_run.hpp"

namespace latent::models {
namespace {

MfaConfig mfa_config(const OptionValues& o) {
  MfaConfig m;
  m.n_components = o.integer("n-components");
  m.n_factors = o.integer("n-factors");
  const std::string noise = o.text("noise"), missing = o.text("missing-values");
  m.noise = noise == "isotropic" ? NoiseType::kIsotropic : NoiseType::kDiagonal;
  m.reg_covar = o.real("reg-covar");
  m.noise_variance_floor = o.real("noise-variance-floor");
  m.tol = o.real("tol");
  m.max_iter = static_cast<int>(o.integer("max-iter"));
  m.n_init = static_cast<int>(o.integer("n-init"));
  m.init_params = o.text("init-params");
  m.missing_values = missing == "nan";
  m.matmul_precision = o.text("matmul-precision");
  return m;
}

int fit_mfa_run(train::FitRun& run) {
  const OptionValues& o = run.options();
  train::FitCommon& c = run.common();
  MfaConfig m = mfa_config(o);
  const std::string noise = o.text("noise"), missing = o.text("missing-values");
  m.seed = c.seed;
  train::DataSummary summary;
  // The float32 pass reads float32 shards as stored: half the bytes streamed and cached.
  auto source = run.open_dense(summary, m.missing_values, m.matmul_precision == "high");
  m.threads = c.threads;
  nlohmann::json config{{"model", "mfa"},
                        {"n_components", m.n_components},
                        {"n_factors", m.n_factors},
                        {"noise", noise},
                        {"reg_covar", m.reg_covar},
                        {"noise_variance_floor", m.noise_variance_floor},
                        {"tol", m.tol},
                        {"max_iter", m.max_iter},
                        {"n_init", m.n_init},
                        {"init_params", m.init_params},
                        {"missing_values", missing},
                        {"matmul_precision", m.matmul_precision},
                        {"seed", c.seed},
                        {"block_rows", c.block_rows},
                        {"data", c.data}};
  train::FitControl* control = run.control(config, train::data_fingerprint(source->info()));
  const auto observer = run.observer();
  const auto t0 = std::chrono::steady_clock::now();
  MfaFitResult fit = fit_mfa(run.comm(), *source, summary, m, run.log(), observer, control);
  const double total = run.finish(fit.em, t0, [&] { save_mfa(fit.model, FitRecord{config.dump(), fit.em, summary.num_samples, c.data}, c.output, c.overwrite); });
  run.log().info(fmt::format("{} after {} iterations, mean log-likelihood {:.6f} nats/sample, {:.2f} s; wrote {}",
                             fit.em.converged ? "converged" : "stopped", fit.em.n_iter, fit.em.objective, total,
                             c.output));
  return 0;
}

// One `latent select` candidate over (K, L) (ModelSpec::select).
void select_mfa(train::SelectRun& run, const OptionValues& o) {
  MfaConfig m = mfa_config(o);
  m.seed = run.seed;
  m.threads = run.threads;
  MfaFitResult r = fit_mfa(run.comm, run.source, run.summary, m, Logger::silent(), {});
  run.result.em = r.em;
  run.result.model = make_fitted(r.model);
  run.result.save = [r = std::move(r), data = run.data, n = run.summary.num_samples](const std::string& path, bool overwrite) {
    save_mfa(r.model, FitRecord{"{}", r.em, n, data}, path, overwrite);
  };
}

}  // namespace

ModelSpec mfa_spec() {
  using T = OptionType;
  ModelSpec s;
  s.name = "mfa";
  s.summary = "mixture of factor analysers by EM (--noise isotropic: mixture of PPCA; missing values: --missing-values nan)";
  s.data = DataKind::kDense;
  s.options = {
      {.flag = "n-components", .type = T::kInt, .default_value = "1", .help = "mixture components K", .min = 1},
      {.flag = "n-factors", .type = T::kInt, .default_value = "2",
       .help = "latent factors L per component (0 <= L < D; 0 is a diagonal Gaussian mixture)", .min = 0},
      {.flag = "noise", .type = T::kText, .default_value = "diag",
       .help = "diag (factor analysers: one variance per feature and component) | isotropic (one per component: "
               "mixture of probabilistic PCA)",
       .choices = {"diag", "isotropic"}},
      {.flag = "reg-covar", .type = T::kReal, .default_value = "1e-06",
       .help = "added to every noise variance in each M-step (scikit-learn's reg_covar)", .min = 0},
      {.flag = "noise-variance-floor", .type = T::kReal, .default_value = "1e-12",
       .help = "lower bound of the noise variances", .min = 0, .min_exclusive = true},
      {.flag = "tol", .type = T::kReal, .default_value = "0.001", .help = "stop when the mean log-likelihood changes less",
       .unit = "nats/sample", .min = 0},
      {.flag = "max-iter", .type = T::kInt, .default_value = "100", .help = "EM iterations per initialisation", .min = 1},
      {.flag = "n-init", .type = T::kInt, .default_value = "1",
       .help = "initialisations; the best mean log-likelihood is kept", .min = 1},
      {.flag = "init-params", .type = T::kText, .default_value = "kmeans",
       .help = "kmeans (k-means, then the clusters' means and variances) | random (random responsibilities)",
       .choices = {"kmeans", "random"}},
      {.flag = "missing-values", .type = T::kText, .default_value = "error",
       .help = "error (NaN is an input error) | nan (NaN entries are missing and marginalised by the EM)",
       .choices = {"error", "nan"}},
      {.flag = "matmul-precision", .type = T::kText, .default_value = "high",
       .help = "high (the E-step's products in float32, the statistics summed in double; the mean log-likelihood "
               "agrees with highest to about 1e-7) | highest (double throughout), as PyTorch's "
               "torch.set_float32_matmul_precision",
       .choices = {"high", "highest"}},
  };
  s.tasks = {Task::kScore, Task::kPredict, Task::kTransform, Task::kSample, Task::kImpute, Task::kSelect};
  s.examples = {"latent fit mfa --data shards/ --output mfa.h5 --n-components 10 --n-factors 10",
                "latent fit mfa --data shards/ --output mppca.h5 --n-components 5 --n-factors 3 --noise isotropic "
                "--missing-values nan"};
  // Statistics per component: A_k ((L+1)^2), B_k (D (L+1)), C_k (D), plus the sums;
  // parameters: weights, means, W_k and the noise, a few copies; no D x D matrix.
  s.memory = [](const OptionValues& o, std::int64_t d, std::int64_t block_rows) {
    const Index k = o.integer("n-components"), l = o.integer("n-factors");
    return MemoryNeeds{2 + k * ((l + 1) * (l + 1) + d * (l + 2)), 4 * k * (d * (l + 2) + (l + 1) * (l + 1)),
                       block_rows * (d + k * (2 * l + 3))};
  };
  s.memory_advice =
      "use fewer components or factors, smaller --block-rows or --cache-mb, or more nodes (or raise --memory-budget if "
      "the limit is wrong)";
  s.fit = fit_mfa_run;
  s.load = [](const std::string& path) { return load_mfa(path); };
  s.select = select_mfa;
  s.select_grid = {"n-components", "n-factors"};
  return s;
}

}  // namespace latent::models
