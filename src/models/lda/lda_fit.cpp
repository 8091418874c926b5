#include "latent/models/lda/lda_fit.hpp"

#include <fmt/format.h>
#include <oneapi/tbb/enumerable_thread_specific.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>

#include "latent/core/control.hpp"
#include "latent/core/error.hpp"
#include "latent/core/profile.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/models/lda/lda_gibbs.hpp"
#include "latent/models/lda/lda_slice.hpp"
#include "latent/train/memory.hpp"
#include "latent/train/content_hash.hpp"
#include "latent/train/stochastic.hpp"

namespace latent::models {
namespace {

using Clock = std::chrono::steady_clock;

// Bytes of one round's buffers (rows fetched, their packed copies, per-thread and merged
// expected counts, one peer's counts): the round's distinct words × K stay within
// kRoundBytes / (28 + 8 × threads) cells.
constexpr Index kRoundBytes = Index{256} << 20;

// --method gibbs --learn-priors alpha: sweeps between updates of α.
constexpr int kGibbsAlphaInterval = 10;

// Cells of the small exact reduction that travels with the statistics.
enum Cell : std::size_t { kWordTerm, kThetaTerm, kTokens, kDocuments, kDocIterations, kElogTheta };

struct ThreadState {
  explicit ThreadState(Index k) : small(kElogTheta + static_cast<std::size_t>(k)), row(kElogTheta + static_cast<std::size_t>(k)) {}
  LdaWorkspace work;
  Vector gamma;
  std::unique_ptr<LdaStatsAccumulator> acc;  // rows: the round's words, renumbered
  Index acc_rows = 0;
  ExactSum small;
  std::vector<double> row;
};

void finish_small(LdaPassStats& pass, const ExactSum& small, Index k) {
  const std::vector<double> values = small.values();
  pass.word_term = values[kWordTerm];
  pass.theta_term = values[kThetaTerm];
  pass.tokens = values[kTokens];
  pass.documents = values[kDocuments];
  pass.doc_iterations = values[kDocIterations];
  pass.sum_elog_theta = Eigen::Map<const Vector>(values.data() + kElogTheta, k);
}

// A validating pass: reads every local block (read_csr_block checks the CSR), counts
// tokens and empty documents. Collective.
struct CorpusCounts {
  double tokens = 0;
  Index documents = 0, empty = 0;
  std::vector<std::uint64_t> shard_hashes;  // content hashes (latent/train/content_hash.hpp)
  double max_local_tokens = 0, max_local_documents = 0;  // the largest over ranks
};
CorpusCounts validate_corpus(const comm::Communicator& comm, const io::CountsDatasetInfo& info, const LdaConfig& c) {
  std::vector<std::int64_t> sums(3, 0);
  train::ContentHasher content(info.shards.size());
  comm::run_agreed(comm, [&] {
    io::CountsSource source(info, io::rank_blocks(io::make_block_plan(info.shard_rows(), c.block_rows), comm.rank(), comm.size()),
                            {c.prefetch, 0, false});
    source.start_pass();
    while (auto block = source.next()) {
      heartbeat();
      content.add_counts(*block);
      for (Index d = 0; d < block->num_rows(); ++d) {
        const auto b = block->indptr[static_cast<std::size_t>(d)], e = block->indptr[static_cast<std::size_t>(d) + 1];
        if (b == e) ++sums[2];
        for (auto j = b; j < e; ++j) sums[0] += static_cast<std::int64_t>(block->counts[static_cast<std::size_t>(j)]);
      }
      sums[1] += block->num_rows();
    }
  });
  double local[2] = {static_cast<double>(sums[0]), static_cast<double>(sums[1])};
  comm.allreduce_max(local);
  comm.allreduce_sum(sums);
  return {static_cast<double>(sums[0]), sums[1], sums[2], content.global(comm), local[0], local[1]};
}

void check_config(const LdaConfig& c, const io::CountsDatasetInfo&) {
  if (c.n_topics < 1) throw_usage("--n-topics must be at least 1");
  if (c.method != "batch" && c.method != "online" && c.method != "gibbs")
    throw_usage("--method must be batch, online or gibbs (got '" + c.method + "')");
  if (c.method == "gibbs" && c.learn_eta)
    throw_usage("--learn-priors eta|both is not available with --method gibbs (it learns the symmetric doc-topic prior "
                "only: --learn-priors alpha)");
  if (c.mh_steps < 1) throw_usage("--mh-steps must be at least 1");
  if (c.max_iter < 1) throw_usage("--max-iter must be at least 1");
  if (c.batch_size < 1) throw_usage("--batch-size must be at least 1");
  if (!(c.learning_decay > 0.5 && c.learning_decay <= 1.0))
    throw_usage("--learning-decay must be in (0.5, 1] for convergence (Hoffman et al. 2010)");
  if (!(c.learning_offset >= 0)) throw_usage("--learning-offset must be >= 0");
  if (c.e_step.max_doc_update_iter < 1) throw_usage("--max-doc-update-iter must be at least 1");
  if (!(c.e_step.mean_change_tol > 0)) throw_usage("--mean-change-tol must be > 0");
  if (c.doc_topic_prior == 0 || c.topic_word_prior == 0 || !std::isfinite(c.doc_topic_prior) ||
      !std::isfinite(c.topic_word_prior))
    throw_usage("--doc-topic-prior and --topic-word-prior must be positive");
}

double perplexity_of(double bound, double tokens) { return tokens > 0 ? std::exp(-bound / tokens) : 0.0; }

void check_finite_bound(double bound, Index step) {
  if (!std::isfinite(bound))
    throw_numerical(fmt::format("the variational bound became NaN/Inf at update {}; the model was not updated and the last "
                                "checkpoint is intact. Try larger priors or a smaller --learning-offset",
                                step));
}

train::TrainState snapshot(RowMatrix lambda, const Vector& alpha, double eta, const train::EmResult& em,
                           const std::vector<double>& scalars_v) {
  train::TrainState s;
  s.arrays["lambda"] = std::move(lambda);
  s.arrays["alpha"] = alpha;
  s.scalars["eta"] = eta;
  const char* names[] = {"updates", "pass", "minibatch", "acc_word", "acc_theta", "acc_tokens", "prev_perplexity"};
  for (std::size_t i = 0; i < scalars_v.size(); ++i) s.scalars[names[i]] = scalars_v[i];
  train::save_history(em, s);
  return s;
}


// --method gibbs: the sampler of lda_gibbs.hpp, one sweep per pass (epoch) of the
// stochastic trainer; the state is the topic of every token.
void fit_gibbs(const comm::Communicator& comm, const io::CountsDatasetInfo& info, const LdaConfig& c, const Logger& log,
               const LdaObserver& observer, train::FitControl* control, LdaFitResult& result, double alpha0, double eta0) {
  const Index k = c.n_topics, v = info.vocab_size;
  auto sampler_owned = std::make_shared<GibbsSampler>(k, v, alpha0, eta0, c.mh_steps, c.seed, c.threads);
  GibbsSampler& sampler = *sampler_owned;
  // This rank's documents as tokens (a count c of word w is c consecutive tokens), in the
  // global block plan's order: ranks hold contiguous ranges, so the tokens are too.
  {
    std::vector<std::int64_t> doc_ptr{0};
    std::vector<std::int32_t> words;
    comm::run_agreed(comm, [&] {
      io::CountsSource source(info, io::rank_blocks(io::make_block_plan(info.shard_rows(), c.block_rows), comm.rank(), comm.size()),
                              {c.prefetch, 0, false});
      source.start_pass();
      while (auto block = source.next()) {
        heartbeat();
        for (Index d = 0; d < block->num_rows(); ++d) {
          for (auto j = block->indptr[static_cast<std::size_t>(d)]; j < block->indptr[static_cast<std::size_t>(d) + 1]; ++j)
            words.insert(words.end(), static_cast<std::size_t>(block->counts[static_cast<std::size_t>(j)]),
                         block->indices[static_cast<std::size_t>(j)]);
          doc_ptr.push_back(static_cast<std::int64_t>(words.size()));
        }
      }
    });
    const std::int64_t mine = static_cast<std::int64_t>(words.size());
    const std::vector<std::int64_t> per_rank = comm.size() > 1 ? comm.allgatherv(std::span<const std::int64_t>(&mine, 1))
                                                               : std::vector<std::int64_t>{mine};
    std::int64_t first = 0;
    for (int r = 0; r < comm.rank(); ++r) first += per_rank[static_cast<std::size_t>(r)];
    sampler.set_corpus(std::move(doc_ptr), std::move(words), first);
  }
  const auto total_tokens = static_cast<std::int64_t>(result.num_tokens);
  Index sweeps_done = 0;
  double prev_objective = 0;
  bool resumed = false;
  if (control != nullptr) {
    if (auto state = control->resume()) {
      const RowMatrix& z = state->array("z");
      if (z.rows() != total_tokens || z.cols() != 1 || state->scalar("n_topics") != static_cast<double>(k))
        throw_input("checkpoint: the saved topics do not match this corpus and --n-topics");
      auto& topics = sampler.topics();
      for (std::size_t i = 0; i < topics.size(); ++i) {
        const double t = z(static_cast<Index>(sampler.first_token() + static_cast<std::int64_t>(i)), 0);
        if (!(t >= 0 && t < static_cast<double>(k))) throw_input("checkpoint: a saved topic is out of range");
        topics[i] = static_cast<std::int32_t>(t);
      }
      if (state->scalars.count("alpha") != 0) sampler.set_alpha(state->scalar("alpha"));
      sweeps_done = static_cast<Index>(state->scalar("pass"));
      prev_objective = state->scalar("prev_objective");
      result.em = train::load_history(*state);
      resumed = true;
    }
  }
  if (!resumed) sampler.init_topics();
  sampler.rebuild_counts(comm);

  const FaultPlan& fault = FaultPlan::get();
  Clock::time_point t0;
  bool evaluate = false;
  GibbsSweepStats stats;
  train::StochasticSteps steps;
  steps.begin_epoch = [&](int epoch, const std::vector<Index>&, Index) {
    t0 = Clock::now();
    profile::begin_iteration();
    evaluate = c.evaluate_every > 0 && ((epoch + 1) % c.evaluate_every == 0 || epoch + 1 == c.max_iter);
  };
  steps.step = [&](int epoch, Index, Index, std::int64_t update) {
    comm::run_agreed(comm, [&] {
      if (fault.due(comm.rank(), update, "throw"))
        throw std::runtime_error("injected fault (LATENT_FAULT kind=throw) in sweep " + std::to_string(update));
    });
    heartbeat();
    stats = sampler.sweep(comm, static_cast<std::uint64_t>(epoch));
  };
  steps.end_epoch = [&](int epoch) {
    // --learn-priors alpha: Minka's fixed point for the symmetric α from the current sample,
    // every 10 sweeps (as MALLET's --optimize-interval 10), before the sweep is evaluated.
    if (c.learn_alpha && (epoch + 1) % kGibbsAlphaInterval == 0)
      sampler.set_alpha(gibbs_optimize_alpha(sampler.alpha_statistics(comm), k, sampler.alpha()));
    const double objective = evaluate ? sampler.log_joint(comm) / static_cast<double>(total_tokens) : 0.0;
    if (evaluate && !std::isfinite(objective))
      throw_numerical(fmt::format("the log joint likelihood became NaN/Inf at sweep {}", epoch + 1));
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    const double change = evaluate && prev_objective != 0 ? objective - prev_objective : 0.0;
    train::IterationRecord rec{epoch + 1, objective, change, seconds,
                               seconds > 0 ? static_cast<double>(result.num_documents) / seconds : 0.0};
    rec.tokens_per_second = seconds > 0 ? static_cast<double>(stats.tokens) / seconds : 0.0;
    rec.evaluated = evaluate;
    result.em.history.push_back(rec);
    result.em.n_iter = epoch + 1;
    if (evaluate) {
      result.em.objective = objective;
      prev_objective = objective;
    }
    result.acceptance_rate = stats.proposals > 0 ? static_cast<double>(stats.accepted) / static_cast<double>(stats.proposals) : 0.0;
    if (observer) observer(rec);
    heartbeat();
    return false;  // a sampler runs its sweeps
  };
  steps.snapshot = [&](const train::StochasticPosition& at) {
    // Every rank's topics in global token order, on rank 0 only (the one that writes the
    // checkpoint; collective: every rank calls snapshot). In rounds of at most 1 GiB in
    // all, so any corpus passes MPI's 2^31 count limit.
    const std::vector<std::int32_t>& topics = sampler.topics();
    const auto per_round = static_cast<std::size_t>(std::max<std::int64_t>(1, (std::int64_t{1} << 28) / comm.size()));
    double rounds = std::ceil(static_cast<double>(topics.size()) / static_cast<double>(per_round));
    comm.allreduce_max(std::span<double>(&rounds, 1));
    std::vector<std::string> parts(static_cast<std::size_t>(comm.size()));
    for (std::size_t r = 0; r < static_cast<std::size_t>(rounds); ++r) {
      const std::size_t lo = std::min(topics.size(), r * per_round), hi = std::min(topics.size(), lo + per_round);
      const std::string mine(reinterpret_cast<const char*>(topics.data() + lo), (hi - lo) * sizeof(std::int32_t));
      if (comm.size() == 1) {
        parts[0] += mine;
        continue;
      }
      std::vector<std::string> got = comm.gather(mine, 0);
      for (std::size_t q = 0; q < got.size(); ++q) parts[q] += got[q];
    }
    train::TrainState s;
    if (!comm.is_root()) return s;
    RowMatrix z(total_tokens, 1);
    Index at_token = 0;
    for (const std::string& p : parts)
      for (std::size_t i = 0; i < p.size() / sizeof(std::int32_t); ++i) {
        std::int32_t t;
        std::memcpy(&t, p.data() + i * sizeof(t), sizeof(t));
        z(at_token++, 0) = static_cast<double>(t);
      }
    s.arrays["z"] = std::move(z);
    s.scalars["pass"] = at.epoch;
    s.scalars["n_topics"] = static_cast<double>(k);
    s.scalars["alpha"] = sampler.alpha();
    s.scalars["prev_objective"] = prev_objective;
    train::save_history(result.em, s);
    return s;
  };
  train::StochasticOptions options;
  options.epochs = c.max_iter;
  options.steps_per_epoch = 1;
  train::run_stochastic(options, {static_cast<int>(sweeps_done), 0, static_cast<std::int64_t>(sweeps_done)}, steps,
                        train::boundary_of(control));
  result.num_updates = result.em.n_iter;
  // The model (λ = n_kw + η) stays sharded: save_lda_sampled writes it.
  result.sampler = std::move(sampler_owned);
  if (result.em.n_iter > 0 && result.em.history.back().objective != 0)
    result.bound_perplexity = std::exp(-result.em.objective);
  (void)log;
}

}  // namespace

void completion_split(std::span<const double> counts, std::vector<double>& observed, std::vector<double>& held_out) {
  observed.resize(counts.size());
  held_out.resize(counts.size());
  std::int64_t position = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    const auto c = static_cast<std::int64_t>(counts[i]);
    // Even positions in [position, position + c).
    const std::int64_t even = (c + (position % 2 == 0 ? 1 : 0)) / 2;
    observed[i] = static_cast<double>(even);
    held_out[i] = static_cast<double>(c - even);
    position += c;
  }
}

