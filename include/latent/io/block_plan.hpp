#pragma once
/// \file The global block plan (docs/ARCHITECTURE.md §5.1): the dataset is cut into blocks of at most
/// `block_rows` rows within each shard; block ids are global and independent of the
/// number of ranks and threads. Ranks take contiguous ranges of blocks.
#include <span>
#include <vector>

#include "latent/core/types.hpp"
#include "latent/io/dense_dataset.hpp"

namespace latent::io {

struct BlockRef {
  Index id = 0;               ///< global block id
  Index shard = 0;            ///< index into DenseDatasetInfo::shards
  Index row_begin = 0;        ///< first row within the shard
  Index num_rows = 0;         ///< B (the shard's last block may be short)
  Index global_row_begin = 0; ///< first row within the whole dataset
};

/// All blocks of the dataset, in global order. Throws Error(kUsage) if block_rows < 1.
std::vector<BlockRef> make_block_plan(const DenseDatasetInfo& info, Index block_rows);
/// The same from the row count of every shard, in shard order.
std::vector<BlockRef> make_block_plan(std::span<const Index> shard_rows, Index block_rows);

/// The contiguous block range [first, last) of `rank` among `num_ranks`.
struct BlockRange {
  Index first = 0;
  Index last = 0;
};
BlockRange rank_block_range(Index num_blocks, int rank, int num_ranks);

/// The blocks `rank` of `num_ranks` reads: its contiguous range (rank_block_range) of
/// `plan`, in plan order. Every block goes to exactly one rank. Local.
std::vector<BlockRef> rank_blocks(std::span<const BlockRef> plan, int rank, int num_ranks);
/// The same for the sub-range plan[first, last) (a training or held-out part of a plan):
/// `rank` gets the rank_block_range(last − first, ...) share of it. Requires
/// 0 <= first <= last <= plan.size().
std::vector<BlockRef> rank_blocks(std::span<const BlockRef> plan, Index first, Index last, int rank, int num_ranks);

/// Rows in `blocks` (Σ num_rows).
Index num_rows(std::span<const BlockRef> blocks);

/// The layout of a generated data set: N rows in S shard files, shard s holding rows
/// [s N / S, (s + 1) N / S) (N S must fit int64). Rank r of P writes shards
/// rank_block_range(S, r, P).
struct ShardLayout {
  Index num_rows = 0;
  Index num_shards = 1;
  /// The first row of shard s (0 <= s <= S; begin(S) = N).
  Index begin(Index s) const { return num_rows * s / num_shards; }
};

}  // namespace latent::io
