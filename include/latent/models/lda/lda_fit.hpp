#pragma once
/// \file Distributed LDA training and evaluation over streamed count datasets.
///
/// batch (Blei, Ng & Jordan 2003 §5.3): each pass runs the per-document E-step of every
/// local document on oneTBB threads; the expected topic-word counts (fixed point, so sums
/// are exact) go to the owner of each word's slice of λ, and each owner sets λ = η + stats
/// for its words.
///
/// λ is sharded by vocabulary slice for both VB methods (latent/models/lda/lda_slice.hpp):
/// rank r keeps K × |slice r| doubles, fetches the exp(E[log β]) rows of the words its
/// current documents use, and the result is the same bits as one process for any P.
///
/// online (Hoffman, Blei & Bach 2010 Algorithm 2; Hoffman et al. 2013): the corpus is cut
/// into global minibatches of batch_size documents in storage order; minibatch m is
/// documents [m·S, (m+1)·S), and rank r of P takes the r-th of P equal slices of it, so the
/// schedule does not depend on P. After each minibatch the counts go to the words' owners, then
/// λ ← (1 − ρ_t) λ + ρ_t (η + (N / S_m) · stats) (each owner for its words) with ρ_t = (τ0 + t)^(−κ), t = 1, 2, ...
/// (scikit-learn's n_batch_iter_).
///
/// gibbs (latent/models/lda/lda_gibbs.hpp): collapsed Gibbs sampling with WarpLDA's O(1)
/// Metropolis–Hastings proposals and delayed updates; max_iter sweeps; the model's λ is
/// n_kw + η from the final sample; the per-pass objective is log p(w, z) per token (nats).
/// Its topic-word counts are sharded by vocabulary slice across ranks (lda_gibbs.hpp), so
/// the fit result holds the sampler and save_lda_sampled writes the model collectively.
///
/// gibbs with --learn-priors alpha: the symmetric α by Minka's fixed point on the sample's
/// document-topic counts every 10 sweeps (gibbs_optimize_alpha, lda_gibbs.hpp).
///
/// Both VB methods: --learn-priors updates α by Newton steps (Minka 2000; batch: to convergence each
/// pass; online: one step scaled by ρ_t, as gensim) and optionally η; the statistics are
/// global sums, so this works for any number of ranks.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "latent/comm/communicator.hpp"
#include "latent/core/log.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/models/lda/lda.hpp"
#include "latent/train/batch_em.hpp"
#include "latent/train/checkpoint.hpp"

