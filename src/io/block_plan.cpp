#include "latent/io/block_plan.hpp"

#include "latent/core/error.hpp"

namespace latent::io {

std::vector<BlockRef> make_block_plan(const DenseDatasetInfo& info, Index block_rows) {
  std::vector<Index> rows;
  for (const auto& s : info.shards) rows.push_back(s.num_rows);
  return make_block_plan(rows, block_rows);
}

std::vector<BlockRef> make_block_plan(std::span<const Index> shard_rows, Index block_rows) {
  if (block_rows < 1) throw_usage("--block-rows must be at least 1 (got " + std::to_string(block_rows) + ")");
  std::vector<BlockRef> plan;
  Index global = 0;
  for (std::size_t s = 0; s < shard_rows.size(); ++s) {
    const Index n = shard_rows[s];
    for (Index r = 0; r < n; r += block_rows) {
      const Index rows = std::min(block_rows, n - r);
      plan.push_back(BlockRef{static_cast<Index>(plan.size()), static_cast<Index>(s), r, rows, global});
      global += rows;
    }
  }
  return plan;
}

BlockRange rank_block_range(Index num_blocks, int rank, int num_ranks) {
  const Index p = num_ranks;
  const Index r = rank;
  return BlockRange{num_blocks * r / p, num_blocks * (r + 1) / p};
}

std::vector<BlockRef> rank_blocks(std::span<const BlockRef> plan, int rank, int num_ranks) {
  return rank_blocks(plan, 0, static_cast<Index>(plan.size()), rank, num_ranks);
}

std::vector<BlockRef> rank_blocks(std::span<const BlockRef> plan, Index first, Index last, int rank, int num_ranks) {
  const BlockRange range = rank_block_range(last - first, rank, num_ranks);
  return {plan.begin() + first + range.first, plan.begin() + first + range.last};
}

Index num_rows(std::span<const BlockRef> blocks) {
  Index n = 0;
  for (const BlockRef& b : blocks) n += b.num_rows;
  return n;
}

}  // namespace latent::io
