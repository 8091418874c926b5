#pragma once
/// \file Latent Dirichlet allocation: the variational model of Blei, Ng & Jordan 2003 (§5)
/// with the online (stochastic variational) updates of Hoffman, Blei & Bach 2010 and
/// Hoffman et al. 2013. Symbols: K topics, V words, N documents; λ (K × V topic-word
/// variational parameters, scikit-learn's components_), α (K, doc_topic_prior), η
/// (scalar, topic_word_prior), γ (K per document), φ (per word and topic).
///
/// Internally λ and exp(E[log β]) are stored word-major (V × K, row w holds word w's K
/// values) so one document's words gather contiguous rows; files use K × V.
///
/// Determinism (docs/ARCHITECTURE.md §5): every per-document quantity is a pure function of the
/// document and the global parameters; expected counts are added in fixed point (integers,
/// kLdaStatsFracBits-style grid chosen from the corpus size), so their sums are exact and
/// independent of how documents are spread over ranks, threads and blocks.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "latent/core/exact_sum.hpp"
#include "latent/core/types.hpp"

namespace latent::models {

/// ψ(x), the digamma function, for x > 0 (recurrence to x >= 8, then the asymptotic
/// series); absolute error below 1e-13.
double digamma(double x) noexcept;
/// out[i] = exp(ψ(x[i]) − minus[i]) in single precision, vectorised: the same series as
/// digamma() to x^-6, shifted by exactly 8 below 8. out (and minus) hold x.size() rounded up
/// to a multiple of 16 entries; out's entries past x.size() are set to 0. A pure function
/// of each (x[i], minus[i]); relative error below 1e-6 + 3e-7 |ψ(x[i])| (the exponent is
/// formed in float, so its absolute error grows with |ψ|; tests/unit/lda_test.cpp). Used for
/// exp(E[log β]) and exp(E[log θ]) (Blei et al. 2003 eq. 6-7).
void exp_digamma_minus(std::span<const double> x, std::span<const float> minus, std::span<float> out) noexcept;
/// As above with one `minus` for every entry.
void exp_digamma_minus(std::span<const double> x, float minus, std::span<float> out) noexcept;
/// ψ'(x), the trigamma function, for x > 0; relative error below 1e-12.
double trigamma(double x) noexcept;

/// Settings of the per-document variational E-step (scikit-learn's names).
struct LdaEStepOptions {
  int max_doc_update_iter = 100;  ///< coordinate-ascent iterations per document at most
  double mean_change_tol = 1e-3;  ///< stop when mean |Δγ| falls below this
  /// Also evaluate the document's bound terms and E[log θ] (word_term, theta_term,
  /// work.elog_theta); training skips them on passes that neither report the bound nor
  /// learn α.
  bool with_bound = true;
};

/// Reusable per-thread buffers for e_step_document (no allocation in the steady state).
struct LdaWorkspace {
  RowMatrixF g;    ///< K × (n + pad): column i is exp(E[log β_·w]) of the document's word i (float32)
  /// The model's exp(E[log β]) rows the last E-step read (row w at beta_rows + w ×
  /// beta_stride; valid while the model is unchanged), for LdaStatsAccumulator.
  const float* beta_rows = nullptr;
  Index beta_stride = 0;
  Eigen::VectorXf counts_f, et_f, ratio_f, acc_f;
  Vector exp_elog_theta, phinorm, elog_theta;
};

/// What one document's E-step gives: γ, and the document's terms of the bound.
struct LdaDocResult {
  int iterations = 0;
  /// Σ_w n_dw log Σ_k exp(E[log θ_dk] + E[log β_kw]): the expected log-likelihood part of
  /// the bound with the optimal φ (nats). Zero (with theta_term) if !with_bound.
  double word_term = 0;
  /// E[log p(θ|α)] − E[log q(θ|γ)] (nats).
  double theta_term = 0;
};

/// The global parameters, identical on every rank.
class Lda {
 public:
  /// Rows per chunk of the fixed-order reductions over the vocabulary (topic totals, the
  /// topic term): partial sums over fixed chunks, added in chunk order, so the result does
  /// not depend on the thread count; a sharded fit's vocabulary slices are whole chunks
  /// (lda_slice.hpp), which keeps the same bits for any rank count.
  static constexpr Index kChunkRows = 1024;