namespace latent::models {

struct LdaConfig {
  Index n_topics = 10;               ///< K
  std::string method = "batch";      ///< batch | online | gibbs
  double doc_topic_prior = -1;       ///< α (symmetric start); < 0: 1/K (scikit-learn's default)
  double topic_word_prior = -1;      ///< η; < 0: 1/K
  double learning_decay = 0.7;       ///< κ in (0.5, 1]
  double learning_offset = 10.0;     ///< τ0 >= 0
  Index batch_size = 128;            ///< S, documents per global minibatch (online)
  int max_iter = 10;                 ///< passes over the corpus
  double tol = 0.1;                  ///< stop when the bound perplexity changes less (scikit-learn's perp_tol)
  int evaluate_every = 1;            ///< evaluate the bound every N passes (and the last); <= 0: never (tol unused)
  LdaEStepOptions e_step;            ///< max_doc_update_iter, mean_change_tol
  bool learn_alpha = false;          ///< --learn-priors alpha|both
  bool learn_eta = false;            ///< --learn-priors eta|both
  int mh_steps = 2;                  ///< gibbs: doc + word proposal pairs per token per sweep
  std::uint64_t seed = 0;
  int threads = 1;
  Index block_rows = 2048;           ///< documents per block (batch passes)
  int prefetch = 4;
  double available_bytes = 0;        ///< refuse if the predicted peak per rank exceeds this (0: no check)
  /// batch/online: distinct words × K per round (lda_slice.hpp); 0: 256 MiB of round
  /// buffers. Any value gives the same bits (tests use small ones).
  Index round_cells = 0;
  std::size_t cache_bytes = 0;       ///< keep local documents in memory if they fit
};

/// Pass-level statistics over documents: sums over every rank, exact.
struct LdaPassStats {
  double word_term = 0, theta_term = 0, tokens = 0, documents = 0, doc_iterations = 0;
  Vector sum_elog_theta;  ///< K
};

class GibbsSampler;
class LdaSlice;

struct LdaFitResult {
  Lda model;                   ///< batch and online on one rank (else empty, see `slice`; gibbs: see `sampler`)
  std::shared_ptr<LdaSlice> slice;  ///< batch and online on more than one rank: this rank's slice of λ
  std::shared_ptr<GibbsSampler> sampler;  ///< gibbs: the final sample, n_kw sharded by vocabulary slice
  double predicted_bytes = 0;  ///< predicted peak bytes per rank
  train::EmResult em;          ///< per pass: objective = bound per token (nats), change = Δ bound perplexity
  double num_tokens = 0;       ///< corpus tokens
  Index num_documents = 0;
  Index num_empty_documents = 0;
  Index num_updates = 0;       ///< λ updates (passes for batch, minibatches for online)
  double bound_perplexity = 0; ///< last pass (online: running estimate over the pass)
  /// batch/online: expected counts this rank sent to other ranks plus the exp(E[log β])
  /// rows it received, all updates (bytes)
  double bytes_exchanged = 0;
  bool node_shared = false;    ///< batch/online on ranks of one node: λ and counts in shared memory, no messages
  double acceptance_rate = 0;  ///< gibbs: accepted / proposals different from the current topic, last sweep
};

/// One record per pass, with tokens per second over all ranks.
using LdaObserver = train::IterationObserver;

/// Validates the corpus (every CSR block; Error(kInput) naming file, dataset and row on
/// every rank), then fits. Collective. `control` (may be null) handles checkpoints and
/// stop signals at every λ update; a resumed fit is bitwise identical to an uninterrupted
/// one, for any rank count. Throws Error(kUsage) for bad settings, Error(kInput) for an
/// empty corpus, Error(kNumerical) if the bound becomes NaN. With method "gibbs" the
/// checkpoints hold the topic of every token in global token order (array "z"), so a
/// resume on another number of ranks continues the same chain.
LdaFitResult fit_lda(const comm::Communicator& comm, const io::CountsDatasetInfo& info, const LdaConfig& config,
                     const Logger& log, const LdaObserver& observer, train::FitControl* control);

/// Held-out evaluation of a model on a count dataset. Collective.
struct LdaScore {
  double bound = 0;                       ///< Hoffman et al. 2010 eq. 16 on this data (nats)
  double num_tokens = 0;
  Index num_documents = 0;
  double bound_perplexity = 0;            ///< exp(−bound / tokens)
  double completion_log_likelihood = 0;   ///< Σ log p(held-out half | observed half), nats
  double completion_tokens = 0;           ///< tokens in the held-out halves
  double doc_completion_perplexity = 0;   ///< exp(−completion_log_likelihood / completion_tokens)
  /// completion_log_likelihood per held-out token (nats; 0 without held-out tokens).
  double completion_per_token() const { return completion_tokens > 0 ? completion_log_likelihood / completion_tokens : 0.0; }
  /// bound per token (nats; 0 for an empty corpus).
  double bound_per_token() const { return num_tokens > 0 ? bound / num_tokens : 0.0; }
};
/// Document completion (Wallach et al. 2009, §5.1 "document completion"): a document's
/// tokens are expanded in ascending word-id order and numbered 0, 1, 2, ...; even
/// positions form the observed half, odd positions the held-out half. θ̂ = γ / Σγ from
/// the E-step on the observed half; each held-out token scores log Σ_k θ̂_k λ_kw / Σ_w' λ_kw'.
/// The bound uses the E-step on whole documents. Both in nats; results do not depend on
/// rank or thread counts.
LdaScore score_lda(const comm::Communicator& comm, const io::CountsDatasetInfo& info, const Lda& model,
                   const LdaEStepOptions& e_step, int threads, Index block_rows);

/// The observed half of a document under the document-completion split: counts of the
/// even token positions (0 where a word has none). `held_out` receives the odd ones.
void completion_split(std::span<const double> counts, std::vector<double>& observed, std::vector<double>& held_out);

/// Model files (docs/FORMATS.md): /components (K × V, λ), /doc_topic_prior (K),
/// /topic_word_prior (1), /vocabulary (V strings, optional), /history, root attributes
/// model = "lda", format_version, config, n_iter, ... Local.
void save_lda(const Lda& model, const std::vector<std::string>& vocabulary, const std::string& config_json,
              const train::EmResult& em, Index n_documents, const std::string& data_location, const std::string& path,
              bool overwrite);
/// The same file from the sampler's final state, λ = n_kw + η: rank 0 writes, receiving each
/// rank's slice of n_kw in pieces of at most 64 MiB (Communicator::gather), so no rank holds
/// more than its slice and one piece. The same bytes as save_lda of the whole λ, for any
/// rank count. Collective; an error is agreed on every rank (nothing is left at `path`).
void save_lda_sampled(const comm::Communicator& comm, const GibbsSampler& sampler, const std::vector<std::string>& vocabulary,
                      const std::string& config_json, const train::EmResult& em, Index n_documents,
                      const std::string& data_location, const std::string& path, bool overwrite);
/// The same file from a sharded VB fit (fit_lda's `slice` on every rank): rank 0 writes,
/// receiving λ from the owners in pieces of at most 64 MiB. The same bytes as save_lda of
/// the whole λ, for any rank count. Collective; an error is agreed on every rank (nothing
/// is left at `path`).
void save_lda_sharded(const comm::Communicator& comm, const LdaSlice& slice, const std::vector<std::string>& vocabulary,
                      const std::string& config_json, const train::EmResult& em, Index n_documents,
                      const std::string& data_location, const std::string& path, bool overwrite);
/// Reads an LDA model file (also one written by other tools in the same schema: only
/// /components, /doc_topic_prior and /topic_word_prior are required). Local.
Lda load_lda(const std::string& path, std::vector<std::string>* vocabulary = nullptr);

}  // namespace latent::models
