#pragma once
// Builds this rank's BlockSource for a data directory, as the CLI does.
#include <filesystem>
#include <functional>
#include <memory>
#include <vector>

#include "latent/comm/communicator.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/io/block_source.hpp"
#include "latent/train/data_summary.hpp"
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
/// x written under dir/d as two float32 shards (rows [0, split) and the rest), then read
/// four ways, double and float32 blocks (io::BlockSourceOptions::float32), each streamed
/// and cached, in blocks of block_rows; returns what `fit` gives for each (summary over 2
/// threads), in that order. For tests that a float32 pass gives the bits of double rows.
inline std::vector<std::vector<double>> fit_float32_shards_four_ways(
    const std::filesystem::path& dir, const RowMatrix& x, Index split, Index block_rows, bool allow_nan,
    const std::function<std::vector<double>(io::BlockSource&, const train::DataSummary&)>& fit) {
  std::filesystem::create_directories(dir / "d");
  write_shard(dir / "d/part-00000.h5", x.topRows(split), {}, io::DType::kFloat32);
  write_shard(dir / "d/part-00001.h5", x.bottomRows(x.rows() - split), {}, io::DType::kFloat32);
  const auto comm = comm::Communicator::world();
  std::vector<std::vector<double>> results;
  for (const bool f32 : {false, true})
    for (const std::size_t cache : {std::size_t{0}, std::size_t{1} << 24}) {
      auto info = io::open_dense_dataset(dir / "d");
      io::BlockSourceOptions o;
      o.cache_bytes = cache;
      o.allow_nan = allow_nan;
      o.float32 = f32;
      io::BlockSource source(info, io::make_block_plan(info, block_rows), o);
      results.push_back(fit(source, train::summarize(comm, source, 2)));
    }
  return results;
}

inline double worst_center_error(const RowMatrix& fitted, const RowMatrix& truth) {
  double worst = 0;
  for (Index k = 0; k < truth.rows(); ++k)
    worst = std::max(worst, (fitted.rowwise() - truth.row(k)).rowwise().norm().minCoeff());
  return worst;
}

}  // namespace latent::testing