  Lda() = default;
  /// λ filled by init_lambda or set directly; α (K) and η as given.
  Lda(Index num_topics, Index vocab_size, Vector alpha, double eta);

  Index num_topics() const noexcept { return alpha_.size(); }
  Index vocab_size() const noexcept { return lambda_.rows(); }
  /// λ word-major, V × K.
  const RowMatrix& lambda_vk() const noexcept { return lambda_; }
  RowMatrix& lambda_vk() noexcept { return lambda_; }
  /// K rounded up to a multiple of 16: the row length of the E-step's exp(E[log β]).
  Index padded_topics() const noexcept { return (num_topics() + 15) / 16 * 16; }
  const Vector& alpha() const noexcept { return alpha_; }
  Vector& alpha() noexcept { return alpha_; }
  double eta() const noexcept { return eta_; }
  void set_eta(double eta) noexcept { eta_ = eta; }
  /// Σ_w λ_kw (K), valid after refresh().
  const Vector& topic_totals() const noexcept { return topic_totals_; }

  /// λ_kw ~ Gamma(100, 1/100), each a pure function of (seed, k, w) (as scikit-learn and
  /// Hoffman's onlineldavb initialise, but counter-based).
  void init_lambda(std::uint64_t seed);
  /// One cell of init_lambda: λ_kw for topic k = t, word w (also a sharded fit's rows).
  static double initial_lambda(std::uint64_t seed, Index t, Index w);
  /// Recomputes topic totals and exp(E[log β]) = exp(ψ(λ_kw) − ψ(Σ_w λ_kw)) from λ, on
  /// `threads` threads; the result does not depend on the thread count.
  void refresh(int threads);
  /// Only the topic totals (Σ_w λ_kw, in a fixed order) after λ changed; rows of
  /// exp(E[log β]) are then stale until refresh_words names them (online updates refresh
  /// just the words of the next minibatch).
  void refresh_totals(int threads);
  /// Rows of exp(E[log β]) for `words` (distinct ids), from λ and the current totals.
  void refresh_words(std::span<const std::int32_t> words, int threads);
  /// exp(E[log β]), word-major, V × padded_topics() (float32, zero padding): what
  /// e_step_document reads, row ids[i] for word i. A sharded fit (lda_slice.hpp) sets it
  /// directly on a model without λ to the rows of one round's words, renumbered 0..m−1.
  RowMatrixF& exp_elog_beta() noexcept { return exp_elog_beta_; }

  /// The topic part of the bound: Σ_k [Σ_w (η − λ_kw) E[log β_kw] + lnΓ(λ_kw) − lnΓ(η)
  /// + lnΓ(Vη) − lnΓ(Σ_w λ_kw)] (Hoffman et al. 2010 eq. 16, last line), nats. Thread-count
  /// independent.
  double topic_term(int threads) const;
  /// Σ_k Σ_w E[log β_kw], for learning η. Thread-count independent.
  double sum_elog_beta(int threads) const;

  /// Variational E-step for one document (Blei et al. 2003 §5.2, as in Hoffman et al.
  /// 2010 Algorithm 2): γ starts at `gamma` if `warm` (training draws it from
  /// Gamma(100, 1/100), as scikit-learn and onlineldavb do), else at 1 (scikit-learn's
  /// transform), and is updated until the mean change is below tol. `ids` (sorted word
  /// ids) and `counts` have the same length n. `gamma` (K) receives the result.
  /// Thread-safe (const).
  LdaDocResult e_step_document(std::span<const std::int32_t> ids, std::span<const double> counts,
                               const LdaEStepOptions& options, LdaWorkspace& work, Vector& gamma,
                               bool warm = false) const;

