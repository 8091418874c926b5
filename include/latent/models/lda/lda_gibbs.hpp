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
/// The model is sharded by vocabulary slice (issue 20 item 3): with P ranks, rank s owns
/// the rows of n_kw and the alias tables of words [⌊V s / P⌋, ⌊V (s + 1) / P⌋) (its
/// "home" slice). A sweep is P rounds: in round j a rank samples those of its tokens whose
/// words lie in the slice it holds, then passes the slice to rank + 1 and takes the one of
/// rank − 1 (Communicator::ring_shift, in place, in pieces of 16 MiB), so every slice visits
/// every rank once and is home again after P shifts. This is the model-parallel rotation of
/// Zheng, Kim, Ho & Xing ("Model-parallel inference for big topic models", arXiv:1411.2305,
/// 2014, §3); delayed updates make it exact here: the counts a token reads are frozen for
/// the sweep, so the order in which slices meet tokens does not matter, and the chain is
/// the same bits as with the whole matrix on one rank. After the sweep the topic changes go
/// to the owners of their words (an all-to-all), which apply them and rebuild the alias
/// tables of the words that changed; n_k is an allreduce of K integers.
///
/// Memory per rank (GibbsSampler::predicted_bytes): one slice of n_kw (⌈V / P⌉ × K int32)
/// and of the alias tables (12 bytes per nonzero n_kw of its words, at most min(K, n_w) per
/// word), n_w (V int64), 12 bytes per local token (word, topic, next topic) and up to 28
/// per local token for a sweep's changes; a 16 MiB piece in flight. So K·V = 10⁹ on 4 ranks
/// holds 1 GB of counts per rank instead of 4 GB.
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "latent/comm/communicator.hpp"
#include "latent/core/types.hpp"

namespace latent::models {

/// Allocation for the sampler's large randomly accessed tables (n_kw, alias bins): blocks of
/// 4 MiB and more are 2 MiB aligned and advised for transparent huge pages (fewer TLB
/// misses for the random reads; huge_pages::allocate). Throws std::bad_alloc.
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

/// The sufficient statistics of a symmetric α given the topics (Wallach 2008, PhD thesis
/// §2.3, "fixed-point iteration with histograms"): count_hist[n] = the number of (document,
/// topic) pairs with n_dk = n, length_hist[n] = the number of documents of length n, for
/// n ≥ 1 (entry 0 unused). Integers summed across ranks: exact.
struct GibbsAlphaStats {
  std::vector<std::int64_t> count_hist, length_hist;
};

/// Minka's fixed point for a symmetric Dirichlet over K topics (Minka 2000, "Estimating a
/// Dirichlet distribution", eq. 55, as MALLET's optimizeHyperparameters):
///   α ← α Σ_n count_hist[n] (ψ(n + α) − ψ(α)) / (K Σ_n length_hist[n] (ψ(n + Kα) − ψ(Kα))),
/// with ψ(n + a) − ψ(a) = Σ_{j<n} 1/(a + j) accumulated over n (the digamma recurrence), up
/// to `max_iter` times or until the relative change is below 1e-12. Returns α unchanged if
/// no document has a token. Pure (a fixed order of operations).
double gibbs_optimize_alpha(const GibbsAlphaStats& stats, Index num_topics, double alpha, int max_iter = 100);

/// The sampler's state on one rank: its documents' tokens (contiguous in global token
/// order: documents in storage order, a document's words in ascending id, a count c of
/// word w being c consecutive tokens), the global n_k and n_w, and the home slice of n_kw
/// and of the alias tables (see the file comment).
class GibbsSampler {
 public:
  /// K ≥ 1 topics, V words, symmetric α, η > 0, mh_steps ≥ 1 (doc steps, and as many word
  /// steps, per token per sweep), threads ≥ 1 (oneTBB; results do not depend on it).
  GibbsSampler(Index num_topics, Index vocab_size, double alpha, double eta, int mh_steps, std::uint64_t seed,
               int threads);
  ~GibbsSampler();
  GibbsSampler(const GibbsSampler&) = delete;
  GibbsSampler& operator=(const GibbsSampler&) = delete;

  /// First word of slice s of V words over P ranks: ⌊V s / P⌋ (s = P gives V). Pure.
  static Index slice_begin(Index vocab_size, int parts, int s) noexcept {
    return vocab_size * s / parts;
  }
  /// The slice (rank) that owns word w: the s with slice_begin(s) ≤ w < slice_begin(s + 1). Pure.
  static int slice_of(Index vocab_size, int parts, Index w) noexcept {
    return static_cast<int>(((w + 1) * parts - 1) / vocab_size);
  }
  /// Predicted peak bytes of one rank's sampler (the layout of the file comment): K, V, P
  /// ranks, the largest number of tokens and documents on one rank, all tokens, threads.
  /// The alias tables are bounded by min(K · ⌈V / P⌉, all tokens) bins. Pure.
  static double predicted_bytes(Index num_topics, Index vocab_size, int parts, std::int64_t local_tokens,
                                std::int64_t local_documents, std::int64_t all_tokens, int threads);
  /// Bytes of one piece of the ring shift.
  static constexpr std::size_t kShiftChunkBytes = std::size_t{16} << 20;

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

