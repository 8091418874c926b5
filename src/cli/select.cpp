// `latent select MODEL`: fits one candidate per --n-components value on the same data and
// compares them by BIC, AIC and held-out log-likelihood (Schwarz 1978; Akaike 1974), as
// one would loop scikit-learn's GaussianMixture(...).bic(X) over K.
//
// Data passes are shared: one validating summary pass, one scatter-matrix pass for every
// PPCA/FA candidate (covariance solver), and one pass each over the training and the
// held-out rows that scores every candidate at once.
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common.hpp"
#include "latent/core/error.hpp"
#include "latent/core/exact_sum.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/models/apply.hpp"
#include "latent/models/factor/factor_fit.hpp"
#include "latent/models/fitted_model.hpp"
#include "latent/models/gmm/gmm_fit.hpp"
#include "latent/train/block_reduce.hpp"
#include "latent/train/data_summary.hpp"

namespace latent::cli {
namespace {

std::vector<Index> parse_list(const std::string& text) {
  std::vector<Index> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    std::size_t used = 0;
    Index v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || v < 1)
      throw_usage("--n-components expects a comma-separated list of positive integers, e.g. 2,4,8 (got '" + text + "')");
    out.push_back(v);
  }
  if (out.empty()) throw_usage("--n-components needs at least one value");
  return out;
}

std::unique_ptr<io::BlockSource> source_of(const io::DenseDatasetInfo& info, const std::vector<io::BlockRef>& plan, Index first,
                                           Index last, const Context& ctx, const StreamOptions& o) {
  io::BlockSourceOptions bo;
  bo.prefetch_blocks = o.prefetch;
  bo.cache_bytes = static_cast<std::size_t>(std::max<Index>(0, o.cache_mb)) << 20;
  return std::make_unique<io::BlockSource>(info, io::rank_blocks(plan, first, last, ctx.comm.rank(), ctx.comm.size()), bo);
}

}  // namespace

