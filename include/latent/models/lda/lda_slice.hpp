#pragma once
/// \file λ of a variational LDA fit (batch and online) sharded by vocabulary slice
/// (docs/ARCHITECTURE.md §5.8).
///
/// Rank s of P owns the words [slice_begin(V, P, s), slice_begin(V, P, s + 1)): whole chunks
/// of Lda::kChunkRows words, chunk c of C = ⌈V / kChunkRows⌉ on rank ⌊…⌋ so that rank s holds
/// chunks [⌊sC/P⌋, ⌊(s+1)C/P⌋). It keeps λ for those rows only (8 bytes per cell) and the
/// expected counts sent to them (8); nothing else of size K × V exists on any rank.
///
/// A λ update (a pass for batch, a minibatch for online) runs in rounds. In a round each
/// rank takes documents of its current block until their distinct words × K reach a cell
/// budget, fetches those words' rows of exp(E[log β]) from their owners (fetch_rows), runs
/// the E-steps against the rows renumbered 0..m−1, and sends the expected counts of the
/// words back to their owners (send_stats), who add them as integers. Both exchanges are
/// P steps of a shift schedule (Communicator::sendrecv: step s sends to rank + s and
/// receives from rank − s), so a rank holds one peer's message at a time. This is the
/// model-parallel layout of a parameter server (Li et al., OSDI 2014; LightLDA, Yuan et
/// al. 2015 §5) with the pulls and pushes made collective and deterministic. Ranks that
/// share one node skip both exchanges: λ and the counts live in node-shared memory
/// (share_node_memory; docs/ARCHITECTURE.md §5.8), and each owner computes a row once
/// for all the ranks whose round holds its word.
///
/// The same bits as one process holding the whole λ (Lda), for any P and thread count:
/// an E-step reads the same float32 rows (computed by the owner from λ and the topic
/// totals exactly as Lda::refresh_row does); counts are fixed-point integers, so any
/// grouping sums them exactly; the M-step is elementwise; and the reductions over the
/// vocabulary (topic totals, the topic term, Σ E[log β]) keep Lda's chunk order: the topic
/// totals are folded rank after rank (a broadcast of K doubles per rank) and the scalar
/// sums gather one partial per chunk.
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "latent/comm/communicator.hpp"
#include "latent/models/lda/lda.hpp"

namespace latent::models {

/// Expected topic-word counts received by an owner: rows × K fixed-point integers for its
/// slice, with the rows that received any (touched) listed, so clearing costs O(touched).
class LdaSliceStats {
 public:
  LdaSliceStats(Index rows, Index num_topics);
  /// Adds K integers to row `row` (0-based within the slice).
  void add(Index row, const std::int64_t* values);
  /// add(rows[i], values + i·K) for every i, the rows (distinct) in parallel on the
  /// caller's task arena: the same integers.
  void add_rows(std::span<const std::int32_t> rows, const std::int64_t* values);
  std::span<const std::int32_t> touched() const noexcept { return touched_list_; }
  const std::int64_t* row(Index r) const noexcept { return cells_.data() + static_cast<std::size_t>(r * k_); }
  void clear();

 private:
  Index k_;
  std::vector<std::int64_t> cells_;
  std::vector<std::uint8_t> touched_;
  std::vector<std::int32_t> touched_list_;
};

/// Rank 0 receives a matrix whose rows are sliced across ranks (rank s holds rows
/// [first_row(s), first_row(s + 1)), row_bytes bytes each) in consecutive pieces of whole
/// rows of at most 64 MiB, in row order: `local(a, b)` returns the owner's bytes of rows
/// [a, b) (called on the owner only), and `piece(a, b, bytes)` consumes them on rank 0.
/// The piece schedule is a function of (rows, row_bytes, P). Collective; an exception from
/// `piece` skips the later pieces on rank 0 and is agreed on every rank at the end.
void gather_slices_to_root(const comm::Communicator& comm, Index rows, std::size_t row_bytes,
                           const std::function<Index(int)>& first_row,
                           const std::function<std::string(Index, Index)>& local,
                           const std::function<void(Index, Index, const std::string&)>& piece);

class LdaSlice {
 public:
  /// First word of slice s of `parts` (s = parts gives V): chunk-aligned as in the file's
  /// comment. Slices may be empty when V has fewer chunks than ranks.
  static Index slice_begin(Index vocab_size, int parts, int s) noexcept;

  /// This rank's slice of a K-topic model over V words with priors α (K) and η. Local.
  LdaSlice(const comm::Communicator& comm, Index num_topics, Index vocab_size, Vector alpha, double eta);

  Index num_topics() const noexcept { return alpha_.size(); }
  Index vocab_size() const noexcept { return v_; }
  Index begin() const noexcept { return begin_; }
  Index end() const noexcept { return end_; }
  Index rows() const noexcept { return end_ - begin_; }
  int parts() const noexcept { return parts_; }
  /// λ of words [begin, end), word-major (rows() × K): in this rank's memory, or in the
  /// node's shared memory after share_node_memory().
  Eigen::Map<RowMatrix>& lambda() noexcept { return lambda_; }
  const Eigen::Map<RowMatrix>& lambda() const noexcept { return lambda_; }

