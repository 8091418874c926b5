// LDA's own tasks (ModelSpec::own_tasks): score (document-completion and bound
// perplexities), transform (topic proportions), and its `latent info` text. `generate lda`
// is lda_generate.cpp.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>

#include "latent/core/error.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/models/lda/lda_apply.hpp"
#include "latent/models/lda/lda_coherence.hpp"
#include "latent/io/shard_directory.hpp"
#include "latent/models/generate.hpp"
#include "latent/models/lda/lda_fit.hpp"
#include "latent/models/lda/lda_generate.hpp"
#include "latent/train/task_run.hpp"
#include "../specs.hpp"
#include "lda_tasks.hpp"

namespace latent::models {

std::vector<OptionSpec> lda_e_step_options() {
  using T = OptionType;
  return {
      {.flag = "max-doc-update-iter", .type = T::kInt, .default_value = "100",
       .help = "variational iterations per document at most", .min = 1},
      {.flag = "mean-change-tol", .type = T::kReal, .default_value = "0.001",
       .help = "per-document stop: mean absolute change of gamma", .min = 0, .min_exclusive = true},
  };
}

LdaEStepOptions lda_e_step(const OptionValues& o) {
  LdaEStepOptions e;
  e.max_doc_update_iter = static_cast<int>(o.integer("max-doc-update-iter"));
  e.mean_change_tol = o.real("mean-change-tol");
  return e;
}

Lda load_lda_and_corpus(train::TaskRun& run, io::CountsDatasetInfo& info, std::vector<std::string>* vocabulary) {
  const train::TaskCommon& c = run.common();
  Lda model;
  comm::run_agreed(run.comm(), [&] {
    model = load_lda(c.model, vocabulary);
    info = io::open_counts_dataset(c.data);
    if (info.vocab_size != model.vocab_size())
      throw_input(fmt::format("data {} has a vocabulary of {} words but model {} has {}; import the data with the "
                              "model's vocabulary",
                              c.data, info.vocab_size, c.model, model.vocab_size()));
  });
  model.refresh(c.threads);
  return model;
}

namespace {

std::vector<OptionSpec> score_options() {
  std::vector<OptionSpec> options = lda_e_step_options();
  options.push_back({.flag = "coherence-top-n", .type = OptionType::kInt, .default_value = "10",
                     .help = "topic coherence (UMass, NPMI) of each topic's top N words (V if N > V); 0: off", .min = 0});
  return options;
}

int score(train::TaskRun& run) {
  const train::TaskCommon& c = run.common();
  io::CountsDatasetInfo info;
  const Lda model = load_lda_and_corpus(run, info);
  const Index top_n = run.options().integer("coherence-top-n");
  if (top_n == 1) throw_usage("--coherence-top-n must be 0 (off) or at least 2, got 1");
  const LdaScore s = score_lda(run.comm(), info, model, lda_e_step(run.options()), c.threads, c.block_rows);
  std::optional<TopicCoherence> coherence;
  const Index n_top = std::min(top_n, model.vocab_size());  // a vocabulary of fewer than 2 words has no pairs
  if (n_top >= 2)
    coherence = topic_coherence(run.comm(), info, lda_top_words(model, n_top, c.threads), c.threads, c.block_rows,
                                c.prefetch);
  nlohmann::json j{{"model", "lda"},
             {"data", c.data},
             {"n_samples", s.num_documents},
             {"n_tokens", static_cast<Index>(s.num_tokens)},
             {"num_documents", s.num_documents},  // older names of n_samples and n_tokens
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
  run.print(j);
  return 0;
}

int transform(train::TaskRun& run) {
  const train::TaskCommon& c = run.common();
  run.check_output();
  io::CountsDatasetInfo info;
  const Lda model = load_lda_and_corpus(run, info);
  const std::vector<io::BlockRef> mine =
      io::rank_blocks(io::make_block_plan(info.shard_rows(), c.block_rows), run.comm().rank(), run.comm().size());
  const Index first_row = mine.empty() ? 0 : mine.front().global_row_begin;
  const auto out = run.row_output({{"doc_topic_distribution", io::DType::kFloat64, model.num_topics()}}, io::num_rows(mine));
  transform_lda(run.comm(), info, mine, model, lda_e_step(run.options()), c.threads, c.prefetch,
                [&](const io::BlockRef& block, const RowMatrix& theta) {
                  out->write_rows("doc_topic_distribution", block.global_row_begin - first_row, theta);
                });
  out->finish(info.num_rows);
  run.log().info(fmt::format("wrote the topic proportions of {} documents to {}", info.num_rows, c.output));
  return 0;
}

// `latent generate lda`: a synthetic corpus (LdaGenerator) written in parallel, each rank a
// contiguous range of shards, with the true topics beside it.
int generate(train::TaskRun& run) {
  const OptionValues& o = run.options();
  const Index v = o.integer("vocab-size");
  const GeneratePlan plan = plan_generate(run, v, "lda");
  const auto t0 = std::chrono::steady_clock::now();
  io::ShardDirectory dir(run.comm(), plan.output, plan.truth);
  const LdaGenerator gen(v, plan.n_components, o.real("doc-length"), o.real("doc-topic-prior"), o.real("topic-word-prior"),
                         plan.seed);
  std::vector<std::string> vocab;
  for (Index w = 0; w < v; ++w) vocab.push_back(fmt::format("w{}", w));
  comm::run_agreed(run.comm(), [&] {
    if (!run.comm().is_root()) return;
    io::write_vocabulary(dir.tmp(), vocab);
    if (!plan.truth.empty()) {
      save_lda(gen.truth(), vocab, plan.config, train::EmResult{}, plan.n_samples, plan.output, plan.truth, false);
      dir.truth_written();
    }
  });
  comm::run_agreed(run.comm(), [&] {
    // A progress line of this rank's documents (rank 0's, on a terminal).
    const auto progress =
        run.progress("generate", plan.layout.begin(plan.mine.last) - plan.layout.begin(plan.mine.first), "documents");
    write_lda_shards(gen, plan.layout, plan.mine.first, plan.mine.last, [&](Index s) { return dir.shard_path(s); },
                     [&](Index done) { progress->update(done); }, run.common().threads);
    progress->finish();
  });
  dir.publish();
  log_generated(run, plan, "documents", "V", v, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return 0;
}

std::vector<OptionSpec> generate_lda_options() {
  using T = OptionType;
  std::vector<OptionSpec> options = generate_options("documents N", "topics K");
  options.insert(
      options.end(),
      {{.flag = "vocab-size", .type = T::kInt, .help = "vocabulary size V (words are named w0, w1, ...)", .required = true,
        .min = 1},
       {.flag = "doc-length", .type = T::kReal, .default_value = "100", .help = "mean document length (Poisson)",
        .unit = "tokens", .min = 0, .min_exclusive = true},
       {.flag = "doc-topic-prior", .type = T::kReal, .default_value = "0.1", .help = "alpha of theta ~ Dir(alpha)",
        .min = 0, .min_exclusive = true},
       {.flag = "topic-word-prior", .type = T::kReal, .default_value = "0.01", .help = "eta of beta_k ~ Dir(eta)",
        .min = 0, .min_exclusive = true},
       {.flag = "n-documents", .type = T::kInt, .help = "another name of --n-samples", .alias_of = "n-samples"},
       {.flag = "n-topics", .type = T::kInt, .help = "another name of --n-components", .alias_of = "n-components"},
       {.flag = "docs-per-shard", .type = T::kInt, .help = "another name of --rows-per-shard",
        .alias_of = "rows-per-shard"}});
  return options;
}

}  // namespace

std::vector<TaskSpec> lda_own_tasks() {
  const std::string data_help = "count dataset directory (`latent import counts`), same vocabulary";
  return {
      {.task = Task::kScore,
       .usage = "latent score --model LDA.h5 --data DIR",
       .data_help = data_help,
       .options = score_options(),
       .run = score,
       .examples = {"latent score --model lda.h5 --data heldout_corpus/"}},
      {.task = Task::kTransform,
       .usage = "latent transform --model LDA.h5 --data DIR --output OUT.h5",
       .data_help = data_help,
       .output_flag = "output",
       .output_help = "HDF5 file: /doc_topic_distribution (N x K, rows sum to 1)",
       .options = lda_e_step_options(),
       .run = transform,
       .examples = {"mpirun -n 4 latent transform --model lda.h5 --data corpus/ --output theta.h5"}},
      {.task = Task::kGenerate,
       .usage = "latent generate lda --n-samples N --vocab-size V --n-components K --output DIR [options]",
       .reads_data = false,
       .output_flag = "output",
       .output_help = "count dataset directory to create (must not exist)",
       .options = generate_lda_options(),
       .run = generate,
       .examples = {"latent generate lda --n-samples 100000 --vocab-size 5000 --n-components 50 --output corpus/"},
       .reads_model = false,
       .takes_threads = true},
      lda_export_task(),
  };
}

std::string describe_lda_file(const std::string& path, int top_words) {
  std::vector<std::string> vocab;
  Lda model = load_lda(path, &vocab);
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

}  // namespace latent::models
