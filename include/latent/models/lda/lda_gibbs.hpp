#pragma once
/// \file Collapsed Gibbs sampling for LDA (Griffiths & Steyvers 2004) with Metropolis–
/// Hastings proposals that cost O(1) per token whatever K, after WarpLDA (Chen, Li, Zhu &
/// Chen, "WarpLDA: a cache efficient O(1) algorithm for latent Dirichlet allocation",
/// VLDB 2016; arXiv:1510.08628): its delayed updates of the counts (the Monte-Carlo EM view)
/// and its doc and word proposals; the word proposal by alias tables as in LightLDA (Yuan et
/// al., WWW 2015).
///
/// Symbols: K topics, V words; a token i of document d with word w has topic z_i. Counts
/// n_dk (topics of d's tokens), n_kw (tokens of word w with topic k, over the corpus),
/// n_k = Σ_w n_kw, n_d = document length, n_w = Σ_k n_kw. Symmetric priors α, η.
///
/// One sweep samples every token against the counts frozen at the start of the sweep
/// (WarpLDA's delayed updates). For token i with frozen topic s the target is the collapsed
/// conditional given the other tokens' frozen topics,
///   p(k) ∝ (n_dk¬i + α)(n_kw¬i + η) / (n_k¬i + Vη),
/// where ¬i subtracts token i's own frozen topic s from each count. A chain starts at s
/// and takes `mh_steps` steps with
///   * the doc proposal q_d(k) ∝ n_dk + α (frozen, with i): with probability
///     Kα / (n_d + Kα) a uniform topic, else the frozen topic of a uniformly chosen token
///     of d (WarpLDA's "random positioning");
///   * the word proposal q_w(k) ∝ n_kw + η: with probability n_w / (n_w + Kη) a draw from
///     an alias table over the nonzero n_kw of word w (Walker 1977, in integer arithmetic:
///     exact probabilities n_kw / n_w), else a uniform topic;
/// each followed by the MH acceptance min(1, p(k')q(k) / (p(k)q(k'))) (gibbs_doc_ratio,
/// gibbs_word_ratio): first the `mh_steps` doc steps, then the `mh_steps` word steps (as
/// WarpLDA's doc and word phases; the word steps read only the token's own n_kw cell, so a
/// token touches at most 1 + mh_steps cache lines of the K-wide n_kw row). Alias tables are
/// rebuilt after the sweep for the words whose counts changed. We keep the counts in a
/// word-major K-wide table (not WarpLDA's per-word token lists) because a word's tokens
/// are spread over ranks.
///
/// Why delayed updates: every token's draw depends only on (seed, sweep, global token id,
/// step) and on counts fixed before the sweep, so the sweep's result does not depend on
/// which rank or thread ran first. Topic changes are integers, exchanged after the sweep
/// and added in any order with the same result: the chain is bitwise the same on any
/// number of ranks and threads. The price is that a sweep is a synchronous ("Jacobi")
/// update of all tokens, whose stationary distribution is not exactly the collapsed
/// posterior: on a 5-token corpus the two are 0.40 apart in total variation
/// (tests/unit/lda_gibbs_test.cpp computes both by enumeration), because each token is a
/// large share of its counts; in real corpora one token's influence on another's conditional
/// is O(1/n_d + 1/n_w), as for AD-LDA (Newman et al. 2009).
///
/// Memory per rank: n_kw as V × K int32, the alias tables (≤ 12 bytes per token of the
/// corpus, at most K per word), 8 bytes per local token (word and topic).
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "latent/comm/communicator.hpp"
#include "latent/core/types.hpp"

