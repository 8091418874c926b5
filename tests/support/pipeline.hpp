#pragma once
// Builds this rank's BlockSource for a data directory, as the CLI does.
#include <memory>

#include "latent/comm/communicator.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/io/block_source.hpp"

namespace latent::testing {

inline std::unique_ptr<io::BlockSource> make_source(const comm::Communicator& comm, const std::string& dir,
                                                    Index block_rows, std::size_t cache_bytes = 0,
                                                    bool labels = false) {
  auto info = io::open_dense_dataset(dir);
  auto plan = io::make_block_plan(info, block_rows);
  const auto r = io::rank_block_range(static_cast<Index>(plan.size()), comm.rank(), comm.size());
  io::BlockSourceOptions o;
  o.cache_bytes = cache_bytes;
  o.read_labels = labels;
  o.prefetch_blocks = 2;
  return std::make_unique<io::BlockSource>(std::move(info), std::vector<io::BlockRef>(plan.begin() + r.first, plan.begin() + r.last), o);
}

}  // namespace latent::testing