  /// Partitions the vocabulary over comm's ranks and recounts: n_w and n_k by allreduce,
  /// the home slice of n_kw from every rank's (word, topic) pairs sent to their owners (an
  /// all-to-all), and the home alias tables. Collective. Throws Error(kUsage) if a word's
  /// count exceeds 2^31 − 1.
  void rebuild_counts(const comm::Communicator& comm);
  /// One sweep `sweep` (0-based) over the local tokens against the frozen counts (P rounds
  /// of the slice rotation), then the topic changes sent to their words' owners (one int64
  /// per changed token if V K² < 2^62, else three) and applied there, n_k by allreduce,
  /// and the alias tables of the changed words rebuilt. Collective; the same bits for any
  /// number of ranks and threads.
  GibbsSweepStats sweep(const comm::Communicator& comm, std::uint64_t sweep);
  /// log p(w, z) = Σ_d [lnΓ(Kα) − lnΓ(n_d + Kα) + Σ_k (lnΓ(n_dk + α) − lnΓ(α))]
  ///             + Σ_k [lnΓ(Vη) − lnΓ(n_k + Vη) + Σ_w (lnΓ(n_kw + η) − lnΓ(η))]
  /// (Griffiths & Steyvers 2004 eq. 2-3), nats, of the current topics (empty documents
  /// contribute 0). Exact sums: the same bits for any rank and thread count. Collective.
  double log_joint(const comm::Communicator& comm) const;
  /// The histograms of GibbsAlphaStats of the current topics over every rank's documents.
  /// Collective; the same integers for any rank and thread count.
  GibbsAlphaStats alpha_statistics(const comm::Communicator& comm) const;
  /// A new symmetric α (> 0, finite; else Error kUsage) for the sweeps that follow.
  void set_alpha(double alpha);

  Index num_topics() const noexcept { return k_; }
  Index vocab_size() const noexcept { return v_; }
  double alpha() const noexcept { return alpha_; }
  double eta() const noexcept { return eta_; }
  /// The home slice [home_begin(), home_end()) of n_kw, word-major: row w (K entries) at
  /// n_kw().data() + (w − home_begin()) K. On one rank, all V words.
  std::span<const std::int32_t> n_kw() const noexcept {
    return {counts_.data(), static_cast<std::size_t>((home_end_ - home_begin_) * k_)};
  }
  Index home_begin() const noexcept { return home_begin_; }
  Index home_end() const noexcept { return home_end_; }
  const std::vector<std::int64_t>& n_k() const noexcept { return n_k_; }
  const std::vector<std::int64_t>& n_w() const noexcept { return n_w_; }
  /// The alias bins of word w of the home slice (one per nonzero n_kw).
  std::span<const GibbsAliasBin> alias(Index w) const noexcept {
    return {bins_.data() + bin_off_[static_cast<std::size_t>(w)],
            static_cast<std::size_t>(counts_[static_cast<std::size_t>((home_end_ - home_begin_) * k_ + (w - home_begin_))])};
  }
  /// Tokens on this rank.
  std::int64_t local_tokens() const noexcept { return static_cast<std::int64_t>(words_.size()); }

 private:
  struct Impl;
  void rebuild_alias(std::span<const std::int32_t> words, const std::int64_t* added_begin, const std::int32_t* added);
  void sample_slice(int slice, std::uint64_t prefix);
  Index k_, v_;
  double alpha_, eta_;
  int mh_steps_;
  std::uint64_t seed_;
  int threads_;
  int parts_ = 1, rank_ = 0;
  Index home_begin_ = 0, home_end_ = 0;
  std::vector<std::int64_t> doc_ptr_;
  std::vector<std::int32_t> words_, topics_, next_topics_;
  std::int64_t first_token_ = 0;
  // The slice held now (the home slice between sweeps): n_kw rows (rows × K) then the
  // rows' alias lengths, in one buffer of the largest slice's size; its alias bins in
  // another. bin_off_[w]: offset of word w's bins in its slice's bins (V + 1 entries).
  std::vector<std::int32_t, GibbsHugeAllocator<std::int32_t>> counts_;
  std::vector<GibbsAliasBin, GibbsHugeAllocator<GibbsAliasBin>> bins_;
  std::vector<std::int64_t> bin_off_;
  std::vector<std::int64_t> n_k_, n_w_;
  std::vector<double> n_k_veta_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace latent::models
