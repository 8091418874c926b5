// `latent fit vae`: options, memory check and fit (the registry's entry;
// docs/ARCHITECTURE.md §3). Scoring, transform and sampling of VAE files: the passes in
// vae_apply.cpp, their commands (options, outputs) in src/cli/vae.cpp (issue 18 notes).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>

#include "../specs.hpp"
#include "latent/core/error.hpp"
#include "latent/core/kernel.hpp"
#include "latent/core/matmul.hpp"
#include "latent/models/vae/vae.hpp"
#include "latent/models/vae/vae_fit.hpp"
#include "latent/train/fit_run.hpp"
#include "latent/train/memory.hpp"

namespace latent::models {
namespace {

std::vector<Index> parse_widths(const std::string& s) {
  std::vector<Index> out;
  std::size_t pos = 0;
  while (pos <= s.size() && !s.empty()) {
    const std::size_t comma = s.find(',', pos);
    const std::string item = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    try {
      std::size_t used = 0;
      const long long v = std::stoll(item, &used);
      if (used != item.size() || v < 1) throw std::invalid_argument(item);
      out.push_back(v);
    } catch (const std::exception&) {
      throw_usage("--hidden must be a comma-separated list of positive widths such as 512,256 (got '" + s + "')");
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

int fit_vae_run(train::FitRun& run) {
  const OptionValues& o = run.options();
  train::FitCommon& c = run.common();
  VaeFitConfig v;
  const std::string hidden = o.text("hidden"), activation = o.text("activation"), likelihood = o.text("likelihood"),
                    variance = o.text("gaussian-variance"), precision = o.text("matmul-precision");
  v.arch.latent_dim = o.integer("latent-dim");
  v.batch_size = o.integer("batch-size");
  v.micro_batch_rows = o.integer("micro-batch-rows");
  v.epochs = static_cast<int>(o.integer("epochs"));
  v.shuffle = o.flag("shuffle");
  v.learning_rate = o.real("learning-rate");
  v.beta1 = o.real("beta1");
  v.beta2 = o.real("beta2");
  v.adam_epsilon = o.real("adam-epsilon");
  v.lr_schedule = o.text("lr-schedule");
  v.lr_step_size = static_cast<int>(o.integer("lr-step-size"));
  v.lr_gamma = o.real("lr-gamma");
  v.max_grad_norm = o.real("max-grad-norm");
  v.validation_fraction = o.real("validation-fraction");
  v.n_iter_no_change = static_cast<int>(o.integer("n-iter-no-change"));
  v.tol = o.real("tol");
  v.arch.hidden = parse_widths(hidden);
  v.matmul_precision = matmul::parse_precision(precision);
  // Up front, before any data are read: the job's agreed kernel variant is the same on
  // every rank, so every rank refuses alike.
  if (v.matmul_precision == matmul::Precision::kMedium) matmul::require(v.matmul_precision);
  v.arch.activation = parse_vae_activation(activation);
  v.arch.likelihood = parse_vae_likelihood(likelihood);
  if (variance != "learned") {
    char* end = nullptr;
    const double var = std::strtod(variance.c_str(), &end);
    if (end == variance.c_str() || *end != '\0' || !(var > 0) || !std::isfinite(var))
      throw_usage("--gaussian-variance must be 'learned' or a positive number (got '" + variance + "')");
    v.arch.learn_variance = false;
    v.arch.fixed_log_variance = std::log(var);
  }
  v.seed = c.seed;
  const io::DenseDatasetInfo info = run.open_dense_info();
  v.threads = c.threads;
  v.prefetch = c.prefetch;
  v.cache_bytes = static_cast<std::size_t>(c.cache_mb) * 1048576;
  comm::run_agreed(run.comm(), [&] {
    // Parameters P (float): parameters, Adam's two moments, the best copy, two gradients per
    // micro-batch of a rank's share of a step (ranks on one node keep two in shared memory,
    // by step parity), the integer sum (8 bytes) and a checkpoint snapshot (8 bytes);
    // activations per thread: micro-batch rows × (Σ widths) floats, a few times over; plus
    // blocks in flight.
    VaeArchitecture arch = v.arch;
    arch.input_dim = info.num_features;
    const Index num_params = Vae::count_parameters(arch);
    const double p = static_cast<double>(num_params);
    const double micro = static_cast<double>(std::min(v.micro_batch_rows, v.batch_size));
    const double local_blocks = std::ceil(static_cast<double>(v.batch_size) / micro / run.comm().size());
    double widths = static_cast<double>(2 * info.num_features + 4 * v.arch.latent_dim);
    for (Index h : v.arch.hidden) widths += 2.0 * static_cast<double>(h);
    train::MemoryEstimate need;
    const double params_bytes = p * 4.0 * (4.0 + 2.0 * local_blocks) + p * 16.0 + p * 8.0;  // + packed weights
    const double act_bytes = static_cast<double>(c.threads) * micro * widths * 4.0 * 4.0;
    const double block_bytes =
        static_cast<double>(c.prefetch + c.threads + 2) * micro * static_cast<double>(info.num_features) * 12.0;
    need.bytes = params_bytes + act_bytes + block_bytes;
    need.breakdown = fmt::format("{} parameters and optimiser state {:.2f} GiB, activations {:.2f} GiB, blocks {:.2f} GiB",
                                 num_params, params_bytes / 1073741824.0, act_bytes / 1073741824.0,
                                 block_bytes / 1073741824.0);
    train::check_memory(need, run.available_memory_bytes(),
                        "use smaller --hidden widths or --latent-dim, fewer --threads, or raise --memory-budget if the "
                        "limit is wrong");
  });
  run.log().info(fmt::format("data {}: {} samples x {} features in {} shard(s); {} rank(s) x {} thread(s); kernel variant {}",
                             c.data, info.num_rows, info.num_features, info.shards.size(), run.comm().size(), c.threads,
                             kernel::to_string(kernel::active())));
  nlohmann::json config{{"model", "vae"},
                        {"latent_dim", v.arch.latent_dim},
                        {"hidden", v.arch.hidden},
                        {"activation", activation},
                        {"likelihood", likelihood},
                        {"gaussian_variance", variance},
                        {"batch_size", v.batch_size},
                        {"epochs", v.epochs},
                        {"shuffle", v.shuffle},
                        {"learning_rate", v.learning_rate},
                        {"beta1", v.beta1},
                        {"beta2", v.beta2},
                        {"adam_epsilon", v.adam_epsilon},
                        {"lr_schedule", v.lr_schedule},
                        {"lr_step_size", v.lr_step_size},
                        {"lr_gamma", v.lr_gamma},
                        {"max_grad_norm", v.max_grad_norm},
                        {"validation_fraction", v.validation_fraction},
                        {"n_iter_no_change", v.n_iter_no_change},
                        {"tol", v.tol},
                        {"micro_batch_rows", v.micro_batch_rows},
                        {"matmul_precision", precision},
                        {"seed", c.seed},
                        {"data", c.data}};
  if (!c.checkpoint_every_given) {
    // Checkpoints count optimiser steps: by default one per epoch.
    c.checkpoint.every = static_cast<int>(std::max<Index>(1, vae_steps_per_epoch(info, v)));
  }
  train::FitControl* control = run.control(config, train::data_fingerprint(info));
  const auto observe = run.observer();
  const bool validating = v.validation_fraction > 0;
  const auto t0 = std::chrono::steady_clock::now();
  VaeFitResult fit = fit_vae(
      run.comm(), info, v, run.log(),
      [&](const train::IterationRecord& rec, double validation_elbo) {
        if (observe) observe(rec);
        if (validating)
          run.log().info(fmt::format("epoch {}: validation ELBO {:.4f} nats/sample", rec.iteration, validation_elbo));
      },
      control);
  const double total = run.finish(fit.em, t0, [&] { save_vae(fit.model, config.dump(), fit.em, fit.num_train_rows, c.data, c.output, c.overwrite); });
  run.log().info(fmt::format("{} after {} epochs ({} steps), training ELBO {:.4f} nats/sample{}, {:.2f} s; wrote {}",
                             fit.em.converged ? "stopped early" : "finished", fit.em.n_iter, fit.steps, fit.em.objective,
                             validating ? fmt::format(", best validation ELBO {:.4f}", fit.validation_elbo)
                                        : std::string(),
                             total, c.output));
  return 0;
}

}  // namespace

ModelSpec vae_spec() {
  using T = OptionType;
  ModelSpec s;
  s.name = "vae";
  s.summary = "variational autoencoder: minibatch ELBO gradients, Adam";
  s.data = DataKind::kDense;
  s.options = {
      {.flag = "latent-dim", .type = T::kInt, .default_value = "20", .help = "latent dimensions L", .min = 1},
      {.flag = "hidden", .type = T::kText, .default_value = "512,256",
       .help = "encoder hidden widths (the decoder mirrors them)"},
      {.flag = "activation", .type = T::kText, .default_value = "relu", .help = "relu | tanh", .choices = {"relu", "tanh"}},
      {.flag = "likelihood", .type = T::kText, .default_value = "bernoulli",
       .help = "bernoulli (data in [0, 1]; logits) | gaussian (real data; per-feature variance)",
       .choices = {"bernoulli", "gaussian"}},
      {.flag = "gaussian-variance", .type = T::kText, .default_value = "learned",
       .help = "gaussian decoder: learned (one log-variance per feature, starting at 0) or a fixed variance such as 0.1"},
      {.flag = "batch-size", .type = T::kInt, .default_value = "128",
       .help = "rows per optimiser step (global, any rank count)", .min = 1},
      {.flag = "micro-batch-rows", .type = T::kInt, .default_value = "64",
       .help = "rows per micro-batch: the unit of parallelism (a step's micro-batches are spread over ranks x threads); "
               "results depend on it, not on the rank or thread count",
       .min = 1},
      {.flag = "matmul-precision", .type = T::kText, .default_value = "highest",
       .help = "highest (float32 products) | medium (bfloat16 operands with float32 sums, about twice as fast; needs "
               "the kernel variant avx512bf16 or amxbf16: AVX512_BF16 on every rank), as PyTorch's torch.set_float32_matmul_precision",
       .choices = {"highest", "medium"}},
      {.flag = "epochs", .type = T::kInt, .default_value = "10", .help = "passes over the training rows (scikit-learn's max_iter)",
       .min = 1},
      {.flag = "shuffle", .type = T::kFlag,
       .help = "visit each epoch's minibatches in a seeded random order (their rows stay fixed; disables --cache-mb for "
               "training)"},
      {.flag = "learning-rate", .type = T::kReal, .default_value = "0.001", .help = "Adam step size", .min = 0,
       .min_exclusive = true},
      {.flag = "beta1", .type = T::kReal, .default_value = "0.9", .help = "Adam's first-moment decay", .min = 0, .max = 1,
       .max_exclusive = true},
      {.flag = "beta2", .type = T::kReal, .default_value = "0.999", .help = "Adam's second-moment decay", .min = 0,
       .max = 1, .max_exclusive = true},
      {.flag = "adam-epsilon", .type = T::kReal, .default_value = "1e-08",
       .help = "Adam's epsilon (added to the root of v-hat)", .min = 0, .min_exclusive = true},
      {.flag = "lr-schedule", .type = T::kText, .default_value = "constant",
       .help = "constant | step (times --lr-gamma every --lr-step-size epochs) | cosine (to 0 at the last epoch)",
       .choices = {"constant", "step", "cosine"}},
      {.flag = "lr-step-size", .type = T::kInt, .default_value = "10", .help = "epochs between decays (step schedule)",
       .min = 1},
      {.flag = "lr-gamma", .type = T::kReal, .default_value = "0.1", .help = "decay factor (step schedule)", .min = 0,
       .min_exclusive = true},
      {.flag = "max-grad-norm", .type = T::kReal, .default_value = "0", .help = "clip the gradient's L2 norm to this (0: off)",
       .min = 0},
      {.flag = "validation-fraction", .type = T::kReal, .default_value = "0",
       .help = "hold out the last fraction of the rows; early stopping then watches the validation ELBO and keeps the "
               "best epoch (on any improvement; --tol only counts epochs without one)",
       .min = 0, .max = 1, .max_exclusive = true},
      {.flag = "n-iter-no-change", .type = T::kInt, .default_value = "10",
       .help = "stop after this many epochs without an improvement of more than --tol", .min = 1},
      {.flag = "tol", .type = T::kReal, .default_value = "0.0001",
       .help = "validation ELBO, or training ELBO without one", .unit = "nats/sample", .min = 0},
  };
  s.tasks = {Task::kScore, Task::kTransform, Task::kSample};
  s.examples = {"latent fit vae --data mnist/ --output vae.h5 --latent-dim 20 --hidden 512,256 --epochs 20",
                "mpirun -n 4 latent fit vae --data mnist/ --output vae.h5 --likelihood gaussian --validation-fraction 0.1"};
  s.fit = fit_vae_run;
  s.objective_name = "train_elbo";
  s.change_name = "ELBO improvement (validation, else training)";
  s.own_tasks = vae_own_tasks();
  s.describe = [](const std::string& path, int) { return describe_vae_file(path); };
  return s;
}

}  // namespace latent::models