LdaFitResult fit_lda(const comm::Communicator& comm, const io::CountsDatasetInfo& info, const LdaConfig& c,
                     const Logger& log, const LdaObserver& observer, train::FitControl* control) {
  check_config(c, info);
  const Index k = c.n_topics, v = info.vocab_size;
  const CorpusCounts corpus = validate_corpus(comm, info, c);
  if (corpus.tokens <= 0) throw_input("data " + info.location + ": the corpus has no tokens (every document is empty)");
  if (corpus.empty > 0)
    log.warn(fmt::format("{} of {} documents are empty (no words); they do not change the topics", corpus.empty,
                         corpus.documents));
  const double alpha0 = c.doc_topic_prior > 0 ? c.doc_topic_prior : 1.0 / static_cast<double>(k);
  const double eta0 = c.topic_word_prior > 0 ? c.topic_word_prior : 1.0 / static_cast<double>(k);
  LdaFitResult result;
  result.num_tokens = corpus.tokens;
  result.num_documents = corpus.documents;
  result.num_empty_documents = corpus.empty;
  if (c.method == "gibbs") {  // λ (V x K doubles) is made from the counts at the end
    if (control != nullptr) {
      control->set_data_content(train::content_json(info.shards, corpus.shard_hashes));
    }
    // The sampler's peak per rank, refused before anything large is allocated; rank 0 also
    // holds a checkpoint's topics (4 bytes per token gathered, 8 as the saved array) and
    // one 64 MiB piece of the model being written (and its doubles).
    const double sampler_bytes = GibbsSampler::predicted_bytes(
        k, v, comm.size(), static_cast<std::int64_t>(corpus.max_local_tokens),
        static_cast<std::int64_t>(corpus.max_local_documents), static_cast<std::int64_t>(corpus.tokens), c.threads);
    const double root_bytes = (control != nullptr && control->checkpoints() ? 12.0 * corpus.tokens : 0.0) + 192.0 * 1048576;
    train::MemoryEstimate need;
    need.bytes = sampler_bytes + root_bytes + 64.0 * 1048576;  // + libraries and runtime
    need.breakdown = fmt::format("topic-word counts and alias tables of a 1/{} vocabulary slice, tokens: {:.2f} GiB; "
                                 "rank 0's checkpoint topics and output piece: {:.2f} GiB",
                                 comm.size(), sampler_bytes / 1073741824.0, root_bytes / 1073741824.0);
    result.predicted_bytes = need.bytes;
    log.info(fmt::format("gibbs: predicted peak memory {:.2f} GiB per rank ({})", need.bytes / 1073741824.0, need.breakdown));
    if (c.available_bytes > 0)
      train::check_memory(need, c.available_bytes,
                          "run on more ranks (each holds a 1/P slice of the topic-word counts), use fewer topics, prune the "
                          "vocabulary (--min-df/--max-df on import), or raise --memory-budget if the limit is wrong");
    fit_gibbs(comm, info, c, log, observer, control, result, alpha0, eta0);
    return result;
  }
  // Batch and online VB: λ sharded by vocabulary slice (lda_slice.hpp), updates in rounds.
  const int threads = std::max(1, c.threads);
  const Index round_cells = c.round_cells > 0 ? c.round_cells : kRoundBytes / (28 + 8 * threads);
  Index max_rows = 0;
  for (int s = 0; s < comm.size(); ++s)
    max_rows = std::max(max_rows, LdaSlice::slice_begin(v, comm.size(), s + 1) - LdaSlice::slice_begin(v, comm.size(), s));
  {
    // Per rank: λ and the received counts of its slice, one round's buffers, blocks in
    // flight; with checkpoints, λ whole on rank 0 (written) and on every rank while resuming.
    const auto kd = static_cast<double>(k), vd = static_cast<double>(v);
    const double slice_bytes = 16.0 * static_cast<double>(max_rows) * kd + static_cast<double>(max_rows);
    // With the round: its rows and counts per cell, and on more than one rank, in
    // fetch_rows, the owner's map of its slice (4 bytes a row) and the distinct asked rows
    // of exp(E[log β]) (4 bytes a padded cell: at most the slice, at most what every rank's
    // round asks); one rank computes its rows in place (LdaSlice::fetch_rows). Ranks on one
    // node write the round's counts and those rows into shared memory instead of private
    // buffers, with room for 1.25 times the largest round (2 bytes a cell more, 5 bytes a
    // padded cell of the rows instead of 4): counted either way.
    const double kpd = static_cast<double>((k + 15) / 16 * 16);
    const double cells = static_cast<double>(std::min(round_cells, v * k));
    const double exchange_bytes = comm.size() == 1 ? 0.0
                                                   : 4.0 * static_cast<double>(max_rows) +
                                                         5.0 * std::min(static_cast<double>(comm.size()) * cells * kpd / kd,
                                                                        static_cast<double>(max_rows) * kpd) +
                                                         2.0 * cells;
    const double round_bytes = static_cast<double>(28 + 8 * threads) * cells + exchange_bytes;
    const double ckpt_bytes = control != nullptr && control->checkpoints() ? 16.0 * vd * kd : 0.0;
    const double block_bytes = 12.0 * static_cast<double>(c.prefetch + threads + 2) * static_cast<double>(c.block_rows) *
                               std::max(1.0, corpus.tokens / std::max<double>(1.0, static_cast<double>(corpus.documents)));
    train::MemoryEstimate need;
    need.bytes = slice_bytes + round_bytes + ckpt_bytes + block_bytes + static_cast<double>(c.cache_bytes) + 64.0 * 1048576;
    need.breakdown = fmt::format("lambda and expected counts of a 1/{} vocabulary slice ({} words x {} topics): {:.2f} GiB; "
                                 "one round's rows and counts: {:.2f} GiB; checkpoint lambda: {:.2f} GiB",
                                 comm.size(), max_rows, k, slice_bytes / 1073741824.0, round_bytes / 1073741824.0,
                                 ckpt_bytes / 1073741824.0);
    result.predicted_bytes = need.bytes;
    log.info(fmt::format("{}: predicted peak memory {:.2f} GiB per rank ({})", c.method, need.bytes / 1073741824.0,
                         need.breakdown));
    if (c.available_bytes > 0)
      train::check_memory(need, c.available_bytes,
                          "run on more ranks (each holds a 1/P slice of lambda), use fewer topics, prune the vocabulary "
                          "(--min-df/--max-df on import), or raise --memory-budget if the limit is wrong");
  }
  auto slice_owned = std::make_shared<LdaSlice>(comm, k, v, Vector::Constant(k, alpha0), eta0);
  LdaSlice& slice = *slice_owned;
  // Ranks on one node read each other's λ and counts in shared memory (lda_slice.hpp).
  result.node_shared = slice.share_node_memory(comm);
  slice.init_lambda(c.seed);
  const bool online = c.method == "online";
  const int frac_bits = lda_stats_frac_bits(corpus.tokens);
  const auto n = static_cast<double>(corpus.documents);

  // This rank's blocks: batch uses the global block plan; online the rank's slice of each
  // global minibatch (one block per minibatch, possibly empty).
  std::vector<io::BlockRef> refs;
  if (online) {
    const Index num_batches = (corpus.documents + c.batch_size - 1) / c.batch_size;
    for (Index m = 0; m < num_batches; ++m) {
      const Index b = m * c.batch_size, len = std::min(c.batch_size, corpus.documents - b);
      const Index lo = b + len * comm.rank() / comm.size(), hi = b + len * (comm.rank() + 1) / comm.size();
      refs.push_back(io::BlockRef{m, -1, -1, hi - lo, lo});
    }
  } else {
    refs = io::rank_blocks(io::make_block_plan(info.shard_rows(), c.block_rows), comm.rank(), comm.size());
  }
  const auto num_blocks = static_cast<Index>(refs.size());
  io::CountsSource source(info, std::move(refs), {c.prefetch, c.cache_bytes, false});

  // Resume (from a checkpoint of the same bytes: the validating pass hashed them). The
  // checkpoint holds λ whole; this rank keeps its slice.
  if (control != nullptr) {
    control->set_data_content(train::content_json(info.shards, corpus.shard_hashes));
  }
  double prev_perplexity = 0, acc_word = 0, acc_theta = 0, acc_tokens = 0;
  Index updates = 0, pass = 0, minibatch = 0;
  if (control != nullptr) {
    if (auto state = control->resume()) {
      const RowMatrix& lambda = state->array("lambda");
      const RowMatrix& alpha = state->array("alpha");
      if (lambda.rows() != v || lambda.cols() != k || alpha.rows() != k)
        throw_input("checkpoint: lambda/alpha have the wrong shape for this fit");
      slice.lambda() = lambda.middleRows(slice.begin(), slice.rows());
      slice.alpha() = alpha.col(0);
      slice.set_eta(state->scalar("eta"));
      updates = static_cast<Index>(state->scalar("updates"));
      pass = static_cast<Index>(state->scalar("pass"));
      minibatch = static_cast<Index>(state->scalar("minibatch"));
      acc_word = state->scalar("acc_word");
      acc_theta = state->scalar("acc_theta");
      acc_tokens = state->scalar("acc_tokens");
      prev_perplexity = state->scalar("prev_perplexity");
      result.em = train::load_history(*state);
    }
  }
  slice.refresh_totals(comm, threads);
  const auto finish = [&] {
    result.num_updates = updates;
    slice.unshare(comm);  // the slice outlives the fit: λ back in this rank's memory
    if (comm.size() == 1) result.model = slice.take_whole(threads);
    else result.slice = std::move(slice_owned);
    return std::move(result);  // called once, to return: a copy would hold the model twice
  };
  if (result.em.converged) return finish();

  tbb::enumerable_thread_specific<ThreadState> states([&] { return ThreadState(k); });
  tbb::task_arena arena(threads);
  const double scale = std::ldexp(1.0, -frac_bits);
  const FaultPlan& fault = FaultPlan::get();
  LdaSliceStats received(slice.rows(), k);
  std::vector<std::int32_t> local_of(static_cast<std::size_t>(v), -1);  // word -> its row in the round (-1: none)
  std::vector<std::int32_t> words, local_ids;
  std::vector<std::vector<std::int32_t>> requests;
  std::vector<std::int64_t> packed;
  std::vector<LdaStatsAccumulator*> accs;  // the threads' accumulators, for a round's take_rows
  Lda view(k, 0, slice.alpha(), slice.eta());  // the E-step's model: the round's rows of exp(E[log β])

  // One λ update: a minibatch (online) or the whole pass (batch), this rank reading
  // `blocks` blocks, in rounds. Every rank runs the same number of rounds (collectives),
  // empty once its blocks are done.
  bool evaluate = false;
  double bound = 0, tokens = 0;  // the epoch's bound (nats) and tokens
  LdaEStepOptions e_step = c.e_step;
  Clock::time_point t0;
  const auto run_update = [&](Index blocks) {
    std::shared_ptr<const io::CsrBlock> block;
    Index blocks_read = 0, next_doc = 0;
    bool first_round = true;
    std::exception_ptr e_step_error;  // this rank's E-step failure in the last round
    view.alpha() = slice.alpha();
    for (;;) {
      std::exception_ptr error;
      Index d0 = 0, d1 = 0;
      words.clear();
      try {
        if (first_round && fault.due(comm.rank(), static_cast<int>(updates + 1), "throw"))
          throw std::runtime_error("injected fault (LATENT_FAULT kind=throw) in update " + std::to_string(updates + 1));
        first_round = false;
        while ((!block || next_doc >= block->num_rows()) && blocks_read < blocks) {
          block = source.next();
          ++blocks_read;
          next_doc = 0;
          if (!block) blocks_read = blocks;
          heartbeat();
        }
        if (block && next_doc < block->num_rows()) {
          // Documents while their distinct words × K stay within the round's cells (at
          // least one document).
          d0 = d1 = next_doc;
          while (d1 < block->num_rows()) {
            const auto b = block->indptr[static_cast<std::size_t>(d1)], e = block->indptr[static_cast<std::size_t>(d1) + 1];
            Index fresh = 0;
            for (auto j = b; j < e; ++j) fresh += local_of[static_cast<std::size_t>(block->indices[static_cast<std::size_t>(j)])] < 0;
            if (d1 > d0 && (static_cast<Index>(words.size()) + fresh) * k > round_cells) break;
            for (auto j = b; j < e; ++j) {
              const std::int32_t w = block->indices[static_cast<std::size_t>(j)];
              if (local_of[static_cast<std::size_t>(w)] < 0) {
                local_of[static_cast<std::size_t>(w)] = 0;
                words.push_back(w);
              }
            }
            ++d1;
          }
          next_doc = d1;
        }
      } catch (...) {
        error = std::current_exception();
        source.cancel_pass();
        for (std::int32_t w : words) local_of[static_cast<std::size_t>(w)] = -1;
        words.clear();
        d0 = d1 = 0;
      }
      // The round's one opening collective: whether any rank has documents left, whether
      // any failed (reading now, or in the last round's E-step: its counts were sent but
      // are never used, as every rank throws here before the λ update), and the shared
      // statistics segment the round needs. On ranks that share a node, fetch_rows's two
      // barriers and send_stats's one follow: four collectives a round.
      if (!error) error = e_step_error;
      std::array<double, 3> opening{d1 > d0 ? 1.0 : 0.0, error ? 1.0 : 0.0, slice.stats_need(words.size())};
      slice.stats_sync();  // the last round's reads of the shared segments ...
      comm.allreduce_max(opening);
      slice.stats_sync();  // ... before this round's writes
      if (opening[1] > 0) comm.agree(error);  // throws on every rank
      if (opening[0] == 0) break;
      // The round's words in ascending order (each document's ids stay sorted), renumbered.
      if (static_cast<Index>(words.size()) * 16 > v) {
        words.clear();
        for (Index w = 0; w < v; ++w)
          if (local_of[static_cast<std::size_t>(w)] == 0) words.push_back(static_cast<std::int32_t>(w));
      } else {
        std::sort(words.begin(), words.end());
      }
      for (std::size_t i = 0; i < words.size(); ++i) local_of[static_cast<std::size_t>(words[i])] = static_cast<std::int32_t>(i);
      const std::size_t base = d1 > d0 ? static_cast<std::size_t>(block->indptr[static_cast<std::size_t>(d0)]) : 0;
      local_ids.resize(d1 > d0 ? static_cast<std::size_t>(block->indptr[static_cast<std::size_t>(d1)]) - base : 0);
      for (std::size_t j = 0; j < local_ids.size(); ++j)
        local_ids[j] = local_of[static_cast<std::size_t>(block->indices[base + j])];
      for (std::int32_t w : words) local_of[static_cast<std::size_t>(w)] = -1;
      const auto m = static_cast<Index>(words.size());
      // Where the round's counts go; on ranks that share a node, also where fetch_rows
      // publishes the round's words and the owners' rows.
      const std::span<std::int64_t> round_stats =
          slice.stats_buffer(comm, static_cast<std::size_t>(m), packed, opening[2]);
      arena.execute([&] { slice.fetch_rows(comm, words, view.exp_elog_beta(), requests); });
      try {
        const std::uint64_t update = static_cast<std::uint64_t>(updates + 1);
        // Room for every word a later round may hold (at most V, at most round_cells / K):
        // sized once per thread, not K · round_cells / K = 60 MB for a 15k-word vocabulary.
        const Index cap = std::max(m, std::min(v, round_cells / k));
        arena.execute([&] {
          tbb::parallel_for(tbb::blocked_range<Index>(d0, d1, 8), [&](const tbb::blocked_range<Index>& r) {
            ThreadState& s = states.local();
            if (s.acc_rows < m) {
              s.acc = std::make_unique<LdaStatsAccumulator>(cap, k, frac_bits);
              s.acc_rows = cap;
            }
            for (Index d = r.begin(); d < r.end(); ++d) {
              const auto b = static_cast<std::size_t>(block->indptr[static_cast<std::size_t>(d)]);
              const auto e = static_cast<std::size_t>(block->indptr[static_cast<std::size_t>(d) + 1]);
              const std::span<const std::int32_t> ids(local_ids.data() + (b - base), e - b);
              const std::span<const double> cts(block->counts.data() + b, e - b);
              view.initial_gamma(c.seed, update, static_cast<std::uint64_t>(block->ref.global_row_begin + d), s.gamma);
              const LdaDocResult res = view.e_step_document(ids, cts, e_step, s.work, s.gamma, true);
              s.acc->add_document(ids, cts, s.work);
              double doc_tokens = 0;
              for (double cnt : cts) doc_tokens += cnt;
              s.row[kWordTerm] = res.word_term;
              s.row[kThetaTerm] = res.theta_term;
              s.row[kTokens] = doc_tokens;
              s.row[kDocuments] = 1;
              s.row[kDocIterations] = res.iterations;
              if (e_step.with_bound)
                for (Index t = 0; t < k; ++t) s.row[kElogTheta + static_cast<std::size_t>(t)] = s.work.elog_theta(t);
              s.small.add(s.row);
            }
          });
        });
      } catch (...) {  // reported by the next round's opening collective, on every rank
        e_step_error = std::current_exception();
        source.cancel_pass();
      }
      // The threads' statistics summed into the round's packed rows, by row ranges in
      // parallel (integer sums: the same bits as one thread adding them in turn).
      accs.clear();
      for (ThreadState& s : states)
        if (s.acc) accs.push_back(s.acc.get());
      arena.execute([&] {
        tbb::parallel_for(tbb::blocked_range<Index>(0, m, 64), [&](const tbb::blocked_range<Index>& r) {
          const std::span<std::int64_t> rows(round_stats.data() + r.begin() * k, static_cast<std::size_t>((r.end() - r.begin()) * k));
          LdaStatsAccumulator::take_rows(accs, r.begin(), r.end(), rows);
        });
      });
      for (LdaStatsAccumulator* a : accs) a->end_take();
      arena.execute([&] { result.bytes_exchanged += slice.send_stats(comm, words, round_stats, requests, received); });
      if (!result.node_shared) result.bytes_exchanged += static_cast<double>(m * view.padded_topics()) * sizeof(float);
      heartbeat();
    }
    ExactSum small(kElogTheta + static_cast<std::size_t>(k));
    for (ThreadState& s : states) {
      small.merge(s.small);
      s.small = ExactSum(small.size());
    }
    comm.allreduce(small);
    LdaPassStats pass_stats;
    finish_small(pass_stats, small, k);
    return pass_stats;
  };
  const auto m_step = [&](const LdaPassStats& g, double rho, double doc_scale, int newton_iter) {
    const profile::ScopedTimer timer(profile::Counter::kMstepSeconds);
    auto& lambda = slice.lambda();
    const double eta = slice.eta();
    // λ ← (1 − ρ) λ + ρ η + ρ (N / S) stats: one expression for every word (stats 0 where
    // none), so the rows a round did not touch get the same bits.
    const double step = rho * doc_scale * scale;
    const std::span<const std::int32_t> touched = received.touched();
    arena.execute([&] {
      tbb::parallel_for(Index{0}, slice.rows(), [&](Index w) {
        for (Index t = 0; t < k; ++t) lambda(w, t) = (1.0 - rho) * lambda(w, t) + rho * eta;
      });
      tbb::parallel_for(std::size_t{0}, touched.size(), [&](std::size_t i) {
        const Index w = touched[i];
        const std::int64_t* cell = received.row(w);
        for (Index t = 0; t < k; ++t) lambda(w, t) += step * static_cast<double>(cell[t]);
      });
    });
    received.clear();
    if (c.learn_alpha && g.documents > 0) slice.alpha() = newton_alpha(slice.alpha(), g.sum_elog_theta / g.documents, rho, newton_iter);
    slice.refresh_totals(comm, threads);
    if (c.learn_eta) slice.set_eta(newton_eta(slice.eta(), k, v, slice.sum_elog_beta(comm, threads), rho, newton_iter));
    view.set_eta(slice.eta());
  };

  train::StochasticSteps steps;
  steps.begin_epoch = [&](int epoch, const std::vector<Index>&, Index first_step) {
    t0 = Clock::now();
    profile::begin_iteration();
    source.start_pass();
    evaluate = c.evaluate_every > 0 && ((epoch + 1) % c.evaluate_every == 0 || epoch + 1 == c.max_iter);
    e_step = c.e_step;
    e_step.with_bound = evaluate || c.learn_alpha;  // the documents' bound terms and Σ E[log θ]
    if (first_step == 0) acc_word = acc_theta = acc_tokens = 0;
  };
  steps.skip = [&](Index) { source.next(); };  // resumed in the middle of a pass: one block per minibatch
  steps.step = [&](int, Index, Index, std::int64_t update) {
    if (!online) {
      const LdaPassStats g = run_update(num_blocks);
      // The bound at the current λ (before the update): the documents' terms plus the topics'.
      bound = g.word_term + g.theta_term + (evaluate ? slice.topic_term(comm, threads) : 0.0);
      tokens = g.tokens;
      check_finite_bound(bound, update);
      m_step(g, 1.0, 1.0, 100);
    } else {
      const LdaPassStats g = run_update(1);
      const double rho = train::robbins_monro_rate(c.learning_offset, c.learning_decay, update);
      const double docs = g.documents;
      check_finite_bound(g.word_term + g.theta_term, update);
      if (docs > 0) m_step(g, rho, n / docs, 1);
      acc_word += g.word_term;
      acc_theta += g.theta_term;
      acc_tokens += g.tokens;
    }
    updates = update;
  };
  steps.end_epoch = [&](int epoch) {
    if (online) {
      // A running estimate: each minibatch's document terms at the λ it saw, plus the topics' term now.
      bound = acc_word + acc_theta + (evaluate ? slice.topic_term(comm, threads) : 0.0);
      tokens = acc_tokens;
      acc_word = acc_theta = acc_tokens = 0;
      check_finite_bound(bound, updates);
    }
    source.cancel_pass();
    const double perplexity = evaluate ? perplexity_of(bound, tokens) : 0.0;
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    const double change = !evaluate || prev_perplexity == 0 ? std::numeric_limits<double>::infinity() : prev_perplexity - perplexity;
    train::IterationRecord rec{epoch + 1, evaluate && tokens > 0 ? bound / tokens : 0.0,
                               std::isfinite(change) ? change : 0.0, seconds, seconds > 0 ? n / seconds : 0.0};
    rec.tokens_per_second = seconds > 0 ? tokens / seconds : 0.0;
    rec.evaluated = evaluate;
    result.em.history.push_back(rec);
    result.em.n_iter = epoch + 1;
    result.em.objective = rec.objective;
    if (evaluate) {
      result.bound_perplexity = perplexity;
      prev_perplexity = perplexity;
    }
    if (observer) observer(rec);
    result.em.converged = std::isfinite(change) && std::abs(change) < c.tol;
    return result.em.converged;
  };
  steps.snapshot = [&](const train::StochasticPosition& at) {
    // λ whole on rank 0 (the one that writes the checkpoint), gathered in pieces from the
    // owners; collective: every rank calls snapshot.
    RowMatrix lambda;
    if (comm.is_root()) lambda.resize(v, k);
    slice.gather_to_root(comm, [&](Index a, Index b, const RowMatrix& block) { lambda.middleRows(a, b - a) = block.transpose(); });
    if (!comm.is_root()) return train::TrainState{};
    const bool mid = at.step_in_epoch > 0;
    return snapshot(std::move(lambda), slice.alpha(), slice.eta(), result.em,
                    {static_cast<double>(at.step), static_cast<double>(at.epoch), static_cast<double>(at.step_in_epoch),
                     mid ? acc_word : 0.0, mid ? acc_theta : 0.0, mid ? acc_tokens : 0.0, prev_perplexity});
  };
  train::StochasticOptions options;
  options.epochs = static_cast<int>(c.max_iter);
  options.steps_per_epoch = online ? num_blocks : 1;
  train::run_stochastic(options, {static_cast<int>(pass), minibatch, updates}, steps, train::boundary_of(control));
  // The slice's counts (8 bytes a cell, as many as λ) are freed before finish() copies λ
  // out of the node's shared memory (8 more): the peak stays λ and one slice-sized buffer,
  // as the memory estimate counts it.
  received = LdaSliceStats(0, k);
  return finish();
}

