// `latent select MODEL`: fits one candidate per --n-components value on the same data and
// compares them by BIC, AIC and held-out log-likelihood (Schwarz 1978; Akaike 1974), as
// one would loop scikit-learn's GaussianMixture(...).bic(X) over K.
//
// Data passes are shared: one validating summary pass, one scatter-matrix pass for every
// PPCA/FA candidate (covariance solver), and one pass each over the training and the
// held-out rows that scores every candidate at once.
#include <fmt/format.h>

#include <algorithm>
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
#include "latent/models/fitted_model.hpp"
#include "latent/models/registry.hpp"
#include "latent/train/fit_run.hpp"
#include "latent/train/block_reduce.hpp"
#include "latent/train/data_summary.hpp"
#include "latent/train/metrics.hpp"

namespace latent::cli {
namespace {

std::vector<Index> parse_list(const std::string& text, const std::string& flag) {
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
    if (used == 0 || used != item.size() || v < 0)
      throw_usage("--" + flag + " expects a comma-separated list of integers, e.g. 2,4,8 (got '" + text + "')");
    out.push_back(v);
  }
  if (out.empty()) throw_usage("--" + flag + " needs at least one value");
  return out;
}

std::unique_ptr<io::BlockSource> source_of(const io::DenseDatasetInfo& info, const std::vector<io::BlockRef>& plan, Index first,
                                           Index last, const Context& ctx, const StreamOptions& o) {
  io::BlockSourceOptions bo;
  bo.prefetch_blocks = o.prefetch;
  bo.cache_bytes = static_cast<std::size_t>(std::max<Index>(0, o.cache_mb)) << 20;
  bo.allow_nan = o.allow_missing;
  bo.io_thread = io_thread_has_core(o.threads);
  return std::make_unique<io::BlockSource>(info, io::rank_blocks(plan, first, last, ctx.comm.rank(), ctx.comm.size()), bo);
}

}  // namespace

