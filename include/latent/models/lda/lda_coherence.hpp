#pragma once
/// \file Topic coherence of a topic model's top words over a count dataset (`latent score`
/// on an LDA model): UMass (Mimno et al. 2011) as gensim computes it, and NPMI with
/// document co-occurrence (Bouma 2009; Röder et al. 2015). Symbols: K topics, n top words
/// per topic, U distinct words among the K·n top words (U <= K·n), N documents, D(w) the
/// number of documents containing word w (any count >= 1), D(w, w') the number containing
/// both.
///
/// Both measures need only D over the top words, counted exactly (integers) in one pass
/// over the corpus and summed across ranks, so the result does not depend on the rank
/// count, the thread count or the block size.
///
/// Definitions, per topic with top words t_0, ..., t_{n-1} (decreasing weight):
///  - UMass (Mimno et al. 2011 eq. 1, with gensim's conventions: segmentation s_one_pre,
///    ε = 1e-12 added to the joint probability instead of Mimno's +1 to the count, and the
///    MEAN over the n(n−1)/2 pairs instead of the sum):
///      C_umass = mean over i = 1..n−1, j < i of log((D(t_i, t_j)/N + ε) / (D(t_j)/N)),
///    a pair whose D(t_j) = 0 contributes 0 (gensim's ZeroDivisionError branch). Equal to
///    gensim 4.x CoherenceModel(coherence='u_mass', corpus=..., topn=n).get_coherence_per_topic().
///  - NPMI with document windows (Bouma 2009, normalised PMI; in the framework of Röder
///    et al. 2015 §3: segmentation S_one^one, the boolean-document probability estimate
///    P_bd, P(w) = D(w)/N and P(w, w') = D(w, w')/N, and the direct confirmation m_nlr,
///    here without ε):
///      NPMI(a, b) = log(P(a, b) / (P(a) P(b))) / (−log P(a, b)),
///    −1 when D(a, b) = 0 (never together) and 1 when D(a, b) = N (both in every document,
///    the limit of complete co-occurrence); C_npmi = mean over the n(n−1)/2 unordered pairs.
///    gensim's 'c_npmi' differs: its probabilities come from sliding windows of 10 tokens
///    over the texts (not whole documents) and it adds ε = 1e-12 to P(a, b); it averages
///    over ordered pairs (s_one_one), the same mean for this symmetric measure.
/// The averages over topics are arithmetic means (gensim's aggregate).
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "latent/comm/communicator.hpp"
#include "latent/core/types.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/models/lda/lda.hpp"

namespace latent::models {

/// The top n words of every topic: ids is K × n row-major, row k holds topic k's word ids
/// by decreasing weight.
struct TopWords {
  Index num_topics = 0;
  Index n = 0;
  std::vector<std::int32_t> ids;
  std::span<const std::int32_t> topic(Index k) const {
    return {ids.data() + static_cast<std::size_t>(k * n), static_cast<std::size_t>(n)};
  }
};

/// Topic k's n words of largest λ_kw (model.lambda_vk(), V × K; ties: lower word id first,
/// as `latent info` lists them and numpy's argsort(-λ, kind='stable') orders them).
/// Requires 1 <= n <= V. Topics in parallel on `threads` TBB threads (the result does not
/// depend on it). Local. Throws Error(kUsage) otherwise.
TopWords lda_top_words(const Lda& model, Index n, int threads = 1);

/// How co-document frequencies are stored: kDense, the upper triangle over the U distinct
/// top words (U(U−1)/2 counters: every pair of top words present in a document is
/// counted); kTopicPairs, one counter per pair within a topic's top n (K·n(n−1)/2; a word
/// shared by topics is counted once per topic pair it belongs to). kAuto takes the smaller.
enum class CoherenceLayout { kAuto, kDense, kTopicPairs };

/// The per-topic and averaged coherence values (definitions in the file comment).
struct TopicCoherence {
  Index top_n = 0;                    ///< n
  std::int64_t num_documents = 0;     ///< N
  std::vector<double> umass;          ///< K, nats (<= 0 up to ε: a mean of log conditional probabilities)
  std::vector<double> npmi;           ///< K, in [−1, 1]
  double umass_mean = 0;              ///< mean of umass over topics
  double npmi_mean = 0;               ///< mean of npmi over topics
};

/// The document counts of one set of top words, and the arithmetic on them. The counts
/// are a flat int64 vector (a tally): [N, D(u) for the U distinct words in increasing word
/// id, then the co-document counters of the layout], so partial tallies add elementwise
/// (threads, blocks, ranks) and the sum is exact.
class CoherenceCounter {
 public:
  /// Local. Throws Error(kUsage) if n < 2 or a topic repeats a word, Error(kInput) if an id
  /// lies outside [0, vocab_size).
  CoherenceCounter(const TopWords& top, Index vocab_size, CoherenceLayout layout = CoherenceLayout::kAuto);

