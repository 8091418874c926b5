#include "latent/train/data_summary.hpp"

#include <limits>
#include <xxhash.h>

#include <algorithm>
#include <mutex>

#include "latent/core/error.hpp"
#include "latent/train/block_reduce.hpp"
#include "latent/train/column_moments.hpp"
#include "latent/train/content_hash.hpp"

namespace latent::train {

DataSummary summarize(const comm::Communicator& comm, io::BlockSource& source, int threads) {
  const Index d = source.info().num_features;
  ExactSum sums(static_cast<std::size_t>(3 * d + 1));
  RowVector lo = RowVector::Constant(d, std::numeric_limits<double>::infinity());
  RowVector hi = RowVector::Constant(d, -std::numeric_limits<double>::infinity());
  std::mutex mutex;
  const bool count_duplicates = source.info().num_rows <= DataSummary::kMaxRowsForDuplicates;
  std::vector<std::int64_t> hashes;
  ContentHasher content(source.info().shards.size());
  // A float32 source's blocks arrive as stored (BlockSource::Float32Scope): the moments and
  // hashes read each value widened (the same bits as of the widened block), where the
  // stream used to widen every block into a new double block, twice the bytes written and
  // read again (docs/PERFORMANCE.md, AMD EPYC seventh session). Only a block with NaN is
  // widened whole, for the NaN path's column-wise sums.
  const io::BlockSource::Float32Scope float32_scope(source, true);
  comm::run_agreed(comm, [&] {
    for_each_block(source, threads, [&](const io::DenseBlock& block) {
      const bool f32 = block.is_float32();
      const Index rows = f32 ? block.xf.rows() : block.x.rows();
      AlignedDoubles partial(static_cast<std::size_t>(3 * d + 1));
      Eigen::Map<RowVector> s(partial.data(), d), q(partial.data() + d, d), seen(partial.data() + 2 * d, d);
      RowVector bmin, bmax;
      if (f32 ? any_nan(block.xf) : any_nan(block.x)) {
        const RowMatrix widened = f32 ? RowMatrix(block.xf.cast<double>()) : RowMatrix();
        const RowMatrix& x = f32 ? widened : block.x;
        const auto nan = x.array().isNaN();
        const RowMatrix x0 = nan.select(0.0, x);
        s = x0.colwise().sum();
        q = x0.array().square().colwise().sum().matrix();
        seen = (!nan).cast<double>().colwise().sum().matrix();
        bmin = nan.select(std::numeric_limits<double>::infinity(), x).colwise().minCoeff();
        bmax = nan.select(-std::numeric_limits<double>::infinity(), x).colwise().maxCoeff();
      } else {
        bmin = RowVector::Constant(d, std::numeric_limits<double>::infinity());
        bmax = RowVector::Constant(d, -std::numeric_limits<double>::infinity());
        if (f32) column_moments(block.xf, s.data(), q.data(), bmin.data(), bmax.data());
        else column_moments(block.x, s.data(), q.data(), bmin.data(), bmax.data());
        seen.setConstant(static_cast<double>(rows));
      }
      partial[static_cast<std::size_t>(3 * d)] = static_cast<double>(rows);
      content.add(block);
      std::vector<std::int64_t> mine;
      if (count_duplicates) {
        std::vector<double> row(static_cast<std::size_t>(d));
        for (Index i = 0; i < rows; ++i) {
          const double* r = row.data();
          if (f32) {
            for (Index j = 0; j < d; ++j) row[static_cast<std::size_t>(j)] = block.xf(i, j);
          } else {
            r = block.x.data() + i * d;
          }
          mine.push_back(static_cast<std::int64_t>(XXH64(r, static_cast<std::size_t>(d) * sizeof(double), 0)));
        }
      }
      std::lock_guard lock(mutex);
      hashes.insert(hashes.end(), mine.begin(), mine.end());
      sums.add(partial);
      lo = lo.cwiseMin(bmin);
      hi = hi.cwiseMax(bmax);
    });
  });
  comm.allreduce(sums);
  comm.allreduce_min(std::span<double>(lo.data(), static_cast<std::size_t>(d)));
  comm.allreduce_max(std::span<double>(hi.data(), static_cast<std::size_t>(d)));
  const std::vector<double> v = sums.values();
  DataSummary out;
  out.shard_hashes = content.global(comm);
  out.num_samples = static_cast<Index>(v[static_cast<std::size_t>(3 * d)]);
  out.observed = Eigen::Map<const RowVector>(v.data() + 2 * d, d);
  out.num_missing = static_cast<Index>(static_cast<double>(out.num_samples) * static_cast<double>(d) - out.observed.sum());
  for (Index j = 0; j < d && out.num_missing > 0; ++j)
    if (out.observed[j] == 0)
      throw_input("data: feature " + std::to_string(j) + " has no observed value (every entry is NaN)");
  out.mean = Eigen::Map<const RowVector>(v.data(), d).cwiseQuotient(out.observed.cwiseMax(1.0));
  out.variance = (Eigen::Map<const RowVector>(v.data() + d, d).cwiseQuotient(out.observed.cwiseMax(1.0)) -
                  out.mean.array().square().matrix())
                     .cwiseMax(0.0);
  out.min = lo;
  out.max = hi;
  for (Index j = 0; j < d; ++j) out.num_constant_features += lo[j] == hi[j] ? 1 : 0;
  if (count_duplicates) {
    std::vector<std::int64_t> all = comm.allgatherv(hashes);
    std::sort(all.begin(), all.end());
    out.num_duplicate_rows = static_cast<Index>(all.size()) - static_cast<Index>(std::unique(all.begin(), all.end()) - all.begin());
  }
  return out;
}

}  // namespace latent::train
