// `latent fit lda`: options, memory estimate and fit (the registry's entry;
// docs/ARCHITECTURE.md §3). Scoring, transform and info of LDA files: score_lda
// (lda_fit.cpp) and transform_lda (lda_apply.cpp), their commands in src/cli/lda.cpp (issue
// 18 notes).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "../specs.hpp"
#include "latent/models/lda/lda_fit.hpp"
#include "latent/models/lda/lda_gibbs.hpp"
#include "latent/models/lda/lda_slice.hpp"
#include "latent/train/fit_run.hpp"

namespace latent::models {
namespace {

int fit_lda_run(train::FitRun& run) {
  const OptionValues& o = run.options();
  train::FitCommon& c = run.common();
  LdaConfig l;
  l.n_topics = o.given("n-components") ? o.integer("n-components") : o.integer("n-topics");
  l.method = o.text("method");
  l.doc_topic_prior = o.real("doc-topic-prior");
  l.topic_word_prior = o.real("topic-word-prior");
  l.learning_decay = o.real("learning-decay");
  l.learning_offset = o.real("learning-offset");
  l.batch_size = o.integer("batch-size");
  l.max_iter = static_cast<int>(o.integer("max-iter"));
  const bool gibbs = l.method == "gibbs";
  if (gibbs && !o.given("max-iter")) l.max_iter = 200;  // sweeps: a sampler needs more passes than VB
  l.mh_steps = static_cast<int>(o.integer("mh-steps"));
  l.tol = o.real("tol");
  l.evaluate_every = static_cast<int>(o.integer("evaluate-every"));
  // log p(w, z) costs about a sweep: by default every 10 sweeps (and after the last).
  if (gibbs && !o.given("evaluate-every")) l.evaluate_every = 10;
  l.e_step.max_doc_update_iter = static_cast<int>(o.integer("max-doc-update-iter"));
  l.e_step.mean_change_tol = o.real("mean-change-tol");
  const std::string learn_priors = o.text("learn-priors");
  l.learn_alpha = learn_priors == "alpha" || learn_priors == "both";
  l.learn_eta = learn_priors == "eta" || learn_priors == "both";
  l.seed = c.seed;
  std::vector<std::string> vocabulary;
  const io::CountsDatasetInfo info = run.open_counts(vocabulary);
  l.threads = c.threads;
  l.block_rows = c.block_rows;
  l.prefetch = c.prefetch;
  l.cache_bytes = static_cast<std::size_t>(c.cache_mb) * 1048576;
  l.available_bytes = run.available_memory_bytes();
  if (gibbs && !c.checkpoint_every_given) {
    // A sampler's checkpoint holds every token's topic: by default every 10 sweeps (a stop
    // signal still writes one at the next sweep boundary).
    c.checkpoint.every = 10;
  }
  if (l.method == "online" && !c.checkpoint_every_given) {
    // Online updates are per minibatch: by default checkpoint once per pass.
    c.checkpoint.every = static_cast<int>(std::max<Index>(1, (info.num_rows + l.batch_size - 1) / l.batch_size));
  }
  nlohmann::json config{{"model", "lda"},
                        {"n_topics", l.n_topics},
                        {"method", l.method},
                        // The values used (-1 selects 1/K), not the sentinel.
                        {"doc_topic_prior", l.doc_topic_prior > 0 ? l.doc_topic_prior : 1.0 / static_cast<double>(l.n_topics)},
                        {"topic_word_prior", l.topic_word_prior > 0 ? l.topic_word_prior : 1.0 / static_cast<double>(l.n_topics)},
                        {"learning_decay", l.learning_decay},
                        {"learning_offset", l.learning_offset},
                        {"batch_size", l.batch_size},
                        {"max_iter", l.max_iter},
                        {"tol", l.tol},
                        {"evaluate_every", l.evaluate_every},
                        {"max_doc_update_iter", l.e_step.max_doc_update_iter},
                        {"mean_change_tol", l.e_step.mean_change_tol},
                        {"learn_priors", learn_priors},
                        {"seed", c.seed},
                        {"block_rows", c.block_rows},
                        {"data", c.data}};
  if (gibbs) {
    config["mh_steps"] = l.mh_steps;
    config["lower_bound"] = "log joint likelihood log p(w, z) per token (nats) of the last sample";
  }
  train::FitControl* control = run.control(config, train::data_fingerprint(info));
  const auto observer = run.observer();
  const auto t0 = std::chrono::steady_clock::now();
  LdaFitResult fit = fit_lda(run.comm(), info, l, run.log(), observer, control);
  double total = 0;
  if (gibbs || fit.slice) {  // sharded: every rank sends its slice to rank 0's writer
    total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    run.done(fit.em, total);
    if (gibbs)
      save_lda_sampled(run.comm(), *fit.sampler, vocabulary, config.dump(), fit.em, fit.num_documents, c.data, c.output,
                       c.overwrite);
    else
      save_lda_sharded(run.comm(), *fit.slice, vocabulary, config.dump(), fit.em, fit.num_documents, c.data, c.output,
                       c.overwrite);
  } else {
    total = run.finish(fit.em, t0, [&] {
      save_lda(fit.model, vocabulary, config.dump(), fit.em, fit.num_documents, c.data, c.output, c.overwrite);
    });
  }
  if (gibbs) {
    run.log().info(fmt::format("sampled {} sweeps of {} tokens, log p(w, z) per token {:.6f} nats, MH acceptance {:.4f} in "
                               "the last sweep, doc-topic prior {:.6g}{}, {:.2f} s; wrote {}",
                               fit.em.n_iter, static_cast<Index>(fit.num_tokens), fit.em.objective, fit.acceptance_rate,
                               fit.sampler->alpha(), l.learn_alpha ? " (learned)" : "", total, c.output));
    return 0;
  }
  run.log().info(fmt::format(
      "{} after {} passes ({} updates), training bound perplexity {:.4f} ({} tokens), {:.2f} s; wrote {}",
      fit.em.converged ? "converged" : "stopped", fit.em.n_iter, fit.num_updates, fit.bound_perplexity,
      static_cast<Index>(fit.num_tokens), total, c.output));
  if (fit.num_updates > 0 && fit.node_shared)
    run.log().info(fmt::format("lambda sharded over {} ranks of one node in shared memory: rows and expected counts read "
                               "in place, no messages",
                               run.comm().size()));
  else if (fit.num_updates > 0 && run.comm().size() > 1)
    run.log().info(fmt::format("lambda sharded over {} ranks; per update this rank exchanged {:.2f} MiB of rows and "
                               "expected counts on average (K x V doubles would be {:.2f} MiB)",
                               run.comm().size(), fit.bytes_exchanged / static_cast<double>(fit.num_updates) / 1048576.0,
                               8.0 * static_cast<double>(l.n_topics * info.vocab_size) / 1048576.0));
  return 0;
}

}  // namespace

ModelSpec lda_spec() {
  using T = OptionType;
  ModelSpec s;
  s.name = "lda";
  s.summary = "latent Dirichlet allocation: batch variational EM, online (stochastic VI) or collapsed Gibbs sampling";
  s.data = DataKind::kCounts;
  s.options = {
      {.flag = "n-topics", .type = T::kInt, .default_value = "10", .help = "number of topics K (scikit-learn's n_components)",
       .min = 1},
      {.flag = "n-components", .type = T::kInt, .help = "another name of --n-topics", .min = 1, .alias_of = "n-topics"},
      {.flag = "method", .type = T::kText, .default_value = "batch",
       .help = "batch (variational EM) | online (stochastic variational inference); scikit-learn's learning_method | "
               "gibbs (collapsed Gibbs sampling, O(1) Metropolis-Hastings proposals per token, WarpLDA)",
       .choices = {"batch", "online", "gibbs"}},
      {.flag = "doc-topic-prior", .type = T::kReal, .default_value = "-1",
       .help = "alpha, symmetric start (-1: 1/K)", .min = 0, .min_exclusive = true, .sentinel = -1.0},
      {.flag = "topic-word-prior", .type = T::kReal, .default_value = "-1", .help = "eta (-1: 1/K)", .min = 0,
       .min_exclusive = true, .sentinel = -1.0},
      {.flag = "learning-decay", .type = T::kReal, .default_value = "0.7",
       .help = "kappa: rho_t = (tau0 + t)^-kappa (online)", .min = 0.5, .max = 1, .min_exclusive = true},
      {.flag = "learning-offset", .type = T::kReal, .default_value = "10",
       .help = "tau0 (down-weights early updates; online)", .min = 0},
      {.flag = "batch-size", .type = T::kInt, .default_value = "128", .help = "documents per global minibatch (online)",
       .min = 1},
      {.flag = "max-iter", .type = T::kInt, .default_value = "10",
       .help = "passes over the corpus (gibbs: sweeps, default 200)", .min = 1},
      {.flag = "mh-steps", .type = T::kInt, .default_value = "2",
       .help = "gibbs: Metropolis-Hastings steps (a doc and a word proposal each) per token per sweep", .min = 1},
      {.flag = "tol", .type = T::kReal, .default_value = "0.1",
       .help = "stop when the bound perplexity changes by less than this between passes (scikit-learn's perp_tol)",
       .min = 0},
      {.flag = "evaluate-every", .type = T::kInt, .default_value = "1",
       .help = "compute the bound (log line, --tol) every N passes and after the last; 0: never (scikit-learn's "
               "default -1, also accepted); gibbs: the log joint, default every 10 sweeps",
       .min = 0, .sentinel = -1.0},
      {.flag = "max-doc-update-iter", .type = T::kInt, .default_value = "100",
       .help = "variational iterations per document at most", .min = 1},
      {.flag = "mean-change-tol", .type = T::kReal, .default_value = "0.001",
       .help = "per-document stop: mean absolute change of gamma", .min = 0, .min_exclusive = true},
      {.flag = "learn-priors", .type = T::kText, .default_value = "none",
       .help = "none | alpha | eta | both: learn the doc-topic prior (asymmetric) and/or the topic-word prior by Newton "
               "steps; gibbs: alpha only, symmetric, Minka's fixed point every 10 sweeps",
       .choices = {"none", "alpha", "eta", "both"}},
  };
  s.tasks = {Task::kScore, Task::kTransform, Task::kGenerate, Task::kExport};
  s.examples = {"latent fit lda --data corpus/ --output lda.h5 --n-topics 20",
                "mpirun -n 8 latent fit lda --data corpus/ --output lda.h5 --n-topics 100 --method online --batch-size "
                "4096 --max-iter 3",
                "mpirun -n 4 latent fit lda --data corpus/ --output lda.h5 --n-topics 1000 --method gibbs --max-iter 300"};
  // Every method checks its own prediction once the corpus is counted: λ (VB) or the
  // counts (gibbs) are sharded across ranks (fit_lda logs the prediction and refuses).
  s.memory = [](const OptionValues&, std::int64_t, std::int64_t) { return MemoryNeeds{0, 0, 0}; };
  s.objective_name = "bound_per_token";  // gibbs: the log joint log p(w, z) per token
  s.objective_unit = "nats/token";
  s.change_name = "bound perplexity change";
  s.memory_advice =
      "use fewer topics, prune the vocabulary (--min-df/--max-df on import), fewer --threads, or raise --memory-budget "
      "if the limit is wrong";
  s.fit = fit_lda_run;
  s.own_tasks = lda_own_tasks();
  s.describe = describe_lda_file;
  return s;
}

}  // namespace latent::models