  CoherenceLayout layout() const noexcept { return layout_; }
  /// U, the distinct top words.
  Index num_distinct_words() const noexcept { return static_cast<Index>(union_words_.size()); }
  /// Entries of a tally: 1 + U + (U(U−1)/2 or K·n(n−1)/2).
  std::size_t tally_size() const noexcept { return tally_size_; }

  /// Per-thread scratch of add_document.
  struct Scratch {
    std::vector<std::int32_t> present;
    std::vector<std::int64_t> hits;
  };
  /// Adds one document (its word ids, each once, e.g. a CSR row; counts do not matter:
  /// presence only) to `tally` (tally_size() entries). Pure apart from tally and scratch.
  void add_document(std::span<const std::int32_t> word_ids, std::span<std::int64_t> tally, Scratch& scratch) const;

  /// D(w) of a top word from a summed tally (0 for a word that is not a top word).
  std::int64_t document_frequency(std::span<const std::int64_t> tally, std::int32_t word) const;
  /// D(a, b) of two words of the same topic's top n (a != b), from a summed tally.
  std::int64_t co_document_frequency(std::span<const std::int64_t> tally, Index topic, Index pos_a, Index pos_b) const;

  /// UMass and NPMI per topic from a summed tally. Pure.
  TopicCoherence coherence(std::span<const std::int64_t> tally) const;

 private:
  TopWords top_;
  CoherenceLayout layout_ = CoherenceLayout::kAuto;
  std::vector<std::int32_t> union_words_;         // U word ids, increasing
  std::vector<std::int32_t> union_of_word_;       // V: union index or −1
  std::vector<std::int32_t> topic_union_;         // K × n: union index of topic k's word at position p
  std::vector<std::int64_t> occ_begin_, occ_;     // U + 1 offsets; (k·n + p) of each union word's places
  std::size_t tally_size_ = 0;
};

/// Topic coherence of `top` over the whole count dataset, in one pass: each rank counts
/// its own blocks (io::rank_blocks of the plan of `block_rows`) on up to `threads` TBB
/// threads, one tally per thread (fewer threads if the tallies would exceed
/// `memory_budget_bytes`: a tally is 8·tally_size() bytes), then one int64 allreduce of
/// the tally; every rank returns the same values, identical for any rank, thread and block
/// counts. Work per document: O(m²) for the m top words it contains (kDense) or Σ_k m_k²
/// over the topics' shares (kTopicPairs); one V-entry int32 lookup table besides the
/// tallies. `top` must be the same on every rank. Collective (read errors agreed: every rank
/// throws the lowest failing rank's Error; SIGTERM/SIGUSR1 stop it at the next block with
/// Error(kRequeue)). Throws as CoherenceCounter (agreed, before the pass).
TopicCoherence topic_coherence(const comm::Communicator& comm, const io::CountsDatasetInfo& info, const TopWords& top,
                               int threads, Index block_rows, int prefetch = 4,
                               std::size_t memory_budget_bytes = std::size_t{512} << 20,
                               CoherenceLayout layout = CoherenceLayout::kAuto);

}  // namespace latent::models
