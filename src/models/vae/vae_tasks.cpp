// The VAE's own tasks (ModelSpec::own_tasks): score (ELBO and IWAE), transform (posterior
// means and reconstructions), sample (decoded prior draws), and its `latent info` text.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "latent/core/control.hpp"
#include "latent/core/error.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/io/dense_dataset.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/models/vae/vae_apply.hpp"
#include "latent/models/vae/vae_fit.hpp"
#include "latent/train/task_run.hpp"
#include "../specs.hpp"

namespace latent::models {
namespace {

// Loads the model and opens the data on every rank; this rank's blocks. Collective.
Vae load_and_open(train::TaskRun& run, io::DenseDatasetInfo& info, std::vector<io::BlockRef>& mine) {
  const train::TaskCommon& c = run.common();
  Vae model;
  comm::run_agreed(run.comm(), [&] {
    model = load_vae(c.model);
    info = io::open_dense_dataset(c.data);
    if (info.num_features != model.architecture().input_dim)
      throw_input(fmt::format("data {} has {} features but model {} expects {}", c.data, info.num_features, c.model,
                              model.architecture().input_dim));
  });
  mine = io::rank_blocks(io::make_block_plan(info, c.block_rows), run.comm().rank(), run.comm().size());
  return model;
}

VaePassOptions pass_options(const train::TaskCommon& c) { return {c.threads, c.prefetch}; }

int score(train::TaskRun& run) {
  const train::TaskCommon& c = run.common();
  const auto iw_samples = static_cast<int>(run.options().integer("iw-samples"));
  const auto seed = static_cast<std::uint64_t>(run.options().integer("seed"));
  const bool per_sample = !c.output.empty();
  if (per_sample) run.check_output();
  io::DenseDatasetInfo info;
  std::vector<io::BlockRef> mine;
  const Vae model = load_and_open(run, info, mine);
  std::unique_ptr<train::RowOutput> out;
  if (per_sample) {
    std::vector<train::OutputColumn> columns{{"elbo", io::DType::kFloat64, 1}};
    if (iw_samples > 0) columns.push_back({"log_likelihood", io::DType::kFloat64, 1});
    out = run.row_output(columns, io::num_rows(mine));
  }
  VaeScoreVisitor write_scores;
  if (out)
    write_scores = [&](Index local_row, const RowMatrix& elbo, const RowMatrix& iwae) {
      out->write_rows("elbo", local_row, elbo);
      if (iw_samples > 0) out->write_rows("log_likelihood", local_row, iwae);
    };
  const VaeScore s = score_vae_rows(run.comm(), info, mine, model, iw_samples, seed, pass_options(c), write_scores);
  nlohmann::json j{{"model", "vae"},
                   {"data", c.data},
                   {"n_samples", s.num_rows},
                   {"elbo", s.elbo},
                   {"iw_samples", iw_samples},
                   {"definitions",
                    "elbo: mean over rows of log p(x|z) - KL(q(z|x) || N(0, I)) with one z ~ q per row and the KL in "
                    "closed form (Kingma & Welling 2014), nats per sample; iwae_log_likelihood: mean over rows of "
                    "log (1/k sum_j p(x, z_j) / q(z_j|x)), z_j ~ q (Burda et al. 2016 eq. 8), a lower bound of log p(x) "
                    "that tightens as k grows, nats per sample"}};
  if (iw_samples > 0) j["iwae_log_likelihood"] = s.iwae_log_likelihood;
  if (out) out->finish(info.num_rows);
  run.print(j);
  return 0;
}

int transform(train::TaskRun& run) {
  const train::TaskCommon& c = run.common();
  const bool reconstruct = run.options().flag("reconstruct");
  run.check_output();
  io::DenseDatasetInfo info;
  std::vector<io::BlockRef> mine;
  const Vae model = load_and_open(run, info, mine);
  const Index l = model.architecture().latent_dim;
  std::vector<train::OutputColumn> columns{{"latent_mean", io::DType::kFloat64, l},
                                           {"latent_log_variance", io::DType::kFloat64, l}};
  if (reconstruct) columns.push_back({"reconstruction", io::DType::kFloat64, info.num_features});
  const auto out = run.row_output(columns, io::num_rows(mine));
  transform_vae_rows(run.comm(), info, mine, model, reconstruct, pass_options(c),
                     [&](Index local_row, const RowMatrix& mean, const RowMatrix& log_var, const RowMatrix& recon) {
                       out->write_rows("latent_mean", local_row, mean);
                       out->write_rows("latent_log_variance", local_row, log_var);
                       if (reconstruct) out->write_rows("reconstruction", local_row, recon);
                     });
  out->finish(info.num_rows);
  run.log().info(fmt::format("wrote the posterior of {} rows to {}", info.num_rows, c.output));
  return 0;
}

int sample(train::TaskRun& run) {
  const train::TaskCommon& c = run.common();
  const Index n = run.options().integer("n-samples");
  const auto seed = static_cast<std::uint64_t>(run.options().integer("seed"));
  comm::run_agreed(run.comm(), [&] {
    if (!run.comm().is_root()) return;
    const Vae model = load_vae(c.model);
    const Index l = model.architecture().latent_dim, d = model.architecture().input_dim;
    io::H5Writer w(c.output, c.overwrite);
    w.attr("/", "format_version", static_cast<std::int64_t>(io::kDataFormatVersion));
    w.attr("/", "kind", std::string("dense"));
    w.attr("/", "model", std::string("vae"));
    w.attr("/", "model_path", c.model);
    w.attr("/", "seed", static_cast<std::int64_t>(seed));
    w.create(io::kDataDataset, io::DType::kFloat64, n, d);
    w.create("latent", io::DType::kFloat64, n, l);
    VaeWorkspace ws;
    constexpr Index kChunk = 1024;
    for (Index first = 0; first < n; first += kChunk) {
      stop_point();
      RowMatrix data, latent;
      sample_vae_rows(model, first, std::min(kChunk, n - first), seed, ws, data, latent);
      w.write_rows(io::kDataDataset, first, data);
      w.write_rows("latent", first, latent);
    }
    w.commit();
  });
  run.log().info(fmt::format("wrote {} samples to {}", n, c.output));
  return 0;
}

}  // namespace

std::vector<TaskSpec> vae_own_tasks() {
  using T = OptionType;
  const std::string data_help = "dense dataset directory with the model's number of features";
  return {
      {.task = Task::kScore,
       .usage = "latent score --model VAE.h5 --data DIR [--iw-samples 5000] [--per-sample OUT.h5]",
       .data_help = data_help,
       .output_flag = "per-sample",
       .output_required = false,
       .output_help = "also write per-row scores to this HDF5 file: /elbo and /log_likelihood (N x 1, nats; low = "
                      "anomalous)",
       .options = {{.flag = "iw-samples", .type = T::kInt, .default_value = "5000",
                    .help = "importance samples per row for the IWAE log-likelihood estimate (Burda et al. 2016); 0: "
                            "skip it",
                    .min = 0},
                   {.flag = "seed", .type = T::kInt, .default_value = "0", .help = "random seed of the evaluation noise",
                    .min = 0}},
       .run = score,
       .examples = {"latent score --model vae.h5 --data test/ --iw-samples 1000 --per-sample scores.h5"}},
      {.task = Task::kTransform,
       .usage = "latent transform --model VAE.h5 --data DIR --output OUT.h5 [--reconstruct]",
       .data_help = data_help,
       .output_flag = "output",
       .output_help = "HDF5 file: /latent_mean and /latent_log_variance (N x L, q(z|x)), with --reconstruct "
                      "/reconstruction (N x D)",
       .options = {{.flag = "reconstruct", .type = T::kFlag,
                    .help = "also decode z = the posterior mean (Bernoulli: probabilities)"}},
       .run = transform,
       .examples = {"latent transform --model vae.h5 --data test/ --output codes.h5 --reconstruct"}},
      {.task = Task::kSample,
       .usage = "latent sample --model VAE.h5 --n-samples N --output OUT.h5 [--seed S]",
       .reads_data = false,
       .output_flag = "output",
       .output_help = "HDF5 shard: /data (N x D: the decoder's mean of z ~ N(0, I); Bernoulli: probabilities) and "
                      "/latent (N x L)",
       .options = {{.flag = "n-samples", .type = T::kInt, .help = "number of draws", .required = true, .min = 1},
                   {.flag = "seed", .type = T::kInt, .default_value = "0",
                    .help = "random seed (draw i is a pure function of (seed, i))", .min = 0}},
       .run = sample,
       .examples = {"latent sample --model vae.h5 --n-samples 64 --output draws.h5 --seed 1"}},
  };
}

std::string describe_vae_file(const std::string& path) {
  const Vae model = load_vae(path);
  const VaeArchitecture& a = model.architecture();
  std::string hidden;
  for (Index h : a.hidden) hidden += (hidden.empty() ? "" : ",") + std::to_string(h);
  const io::H5Reader r(path);
  std::string text = fmt::format("model {}\nvae: {} features, latent dimensions {}, hidden {}, activation {}, likelihood {}{}, "
                                 "{} parameters\n",
                                 path, a.input_dim, a.latent_dim, hidden.empty() ? "(none)" : hidden, to_string(a.activation),
                                 to_string(a.likelihood),
                                 a.likelihood == VaeLikelihood::kGaussian
                                     ? (a.learn_variance ? " (learned variances)" : " (fixed variance)")
                                     : "",
                                 model.num_parameters());
  if (r.has_attr("/", "n_iter"))
    text += fmt::format("  epochs: {}  stopped early: {}  training ELBO: {:.4f} nats/sample\n", r.attr_int("/", "n_iter"),
                        r.attr_int("/", "converged") != 0 ? "yes" : "no", r.attr_double("/", "lower_bound"));
  if (r.has_attr("/", "config")) text += "  config: " + r.attr_string("/", "config") + "\n";
  return text;
}

}  // namespace latent::models
