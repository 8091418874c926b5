// Commands that apply a fitted model: score, predict, sample, info.
#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <mutex>
#include <sstream>
#include <nlohmann/json.hpp>

#include "common.hpp"
#include "latent/core/error.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/models/fitted_model.hpp"
#include "latent/train/block_reduce.hpp"

namespace latent::cli {
namespace {

struct ApplyOptions {
  std::string model, data;
  StreamOptions stream;
};

void add_apply(po::options_description& desc, ApplyOptions& a) {
  desc.add_options()
      ("model", po::value(&a.model)->required(), "model file written by `latent fit`")
      ("data", po::value(&a.data)->required(), "data: directory of HDF5 shards (or one shard file)");
  add_stream_options(desc, a.stream);
}

// Loads the model on every rank and opens the data; checks that D matches. Collective.
std::unique_ptr<models::FittedModel> load_and_open(const Context& ctx, ApplyOptions& a, Labels labels,
                                                   std::unique_ptr<io::BlockSource>& source) {
  std::unique_ptr<models::FittedModel> model;
  comm::run_agreed(ctx.comm, [&] { model = models::load_model(a.model); });
  a.stream.threads = resolve_threads(a.stream.threads);
  source = open_source(ctx, a.data, a.stream, labels);
  if (source->info().num_features != model->num_features())
    throw_input(fmt::format("data {} has {} features but model {} was fitted on {}", a.data,
                            source->info().num_features, a.model, model->num_features()));
  return model;
}

double comb2(double n) { return n * (n - 1) / 2; }

}  // namespace

/// Adjusted Rand index (Hubert & Arabie 1985) and purity from a contingency table.
void clustering_agreement(const std::map<std::pair<std::int64_t, std::int64_t>, std::int64_t>& table, double& ari,
                          double& purity) {
  std::map<std::int64_t, double> rows, cols;
  std::map<std::int64_t, double> best_in_cluster;
  double n = 0, index = 0;
  for (const auto& [key, count] : table) {
    const double c = static_cast<double>(count);
    rows[key.first] += c;
    cols[key.second] += c;
    best_in_cluster[key.first] = std::max(best_in_cluster[key.first], c);
    n += c;
    index += comb2(c);
  }
  double sum_rows = 0, sum_cols = 0, best = 0;
  for (const auto& [k, v] : rows) sum_rows += comb2(v);
  for (const auto& [k, v] : cols) sum_cols += comb2(v);
  for (const auto& [k, v] : best_in_cluster) best += v;
  const double expected = n > 1 ? sum_rows * sum_cols / comb2(n) : 0;
  const double max_index = 0.5 * (sum_rows + sum_cols);
  ari = max_index == expected ? 1.0 : (index - expected) / (max_index - expected);
  purity = n > 0 ? best / n : 0;
}

int cmd_score(const std::vector<std::string>& args, const Context& ctx) {
  if (is_lda_model(args)) return score_lda(args, ctx);
  if (is_vae_model(args)) return score_vae(args, ctx);
  ApplyOptions a;
  po::options_description desc("latent score options");
  add_apply(desc, a);
  po::variables_map vm;
  if (!parse(args, desc, vm, ctx, "latent score --model MODEL.h5 --data DIR")) return 0;
  std::unique_ptr<io::BlockSource> source;
  auto model = load_and_open(ctx, a, Labels::kIfPresent, source);
  const bool labelled = source->info().has_labels;
  ExactSum sums(2);
  std::map<std::pair<std::int64_t, std::int64_t>, std::int64_t> table;
  std::mutex mutex;
  comm::run_agreed(ctx.comm, [&] {
    train::for_each_block(*source, a.stream.threads, [&](const io::DenseBlock& b) {
      Vector score;
      std::vector<std::int64_t> labels;
      model->predict_block(b.x, score, labels, nullptr);
      const double partial[2] = {score.sum(), static_cast<double>(b.x.rows())};
      std::lock_guard lock(mutex);
      sums.add(partial);
      if (labelled)
        for (std::size_t i = 0; i < labels.size(); ++i) ++table[{labels[i], b.labels[i]}];
    });
  });
  ctx.comm.allreduce(sums);
  const auto totals = sums.values();
  const double n = totals[1];
  const double mean = totals[0] / n;
  nlohmann::json j{{"model", model->name()}, {"data", a.data}, {"n_samples", static_cast<Index>(n)}};
  if (model->has_likelihood()) {
    const double p = static_cast<double>(model->num_parameters());
    j["mean_log_likelihood"] = mean;
    j["bic"] = -2 * mean * n + p * std::log(n);
    j["aic"] = -2 * mean * n + 2 * p;
  } else {
    j["inertia"] = -totals[0];
    j["score"] = totals[0];
  }
  if (labelled) {
    std::vector<std::int64_t> flat;
    for (const auto& [key, count] : table) flat.insert(flat.end(), {key.first, key.second, count});
    const auto all = ctx.comm.allgatherv(flat);
    std::map<std::pair<std::int64_t, std::int64_t>, std::int64_t> global;
    for (std::size_t i = 0; i + 2 < all.size(); i += 3) global[{all[i], all[i + 1]}] += all[i + 2];
    double ari = 0, purity = 0;
    clustering_agreement(global, ari, purity);
    j["adjusted_rand_index"] = ari;
    j["purity"] = purity;
  }
  if (ctx.comm.is_root()) ctx.out << j.dump() << '\n';
  return 0;
}

int cmd_predict(const std::vector<std::string>& args, const Context& ctx) {
  ApplyOptions a;
  std::string output;
  bool proba = false, overwrite = false;
  po::options_description desc("latent predict options");
  add_apply(desc, a);
  desc.add_options()
      ("output", po::value(&output)->required(), "HDF5 file: /labels (N) and, with --proba, /proba (N x K)")
      ("proba", po::bool_switch(&proba), "also write responsibilities (posterior component probabilities)")
      ("overwrite", po::bool_switch(&overwrite), "replace an existing output file (atomically)");
  po::variables_map vm;
  if (!parse(args, desc, vm, ctx, "latent predict --model MODEL.h5 --data DIR --output OUT.h5 [--proba]")) return 0;
  comm::run_agreed(ctx.comm, [&] {
    if (ctx.comm.is_root()) io::check_output_path(output, overwrite);
  });
  std::unique_ptr<io::BlockSource> source;
  auto model = load_and_open(ctx, a, Labels::kNo, source);
  const Index k = model->num_components();
  std::vector<RowParts::Column> columns{{"labels", io::DType::kInt64, 0}};
  if (proba) columns.push_back({"proba", io::DType::kFloat64, k});
  RowParts parts(ctx, output, columns, source->num_local_rows());
  const Index first_row = source->blocks().empty() ? 0 : source->blocks().front().global_row_begin;
  comm::run_agreed(ctx.comm, [&] {
    struct Result {
      std::vector<std::int64_t> labels;
      RowMatrix proba;
    };
    train::for_each_block_ordered(
        *source, a.stream.threads,
        [&](const io::DenseBlock& b) -> std::shared_ptr<void> {
          auto r = std::make_shared<Result>();
          Vector score;
          model->predict_block(b.x, score, r->labels, proba ? &r->proba : nullptr);
          return r;
        },
        [&](const io::DenseBlock& b, std::shared_ptr<void> p) {
          const auto& r = *static_cast<const Result*>(p.get());
          const Index at = b.ref.global_row_begin - first_row;
          parts.write_rows("labels", at, r.labels);
          if (proba) parts.write_rows("proba", at, r.proba);
        });
  });
  parts.finish(overwrite, a.model, a.data, source->info().num_rows);
  ctx.log.info(fmt::format("wrote {} labels{} to {}", source->info().num_rows, proba ? " and responsibilities" : "", output));
  return 0;
}

int cmd_sample(const std::vector<std::string>& args, const Context& ctx) {
  if (is_vae_model(args)) return sample_vae(args, ctx);
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
    w.attr("/", "model", model_path);
    w.attr("/", "seed", static_cast<std::int64_t>(seed));
    w.create(io::kDataDataset, io::DType::kFloat64, n, model->num_features());
    w.create(io::kLabelsDataset, io::DType::kInt64, n, 0);
    constexpr Index kChunk = 4096;
    for (Index first = 0; first < n; first += kChunk) {
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
    const bool is_model = std::filesystem::is_regular_file(path) && io::H5Reader(path).has_attr("/", "model") &&
                          !io::H5Reader(path).has(io::kDataDataset);
    if (is_model && io::H5Reader(path).attr_string("/", "model") == "lda") {
      text = describe_lda(path, top_words);
      return;
    }
    if (is_model && io::H5Reader(path).attr_string("/", "model") == "vae") {
      text = describe_vae(path);
      return;
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
