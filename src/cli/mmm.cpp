// Multinomial mixtures on count data: `latent score|predict|transform --model MMM.h5 --data
// COUNTS_DIR`.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "common.hpp"
#include "latent/core/error.hpp"
#include "latent/core/exact_sum.hpp"
#include "latent/core/rng.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/models/fitted_model.hpp"
#include "latent/train/block_reduce.hpp"

namespace latent::cli {

namespace {

struct MmmApply {
  std::string model, data, output;
  bool overwrite = false, proba = false;
  StreamOptions stream;
};

// Per-document responsibilities and log p(x) (up to the multinomial coefficient), in
// one pass; `visit(block, resp, log_prob)` runs under a lock. Collective.
template <class Visit>
void pass(const Context& ctx, MmmApply& a, const models::DiscreteMixture& m, bool labels, Visit&& visit,
          io::CountsDatasetInfo& info) {
  a.stream.threads = resolve_threads(a.stream.threads);
  comm::run_agreed(ctx.comm, [&] {
    info = io::open_counts_dataset(a.data);
    if (info.vocab_size != m.num_features())
      throw_input(fmt::format("data {} has a vocabulary of {} words but model {} has {}", a.data, info.vocab_size, a.model,
                              m.num_features()));
  });
  const auto plan = io::make_block_plan(info.shard_rows(), a.stream.block_rows);
  const auto range = io::rank_block_range(static_cast<Index>(plan.size()), ctx.comm.rank(), ctx.comm.size());
  io::CountsSource source(info, {plan.begin() + range.first, plan.begin() + range.last},
                          {a.stream.prefetch, 0, labels && info.has_labels});
  std::mutex mutex;
  comm::run_agreed(ctx.comm, [&] {
    train::for_each_block(source, a.stream.threads, [&](const io::CsrBlock& b) {
      RowMatrix resp;
      Vector lp;
      m.weighted_log_prob(b, resp);
      models::DiscreteMixture::normalize(resp, lp);
      std::lock_guard lock(mutex);
      visit(b, resp, lp, range.first < range.last ? plan[static_cast<std::size_t>(range.first)].global_row_begin : 0);
    });
  });
}

Index local_rows(const Context& ctx, const io::CountsDatasetInfo& info, Index block_rows) {
  const auto plan = io::make_block_plan(info.shard_rows(), block_rows);
  const auto range = io::rank_block_range(static_cast<Index>(plan.size()), ctx.comm.rank(), ctx.comm.size());
  Index n = 0;
  for (Index b = range.first; b < range.last; ++b) n += plan[static_cast<std::size_t>(b)].num_rows;
  return n;
}

}  // namespace

int apply_mmm(const std::string& command, const std::vector<std::string>& args, const Context& ctx) {
  MmmApply a;
  po::options_description desc("latent " + command + " options (multinomial mixture)");
  desc.add_options()
      ("model", po::value(&a.model)->required(), "model file written by `latent fit mmm`")
      ("data", po::value(&a.data)->required(), "count dataset directory (`latent import counts`), same vocabulary");
  if (command != "score")
    desc.add_options()
        ("output", po::value(&a.output)->required(),
         command == "predict" ? "HDF5 file: /labels (N) and, with --proba, /proba (N x K)" : "HDF5 file: /proba (N x K)")
        ("overwrite", po::bool_switch(&a.overwrite), "replace an existing output file (atomically)");
  if (command == "predict") desc.add_options()("proba", po::bool_switch(&a.proba), "also write responsibilities");
  add_stream_options(desc, a.stream);
  po::variables_map vm;
  if (!parse(args, desc, vm, ctx, "latent " + command + " --model MMM.h5 --data COUNTS_DIR" + (command == "score" ? "" : " --output OUT.h5")))
    return 0;
  if (!a.output.empty())
    comm::run_agreed(ctx.comm, [&] {
      if (ctx.comm.is_root()) io::check_output_path(a.output, a.overwrite);
    });
  models::DiscreteMixture m(1, 1, models::DiscreteKind::kMultinomial, 0, 0);
  comm::run_agreed(ctx.comm, [&] { m = models::load_discrete(a.model); });
  io::CountsDatasetInfo info;
  if (command == "score") {
    ExactSum sums(3);
    std::map<std::pair<std::int64_t, std::int64_t>, std::int64_t> table;
    pass(ctx, a, m, true, [&](const io::CsrBlock& b, const RowMatrix& resp, const Vector& lp, Index) {
      const double p[3] = {lp.sum(), static_cast<double>(b.num_rows()), b.num_tokens()};
      sums.add(p);
      for (Index i = 0; i < b.num_rows() && !b.labels.empty(); ++i) {
        Index best = 0;
        resp.row(i).maxCoeff(&best);
        ++table[{best, b.labels[static_cast<std::size_t>(i)]}];
      }
    }, info);
    ctx.comm.allreduce(sums);
    const auto t = sums.values();
    const double n = t[1], p = static_cast<double>(m.num_parameters());
    nlohmann::json j{{"model", "mmm"},
                     {"data", a.data},
                     {"n_samples", static_cast<Index>(n)},
                     {"mean_log_likelihood", t[0] / n},
                     {"perplexity", std::exp(-t[0] / t[2])},
                     {"bic", -2 * t[0] + p * std::log(n)},
                     {"aic", -2 * t[0] + 2 * p},
                     {"definitions",
                      "mean_log_likelihood: nats per document of log sum_k pi_k prod_w beta_kw^x_w, without the "
                      "multinomial coefficient (constant in the parameters); perplexity = exp(-total log-likelihood / "
                      "tokens)"}};
    if (info.has_labels) add_agreement(ctx, table, j);
    if (ctx.comm.is_root()) ctx.out << j.dump() << '\n';
    return 0;
  }
  comm::run_agreed(ctx.comm, [&] { info = io::open_counts_dataset(a.data); });
  std::vector<RowParts::Column> cols;
  if (command == "predict") cols.push_back({"labels", io::DType::kInt64, 0});
  if (command == "transform" || a.proba) cols.push_back({"proba", io::DType::kFloat64, m.num_components()});
  RowParts parts(ctx, a.output, cols, local_rows(ctx, info, a.stream.block_rows));
  pass(ctx, a, m, false, [&](const io::CsrBlock& b, const RowMatrix& resp, const Vector&, Index first) {
    const Index at = b.ref.global_row_begin - first;
    if (command == "predict") {
      std::vector<std::int64_t> labels(static_cast<std::size_t>(b.num_rows()));
      for (Index i = 0; i < b.num_rows(); ++i) {
        Index best = 0;
        resp.row(i).maxCoeff(&best);
        labels[static_cast<std::size_t>(i)] = best;
      }
      parts.write_rows("labels", at, labels);
    }
    if (command == "transform" || a.proba) parts.write_rows("proba", at, resp);
  }, info);
  parts.finish(a.overwrite, a.model, a.data, info.num_rows);
  ctx.log.info(fmt::format("wrote {} rows to {}", info.num_rows, a.output));
  return 0;
}

int sample_mmm(const std::vector<std::string>& args, const Context& ctx) {
  std::string model_path, output;
  Index n = 0, doc_length = 100, docs_per_shard = 65536;
  std::uint64_t seed = 0;
  po::options_description desc("latent sample options (multinomial mixture)");
  desc.add_options()
      ("model", po::value(&model_path)->required(), "model file written by `latent fit mmm`")
      ("n-samples", po::value(&n)->required(), "number of documents")
      ("output", po::value(&output)->required(), "count dataset directory to create (/labels = component of each document)")
      ("doc-length", po::value(&doc_length)->default_value(100), "tokens per document")
      ("docs-per-shard", po::value(&docs_per_shard)->default_value(65536), "documents per shard")
      ("seed", po::value(&seed)->default_value(0), "random seed");
  po::variables_map vm;
  if (!parse(args, desc, vm, ctx, "latent sample --model MMM.h5 --n-samples N --output DIR [--doc-length 100] [--seed S]"))
    return 0;
  if (n < 1 || doc_length < 1) throw_usage("--n-samples and --doc-length must be at least 1");
  comm::run_agreed(ctx.comm, [&] {
    if (!ctx.comm.is_root()) return;
    const models::DiscreteMixture m = models::load_discrete(model_path);
    const io::H5Reader r(model_path);
    std::vector<std::string> vocab = r.has("vocabulary") ? r.read_strings("vocabulary") : std::vector<std::string>{};
    if (static_cast<Index>(vocab.size()) != m.num_features()) {
      vocab.clear();
      for (Index w = 0; w < m.num_features(); ++w) vocab.push_back("w" + std::to_string(w));
    }
    // Document i: component c ~ π, then doc_length words ~ β_c (inverse CDF), all drawn
    // from (seed, i).
    RowMatrix cdf = m.probabilities();
    for (Index k = 0; k < cdf.rows(); ++k)
      for (Index w = 1; w < cdf.cols(); ++w) cdf(k, w) += cdf(k, w - 1);
    io::CountsWriter writer(output, m.num_features(), docs_per_shard, true);
    std::vector<std::int32_t> words(static_cast<std::size_t>(doc_length));
    const std::vector<std::int64_t> ones(static_cast<std::size_t>(doc_length), 1);
    for (Index i = 0; i < n; ++i) {
      CounterRng rng(seed, RngPurpose::kSample, 0, static_cast<std::uint64_t>(i));
      double u = rng.next_uniform();
      Index c = 0;
      while (c + 1 < m.num_components() && u > m.weights()[c]) u -= m.weights()[c++];
      const double* row = cdf.data() + c * cdf.cols();
      for (auto& w : words) {
        const double v = rng.next_uniform() * row[cdf.cols() - 1];
        w = static_cast<std::int32_t>(std::min<Index>(std::upper_bound(row, row + cdf.cols(), v) - row, cdf.cols() - 1));
      }
      writer.add_document(words, ones, c);
    }
    writer.commit(vocab);
  });
  ctx.log.info(fmt::format("wrote {} documents of {} tokens to {}", n, doc_length, output));
  return 0;
}

}  // namespace latent::cli
