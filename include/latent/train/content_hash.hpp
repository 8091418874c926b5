#pragma once
/// \file Content hashes of the input shards, taken during a fit's validating pass (no extra
/// I/O) and recorded in every checkpoint, so that `--resume` refuses data whose bytes
/// changed even when names, shapes and file sizes did not (docs/ARCHITECTURE.md §6).
///
/// Shard s's hash is Σ_rows XXH64(row, seed = the row's index within the shard) mod 2^64,
/// where a dense row is its D values as float64 and a document is its word ids (int32)
/// followed by its counts (float64). The sum is commutative, so the hash does not depend
/// on the block size, the number of ranks or threads, or the order blocks are read in; the
/// seed makes it depend on the rows' order within the shard.
#include <atomic>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "latent/comm/communicator.hpp"
#include "latent/core/types.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/io/dense_dataset.hpp"

namespace latent::io {
struct DenseBlock;
}

namespace latent::train {

/// Accumulates the local rows' hashes per shard. add_* are thread-safe.
class ContentHasher {
 public:
  explicit ContentHasher(std::size_t num_shards);
  /// Rows `x` (rows × D, row-major) starting at row `first_row` of shard `shard`.
  void add_dense(Index shard, Index first_row, const RowMatrix& x);
  /// The same of float32 rows, hashed as the rows widened to double (the same hash).
  void add_dense_float32(Index shard, Index first_row, const RowMatrixF& x);
  /// A dense block's rows, float32 or double (its ref names the shard and first row).
  void add(const io::DenseBlock& block);
  /// The documents of a CSR block (its ref names the shard and first row).
  void add_counts(const io::CsrBlock& block);
  /// The global hash of every shard (each rank adds its own rows). Collective: one
  /// allgatherv of one int64 per shard per rank.
  std::vector<std::uint64_t> global(const comm::Communicator& comm) const;

 private:
  std::vector<std::atomic<std::uint64_t>> sums_;
};

/// The JSON recorded in checkpoints: {"<shard file name>": "<16 hex digits>", ...}.
std::string content_json(const std::vector<std::string>& shard_paths, const std::vector<std::uint64_t>& hashes);
/// The same from a dataset's shard list (DenseDatasetInfo::shards, CountsDatasetInfo::shards:
/// anything whose entries have a `path`).
template <class ShardList>
  requires requires(const ShardList& s) { s.begin()->path; }
std::string content_json(const ShardList& shards, const std::vector<std::uint64_t>& hashes) {
  std::vector<std::string> paths;
  paths.reserve(shards.size());
  for (const auto& shard : shards) paths.push_back(shard.path);
  return content_json(paths, hashes);
}

/// Compares two content_json texts; empty when equal, else a message naming the shards
/// whose contents differ, and those present in only one.
std::string content_difference(const std::string& checkpoint, const std::string& current);

}  // namespace latent::train