namespace latent::models {

/// Allocation for the sampler's large randomly accessed tables (n_kw, alias bins): blocks of
/// 4 MiB and more are 2 MiB aligned and advised for transparent huge pages (fewer TLB
/// misses for the random reads). Throws std::bad_alloc.
void* gibbs_huge_alloc(std::size_t bytes);
void gibbs_huge_free(void* p) noexcept;
template <class T>
struct GibbsHugeAllocator {
  using value_type = T;
  GibbsHugeAllocator() = default;
  template <class U>
  GibbsHugeAllocator(const GibbsHugeAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(gibbs_huge_alloc(n * sizeof(T))); }
  void deallocate(T* p, std::size_t) noexcept { gibbs_huge_free(p); }
  template <class U>
  bool operator==(const GibbsHugeAllocator<U>&) const noexcept { return true; }
};

/// One bin of a word's alias table: with probability threshold / n_w the bin's `topic`,
/// else `alias`.
struct GibbsAliasBin {
  std::int32_t topic;
  std::int32_t alias;
  std::int32_t threshold;
};

/// The frozen view one token's MH chain reads: its document's topic counts (dense K), the
/// word's row of n_kw (K), n_k + Vη (K, doubles), the token's own frozen topic `self`.
struct GibbsTokenView {
  const std::int32_t* n_dk;
  const std::int32_t* n_kw;
  const double* n_k_veta;
  std::int32_t self;
  double alpha, eta;
};

/// p(b)q_d(a) / (p(a)q_d(b)) for the doc proposal (q_d ∝ n_dk + α, with self; p ¬i as in
/// the file comment), returned as numerator and denominator (both > 0). Pure.
inline void gibbs_doc_ratio(const GibbsTokenView& v, std::int32_t a, std::int32_t b, double& num, double& den) noexcept {
  const double da = v.n_dk[a] + v.alpha, db = v.n_dk[b] + v.alpha;
  const double sa = a == v.self ? 1.0 : 0.0, sb = b == v.self ? 1.0 : 0.0;
  num = (db - sb) * (v.n_kw[b] - sb + v.eta) * (v.n_k_veta[a] - sa) * da;
  den = (da - sa) * (v.n_kw[a] - sa + v.eta) * (v.n_k_veta[b] - sb) * db;
}
/// The same for the word proposal (q_w ∝ n_kw + η, with self). Pure. The word factors
/// (n_bw¬i + η)(n_aw + η) / ((n_aw¬i + η)(n_bw + η)) cancel unless a or b is the token's own
/// topic, so only its own cell n_kw[self] is read (one cache line per token at any K).
inline void gibbs_word_ratio(const GibbsTokenView& v, std::int32_t a, std::int32_t b, double& num, double& den) noexcept {
  const double sa = a == v.self ? 1.0 : 0.0, sb = b == v.self ? 1.0 : 0.0;
  num = (v.n_dk[b] - sb + v.alpha) * (v.n_k_veta[a] - sa);
  den = (v.n_dk[a] - sa + v.alpha) * (v.n_k_veta[b] - sb);
  if (a == v.self || b == v.self) {
    const double own = v.n_kw[v.self] + v.eta;  // n_kw of (w, self) with the token
    num *= a == v.self ? own : own - 1.0;
    den *= a == v.self ? own - 1.0 : own;
  }
}

/// Builds the integer alias table of `counts` (positive integers summing to `total`, for
/// topics `topics`) into `bins` (one per entry): the table gives topic topics[j] with
/// probability exactly counts[j] / total. `scratch` is reused. Pure.
void gibbs_build_alias(std::span<const std::int32_t> topics, std::span<const std::int64_t> counts, std::int64_t total,
                       std::span<GibbsAliasBin> bins, std::vector<std::int64_t>& scratch);

/// What one sweep did (this rank's tokens).
struct GibbsSweepStats {
  std::int64_t tokens = 0;          ///< tokens sampled (all ranks)
  std::int64_t changed = 0;         ///< tokens whose topic changed (all ranks)
  std::int64_t proposals = 0;       ///< proposals that differed from the current topic (all ranks)
  std::int64_t accepted = 0;        ///< of those, accepted (all ranks)
};

/// The sampler's state on one rank: its documents' tokens (contiguous in global token
/// order: documents in storage order, a document's words in ascending id, a count c of
/// word w being c consecutive tokens) and the global counts, identical on every rank.
class GibbsSampler {
 public:
  /// K ≥ 1 topics, V words, symmetric α, η > 0, mh_steps ≥ 1 (doc steps, and as many word
  /// steps, per token per sweep), threads ≥ 1 (oneTBB; results do not depend on it).
  GibbsSampler(Index num_topics, Index vocab_size, double alpha, double eta, int mh_steps, std::uint64_t seed,
               int threads);
  ~GibbsSampler();
  GibbsSampler(const GibbsSampler&) = delete;
  GibbsSampler& operator=(const GibbsSampler&) = delete;

