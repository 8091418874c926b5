#pragma once
/// \file Passes over a rank's blocks on oneTBB threads, and the deterministic reduction of
/// per-block statistics (docs/ARCHITECTURE.md §5.2-5.3): each block's partial statistics are computed
/// by one task into a zeroed double buffer, then added to an ExactSum, so neither the
/// thread count nor the rank count can change a bit of the global sums.
#include <functional>
#include <span>
#include <vector>

#include "latent/comm/communicator.hpp"
#include "latent/core/exact_sum.hpp"
#include "latent/io/block_source.hpp"
#include "latent/io/counts_dataset.hpp"

namespace latent::train {

/// Computes one block's statistics into `partial` (size num_stats, zeroed on entry).
/// Must be a pure function of the block (no shared mutable state): it runs concurrently.
using BlockKernel = std::function<void(const io::DenseBlock& block, std::span<double> partial)>;
/// Visits one block; may run concurrently on several threads.
using BlockVisitor = std::function<void(const io::DenseBlock& block)>;

/// Runs `visit` on every local block, on at most `threads` threads. Local. Rethrows the
/// first exception of a visitor or of the I/O thread after stopping the pass.
void for_each_block(io::BlockSource& source, int threads, const BlockVisitor& visit);

/// Like for_each_block, then hands each block's result to `consume` in block order on one
/// thread at a time (for writers that need the global row order). Local.
void for_each_block_ordered(io::BlockSource& source, int threads,
                            const std::function<std::shared_ptr<void>(const io::DenseBlock&)>& compute,
                            const std::function<void(const io::DenseBlock&, std::shared_ptr<void>)>& consume);

/// Rank-local exact sum of the kernel's statistics over the local blocks. Local.
ExactSum reduce_local(io::BlockSource& source, std::size_t num_stats, int threads, const BlockKernel& kernel);

/// The same passes over a rank's blocks of documents.
using CountsKernel = std::function<void(const io::CsrBlock& block, std::span<double> partial)>;
void for_each_block(io::CountsSource& source, int threads, const std::function<void(const io::CsrBlock&)>& visit);
ExactSum reduce_local(io::CountsSource& source, std::size_t num_stats, int threads, const CountsKernel& kernel);
std::vector<double> reduce_global(const comm::Communicator& comm, io::CountsSource& source, std::size_t num_stats,
                                  int threads, const CountsKernel& kernel);

/// Global statistics: reduce_local, then agreement on errors (every rank throws the same
/// Error if any rank failed), then one allreduce of the exact cells. Collective.
std::vector<double> reduce_global(const comm::Communicator& comm, io::BlockSource& source,
                                  std::size_t num_stats, int threads, const BlockKernel& kernel);

}  // namespace latent::train