  /// Ranks on one node (comm::NodeSharedMemory: every rank of the job on one node, not under
  /// LATENT_NODE_SHARED=0) keep every slice's λ in node-shared memory: in fetch_rows each
  /// owner computes the rows of its words in any rank's round once, into shared memory,
  /// where every rank copies its own; send_stats leaves the counts in shared memory, where
  /// each owner adds the rows of its words. No messages, the same
  /// bits (the rows are the owner's function of λ and the totals, every rank's totals are
  /// the same, the counts are integers). λ keeps its values. Collective; returns whether
  /// the memory is shared. λ's writers must call refresh_totals before other ranks read
  /// (its barrier orders the writes before the reads).
  bool share_node_memory(const comm::Communicator& comm);
  /// Moves λ back into this rank's memory and frees the shared memory. Collective.
  void unshare(const comm::Communicator& comm);

  LdaSlice(const LdaSlice&) = delete;
  LdaSlice& operator=(const LdaSlice&) = delete;
  ~LdaSlice();
  Vector& alpha() noexcept { return alpha_; }
  const Vector& alpha() const noexcept { return alpha_; }
  double eta() const noexcept { return eta_; }
  void set_eta(double eta) noexcept { eta_ = eta; }
  /// Σ_w λ_kw over the whole vocabulary (K), valid after refresh_totals.
  const Vector& topic_totals() const noexcept { return totals_; }

  /// The rows of Lda::init_lambda(seed) for this slice. Local.
  void init_lambda(std::uint64_t seed);
  /// Topic totals and ψ of them, bit-identical to Lda::refresh_totals on the whole λ.
  /// Collective (one broadcast of K doubles per non-empty slice).
  void refresh_totals(const comm::Communicator& comm, int threads);
  /// Lda::topic_term of the whole model (nats), the same bits. Collective.
  double topic_term(const comm::Communicator& comm, int threads) const;
  /// Lda::sum_elog_beta of the whole model, the same bits. Collective.
  double sum_elog_beta(const comm::Communicator& comm, int threads) const;

  /// Fetches exp(E[log β]) rows of `words` (sorted, distinct, global ids; may be empty)
  /// into `rows` (|words| × padded K, float32): row i is word words[i]'s, as
  /// Lda::refresh_row computes it from λ and the current totals. `requests` receives, per
  /// source rank, the owned words that rank asked for (send_stats needs them; not filled
  /// on ranks that share a node). Collective: every rank calls it once per round, on ranks
  /// that share a node after stats_buffer (the words and rows go into its segment: Error
  /// kInternal otherwise) and with two barriers.
  void fetch_rows(const comm::Communicator& comm, std::span<const std::int32_t> words, RowMatrixF& rows,
                  std::vector<std::vector<std::int32_t>>& requests) const;
  /// The bytes of the node's shared statistics segment a round of `words` distinct words
  /// needs on this rank (0 when the slices are not shared): its counts and words, and room
  /// for the rows fetch_rows computes for every rank's round. The round takes the maximum
  /// over the ranks in its opening collective and passes it to stats_buffer. Local.
  double stats_need(std::size_t words) const;
  /// MPI_Win_sync on the shared statistics window, if any: call it right before and right
  /// after the round's opening collective, which orders the last round's reads of the
  /// segments (send_stats) before this round's writes. Local.
  void stats_sync() const;
  /// Where the round's counts go (|words| × K integers, for send_stats): on ranks that share
  /// a node, this rank's shared segment (no copy), grown when `agreed_need` (the maximum of
  /// stats_need over the ranks) exceeds it: then collective, the same decision on every
  /// rank, and Error kIo if the node's shared memory has no room; elsewhere `own`, resized.
  /// Every rank calls it once per round, before fetch_rows.
  std::span<std::int64_t> stats_buffer(const comm::Communicator& comm, std::size_t words, std::vector<std::int64_t>& own,
                                       double agreed_need);
  /// Sends `stats` (|words| × K integers, row i for words[i]: the same words as the round's
  /// fetch_rows) to the words' owners; adds what this rank receives for its slice (the
  /// `requests` of fetch_rows) into `into`. Returns the bytes this rank sent to other ranks.
  /// On ranks that share a node `stats` must be the span stats_buffer returned this round,
  /// after this round's fetch_rows (Error kInternal otherwise). Collective.
  double send_stats(const comm::Communicator& comm, std::span<const std::int32_t> words,
                    std::span<const std::int64_t> stats, const std::vector<std::vector<std::int32_t>>& requests,
                    LdaSliceStats& into);

  /// Calls piece(first_word, last_word, block) on rank 0 for consecutive pieces of λ in
  /// word order, block = λ's columns [first, last) topic-major (K × (last − first)), at most
  /// about 64 MiB each, gathered from the owners (Communicator::gather). Collective; a
  /// throw from `piece` on rank 0 is agreed on every rank after the last piece.
  void gather_to_root(const comm::Communicator& comm, const std::function<void(Index, Index, const RowMatrix&)>& piece) const;

  /// The whole model (λ moved out of the slice, totals and rows refreshed). Only for a
  /// single rank (the slice is the vocabulary); throws Error(kInternal) otherwise. Local.
  Lda take_whole(int threads);

 private:
  Index v_ = 0, begin_ = 0, end_ = 0;
  int rank_ = 0, parts_ = 1;
  RowMatrix own_lambda_;                       // λ when not shared
  Eigen::Map<RowMatrix> lambda_{nullptr, 0, 0};  // λ: own_lambda_ or the shared segment
  std::unique_ptr<comm::NodeSharedMemory> shared_lambda_, shared_stats_;
  std::size_t stats_bytes_ = 0;                 // each rank's stats segment (one round)
  void point_at(double* data, Index rows);
  Vector alpha_;
  double eta_ = 0;
  Vector totals_, digamma_total_;
  Eigen::VectorXf digamma_total_f_;  // padded to a multiple of 16 with zeros
};

}  // namespace latent::models
