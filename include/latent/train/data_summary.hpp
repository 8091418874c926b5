#pragma once
/// \file One validating pass over the data before training (docs/ARCHITECTURE.md §6 rule 5): every
/// block is read and checked (finiteness, via BlockSource), and per-feature moments are
/// computed exactly, so the summary is identical for any rank/thread count.
#include <cstdint>
#include <vector>

#include "latent/comm/communicator.hpp"
#include "latent/core/types.hpp"
#include "latent/io/block_source.hpp"

namespace latent::train {

struct DataSummary {
  Index num_samples = 0;       ///< N
  RowVector mean;              ///< D, over the observed (non-NaN) entries
  RowVector variance;          ///< D, population variance (ddof = 0) of the observed entries
  RowVector observed;          ///< D, number of observed (non-NaN) entries per feature
  Index num_missing = 0;       ///< NaN entries (only when the source allows them)
  RowVector min, max;          ///< D
  Index num_constant_features = 0;  ///< features with min == max
  /// Rows equal to an earlier row (exact, by 64-bit xxHash of the row's bytes), or -1 when
  /// not counted (more than kMaxRowsForDuplicates rows).
  Index num_duplicate_rows = -1;
  static constexpr Index kMaxRowsForDuplicates = Index{1} << 22;
  /// Content hash of every shard (latent/train/content_hash.hpp), for checkpoints.
  std::vector<std::uint64_t> shard_hashes;
};

/// Collective. Throws the agreed Error if any block is unreadable or not finite (NaN is
/// accepted when the source allows missing values; then a feature with no observed
/// entry is an Error(kInput) naming it).
DataSummary summarize(const comm::Communicator& comm, io::BlockSource& source, int threads);

}  // namespace latent::train
