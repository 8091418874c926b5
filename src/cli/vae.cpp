// The VAE's apply commands: score (ELBO and IWAE), transform (posterior means and
// reconstructions), sample (decoded prior draws) and info.
#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common.hpp"
#include "latent/core/error.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/models/vae/vae_apply.hpp"
#include "latent/models/vae/vae_fit.hpp"

namespace latent::cli {
namespace {

struct VaeApply {
  std::string model, data;
  StreamOptions stream;
};

void add_vae_apply(po::options_description& desc, VaeApply& a) {
  desc.add_options()
      ("model", po::value(&a.model)->required(), "VAE model file written by `latent fit vae`")
      ("data", po::value(&a.data)->required(), "dense dataset directory with the model's number of features");
  add_stream_options(desc, a.stream);
}

// Loads the model and opens the data on every rank; this rank's blocks. Collective.
models::Vae load_and_open(const Context& ctx, VaeApply& a, io::DenseDatasetInfo& info, std::vector<io::BlockRef>& mine) {
  models::Vae model;
  a.stream.threads = resolve_threads(a.stream.threads);
  comm::run_agreed(ctx.comm, [&] {
    model = models::load_vae(a.model);
    info = io::open_dense_dataset(a.data);
    if (info.num_features != model.architecture().input_dim)
      throw_input(fmt::format("data {} has {} features but model {} expects {}", a.data, info.num_features, a.model,
                              model.architecture().input_dim));
  });
  mine = io::rank_blocks(io::make_block_plan(info, a.stream.block_rows), ctx.comm.rank(), ctx.comm.size());
  return model;
}

models::VaePassOptions pass_options(const StreamOptions& s) { return {s.threads, s.prefetch}; }

}  // namespace


int score_vae(const std::vector<std::string>& args, const Context& ctx) {
  VaeApply a;
  int iw_samples = 5000;
  std::uint64_t seed = 0;
  std::string per_sample;
  bool overwrite = false;
  po::options_description desc("latent score options (VAE)");
  add_vae_apply(desc, a);
  desc.add_options()
      ("iw-samples", po::value(&iw_samples)->default_value(5000),
       "importance samples per row for the IWAE log-likelihood estimate (Burda et al. 2016); 0: skip it")
      ("seed", po::value(&seed)->default_value(0), "random seed of the evaluation noise")
      ("per-sample", po::value(&per_sample)->default_value(""),
       "also write per-row scores to this HDF5 file: /elbo and /log_likelihood (N x 1, nats; low = anomalous)")
      ("overwrite", po::bool_switch(&overwrite), "replace an existing --per-sample file (atomically)");
  po::variables_map vm;
  if (!parse(args, desc, vm, ctx, "latent score --model VAE.h5 --data DIR [--iw-samples 5000] [--per-sample OUT.h5]")) return 0;
  if (iw_samples < 0) throw_usage("--iw-samples must be >= 0");
  if (!per_sample.empty())
    comm::run_agreed(ctx.comm, [&] {
      if (ctx.comm.is_root()) io::check_output_path(per_sample, overwrite);
    });
  io::DenseDatasetInfo info;
  std::vector<io::BlockRef> mine;
  const models::Vae model = load_and_open(ctx, a, info, mine);
  const Index local_rows = io::num_rows(mine);
  std::unique_ptr<RowParts> parts;
  if (!per_sample.empty()) {
    std::vector<RowParts::Column> columns{{"elbo", io::DType::kFloat64, 1}};
    if (iw_samples > 0) columns.push_back({"log_likelihood", io::DType::kFloat64, 1});
    parts = std::make_unique<RowParts>(ctx, per_sample, columns, local_rows);
  }
  models::VaeScoreVisitor write_scores;
  if (parts)
    write_scores = [&](Index local_row, const RowMatrix& elbo, const RowMatrix& iwae) {
      parts->write_rows("elbo", local_row, elbo);
      if (iw_samples > 0) parts->write_rows("log_likelihood", local_row, iwae);
    };
  const models::VaeScore s =
      models::score_vae_rows(ctx.comm, info, mine, model, iw_samples, seed, pass_options(a.stream), write_scores);
  nlohmann::json j{{"model", "vae"},
                   {"data", a.data},
                   {"n_samples", s.num_rows},
                   {"elbo", s.elbo},
                   {"iw_samples", iw_samples},
                   {"definitions",
                    "elbo: mean over rows of log p(x|z) - KL(q(z|x) || N(0, I)) with one z ~ q per row and the KL in "
                    "closed form (Kingma & Welling 2014), nats per sample; iwae_log_likelihood: mean over rows of "
                    "log (1/k sum_j p(x, z_j) / q(z_j|x)), z_j ~ q (Burda et al. 2016 eq. 8), a lower bound of log p(x) "
                    "that tightens as k grows, nats per sample"}};
  if (iw_samples > 0) j["iwae_log_likelihood"] = s.iwae_log_likelihood;
  if (parts) parts->finish(overwrite, a.model, a.data, info.num_rows);
  if (ctx.comm.is_root()) ctx.out << j.dump() << '\n';
  return 0;
}

int transform_vae(const std::vector<std::string>& args, const Context& ctx) {
  VaeApply a;
  std::string output;
  bool overwrite = false, reconstruct = false;
  po::options_description desc("latent transform options (VAE)");
  add_vae_apply(desc, a);
  desc.add_options()
      ("output", po::value(&output)->required(),
       "HDF5 file: /latent_mean and /latent_log_variance (N x L, q(z|x)), with --reconstruct /reconstruction (N x D)")
      ("reconstruct", po::bool_switch(&reconstruct), "also decode z = the posterior mean (Bernoulli: probabilities)")
      ("overwrite", po::bool_switch(&overwrite), "replace an existing output file (atomically)");
  po::variables_map vm;
  if (!parse(args, desc, vm, ctx, "latent transform --model VAE.h5 --data DIR --output OUT.h5 [--reconstruct]")) return 0;
  comm::run_agreed(ctx.comm, [&] {
    if (ctx.comm.is_root()) io::check_output_path(output, overwrite);
  });
  io::DenseDatasetInfo info;
  std::vector<io::BlockRef> mine;
  const models::Vae model = load_and_open(ctx, a, info, mine);
  const Index local_rows = io::num_rows(mine), l = model.architecture().latent_dim;
  std::vector<RowParts::Column> columns{{"latent_mean", io::DType::kFloat64, l}, {"latent_log_variance", io::DType::kFloat64, l}};
  if (reconstruct) columns.push_back({"reconstruction", io::DType::kFloat64, info.num_features});
  RowParts parts(ctx, output, columns, local_rows);
  models::transform_vae_rows(ctx.comm, info, mine, model, reconstruct, pass_options(a.stream),
                             [&](Index local_row, const RowMatrix& mean, const RowMatrix& log_var, const RowMatrix& recon) {
                               parts.write_rows("latent_mean", local_row, mean);
                               parts.write_rows("latent_log_variance", local_row, log_var);
                               if (reconstruct) parts.write_rows("reconstruction", local_row, recon);
                             });
  parts.finish(overwrite, a.model, a.data, info.num_rows);
  ctx.log.info(fmt::format("wrote the posterior of {} rows to {}", info.num_rows, output));
  return 0;
}

int sample_vae(const std::vector<std::string>& args, const Context& ctx) {
  std::string model_path, output;
  Index n = 0;
  std::uint64_t seed = 0;
  bool overwrite = false;
  po::options_description desc("latent sample options (VAE)");
  desc.add_options()
      ("model", po::value(&model_path)->required(), "VAE model file")
      ("n-samples", po::value(&n)->required(), "number of draws")
      ("output", po::value(&output)->required(),
       "HDF5 shard: /data (N x D: the decoder's mean of z ~ N(0, I); Bernoulli: probabilities) and /latent (N x L)")
      ("seed", po::value(&seed)->default_value(0), "random seed (draw i is a pure function of (seed, i))")
      ("overwrite", po::bool_switch(&overwrite), "replace an existing output file (atomically)");
  po::variables_map vm;
  if (!parse(args, desc, vm, ctx, "latent sample --model VAE.h5 --n-samples N --output OUT.h5 [--seed S]")) return 0;
  comm::run_agreed(ctx.comm, [&] {
    if (!ctx.comm.is_root()) return;
    if (n < 1) throw_usage("--n-samples must be at least 1");
    const models::Vae model = models::load_vae(model_path);
    const Index l = model.architecture().latent_dim, d = model.architecture().input_dim;
    io::H5Writer w(output, overwrite);
    w.attr("/", "format_version", static_cast<std::int64_t>(io::kDataFormatVersion));
    w.attr("/", "kind", std::string("dense"));
    w.attr("/", "model", model_path);
    w.attr("/", "seed", static_cast<std::int64_t>(seed));
    w.create(io::kDataDataset, io::DType::kFloat64, n, d);
    w.create("latent", io::DType::kFloat64, n, l);
    models::VaeWorkspace ws;
    constexpr Index kChunk = 1024;
    for (Index first = 0; first < n; first += kChunk) {
      RowMatrix data, latent;
      models::sample_vae_rows(model, first, std::min(kChunk, n - first), seed, ws, data, latent);
      w.write_rows(io::kDataDataset, first, data);
      w.write_rows("latent", first, latent);
    }
    w.commit();
  });
  ctx.log.info(fmt::format("wrote {} samples to {}", n, output));
  return 0;
}

std::string describe_vae(const std::string& path) {
  const models::Vae model = models::load_vae(path);
  const models::VaeArchitecture& a = model.architecture();
  std::string hidden;
  for (Index h : a.hidden) hidden += (hidden.empty() ? "" : ",") + std::to_string(h);
  const io::H5Reader r(path);
  std::string text = fmt::format("model {}\nvae: {} features, latent dimensions {}, hidden {}, activation {}, likelihood {}{}, "
                                 "{} parameters\n",
                                 path, a.input_dim, a.latent_dim, hidden.empty() ? "(none)" : hidden, to_string(a.activation),
                                 to_string(a.likelihood),
                                 a.likelihood == models::VaeLikelihood::kGaussian
                                     ? (a.learn_variance ? " (learned variances)" : " (fixed variance)")
                                     : "",
                                 model.num_parameters());
  if (r.has_attr("/", "n_iter"))
    text += fmt::format("  epochs: {}  stopped early: {}  training ELBO: {:.4f} nats/sample\n", r.attr_int("/", "n_iter"),
                        r.attr_int("/", "converged") != 0 ? "yes" : "no", r.attr_double("/", "lower_bound"));
  if (r.has_attr("/", "config")) text += "  config: " + r.attr_string("/", "config") + "\n";
  return text;
}

}  // namespace latent::cli