  /// This rank's documents: doc_ptr (local documents + 1 offsets from 0), word of each
  /// token (ids in [0, V)), and the global id of its first token. Local.
  void set_corpus(std::vector<std::int64_t> doc_ptr, std::vector<std::int32_t> words, std::int64_t first_token);
  /// Initial topics: token g gets ⌊K u⌋ with u the first draw of CounterRng(seed,
  /// kGibbsInit, 0, g). Local; call rebuild_counts after.
  void init_topics();
  /// The local tokens' topics (settable, e.g. from a checkpoint; then rebuild_counts).
  std::vector<std::int32_t>& topics() noexcept { return topics_; }
  const std::vector<std::int32_t>& topics() const noexcept { return topics_; }
  const std::vector<std::int32_t>& words() const noexcept { return words_; }
  const std::vector<std::int64_t>& doc_ptr() const noexcept { return doc_ptr_; }
  std::int64_t first_token() const noexcept { return first_token_; }

  /// Recounts n_kw, n_k and n_w from every rank's topics (an allgather of (word, topic)
  /// pairs) and rebuilds every alias table. Collective. Throws Error(kUsage) if a word's
  /// count exceeds 2^31 − 1.
  void rebuild_counts(const comm::Communicator& comm);
  /// One sweep `sweep` (0-based) over the local tokens against the frozen counts, then an
  /// allgather of the topic changes (one int64 per changed token if V K² < 2^62, else
  /// three), applied on every
  /// rank, and the alias tables of the changed words rebuilt. Collective; the same bits for
  /// any number of ranks and threads.
  GibbsSweepStats sweep(const comm::Communicator& comm, std::uint64_t sweep);
  /// log p(w, z) = Σ_d [lnΓ(Kα) − lnΓ(n_d + Kα) + Σ_k (lnΓ(n_dk + α) − lnΓ(α))]
  ///             + Σ_k [lnΓ(Vη) − lnΓ(n_k + Vη) + Σ_w (lnΓ(n_kw + η) − lnΓ(η))]
  /// (Griffiths & Steyvers 2004 eq. 2-3), nats, of the current topics (empty documents
  /// contribute 0). Exact sums: the same bits for any rank and thread count. Collective.
  double log_joint(const comm::Communicator& comm) const;

  Index num_topics() const noexcept { return k_; }
  Index vocab_size() const noexcept { return v_; }
  double alpha() const noexcept { return alpha_; }
  double eta() const noexcept { return eta_; }
  /// n_kw word-major: row w (K entries) at n_kw().data() + w K.
  std::span<const std::int32_t> n_kw() const noexcept { return n_kw_; }
  const std::vector<std::int64_t>& n_k() const noexcept { return n_k_; }
  const std::vector<std::int64_t>& n_w() const noexcept { return n_w_; }
  /// The alias bins of word w (one per nonzero n_kw).
  std::span<const GibbsAliasBin> alias(Index w) const noexcept {
    return {bins_.data() + bin_ptr_[static_cast<std::size_t>(w)], static_cast<std::size_t>(bin_len_[static_cast<std::size_t>(w)])};
  }
  /// Tokens on this rank.
  std::int64_t local_tokens() const noexcept { return static_cast<std::int64_t>(words_.size()); }

 private:
  struct Impl;
  void rebuild_alias(std::span<const std::int32_t> words, const std::int64_t* added_begin, const std::int32_t* added);
  Index k_, v_;
  double alpha_, eta_;
  int mh_steps_;
  std::uint64_t seed_;
  int threads_;
  std::vector<std::int64_t> doc_ptr_;
  std::vector<std::int32_t> words_, topics_;
  std::int64_t first_token_ = 0;
  std::vector<std::int32_t, GibbsHugeAllocator<std::int32_t>> n_kw_;
  std::vector<std::int64_t> n_k_, n_w_;
  std::vector<double> n_k_veta_;
  std::vector<std::int64_t> bin_ptr_;
  std::vector<std::int32_t> bin_len_;
  std::vector<GibbsAliasBin, GibbsHugeAllocator<GibbsAliasBin>> bins_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace latent::models
