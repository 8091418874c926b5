#pragma once
// Builds this rank's BlockSource for a data directory, as the CLI does.
#include <memory>

#include "latent/comm/communicator.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/io/block_source.hpp"
#include "fixtures.hpp"

namespace latent::testing {

inline std::unique_ptr<io::BlockSource> make_source(const comm::Communicator& comm, const std::string& dir,
                                                    Index block_rows, std::size_t cache_bytes = 0,
                                                    bool labels = false, bool allow_nan = false) {
  auto info = io::open_dense_dataset(dir);
  auto mine = io::rank_blocks(io::make_block_plan(info, block_rows), comm.rank(), comm.size());
  io::BlockSourceOptions o;
  o.cache_bytes = cache_bytes;
  o.read_labels = labels;
  o.allow_nan = allow_nan;
  o.prefetch_blocks = 2;
  return std::make_unique<io::BlockSource>(std::move(info), std::move(mine), o);
}

/// Rank 0 writes x as shards of the given sizes; every rank then opens its source.
inline std::unique_ptr<io::BlockSource> write_and_open(const comm::Communicator& comm, const std::string& dir,
                                                       const RowMatrix& x, const std::vector<Index>& sizes,
                                                       Index block_rows) {
  if (comm.is_root()) write_shards(dir, x, sizes);
  comm.barrier();
  return make_source(comm, dir, block_rows);
}

/// For each true center, the distance to the nearest fitted one; the worst of these.
inline double worst_center_error(const RowMatrix& fitted, const RowMatrix& truth) {
  double worst = 0;
  for (Index k = 0; k < truth.rows(); ++k)
    worst = std::max(worst, (fitted.rowwise() - truth.row(k)).rowwise().norm().minCoeff());
  return worst;
}

}  // namespace latent::testing
