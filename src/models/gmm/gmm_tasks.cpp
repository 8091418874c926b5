// The Gaussian mixture's own task: `latent generate gmm`, synthetic dense shards drawn
// from a random generating mixture, written in parallel (each rank a contiguous range of
// shards), with the generating model beside the data.
#include <fmt/format.h>

#include <chrono>
#include <filesystem>

#include "../specs.hpp"
#include "latent/core/error.hpp"
#include "latent/io/shard_directory.hpp"
#include "latent/models/fitted_model.hpp"
#include "latent/models/generate.hpp"
#include "latent/models/gmm/gmm_generate.hpp"
#include "latent/train/task_run.hpp"

namespace latent::models {
namespace {

int generate(train::TaskRun& run) {
  const OptionValues& o = run.options();
  const Index d = o.integer("n-features");
  const GeneratePlan plan = plan_generate(run, d, "gmm");
  const auto t0 = std::chrono::steady_clock::now();
  io::ShardDirectory dir(run.comm(), plan.output, plan.truth);
  // Rank 0 writes the true mixture; every rank samples from that file (shared filesystem).
  const std::string model_path = plan.truth.empty() ? dir.tmp() + "/truth.model" : plan.truth;
  comm::run_agreed(run.comm(), [&] {
    if (!run.comm().is_root()) return;
    const GmmGeneratorOptions g{plan.n_components, d,
                                o.text("covariance-type") == "diag" ? CovarianceType::kDiag : CovarianceType::kSpherical,
                                o.real("cluster-std"), o.real("center-box"), plan.seed};
    save_gmm(generating_gmm(g), FitRecord{plan.config, {}, plan.n_samples, plan.output}, model_path, false);
    if (!plan.truth.empty()) dir.truth_written();
  });
  comm::run_agreed(run.comm(), [&] {
    const auto model = load_model(model_path);
    // A progress line of this rank's rows (rank 0's, on a terminal).
    const auto progress = run.progress("generate", plan.layout.begin(plan.mine.last) - plan.layout.begin(plan.mine.first), "rows");
    write_sampled_shards(*model, plan.layout, plan.mine.first, plan.mine.last,
                         [&](Index s) { return dir.shard_path(s); },
                         o.text("dtype") == "float64" ? io::DType::kFloat64 : io::DType::kFloat32, plan.seed,
                         run.common().threads, [&](Index done) { progress->update(done); });
    progress->finish();
  });
  comm::run_agreed(run.comm(), [&] {
    if (run.comm().is_root() && plan.truth.empty()) std::filesystem::remove(model_path);
  });
  dir.publish();
  log_generated(run, plan, "rows", "D", d,
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return 0;
}

}  // namespace

std::vector<TaskSpec> gmm_own_tasks() {
  using T = OptionType;
  std::vector<OptionSpec> options = generate_options("rows N", "mixture components K");
  options.insert(options.end(),
                 {{.flag = "n-features", .type = T::kInt, .help = "features D", .required = true, .min = 1},
                  {.flag = "covariance-type", .type = T::kText, .default_value = "diag", .help = "diag | spherical",
                   .choices = {"diag", "spherical"}},
                  {.flag = "cluster-std", .type = T::kReal, .default_value = "1",
                   .help = "scale of the standard deviations (each is cluster-std x U(0.5, 1.5))", .min = 0,
                   .min_exclusive = true},
                  {.flag = "center-box", .type = T::kReal, .default_value = "10",
                   .help = "means are uniform in [-box, box]^D", .min = 0},
                  {.flag = "dtype", .type = T::kText, .default_value = "float32", .help = "float32 | float64 (/data on disk)",
                   .choices = {"float32", "float64"}}});
  return {{.task = Task::kGenerate,
           .usage = "latent generate gmm --n-samples N --n-features D --n-components K --output DIR [options]",
           .reads_data = false,
           .output_flag = "output",
           .output_help = "data directory to create (must not exist)",
           .options = options,
           .run = generate,
           .examples = {"mpirun -n 4 latent generate gmm --n-samples 10000000 --n-features 50 --n-components 20 "
                        "--output synth/"},
           .reads_model = false,
           .takes_threads = true}};
}

}  // namespace latent::models