  /// The random starting γ of document `doc` (global id) in λ update `update`: each entry
  /// Gamma(100, 1/100), a pure function of (seed, update, doc).
  void initial_gamma(std::uint64_t seed, std::uint64_t update, std::uint64_t doc, Vector& gamma) const;

 private:
  RowMatrix lambda_;         // V × K
  void refresh_row(Index w);
  RowMatrixF exp_elog_beta_;  // V × padded_topics() (zero padding), single precision
  Vector topic_totals_;      // K
  Vector digamma_total_;     // ψ(topic_totals_)
  Eigen::VectorXf digamma_total_f_;  // the same, single precision, zero-padded to padded_topics()
  Vector alpha_;             // K
  double eta_ = 0;
};

/// Fixed-point accumulator of expected topic-word counts (V × K integers on a grid of
/// 2^-frac_bits), remembering which words were touched so clearing and merging cost
/// O(touched words × K). Sums of integers are exact: any grouping gives the same bits.
class LdaStatsAccumulator {
 public:
  LdaStatsAccumulator(Index vocab_size, Index num_topics, int frac_bits);
  /// Adds the document's expected counts n_dw φ_dwk = n_dw exp(E[log θ_dk]) exp(E[log β_kw])
  /// / phinorm_w, from the workspace of the e_step_document call just made (its gathered
  /// rows of exp(E[log β]), single precision).
  void add_document(std::span<const std::int32_t> ids, std::span<const double> counts, const LdaWorkspace& work);
  /// Adds the touched rows into `out`: row w of a V × K buffer, or, if `row_of_word` is
  /// given, row row_of_word[w] of a packed buffer (every touched word must have a row).
  void merge_into(std::span<std::int64_t> out, std::span<const std::int32_t> row_of_word = {}) const;
  /// The words with statistics since the last clear(), in first-touch order.
  std::span<const std::int32_t> touched() const noexcept { return touched_list_; }
  void clear();
  /// Rows [row_begin, row_end) of `out` (packed: row w at (w − row_begin)·K) = the sum over
  /// `accs` of their rows w (exact integer sums, so in any order), zero where none touched
  /// w; those rows are then cleared in every accumulator. Disjoint row ranges may be taken
  /// concurrently; after all of them, end_take() on each accumulator. Together the same as
  /// zeroing `out`, merge_into and clear() on each, in parallel. Local.
  static void take_rows(std::span<LdaStatsAccumulator* const> accs, Index row_begin, Index row_end,
                        std::span<std::int64_t> out);
  /// Ends a take_rows of every touched row (the touched list is emptied).
  void end_take() noexcept { touched_list_.clear(); }
  int frac_bits() const noexcept { return frac_bits_; }

 private:
  Index vocab_size_, num_topics_;
  int frac_bits_;
  double scale_;
  std::vector<std::int64_t> cells_;    // V × K
  std::vector<std::uint8_t> touched_;  // V
  std::vector<std::int32_t> touched_list_;
};

/// The grid for fixed-point statistics: the largest number of fractional bits such that
/// `max_total` (an upper bound on any cell's sum, e.g. the corpus token count) still fits
/// with headroom in a signed 64-bit integer; between 8 and 40.
int lda_stats_frac_bits(double max_total) noexcept;

/// Minka's Newton update of an asymmetric Dirichlet parameter (Minka 2000, "Estimating a
/// Dirichlet distribution", §1; as in Blei's lda-c and gensim's update_dir_prior) from
/// the mean sufficient statistic mean_elog_theta_k = (1/D) Σ_d E[log θ_dk] over D
/// documents: returns α after `max_iter` Newton steps (or convergence to 1e-12), each
/// scaled by `step` (1 for batch, ρ_t for online) and halved as needed to keep α > 0.
Vector newton_alpha(const Vector& alpha, const Vector& mean_elog_theta, double step, int max_iter);
/// Newton update (on log η) of a symmetric Dirichlet parameter η over V words from
/// K topics with Σ_k Σ_w E[log β_kw] = sum_elog_beta.
double newton_eta(double eta, Index num_topics, Index vocab_size, double sum_elog_beta, double step, int max_iter);

}  // namespace latent::models
