// Commands that apply a fitted model: score, predict, sample, info.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <filesystem>
#include <map>
#include <mutex>
#include <sstream>
#include <nlohmann/json.hpp>

#include "common.hpp"
#include "latent/core/control.hpp"
#include "latent/core/error.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/models/apply.hpp"
#include "latent/models/fitted_model.hpp"
#include "latent/train/block_reduce.hpp"
#include "latent/train/metrics.hpp"

namespace latent::cli {
namespace {

struct ApplyOptions {
  std::string model, data, missing = "error";
  StreamOptions stream;
};

void add_apply(po::options_description& desc, ApplyOptions& a) {
  desc.add_options()
      ("model", po::value(&a.model)->required(), "model file written by `latent fit`")
      ("data", po::value(&a.data)->required(), "data: directory of HDF5 shards (or one shard file)")
      ("missing-values", po::value(&a.missing)->default_value("error"),
       "error (NaN is an input error) | nan (NaN entries are missing: gmm, ppca and fa marginalise them)");
  add_stream_options(desc, a.stream);
}

// Loads the model on every rank and opens the data; checks that D matches. Collective.
std::unique_ptr<models::FittedModel> load_and_open(const Context& ctx, ApplyOptions& a, Labels labels,
                                                   std::unique_ptr<io::BlockSource>& source) {
  std::unique_ptr<models::FittedModel> model;
  comm::run_agreed(ctx.comm, [&] { model = models::load_model(a.model); });
  if (a.missing != "error" && a.missing != "nan") throw_usage("--missing-values must be error or nan");
  if (a.missing == "nan" && !model->handles_missing())
    throw_usage("--missing-values nan: a " + model->name() + " model cannot marginalise missing values (gmm, ppca and fa can)");
  a.stream.allow_missing = a.missing == "nan";
  a.stream.threads = resolve_threads(a.stream.threads);
  source = open_source(ctx, a.data, a.stream, labels);
  if (source->info().num_features != model->num_features())
    throw_input(fmt::format("data {} has {} features but model {} was fitted on {}", a.data,
                            source->info().num_features, a.model, model->num_features()));
  return model;
}

std::string describe_counts(const std::string& path) {
  const auto info = io::open_counts_dataset(path);
  std::string text = fmt::format("count data {}: {} documents, vocabulary {}, {} nonzeros, {} shard(s), labels: {}\n", path,
                                 info.num_rows, info.vocab_size, info.num_nonzeros, info.shards.size(),
                                 info.has_labels ? "yes" : "no");
  for (const auto& s : info.shards) text += fmt::format("  {}  {} documents  {} nonzeros\n", s.path, s.num_rows, s.num_nonzeros);
  return text;
}


}  // namespace

void add_agreement(const Context& ctx, const train::ContingencyTable& table, nlohmann::json& j) {
  const train::ClusteringAgreement agreement = train::global_clustering_agreement(ctx.comm, table);
  j["adjusted_rand_index"] = agreement.adjusted_rand_index;
  j["purity"] = agreement.purity;
}

int cmd_score(const std::vector<std::string>& raw_args, const Context& ctx) {
  const std::vector<std::string> args = per_sample_output_form(raw_args);
  if (const auto handler = model_task_handler(args, models::Task::kScore)) return handler(args, ctx);
  ApplyOptions a;
  std::string per_sample;
  bool overwrite = false;
  po::options_description desc("latent score options");
  add_apply(desc, a);
  desc.add_options()
      ("per-sample", po::value(&per_sample)->default_value(""),
       "also write each row's score to this HDF5 file (or --per-sample --output FILE): /log_likelihood (N, nats; "
       "k-means: /score = minus the squared distance); low = anomalous")
      ("overwrite", po::bool_switch(&overwrite), "replace an existing --per-sample file (atomically)");
  po::variables_map vm;
  if (!parse(args, desc, vm, ctx, "latent score --model MODEL.h5 --data DIR [--per-sample OUT.h5]")) return 0;
  if (!per_sample.empty())
    comm::run_agreed(ctx.comm, [&] {
      if (ctx.comm.is_root()) io::check_output_path(per_sample, overwrite);
    });
  std::unique_ptr<io::BlockSource> source;
  auto model = load_and_open(ctx, a, Labels::kIfPresent, source);
  const bool labelled = source->info().has_labels && model->is_mixture();
  const std::string score_name = model->has_likelihood() ? "log_likelihood" : "score";
  std::unique_ptr<RowParts> parts;
  if (!per_sample.empty())
    parts = std::make_unique<RowParts>(ctx, per_sample, std::vector<RowParts::Column>{{score_name, io::DType::kFloat64, 0}},
                                       source->num_local_rows());
  const Index first_row = source->blocks().empty() ? 0 : source->blocks().front().global_row_begin;
  models::BlockScores write_scores;
  if (parts)
    write_scores = [&](const io::DenseBlock& b, const Vector& score) {
      parts->write_rows(score_name, b.ref.global_row_begin - first_row, RowMatrix(score));
    };
  const models::ScoreTotals totals = models::score_totals(ctx.comm, *source, *model, a.stream.threads, labelled, write_scores);
  if (parts) parts->finish(overwrite, a.model, a.data, source->info().num_rows);
  const double n = totals.num_rows;
  const double mean = totals.score_sum / n;
  nlohmann::json j{{"model", model->name()}, {"data", a.data}, {"n_samples", static_cast<Index>(n)}};
  if (model->has_likelihood()) {
    const double p = static_cast<double>(model->num_parameters());
    j["mean_log_likelihood"] = mean;
    const train::InformationCriteria ic = train::information_criteria(mean * n, n, p);
    j["bic"] = ic.bic;
    j["aic"] = ic.aic;
  } else {
    j["inertia"] = -totals.score_sum;
    j["score"] = totals.score_sum;
  }
  if (labelled) add_agreement(ctx, totals.table, j);
  if (ctx.comm.is_root()) ctx.out << j.dump() << '\n';
  return 0;
}

int cmd_predict(const std::vector<std::string>& args, const Context& ctx) {
  if (const auto handler = model_task_handler(args, models::Task::kPredict)) return handler(args, ctx);
  ApplyOptions a;
  std::string output;
  bool proba = false, overwrite = false;
  double outlier_quantile = 0;
  po::options_description desc("latent predict options");
  add_apply(desc, a);
  desc.add_options()
      ("output", po::value(&output)->required(),
       "HDF5 file: /labels (N) and, with --proba, /proba (N x K); with --outlier-quantile also /outlier (N, 1 = "
       "flagged) and /log_likelihood (N)")
      ("proba", po::bool_switch(&proba), "also write responsibilities (posterior component probabilities)")
      ("outlier-quantile", po::value(&outlier_quantile)->default_value(0.0),
       "flag the rows whose log-likelihood is at or below this quantile of the data's (0 < q < 1; e.g. 0.01)")
      ("overwrite", po::bool_switch(&overwrite), "replace an existing output file (atomically)");
  po::variables_map vm;
  if (!parse(args, desc, vm, ctx,
             "latent predict --model MODEL.h5 --data DIR --output OUT.h5 [--proba] [--outlier-quantile q]"))
    return 0;
  const bool outliers = !vm["outlier-quantile"].defaulted();
  if (outliers && !(outlier_quantile > 0 && outlier_quantile < 1)) throw_usage("--outlier-quantile must be in (0, 1)");
  comm::run_agreed(ctx.comm, [&] {
    if (ctx.comm.is_root()) io::check_output_path(output, overwrite);
  });
  std::unique_ptr<io::BlockSource> source;
  auto model = load_and_open(ctx, a, Labels::kNo, source);
  if (!model->is_mixture() && (proba || !outliers))
    throw_usage("predict: a " + model->name() + " model has no clusters; use `latent transform` for its latent means, "
                "or `latent predict --outlier-quantile q` to flag anomalies");
  if (outliers && !model->has_likelihood()) throw_usage("--outlier-quantile needs a likelihood model (not k-means)");
  const Index k = model->num_components();
  std::vector<RowParts::Column> columns;
  if (model->is_mixture()) columns.push_back({"labels", io::DType::kInt64, 0});
  if (proba) columns.push_back({"proba", io::DType::kFloat64, k});
  if (outliers) {
    columns.push_back({"log_likelihood", io::DType::kFloat64, 0});
    columns.push_back({"outlier", io::DType::kInt64, 0});
  }
  // With --outlier-quantile: a first pass scores every row (kept: 8 bytes per local row)
  // and finds the threshold, the exact order statistic floor(q (N − 1)) of all scores.
  double threshold = -std::numeric_limits<double>::infinity();
  if (outliers) {
    const auto n = static_cast<std::int64_t>(source->info().num_rows);
    threshold = train::global_order_statistic(ctx.comm, models::local_scores(ctx.comm, *source, *model, a.stream.threads),
                                              train::quantile_index(outlier_quantile, n));
    ctx.log.info(fmt::format("outlier threshold: log-likelihood <= {:.6g} nats (quantile {})", threshold, outlier_quantile));
  }
  RowParts parts(ctx, output, columns, source->num_local_rows());
  const Index first_row = source->blocks().empty() ? 0 : source->blocks().front().global_row_begin;
  std::int64_t flagged[1] = {0};
  comm::run_agreed(ctx.comm, [&] {
    struct Result {
      Vector score;
      std::vector<std::int64_t> labels;
      RowMatrix proba;
    };
    train::for_each_block_ordered(
        *source, a.stream.threads,
        [&](const io::DenseBlock& b) -> std::shared_ptr<void> {
          auto r = std::make_shared<Result>();
          model->predict_block(b.x, r->score, r->labels, proba ? &r->proba : nullptr);
          return r;
        },
        [&](const io::DenseBlock& b, std::shared_ptr<void> p) {
          const auto& r = *static_cast<const Result*>(p.get());
          const Index at = b.ref.global_row_begin - first_row;
          if (model->is_mixture()) parts.write_rows("labels", at, r.labels);
          if (proba) parts.write_rows("proba", at, r.proba);
          if (outliers) {
            std::vector<std::int64_t> flag(static_cast<std::size_t>(r.score.size()));
            for (Index i = 0; i < r.score.size(); ++i) flag[static_cast<std::size_t>(i)] = r.score[i] <= threshold ? 1 : 0;
            flagged[0] += std::accumulate(flag.begin(), flag.end(), std::int64_t{0});
            parts.write_rows("log_likelihood", at, RowMatrix(r.score));
            parts.write_rows("outlier", at, flag);
          }
        });
  });
  parts.finish(overwrite, a.model, a.data, source->info().num_rows);
  ctx.comm.allreduce_sum(flagged);
  if (outliers) ctx.log.info(fmt::format("flagged {} of {} rows as outliers", flagged[0], source->info().num_rows));
  ctx.log.info(fmt::format("wrote {} rows{}{} to {}", source->info().num_rows, proba ? " with responsibilities" : "",
                           outliers ? " with outlier flags" : "", output));
  return 0;
}

// `latent transform`: responsibilities (mixtures) or E[z|x] (factor models) of a dense
// model, or the model's own transform (model_tasks.cpp).
int cmd_transform(const std::vector<std::string>& args, const Context& ctx) {
  if (const auto handler = model_task_handler(args, models::Task::kTransform)) return handler(args, ctx);
  ApplyOptions a;
  std::string output;
  bool overwrite = false;
  po::options_description desc("latent transform options");
  add_apply(desc, a);
  desc.add_options()
      ("output", po::value(&output)->required(),
       "HDF5 file: /latent_mean (N x L, E[z|x]) for ppca/fa, /proba (N x K, responsibilities) for mixtures")
      ("overwrite", po::bool_switch(&overwrite), "replace an existing output file (atomically)");
  po::variables_map vm;
  if (!parse(args, desc, vm, ctx, "latent transform --model MODEL.h5 --data DIR --output OUT.h5")) return 0;
  comm::run_agreed(ctx.comm, [&] {
    if (ctx.comm.is_root()) io::check_output_path(output, overwrite);
  });
  std::unique_ptr<io::BlockSource> source;
  auto model = load_and_open(ctx, a, Labels::kNo, source);
  const std::string name = model->transform_name();
  RowParts parts(ctx, output, {{name, io::DType::kFloat64, model->transform_dim()}}, source->num_local_rows());
  const Index first_row = source->blocks().empty() ? 0 : source->blocks().front().global_row_begin;
  comm::run_agreed(ctx.comm, [&] {
    train::for_each_block_ordered(
        *source, a.stream.threads,
        [&](const io::DenseBlock& b) -> std::shared_ptr<void> {
          auto r = std::make_shared<RowMatrix>();
          model->transform_block(b.x, *r);
          return r;
        },
        [&](const io::DenseBlock& b, std::shared_ptr<void> p) {
          parts.write_rows(name, b.ref.global_row_begin - first_row, *static_cast<const RowMatrix*>(p.get()));
        });
  });
  parts.finish(overwrite, a.model, a.data, source->info().num_rows);
  ctx.log.info(fmt::format("wrote /{} of {} rows to {}", name, source->info().num_rows, output));
  return 0;
}

int cmd_impute(const std::vector<std::string>& args, const Context& ctx) {
  if (const auto handler = model_task_handler(args, models::Task::kImpute)) return handler(args, ctx);
  ApplyOptions a;
  std::string output;
  bool overwrite = false;
  po::options_description desc("latent impute options");
  add_apply(desc, a);
  desc.add_options()
      ("output", po::value(&output)->required(),
       "HDF5 shard: /data (N x D float64) with every NaN replaced by E[x_missing | x_observed] under the model, "
       "/labels copied when every input shard has them; usable as input data")
      ("overwrite", po::bool_switch(&overwrite), "replace an existing output file (atomically)");
  po::variables_map vm;
  if (!parse(args, desc, vm, ctx, "latent impute --model MODEL.h5 --data DIR --output OUT.h5")) return 0;
  if (!vm["missing-values"].defaulted() && a.missing != "nan") throw_usage("impute: --missing-values is always nan");
  a.missing = "nan";
  comm::run_agreed(ctx.comm, [&] {
    if (ctx.comm.is_root()) io::check_output_path(output, overwrite);
  });
  std::unique_ptr<io::BlockSource> source;
  auto model = load_and_open(ctx, a, Labels::kIfPresent, source);
  const bool labelled = source->info().has_labels;
  std::vector<RowParts::Column> columns{{io::kDataDataset, io::DType::kFloat64, model->num_features()}};
  if (labelled) columns.push_back({io::kLabelsDataset, io::DType::kInt64, 0});
  RowParts parts(ctx, output, columns, source->num_local_rows());
  const Index first_row = source->blocks().empty() ? 0 : source->blocks().front().global_row_begin;
  std::int64_t filled[1] = {0};
  comm::run_agreed(ctx.comm, [&] {
    train::for_each_block_ordered(
        *source, a.stream.threads,
        [&](const io::DenseBlock& b) -> std::shared_ptr<void> {
          auto r = std::make_shared<RowMatrix>();
          model->impute_block(b.x, *r);
          return r;
        },
        [&](const io::DenseBlock& b, std::shared_ptr<void> p) {
          filled[0] += b.x.array().isNaN().count();
          parts.write_rows(io::kDataDataset, b.ref.global_row_begin - first_row, *static_cast<const RowMatrix*>(p.get()));
          if (labelled) parts.write_rows(io::kLabelsDataset, b.ref.global_row_begin - first_row, b.labels);
        });
  });
  parts.finish(overwrite, a.model, a.data, source->info().num_rows, io::kDenseKind);  // usable as input data
  ctx.comm.allreduce_sum(filled);
  ctx.log.info(fmt::format("imputed {} missing entries in {} rows; wrote {}", filled[0], source->info().num_rows, output));
  return 0;
}

int cmd_sample(const std::vector<std::string>& args, const Context& ctx) {
  if (const auto handler = model_task_handler(args, models::Task::kSample)) return handler(args, ctx);
  std::string model_path, output;
  Index n = 0;
  std::uint64_t seed = 0;
  bool overwrite = false;
  po::options_description desc("latent sample options");
  desc.add_options()
      ("model", po::value(&model_path)->required(), "model file written by `latent fit`")
      ("n-samples", po::value(&n)->required(), "number of draws")
      ("output", po::value(&output)->required(), "HDF5 shard to write: /data (N x D float64) and /labels (components)")
      ("seed", po::value(&seed)->default_value(0), "random seed")
      ("overwrite", po::bool_switch(&overwrite), "replace an existing output file (atomically)");
  po::variables_map vm;
  if (!parse(args, desc, vm, ctx, "latent sample --model MODEL.h5 --n-samples N --output OUT.h5 [--seed S]")) return 0;
  comm::run_agreed(ctx.comm, [&] {
    if (!ctx.comm.is_root()) return;
    if (n < 1) throw_usage("--n-samples must be at least 1");
    auto model = models::load_model(model_path);
    io::H5Writer w(output, overwrite);
    w.attr("/", "format_version", static_cast<std::int64_t>(io::kDataFormatVersion));
    w.attr("/", "kind", std::string("dense"));
    w.attr("/", "model", model->name());
    w.attr("/", "model_path", model_path);
    w.attr("/", "seed", static_cast<std::int64_t>(seed));
    w.create(io::kDataDataset, io::DType::kFloat64, n, model->num_features());
    w.create(io::kLabelsDataset, io::DType::kInt64, n, 0);
    constexpr Index kChunk = 4096;
    for (Index first = 0; first < n; first += kChunk) {
      stop_point();
      std::vector<std::int64_t> labels;
      const RowMatrix x = model->sample(first, std::min(kChunk, n - first), seed, labels);
      w.write_rows(io::kDataDataset, first, x);
      w.write_rows(io::kLabelsDataset, first, labels);
    }
    w.commit();
  });
  ctx.log.info(fmt::format("wrote {} samples to {}", n, output));
  return 0;
}

int cmd_info(const std::vector<std::string>& args, const Context& ctx) {
  std::string path;
  int top_words = 10;
  po::options_description desc("latent info options");
  desc.add_options()("path", po::value(&path)->required(), "model file, checkpoint, data shard or data directory")
      ("top-words", po::value(&top_words)->default_value(10), "LDA: words printed per topic");
  po::positional_options_description pos;
  pos.add("path", 1);
  po::variables_map vm;
  if (!parse(args, desc, vm, ctx, "latent info PATH", &pos)) return 0;
  std::string text;
  comm::run_agreed(ctx.comm, [&] {
    if (!ctx.comm.is_root()) return;
    if (std::filesystem::is_regular_file(path) && io::H5Reader(path).has_attr("/", "kind") &&
        io::H5Reader(path).attr_string("/", "kind") == "checkpoint") {
      const io::H5Reader r(path);
      text = fmt::format("checkpoint {}: model {}, run {}, iteration {}\n  config: {}\n  data: {}\n", path,
                         r.attr_string("/", "model"), r.attr_int("/", "run"), r.attr_int("/", "iteration"),
                         r.attr_string("/", "config"), r.attr_string("/", "data_fingerprint"));
      for (const auto& name : r.list("arrays")) {
        const auto shape = r.shape("arrays/" + name);
        text += fmt::format("  array {:<20} {} x {}\n", name, shape.at(0), shape.size() > 1 ? shape[1] : 1);
      }
      const RowMatrix values = r.read_matrix("scalars");
      std::stringstream names(r.attr_string("scalars", "names"));
      std::string name;
      for (Index i = 0; std::getline(names, name) && i < values.rows(); ++i)
        text += fmt::format("  value {:<20} {:.17g}\n", name, values(i, 0));
      return;
    }
    if (std::filesystem::is_regular_file(path)) {
      const io::H5Reader r(path);
      if (r.has_attr("/", "model_path") && !r.has(io::kDataDataset)) {  // predict/transform/score output
        text = fmt::format("output {}: of {} model {} on data {}\n", path, r.attr_string("/", "model"),
                           r.attr_string("/", "model_path"), r.has_attr("/", "data") ? r.attr_string("/", "data") : "?");
        for (const auto& name : r.list("/")) {
          const auto shape = r.shape(name);
          text += fmt::format("  /{:<24} {}{}\n", name, shape.empty() ? 1 : shape[0],
                              shape.size() > 1 ? " x " + std::to_string(shape[1]) : "");
        }
        return;
      }
    }
    const bool is_model = std::filesystem::is_regular_file(path) && io::H5Reader(path).has_attr("/", "model") &&
                          !io::H5Reader(path).has(io::kDataDataset);
    if (is_model) {
      const std::string described = describe_model_file(io::H5Reader(path).attr_string("/", "model"), path, top_words);
      if (!described.empty()) {
        text = described;
        return;
      }
    }
    if (std::filesystem::is_directory(path) && std::filesystem::exists(std::filesystem::path(path) / io::kVocabularyFile)) {
      text = describe_counts(path);
      return;
    }
    if (is_model) {
      text = "model " + path + "\n" + models::load_model(path)->describe();
      return;
    }
    const auto info = io::open_dense_dataset(path);
    text = fmt::format("dense data {}: {} samples x {} features, {} shard(s), labels: {}\n", path, info.num_rows,
                       info.num_features, info.shards.size(), info.has_labels ? "yes" : "no");
    for (const auto& s : info.shards)
      text += fmt::format("  {}  {} rows  {}\n", s.path, s.num_rows, s.dtype == io::DType::kFloat32 ? "float32" : "float64");
  });
  if (ctx.comm.is_root()) ctx.out << text;
  return 0;
}

}  // namespace latent::cli
