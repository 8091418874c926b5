// Multinomial mixtures on count data: `latent score|predict|transform --model MMM.h5 --data
// COUNTS_DIR`.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <nlohmann/json.hpp>

#include "common.hpp"
#include "latent/core/error.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/models/fitted_model.hpp"
#include "latent/models/mixture/discrete_apply.hpp"
#include "latent/train/metrics.hpp"

namespace latent::cli {

namespace {

struct MmmApply {
  std::string model, data, output;
  bool overwrite = false, proba = false;
  StreamOptions stream;
};

// Opens the count data on every rank and checks its vocabulary against the model's.
// Collective.
void open_counts(const Context& ctx, MmmApply& a, const models::DiscreteMixture& m, io::CountsDatasetInfo& info) {
  a.stream.threads = resolve_threads(a.stream.threads);
  comm::run_agreed(ctx.comm, [&] {
    info = io::open_counts_dataset(a.data);
    if (info.vocab_size != m.num_features())
      throw_input(fmt::format("data {} has a vocabulary of {} words but model {} has {}", a.data, info.vocab_size, a.model,
                              m.num_features()));
  });
}

std::vector<io::BlockRef> local_blocks(const Context& ctx, const io::CountsDatasetInfo& info, Index block_rows) {
  return io::rank_blocks(io::make_block_plan(info.shard_rows(), block_rows), ctx.comm.rank(), ctx.comm.size());
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
    open_counts(ctx, a, m, info);
    io::CountsSource source(info, local_blocks(ctx, info, a.stream.block_rows), {a.stream.prefetch, 0, info.has_labels});
    const models::DiscreteScore s = models::score_discrete(ctx.comm, source, m, a.stream.threads);
    const double ll = s.log_likelihood, n = s.num_documents, p = static_cast<double>(m.num_parameters());
    nlohmann::json j{{"model", "mmm"},
                     {"data", a.data},
                     {"n_samples", static_cast<Index>(n)},
                     {"mean_log_likelihood", ll / n},
                     {"perplexity", std::exp(-ll / s.num_tokens)},
                     {"bic", train::information_criteria(ll, n, p).bic},
                     {"aic", train::information_criteria(ll, n, p).aic},
                     {"definitions",
                      "mean_log_likelihood: nats per document of log sum_k pi_k prod_w beta_kw^x_w, without the "
                      "multinomial coefficient (constant in the parameters); perplexity = exp(-total log-likelihood / "
                      "tokens)"}};
    if (info.has_labels) add_agreement(ctx, s.table, j);
    if (ctx.comm.is_root()) ctx.out << j.dump() << '\n';
    return 0;
  }
  comm::run_agreed(ctx.comm, [&] { info = io::open_counts_dataset(a.data); });
  std::vector<RowParts::Column> cols;
  if (command == "predict") cols.push_back({"labels", io::DType::kInt64, 0});
  if (command == "transform" || a.proba) cols.push_back({"proba", io::DType::kFloat64, m.num_components()});
  RowParts parts(ctx, a.output, cols, io::num_rows(local_blocks(ctx, info, a.stream.block_rows)));
  open_counts(ctx, a, m, info);
  const std::vector<io::BlockRef> mine = local_blocks(ctx, info, a.stream.block_rows);
  const Index first = mine.empty() ? 0 : mine.front().global_row_begin;
  io::CountsSource source(info, mine, {a.stream.prefetch, 0, false});
  models::for_each_posterior(ctx.comm, source, m, a.stream.threads, [&](const io::CsrBlock& b, const RowMatrix& resp, const Vector&) {
    const Index at = b.ref.global_row_begin - first;
    if (command == "predict") parts.write_rows("labels", at, models::argmax_labels(resp));
    if (command == "transform" || a.proba) parts.write_rows("proba", at, resp);
  });
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
    const models::DocumentSampler sampler(m);
    io::CountsWriter writer(output, m.num_features(), docs_per_shard, true);
    std::vector<std::int32_t> words(static_cast<std::size_t>(doc_length));
    const std::vector<std::int64_t> ones(static_cast<std::size_t>(doc_length), 1);
    for (Index i = 0; i < n; ++i) {
      const std::int64_t c = sampler.document(i, seed, words);
      writer.add_document(words, ones, c);
    }
    writer.commit(vocab);
  });
  ctx.log.info(fmt::format("wrote {} documents of {} tokens to {}", n, doc_length, output));
  return 0;
}

std::string describe_mmm(const std::string& path, int top_words) {
  std::string text;
  const models::DiscreteMixture m = models::load_discrete(path);
  const io::H5Reader r(path);
  text = fmt::format("model {}\nmultinomial mixture: {} components, vocabulary {}, alpha={:g}\n", path,
                     m.num_components(), m.num_features(), m.alpha());
  if (r.has_attr("/", "n_iter"))
    text += fmt::format("  n_iter: {}  converged: {}  mean log posterior: {:.6g}\n", r.attr_int("/", "n_iter"),
                        r.attr_int("/", "converged") != 0 ? "yes" : "no", r.attr_double("/", "lower_bound"));
  const std::vector<std::string> vocab = r.has("vocabulary") ? r.read_strings("vocabulary") : std::vector<std::string>{};
  std::vector<Index> order(static_cast<std::size_t>(m.num_features()));
  const Index n_top = std::min<Index>(top_words, m.num_features());
  for (Index k = 0; k < m.num_components(); ++k) {
    std::iota(order.begin(), order.end(), Index{0});
    const auto& p = m.probabilities();
    std::partial_sort(order.begin(), order.begin() + n_top, order.end(),
                      [&](Index x, Index y) { return p(k, x) > p(k, y) || (p(k, x) == p(k, y) && x < y); });
    text += fmt::format("  component {:>3} (weight {:.4f}):", k, m.weights()[k]);
    for (Index i = 0; i < n_top; ++i) {
      const Index w = order[static_cast<std::size_t>(i)];
      text += " " + (static_cast<std::size_t>(w) < vocab.size() ? vocab[static_cast<std::size_t>(w)] : std::to_string(w));
    }
    text += "\n";
  }
  return text;
}

}  // namespace latent::cli
