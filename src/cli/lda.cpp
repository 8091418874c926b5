// LDA's apply commands: score, transform, info (`generate lda` is in generate.cpp).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>

#include "common.hpp"
#include "latent/core/error.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/models/lda/lda_apply.hpp"
#include "latent/models/lda/lda_coherence.hpp"
#include "latent/models/lda/lda_fit.hpp"

namespace latent::cli {
namespace {

struct LdaApply {
  std::string model, data;
  StreamOptions stream;
  models::LdaEStepOptions e_step;
};

void add_lda_apply(po::options_description& desc, LdaApply& a) {
  desc.add_options()
      ("model", po::value(&a.model)->required(), "LDA model file written by `latent fit lda`")
      ("data", po::value(&a.data)->required(), "count dataset directory (`latent import counts`), same vocabulary")
      ("max-doc-update-iter", po::value(&a.e_step.max_doc_update_iter)->default_value(100),
       "variational iterations per document at most")
      ("mean-change-tol", po::value(&a.e_step.mean_change_tol)->default_value(1e-3, "0.001"),
       "per-document stop: mean absolute change of gamma");
  add_stream_options(desc, a.stream);
}

// Loads the model and opens the data on every rank. Collective.
models::Lda load_and_open(const Context& ctx, LdaApply& a, io::CountsDatasetInfo& info) {
  models::Lda model;
  a.stream.threads = resolve_threads(a.stream.threads);
  comm::run_agreed(ctx.comm, [&] {
    model = models::load_lda(a.model);
    info = io::open_counts_dataset(a.data);
    if (info.vocab_size != model.vocab_size())
      throw_input(fmt::format("data {} has a vocabulary of {} words but model {} has {}; import the data with the "
                              "model's vocabulary",
                              a.data, info.vocab_size, a.model, model.vocab_size()));
  });
  model.refresh(a.stream.threads);
  return model;
}

}  // namespace


int score_lda(const std::vector<std::string>& args, const Context& ctx) {
  LdaApply a;
  Index top_n = 10;
  po::options_description desc("latent score options (LDA)");
  add_lda_apply(desc, a);
  desc.add_options()
      ("coherence-top-n", po::value(&top_n)->default_value(10),
       "topic coherence (UMass, NPMI) of each topic's top N words (V if N > V); 0: off");
  po::variables_map vm;
  if (!parse(args, desc, vm, ctx, "latent score --model LDA.h5 --data DIR")) return 0;
  if (top_n < 0 || top_n == 1) throw_usage(fmt::format("--coherence-top-n must be 0 (off) or at least 2, got {}", top_n));
  io::CountsDatasetInfo info;
  const models::Lda model = load_and_open(ctx, a, info);
  const models::LdaScore s = models::score_lda(ctx.comm, info, model, a.e_step, a.stream.threads, a.stream.block_rows);
  std::optional<models::TopicCoherence> coherence;
  const Index n_top = std::min(top_n, model.vocab_size());  // a vocabulary of fewer than 2 words has no pairs
  if (n_top >= 2)
    coherence = models::topic_coherence(ctx.comm, info, models::lda_top_words(model, n_top, a.stream.threads),
                                        a.stream.threads, a.stream.block_rows, a.stream.prefetch);
  nlohmann::json j{{"model", "lda"},
                   {"data", a.data},
                   {"num_documents", s.num_documents},
                   {"num_tokens", static_cast<Index>(s.num_tokens)},
                   {"doc_completion_perplexity", s.doc_completion_perplexity},
                   {"doc_completion_log_likelihood_per_token_nats", s.completion_per_token()},
                   {"doc_completion_tokens", static_cast<Index>(s.completion_tokens)},
                   {"bound_perplexity", s.bound_perplexity},
                   {"bound_per_token_nats", s.bound_per_token()},
                   {"bound_nats", s.bound},
                   {"definitions",
                    "doc_completion_perplexity = exp(-sum log p(odd-position tokens | theta from even-position tokens) / "
                    "their count), Wallach et al. 2009; bound_perplexity = exp(-ELBO / tokens), Hoffman et al. 2010 eq. "
                    "16 (scikit-learn's perplexity()); gensim's log_perplexity prints the per-token bound and its "
                    "'perplexity estimate' is 2^(-bound), neither of these"}};
  if (coherence) {
    j["coherence_top_n"] = coherence->top_n;
    j["coherence_umass"] = coherence->umass_mean;
    j["coherence_umass_per_topic"] = coherence->umass;
    j["coherence_npmi"] = coherence->npmi_mean;
    j["coherence_npmi_per_topic"] = coherence->npmi;
    j["definitions"] = j["definitions"].get<std::string>() +
        "; coherence over each topic's top N words t_1..t_N (decreasing lambda, ties by lower word id), D = number "
        "of documents containing the word(s), N_d = documents: coherence_umass_per_topic = mean over i > j of "
        "log((D(t_i, t_j)/N_d + 1e-12) / (D(t_j)/N_d)) (0 for a pair with D(t_j) = 0), Mimno et al. 2011 eq. 1 with "
        "gensim's conventions (epsilon on the probability, mean over pairs: CoherenceModel(coherence='u_mass')); "
        "coherence_npmi_per_topic = mean over pairs of log(P(a,b)/(P(a)P(b))) / -log P(a,b) with document "
        "probabilities P = D/N_d (Bouma 2009; Roeder et al. 2015), -1 when D(a,b) = 0, 1 when D(a,b) = N_d; "
        "gensim's c_npmi uses 10-token sliding windows instead of documents; the averages are means over topics";
  }
  if (ctx.comm.is_root()) ctx.out << j.dump() << '\n';
  return 0;
}

int transform_lda(const std::vector<std::string>& args, const Context& ctx) {
  LdaApply a;
  std::string output;
  bool overwrite = false;
  po::options_description desc("latent transform options");
  add_lda_apply(desc, a);
  desc.add_options()
      ("output", po::value(&output)->required(), "HDF5 file: /doc_topic_distribution (N x K, rows sum to 1)")
      ("overwrite", po::bool_switch(&overwrite), "replace an existing output file (atomically)");
  po::variables_map vm;
  if (!parse(args, desc, vm, ctx, "latent transform --model LDA.h5 --data DIR --output OUT.h5")) return 0;
  comm::run_agreed(ctx.comm, [&] {
    if (ctx.comm.is_root()) io::check_output_path(output, overwrite);
  });
  io::CountsDatasetInfo info;
  const models::Lda model = load_and_open(ctx, a, info);
  const Index k = model.num_topics();
  const std::vector<io::BlockRef> mine =
      io::rank_blocks(io::make_block_plan(info.shard_rows(), a.stream.block_rows), ctx.comm.rank(), ctx.comm.size());
  const Index first_row = mine.empty() ? 0 : mine.front().global_row_begin;
  RowParts parts(ctx, output, {{"doc_topic_distribution", io::DType::kFloat64, k}}, io::num_rows(mine));
  models::transform_lda(ctx.comm, info, mine, model, a.e_step, a.stream.threads, a.stream.prefetch,
                        [&](const io::BlockRef& block, const RowMatrix& theta) {
                          parts.write_rows("doc_topic_distribution", block.global_row_begin - first_row, theta);
                        });
  parts.finish(overwrite, a.model, a.data, info.num_rows);
  ctx.log.info(fmt::format("wrote the topic proportions of {} documents to {}", info.num_rows, output));
  return 0;
}

std::string describe_lda(const std::string& path, int top_words) {
  std::vector<std::string> vocab;
  models::Lda model = models::load_lda(path, &vocab);
  model.refresh(1);
  const io::H5Reader r(path);
  std::string text = fmt::format("model {}\nlda: {} topics, vocabulary {}, topic_word_prior (eta) {:.6g}\n", path,
                                 model.num_topics(), model.vocab_size(), model.eta());
  if (r.has_attr("/", "n_iter"))
    text += fmt::format("  passes: {}  converged: {}  bound per token: {:.6f} nats\n", r.attr_int("/", "n_iter"),
                        r.attr_int("/", "converged") != 0 ? "yes" : "no", r.attr_double("/", "lower_bound"));
  if (r.has_attr("/", "config")) text += "  config: " + r.attr_string("/", "config") + "\n";
  const Index v = model.vocab_size();
  std::vector<Index> order(static_cast<std::size_t>(v));
  const Index n_top = std::min<Index>(top_words, v);
  for (Index t = 0; t < model.num_topics(); ++t) {
    std::iota(order.begin(), order.end(), Index{0});
    const auto& lambda = model.lambda_vk();
    std::partial_sort(order.begin(), order.begin() + n_top, order.end(), [&](Index x, Index y) {
      return lambda(x, t) > lambda(y, t) || (lambda(x, t) == lambda(y, t) && x < y);
    });
    text += fmt::format("  topic {:>3} (alpha {:.4g}, weight {:.4f}):", t, model.alpha()(t),
                        model.topic_totals()(t) / model.topic_totals().sum());
    for (Index i = 0; i < n_top; ++i) {
      const Index w = order[static_cast<std::size_t>(i)];
      text += " " + (vocab.empty() ? std::to_string(w) : vocab[static_cast<std::size_t>(w)]);
    }
    text += "\n";
  }
  return text;
}

std::string describe_counts(const std::string& path) {
  const auto info = io::open_counts_dataset(path);
  std::string text = fmt::format("count data {}: {} documents, vocabulary {}, {} nonzeros, {} shard(s), labels: {}\n", path,
                                 info.num_rows, info.vocab_size, info.num_nonzeros, info.shards.size(),
                                 info.has_labels ? "yes" : "no");
  for (const auto& s : info.shards) text += fmt::format("  {}  {} documents  {} nonzeros\n", s.path, s.num_rows, s.num_nonzeros);
  return text;
}

int cmd_bench_allreduce(const std::vector<std::string>& args, const Context& ctx) {
  Index size = 0;
  int repeat = 5;
  std::string strategy;
  po::options_description desc("latent bench-allreduce options (hidden: for bench/lda_allreduce.py)");
  desc.add_options()
      ("size", po::value(&size)->required(), "elements (int64) per reduction, e.g. K x V")
      ("strategy", po::value(&strategy)->default_value("allreduce"), "allreduce | reduce-scatter (then allgather)")
      ("repeat", po::value(&repeat)->default_value(5), "timed repetitions (after one warm-up)");
  po::variables_map vm;
  if (!parse(args, desc, vm, ctx, "mpirun -n P latent bench-allreduce --size N [--strategy S] [--repeat R]")) return 0;
  if (size < 1 || repeat < 1) throw_usage("--size and --repeat must be positive");
  if (strategy != "allreduce" && strategy != "reduce-scatter") throw_usage("--strategy must be allreduce or reduce-scatter");
  std::vector<std::int64_t> values(static_cast<std::size_t>(size));
  double best = 1e300, total = 0;
  for (int r = 0; r <= repeat; ++r) {
    std::fill(values.begin(), values.end(), ctx.comm.rank() + 1);
    ctx.comm.barrier();
    const auto t0 = std::chrono::steady_clock::now();
    if (strategy == "allreduce") ctx.comm.allreduce_sum(values);
    else ctx.comm.allreduce_sum_by_slices(values);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::vector<double> worst{seconds};
    ctx.comm.allreduce_max(worst);
    seconds = worst[0];
    const std::int64_t expect = static_cast<std::int64_t>(ctx.comm.size()) * (ctx.comm.size() + 1) / 2;
    if (values.front() != expect || values.back() != expect) throw Error(ErrorKind::kInternal, "wrong reduction result");
    if (r == 0) continue;
    best = std::min(best, seconds);
    total += seconds;
  }
  nlohmann::json j{{"size", size}, {"strategy", strategy}, {"ranks", ctx.comm.size()}, {"bytes_per_element", 8},
                   {"seconds_per_op", total / repeat}, {"best_seconds", best}};
  if (ctx.comm.is_root()) ctx.out << j.dump() << '\n';
  return 0;
}

}  // namespace latent::cli