int cmd_select(const std::vector<std::string>& args, const Context& ctx) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    if (ctx.comm.is_root())
      ctx.out << "Usage: latent select gmm|ppca|fa --data DIR --n-components 2,4,8 [options]   (--help after the model)\n";
    return args.empty() ? exit_code(ErrorKind::kUsage) : 0;
  }
  const std::string kind = args[0];
  if (kind != "gmm" && kind != "ppca" && kind != "fa") throw_usage("select: unknown model '" + kind + "' (gmm, ppca or fa)");
  std::string data, list, validation_data, criterion = "bic", output_dir, cov = "full", solver = "auto";
  double validation_fraction = 0.1, tol = 0, reg_covar = 1e-6;
  int max_iter = 0, n_init = 1;
  std::string init_params = "kmeans";
  bool overwrite = false;
  std::uint64_t seed = 0;
  StreamOptions stream;
  po::options_description desc("latent select " + kind + " options");
  desc.add_options()
      ("data", po::value(&data)->required(), "training data: directory of HDF5 shards (or one shard file)")
      ("n-components", po::value(&list)->required(), "candidates, comma-separated (gmm: K; ppca/fa: latent dimension L)")
      ("validation-fraction", po::value(&validation_fraction)->default_value(0.1),
       "hold out the last rows (whole blocks, at least this fraction) for the held-out log-likelihood; shuffle ordered data first")
      ("validation-data", po::value(&validation_data)->default_value(""),
       "held-out data set instead (then every row of --data trains)")
      ("criterion", po::value(&criterion)->default_value("bic"), "bic | aic | held-out: how the best candidate is named")
      ("output-dir", po::value(&output_dir)->default_value(""), "also write every candidate's model file here (MODEL-N.h5)")
      ("overwrite", po::bool_switch(&overwrite), "replace existing model files in --output-dir")
      ("tol", po::value(&tol)->default_value(kind == "gmm" ? 1e-3 : 1e-6), "EM tolerance (as `latent fit`)")
      ("max-iter", po::value(&max_iter)->default_value(kind == "gmm" ? 100 : 1000), "EM iterations per candidate")
      ("seed", po::value(&seed)->default_value(0), "random seed")
      ("covariance-type", po::value(&cov)->default_value("full"), "gmm: full | tied | diag | spherical")
      ("reg-covar", po::value(&reg_covar)->default_value(1e-6), "gmm: added to the covariance diagonals")
      ("n-init", po::value(&n_init)->default_value(1), "gmm: initialisations per candidate")
      ("init-params", po::value(&init_params)->default_value("kmeans"), "gmm: kmeans | k-means++ | random | random_from_data")
      ("solver", po::value(&solver)->default_value("auto"), "ppca/fa: auto | covariance | streaming");
  add_stream_options(desc, stream);
  po::variables_map vm;
  if (!parse(std::vector<std::string>(args.begin() + 1, args.end()), desc, vm, ctx,
             "latent select " + kind + " --data DIR --n-components 2,4,8 [--validation-fraction 0.1] [--criterion bic]"))
    return 0;
  const std::vector<Index> candidates = parse_list(list);
  if (criterion != "bic" && criterion != "aic" && criterion != "held-out") throw_usage("--criterion must be bic, aic or held-out");
  if (!(validation_fraction >= 0 && validation_fraction < 1)) throw_usage("--validation-fraction must be in [0, 1)");
  if (stream.block_rows < 1) throw_usage("--block-rows must be at least 1");
  stream.threads = resolve_threads(stream.threads);
  const bool external = !validation_data.empty();
  if (!external && validation_fraction == 0 && criterion == "held-out")
    throw_usage("--criterion held-out needs --validation-fraction > 0 or --validation-data");

  // Training and held-out sources: the last blocks of the global plan, or another data set.
  io::DenseDatasetInfo info;
  std::vector<io::BlockRef> plan;
  comm::run_agreed(ctx.comm, [&] {
    info = io::open_dense_dataset(data);
    plan = io::make_block_plan(info, stream.block_rows);
  });
  const Index nb = static_cast<Index>(plan.size());
  // Held out: the fewest trailing blocks holding at least the fraction of the rows.
  Index nv = 0;
  if (!external && validation_fraction > 0) {
    const double want = validation_fraction * static_cast<double>(info.num_rows);
    for (double rows = 0; nv < nb && (nv == 0 || rows < want); ++nv)
      rows += static_cast<double>(plan[static_cast<std::size_t>(nb - 1 - nv)].num_rows);
  }
  if (nv >= nb)
    throw_usage(fmt::format("--validation-fraction {} of {} block(s) leaves no training rows; use a smaller --block-rows or "
                            "--validation-data", validation_fraction, nb));
  auto train_source = source_of(info, plan, 0, nb - nv, ctx, stream);
  std::unique_ptr<io::BlockSource> held_out;
  if (external) {
    held_out = open_source(ctx, validation_data, stream, Labels::kNo);
    if (held_out->info().num_features != info.num_features)
      throw_input(fmt::format("--validation-data {} has {} features, --data {} has {}", validation_data,
                              held_out->info().num_features, data, info.num_features));
  } else if (nv > 0) {
    held_out = source_of(info, plan, nb - nv, nb, ctx, stream);
  }
  Index n_held_out = 0;
  if (external) n_held_out = held_out->info().num_rows;
  for (Index b = nb - nv; b < nb; ++b) n_held_out += plan[static_cast<std::size_t>(b)].num_rows;

  const train::DataSummary summary = train::summarize(ctx.comm, *train_source, stream.threads);
  ctx.log.info(fmt::format("select {}: {} candidate(s); {} training rows, {} held-out rows; {} rank(s) x {} thread(s)", kind,
                           candidates.size(), summary.num_samples, n_held_out, ctx.comm.size(), stream.threads));
  std::unique_ptr<models::Scatter> scatter;
  std::vector<std::unique_ptr<models::FittedModel>> fitted;
  std::vector<train::EmResult> ems;
  std::vector<double> seconds;
  // Writes candidate n's model file as OUTPUT_DIR/MODEL-n.h5 on rank 0 (errors agreed).
  const auto save = [&](const std::function<void(const std::string&)>& write, Index n) {
    if (output_dir.empty()) return;
    comm::run_agreed(ctx.comm, [&] {
      if (!ctx.comm.is_root()) return;
      std::filesystem::create_directories(output_dir);
      write(output_dir + "/" + kind + "-" + std::to_string(n) + ".h5");
    });
  };
  for (const Index n : candidates) {
    const auto t0 = std::chrono::steady_clock::now();
    const Logger quiet = Logger::silent();
    if (kind == "gmm") {
      models::GmmConfig g;
      g.n_components = n;
      g.covariance_type = models::parse_covariance_type(cov);
      g.reg_covar = reg_covar;
      g.tol = tol;
      g.max_iter = max_iter;
      g.n_init = n_init;
      g.init_params = init_params;
      g.seed = seed;
      g.threads = stream.threads;
      models::GmmFitResult r = models::fit_gmm(ctx.comm, *train_source, summary, g, quiet, {});
      ems.push_back(r.em);
      fitted.push_back(models::make_fitted(r.model));
      save([&](const std::string& path) {
        models::save_gmm(r.model, models::FitRecord{"{}", r.em, summary.num_samples, data}, path, overwrite);
      }, n);
    } else {
      models::FactorConfig f;
      f.n_components = n;
      f.noise = kind == "ppca" ? models::NoiseType::kIsotropic : models::NoiseType::kDiagonal;
      f.tol = tol;
      f.max_iter = max_iter;
      f.solver = solver;
      f.seed = seed;
      f.threads = stream.threads;
      if (!scatter && models::resolve_factor_solver(f, info.num_features) == "covariance")
        scatter = std::make_unique<models::Scatter>(models::scatter_pass(ctx.comm, *train_source, summary.mean, stream.threads));
      models::FactorFitResult r = models::fit_factor(ctx.comm, *train_source, summary, f, quiet, {}, nullptr, scatter.get());
      ems.push_back(r.em);
      fitted.push_back(models::make_fitted(r.model));
      save([&](const std::string& path) {
        models::save_factor(r.model, models::FitRecord{"{}", r.em, summary.num_samples, data}, path, overwrite);
      }, n);
    }
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    ctx.log.info(fmt::format("  {} = {:>4}: {} after {} iterations, {:.2f} s", kind == "gmm" ? "K" : "L", n,
                             ems.back().converged ? "converged" : "stopped", ems.back().n_iter, seconds.back()));
  }
  const std::vector<double> train_ll = models::mean_scores(ctx.comm, *train_source, fitted, stream.threads);
  const std::vector<double> held_ll = held_out ? models::mean_scores(ctx.comm, *held_out, fitted, stream.threads) : std::vector<double>{};
  const double n = static_cast<double>(summary.num_samples);
  nlohmann::json rows = nlohmann::json::array();
  std::size_t best = 0;
  std::vector<double> key(candidates.size());
  std::string table = fmt::format("  {:>6}  {:>10}  {:>16}  {:>16}  {:>16}  {:>16}  {:>6}\n", kind == "gmm" ? "K" : "L",
                                  "parameters", "train ll/sample", "BIC", "AIC", "held-out ll", "iter");
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    const double p = static_cast<double>(fitted[i]->num_parameters());
    const double bic = -2 * train_ll[i] * n + p * std::log(n), aic = -2 * train_ll[i] * n + 2 * p;
    nlohmann::json row{{"n_components", candidates[i]},
                       {"n_parameters", fitted[i]->num_parameters()},
                       {"train_log_likelihood", train_ll[i]},
                       {"bic", bic},
                       {"aic", aic},
                       {"n_iter", ems[i].n_iter},
                       {"converged", ems[i].converged},
                       {"seconds", seconds[i]}};
    if (held_out) row["held_out_log_likelihood"] = held_ll[i];
    rows.push_back(row);
    key[i] = criterion == "bic" ? bic : criterion == "aic" ? aic : -held_ll[i];
    if (key[i] < key[best]) best = i;
    table += fmt::format("  {:>6}  {:>10}  {:>16.6f}  {:>16.6g}  {:>16.6g}  {:>16}  {:>6}\n", candidates[i],
                         fitted[i]->num_parameters(), train_ll[i], bic, aic,
                         held_out ? fmt::format("{:.6f}", held_ll[i]) : std::string("-"), ems[i].n_iter);
  }
  ctx.log.info("candidates (log-likelihoods in nats per sample; BIC/AIC on the training rows):\n" + table +
               fmt::format("best by {}: {} = {}", criterion, kind == "gmm" ? "K" : "L", candidates[best]));
  nlohmann::json j{{"model", kind},
                   {"data", data},
                   {"criterion", criterion},
                   {"n_train", summary.num_samples},
                   {"n_held_out", n_held_out},
                   {"best_n_components", candidates[best]},
                   {"candidates", rows},
                   {"definitions",
                    "bic = -2 N ll + p log N, aic = -2 N ll + 2 p with ll the mean log-likelihood of the training rows "
                    "under the fitted parameters (scikit-learn's bic/aic), p the free parameters; held_out_log_likelihood: "
                    "mean log-likelihood of the held-out rows, nats per sample"}};
  if (kind == "gmm") j["covariance_type"] = cov;
  if (ctx.comm.is_root()) ctx.out << j.dump() << '\n';
  return 0;
}

}  // namespace latent::cli