int cmd_select(const std::vector<std::string>& args, const Context& ctx) {
  std::vector<std::string> selectable;
  for (const models::ModelSpec& s : models::registry())
    if (s.supports(models::Task::kSelect) && s.select) selectable.push_back(s.name);
  std::string names;
  for (const auto& n : selectable) names += (names.empty() ? "" : "|") + n;
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    if (ctx.comm.is_root())
      ctx.out << "Usage: latent select " << names << " --data DIR --n-components 2,4,8 [options]   (--help after the model)\n";
    return args.empty() ? exit_code(ErrorKind::kUsage) : 0;
  }
  const std::string kind = args[0];
  const models::ModelSpec* spec = models::find_model(kind);
  if (!spec || !spec->select) {
    const std::string near = models::nearest(kind, selectable);
    throw_usage("select: unknown model '" + kind + "'" + (near.empty() ? "" : " (did you mean " + near + "?)") + " (" +
                names + ")");
  }
  const std::vector<std::string>& grid = spec->select_grid;
  std::string data, validation_data, criterion = "bic", output_dir;
  double validation_fraction = 0.1;
  bool overwrite = false;
  std::uint64_t seed = 0;
  StreamOptions stream;
  RawValues raw;
  po::options_description own("latent select " + kind + " options (the model's; " + [&] {
    std::string g;
    for (const auto& f : grid) g += (g.empty() ? "--" : " and --") + f;
    return g;
  }() + " take comma-separated candidates)"),
      common("options of every select");
  add_model_options(own, spec->options, raw, grid);
  common.add_options()
      ("data", po::value(&data)->required(), "training data: directory of HDF5 shards (or one shard file)")
      ("validation-fraction", po::value(&validation_fraction)->default_value(0.1, "0.1"),
       "hold out the last rows (whole blocks, at least this fraction) for the held-out log-likelihood; shuffle ordered data first")
      ("validation-data", po::value(&validation_data)->default_value(""),
       "held-out data set instead (then every row of --data trains)")
      ("criterion", po::value(&criterion)->default_value("bic"), "bic | aic | held-out: how the best candidate is named")
      ("output-dir", po::value(&output_dir)->default_value(""),
       "also write every candidate's model file here (MODEL-N.h5; with a grid over several options MODEL-N-M.h5)")
      ("overwrite", po::bool_switch(&overwrite), "replace existing model files in --output-dir")
      ("seed", po::value(&seed)->default_value(0), "random seed");
  add_stream_options(common, stream);
  po::options_description desc;
  desc.add(own).add(common);
  po::variables_map vm;
  std::string example = "latent select " + kind + " --data DIR";
  for (const auto& f : grid) example += " --" + f + (f == grid.front() ? " 2,4,8" : " 1,5");
  if (!parse(std::vector<std::string>(args.begin() + 1, args.end()), desc, vm, ctx,
             example + " [--validation-fraction 0.1] [--criterion bic]", nullptr,
             "EXAMPLES\n  " + example + "\n  " + example + " --criterion held-out --output-dir candidates/\n\n" +
                 exit_status_text()))
    return 0;
  // The grid: every combination of the listed values, the first option varying slowest.
  std::vector<std::vector<Index>> lists;
  for (const auto& f : grid) {
    if (!vm.count(f)) throw_usage("--" + f + " is required: a comma-separated list of candidates");
    lists.push_back(parse_list(raw.texts.at(f), f));
  }
  std::vector<std::vector<Index>> candidates(1);
  for (const auto& list : lists) {
    std::vector<std::vector<Index>> next;
    for (const auto& c : candidates)
      for (const Index v : list) {
        next.push_back(c);
        next.back().push_back(v);
      }
    candidates = std::move(next);
  }
  const models::OptionValues base = typed_values(spec->options, raw, vm, grid);
  std::vector<models::OptionValues> values;
  for (const auto& c : candidates) {
    models::OptionValues v = base;
    for (std::size_t i = 0; i < grid.size(); ++i) v.set(grid[i], std::int64_t{c[i]}, true);
    models::validate_options(*spec, v);
    values.push_back(std::move(v));
  }
  if (criterion != "bic" && criterion != "aic" && criterion != "held-out") throw_usage("--criterion must be bic, aic or held-out");
  if (!(validation_fraction >= 0 && validation_fraction < 1)) throw_usage("--validation-fraction must be in [0, 1)");
  if (stream.block_rows < 1) throw_usage("--block-rows must be at least 1");
  stream.threads = resolve_threads(stream.threads);
  const models::OptionSpec* missing_option = spec->find_option("missing-values");
  stream.allow_missing = missing_option && base.text("missing-values") == "nan";
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
  train::SelectRun run{ctx.comm, *train_source, summary, data, seed, stream.threads, {}, {}};
  std::vector<std::unique_ptr<models::FittedModel>> fitted;
  std::vector<train::EmResult> ems;
  std::vector<double> seconds;
  const auto label = [&](const std::vector<Index>& c, const std::string& sep, bool with_flags) {
    std::string out;
    for (std::size_t i = 0; i < c.size(); ++i)
      out += (i ? sep : "") + (with_flags ? grid[i] + " " : "") + std::to_string(c[i]);
    return out;
  };
  const auto key_of = [](const std::string& flag) {
    std::string k = flag;
    std::replace(k.begin(), k.end(), '-', '_');
    return k;
  };
  try {
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    spec->select(run, values[i]);
    ems.push_back(run.result.em);
    fitted.push_back(std::move(run.result.model));
    if (!output_dir.empty())
      comm::run_agreed(ctx.comm, [&] {
        if (!ctx.comm.is_root()) return;
        std::filesystem::create_directories(output_dir);
        run.result.save(output_dir + "/" + kind + "-" + label(candidates[i], "-", false) + ".h5", overwrite);
      });
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    ctx.log.info(fmt::format("  {}: {} after {} iterations, {:.2f} s", label(candidates[i], ", ", true),
                             ems.back().converged ? "converged" : "stopped", ems.back().n_iter, seconds.back()));
  }
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kRequeue) throw;
    // Stopped by SIGTERM/SIGUSR1 (every rank, agreed): the finished candidates are reported
    // (and kept in --output-dir); their scores would need another pass over the data.
    nlohmann::json rows = nlohmann::json::array();
    for (std::size_t i = 0; i < ems.size(); ++i) {
      nlohmann::json row{{"n_parameters", fitted[i]->num_parameters()}, {"n_iter", ems[i].n_iter},
                         {"converged", ems[i].converged}, {"seconds", seconds[i]}};
      for (std::size_t g = 0; g < grid.size(); ++g) row[key_of(grid[g])] = candidates[i][g];
      if (!output_dir.empty()) row["model_file"] = output_dir + "/" + kind + "-" + label(candidates[i], "-", false) + ".h5";
      rows.push_back(row);
    }
    if (ctx.comm.is_root())
      ctx.out << nlohmann::json{{"model", kind}, {"data", data}, {"stopped", true}, {"n_candidates", candidates.size()},
                                {"candidates", rows}}.dump()
              << '\n';
    throw Error(ErrorKind::kRequeue,
                fmt::format("select {} by a signal after {} of {} candidates; the finished ones are listed on stdout{}", "stopped",
                            ems.size(), candidates.size(), output_dir.empty() ? "" : " and kept in " + output_dir));
  }
  const std::vector<double> train_ll = models::mean_scores(ctx.comm, *train_source, fitted, stream.threads);
  const std::vector<double> held_ll = held_out ? models::mean_scores(ctx.comm, *held_out, fitted, stream.threads) : std::vector<double>{};
  const double n = static_cast<double>(summary.num_samples);
  nlohmann::json rows = nlohmann::json::array();
  std::size_t best = 0;
  std::vector<double> key(candidates.size());
  std::string head;
  for (const auto& f : grid) head += fmt::format("  {:>14}", f);
  std::string table = head + fmt::format("  {:>10}  {:>16}  {:>16}  {:>16}  {:>16}  {:>6}\n", "parameters", "train ll/sample",
                                         "BIC", "AIC", "held-out ll", "iter");
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    const double p = static_cast<double>(fitted[i]->num_parameters());
    const train::InformationCriteria ic = train::information_criteria(train_ll[i] * n, n, p);
    const double bic = ic.bic, aic = ic.aic;
    nlohmann::json row{{"n_parameters", fitted[i]->num_parameters()},
                       {"train_log_likelihood", train_ll[i]},
                       {"bic", bic},
                       {"aic", aic},
                       {"n_iter", ems[i].n_iter},
                       {"converged", ems[i].converged},
                       {"seconds", seconds[i]}};
    for (std::size_t g = 0; g < grid.size(); ++g) row[key_of(grid[g])] = candidates[i][g];
    if (held_out) row["held_out_log_likelihood"] = held_ll[i];
    rows.push_back(row);
    key[i] = criterion == "bic" ? bic : criterion == "aic" ? aic : -held_ll[i];
    if (key[i] < key[best]) best = i;
    for (const Index v : candidates[i]) table += fmt::format("  {:>14}", v);
    table += fmt::format("  {:>10}  {:>16.6f}  {:>16.6g}  {:>16.6g}  {:>16}  {:>6}\n", fitted[i]->num_parameters(),
                         train_ll[i], bic, aic, held_out ? fmt::format("{:.6f}", held_ll[i]) : std::string("-"),
                         ems[i].n_iter);
  }
  ctx.log.info("candidates (log-likelihoods in nats per sample; BIC/AIC on the training rows):\n" + table +
               fmt::format("best by {}: {}", criterion, label(candidates[best], ", ", true)));
  nlohmann::json j{{"model", kind},
                   {"data", data},
                   {"criterion", criterion},
                   {"n_train", summary.num_samples},
                   {"n_held_out", n_held_out},
                   {"candidates", rows},
                   {"definitions",
                    "bic = -2 N ll + p log N, aic = -2 N ll + 2 p with ll the mean log-likelihood of the training rows "
                    "under the fitted parameters (scikit-learn's bic/aic), p the free parameters; held_out_log_likelihood: "
                    "mean log-likelihood of the held-out rows, nats per sample"}};
  for (std::size_t g = 0; g < grid.size(); ++g) j["best_" + key_of(grid[g])] = candidates[best][g];
  // The model's text options as used (e.g. covariance_type), for the record.
  for (const models::OptionSpec& o : spec->options)
    if (o.type == models::OptionType::kText && !o.choices.empty()) j[key_of(o.flag)] = base.text(o.flag);
  if (ctx.comm.is_root()) ctx.out << j.dump() << '\n';
  return 0;
}

}  // namespace latent::cli