LdaScore score_lda(const comm::Communicator& comm, const io::CountsDatasetInfo& info, const Lda& model,
                   const LdaEStepOptions& e_step, int threads, Index block_rows) {
  const Index k = model.num_topics();
  if (info.vocab_size != model.vocab_size())
    throw_input(fmt::format("data {}: vocabulary size {} does not match the model's {} (score with data imported with "
                            "the model's vocabulary)",
                            info.location, info.vocab_size, model.vocab_size()));
  const std::vector<io::BlockRef> mine = io::rank_blocks(io::make_block_plan(info.shard_rows(), block_rows), comm.rank(), comm.size());
  // β̂ = λ / Σ_w λ, word-major.
  RowMatrix beta = model.lambda_vk();
  for (Index t = 0; t < k; ++t) beta.col(t) /= model.topic_totals()(t);
  struct Local {
    LdaWorkspace work;
    Vector gamma;
    std::vector<double> observed, held_out, ids_counts;
    std::vector<std::int32_t> ids;
    ExactSum sum{6};
  };
  tbb::enumerable_thread_specific<Local> locals;
  comm::run_agreed(comm, [&] {
    io::CountsSource source(info, mine, {4, 0, false});
    source.start_pass();
    tbb::task_arena arena(std::max(1, threads));
    while (auto block = source.next()) {
      heartbeat();
      arena.execute([&] {
        tbb::parallel_for(tbb::blocked_range<Index>(0, block->num_rows(), 8), [&](const tbb::blocked_range<Index>& r) {
          Local& s = locals.local();
          for (Index d = r.begin(); d < r.end(); ++d) {
            const auto b = static_cast<std::size_t>(block->indptr[static_cast<std::size_t>(d)]);
            const auto e = static_cast<std::size_t>(block->indptr[static_cast<std::size_t>(d) + 1]);
            const std::span<const std::int32_t> ids(block->indices.data() + b, e - b);
            const std::span<const double> cts(block->counts.data() + b, e - b);
            const LdaDocResult full = model.e_step_document(ids, cts, e_step, s.work, s.gamma);
            double tokens = 0;
            for (double cnt : cts) tokens += cnt;
            // Document completion: E-step on the observed half, score the held-out half.
            completion_split(cts, s.observed, s.held_out);
            s.ids.clear();
            s.ids_counts.clear();
            for (std::size_t i = 0; i < ids.size(); ++i)
              if (s.observed[i] > 0) {
                s.ids.push_back(ids[i]);
                s.ids_counts.push_back(s.observed[i]);
              }
            model.e_step_document(s.ids, s.ids_counts, e_step, s.work, s.gamma);
            const Vector theta = s.gamma / s.gamma.sum();
            double loglik = 0, held = 0;
            for (std::size_t i = 0; i < ids.size(); ++i) {
              if (s.held_out[i] == 0) continue;
              loglik += s.held_out[i] * std::log(beta.row(ids[i]).dot(theta));
              held += s.held_out[i];
            }
            const double row[6] = {full.word_term + full.theta_term, tokens, 1.0, loglik, held, 0.0};
            s.sum.add(row);
          }
        });
      });
    }
  });
  ExactSum total(6);
  for (const Local& s : locals) total.merge(s.sum);
  comm.allreduce(total);
  const std::vector<double> v = total.values();
  LdaScore out;
  out.bound = v[0] + model.topic_term(threads);
  out.num_tokens = v[1];
  out.num_documents = static_cast<Index>(v[2]);
  out.completion_log_likelihood = v[3];
  out.completion_tokens = v[4];
  out.bound_perplexity = perplexity_of(out.bound, out.num_tokens);
  out.doc_completion_perplexity = perplexity_of(out.completion_log_likelihood, out.completion_tokens);
  return out;
}

}  // namespace latent::models
