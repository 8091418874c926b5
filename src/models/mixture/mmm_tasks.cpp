// The multinomial mixture's own tasks on count data (ModelSpec::own_tasks): score,
// predict, transform, sample, and its `latent info` text.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numeric>

#include "latent/core/control.hpp"
#include "latent/core/error.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/models/fitted_model.hpp"
#include "latent/models/mixture/discrete_apply.hpp"
#include "latent/train/metrics.hpp"
#include "latent/train/task_run.hpp"
#include "../specs.hpp"

namespace latent::models {
namespace {

// Loads the model and opens the count data on every rank, checking the vocabularies agree.
// Collective.
DiscreteMixture load_and_open(train::TaskRun& run, io::CountsDatasetInfo& info) {
  const train::TaskCommon& c = run.common();
  DiscreteMixture m(1, 1, DiscreteKind::kMultinomial, 0, 0);
  comm::run_agreed(run.comm(), [&] {
    m = load_discrete(c.model);
    info = io::open_counts_dataset(c.data);
    if (info.vocab_size != m.num_features())
      throw_input(fmt::format("data {} has a vocabulary of {} words but model {} has {}", c.data, info.vocab_size, c.model,
                              m.num_features()));
  });
  return m;
}

std::vector<io::BlockRef> local_blocks(const train::TaskRun& run, const io::CountsDatasetInfo& info) {
  return io::rank_blocks(io::make_block_plan(info.shard_rows(), run.common().block_rows), run.comm().rank(),
                         run.comm().size());
}

int score(train::TaskRun& run) {
  const train::TaskCommon& c = run.common();
  io::CountsDatasetInfo info;
  const DiscreteMixture m = load_and_open(run, info);
  io::CountsSource source(info, local_blocks(run, info), {c.prefetch, 0, info.has_labels});
  const DiscreteScore s = score_discrete(run.comm(), source, m, c.threads);
  const double ll = s.log_likelihood, n = s.num_documents, p = static_cast<double>(m.num_parameters());
  const train::InformationCriteria ic = train::information_criteria(ll, n, p);
  nlohmann::json j{{"model", "mmm"},
                   {"data", c.data},
                   {"n_samples", static_cast<Index>(n)},
                   {"mean_log_likelihood", ll / n},
                   {"perplexity", std::exp(-ll / s.num_tokens)},
                   {"bic", ic.bic},
                   {"aic", ic.aic},
                   {"definitions",
                    "mean_log_likelihood: nats per document of log sum_k pi_k prod_w beta_kw^x_w, without the "
                    "multinomial coefficient (constant in the parameters); perplexity = exp(-total log-likelihood / "
                    "tokens)"}};
  if (info.has_labels) {
    const train::ClusteringAgreement agreement = train::global_clustering_agreement(run.comm(), s.table);
    j["adjusted_rand_index"] = agreement.adjusted_rand_index;
    j["purity"] = agreement.purity;
  }
  run.print(j);
  return 0;
}

// predict (labels, and responsibilities with --proba) or transform (responsibilities).
int posterior(train::TaskRun& run, bool predict) {
  const train::TaskCommon& c = run.common();
  const bool proba = !predict || run.options().flag("proba");
  run.check_output();
  io::CountsDatasetInfo info;
  const DiscreteMixture m = load_and_open(run, info);
  const std::vector<io::BlockRef> mine = local_blocks(run, info);
  std::vector<train::OutputColumn> cols;
  if (predict) cols.push_back({"labels", io::DType::kInt64, 0});
  if (proba) cols.push_back({"proba", io::DType::kFloat64, m.num_components()});
  const auto out = run.row_output(cols, io::num_rows(mine));
  const Index first = mine.empty() ? 0 : mine.front().global_row_begin;
  io::CountsSource source(info, mine, {c.prefetch, 0, false});
  for_each_posterior(run.comm(), source, m, c.threads, [&](const io::CsrBlock& b, const RowMatrix& resp, const Vector&) {
    const Index at = b.ref.global_row_begin - first;
    if (predict) out->write_rows("labels", at, argmax_labels(resp));
    if (proba) out->write_rows("proba", at, resp);
  });
  out->finish(info.num_rows);
  run.log().info(fmt::format("wrote {} rows to {}", info.num_rows, c.output));
  return 0;
}

int sample(train::TaskRun& run) {
  const train::TaskCommon& c = run.common();
  const OptionValues& o = run.options();
  const Index n = o.integer("n-samples"), doc_length = o.integer("doc-length"), docs_per_shard = o.integer("docs-per-shard");
  const auto seed = static_cast<std::uint64_t>(o.integer("seed"));
  if (c.overwrite) throw_usage("sample: a count dataset directory is never replaced; remove " + c.output + " first");
  comm::run_agreed(run.comm(), [&] {
    if (!run.comm().is_root()) return;
    const DiscreteMixture m = load_discrete(c.model);
    const io::H5Reader r(c.model);
    std::vector<std::string> vocab = r.has("vocabulary") ? r.read_strings("vocabulary") : std::vector<std::string>{};
    if (static_cast<Index>(vocab.size()) != m.num_features()) {
      vocab.clear();
      for (Index w = 0; w < m.num_features(); ++w) vocab.push_back("w" + std::to_string(w));
    }
    const DocumentSampler sampler(m);
    io::CountsWriter writer(c.output, m.num_features(), docs_per_shard, true);
    std::vector<std::int32_t> words(static_cast<std::size_t>(doc_length));
    const std::vector<std::int64_t> ones(static_cast<std::size_t>(doc_length), 1);
    for (Index i = 0; i < n; ++i) {
      if (i % 4096 == 0) stop_point();
      const std::int64_t k = sampler.document(i, seed, words);
      writer.add_document(words, ones, k);
    }
    writer.commit(vocab);
  });
  run.log().info(fmt::format("wrote {} documents of {} tokens to {}", n, doc_length, c.output));
  return 0;
}

}  // namespace

std::vector<TaskSpec> mmm_own_tasks() {
  using T = OptionType;
  const std::string data_help = "count dataset directory (`latent import counts`), same vocabulary";
  return {
      {.task = Task::kScore, .usage = "latent score --model MMM.h5 --data COUNTS_DIR", .data_help = data_help, .run = score,
       .examples = {"latent score --model mmm.h5 --data corpus/"}},
      {.task = Task::kPredict,
       .usage = "latent predict --model MMM.h5 --data COUNTS_DIR --output OUT.h5 [--proba]",
       .data_help = data_help,
       .output_flag = "output",
       .output_help = "HDF5 file: /labels (N) and, with --proba, /proba (N x K)",
       .options = {{.flag = "proba", .type = T::kFlag, .help = "also write responsibilities"}},
       .run = [](train::TaskRun& run) { return posterior(run, true); },
       .examples = {"latent predict --model mmm.h5 --data corpus/ --output clusters.h5 --proba"}},
      {.task = Task::kTransform,
       .usage = "latent transform --model MMM.h5 --data COUNTS_DIR --output OUT.h5",
       .data_help = data_help,
       .output_flag = "output",
       .output_help = "HDF5 file: /proba (N x K)",
       .run = [](train::TaskRun& run) { return posterior(run, false); },
       .examples = {"latent transform --model mmm.h5 --data corpus/ --output resp.h5"}},
      {.task = Task::kSample,
       .usage = "latent sample --model MMM.h5 --n-samples N --output DIR [--doc-length 100] [--seed S]",
       .reads_data = false,
       .output_flag = "output",
       .output_help = "count dataset directory to create (/labels = component of each document)",
       .options = {{.flag = "n-samples", .type = T::kInt, .help = "number of documents", .required = true, .min = 1},
                   {.flag = "doc-length", .type = T::kInt, .default_value = "100", .help = "tokens per document", .min = 1},
                   {.flag = "docs-per-shard", .type = T::kInt, .default_value = "65536", .help = "documents per shard",
                    .min = 1},
                   {.flag = "seed", .type = T::kInt, .default_value = "0", .help = "random seed", .min = 0}},
       .run = sample,
       .examples = {"latent sample --model mmm.h5 --n-samples 1000 --doc-length 200 --output synthetic_corpus/"}},
  };
}

std::string describe_mmm_file(const std::string& path, int top_words) {
  const DiscreteMixture m = load_discrete(path);
  const io::H5Reader r(path);
  std::string text = fmt::format("model {}\nmultinomial mixture: {} components, vocabulary {}, alpha={:g}\n", path,
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

}  // namespace latent::models
