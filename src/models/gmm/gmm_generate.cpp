#include "latent/models/gmm/gmm_generate.hpp"

#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <vector>

#include "latent/core/control.hpp"
#include "latent/core/rng.hpp"
#include "latent/io/dense_dataset.hpp"

namespace latent::models {

Gmm generating_gmm(const GmmGeneratorOptions& o) {
  const bool diag = o.covariance_type == CovarianceType::kDiag;
  const Index k = o.n_components, d = o.n_features;
  Gmm gmm(k, d, diag ? CovarianceType::kDiag : CovarianceType::kSpherical, 0.0);
  RowVector weights(k);
  RowMatrix means(k, d), cov(k, diag ? d : 1);
  const auto u = [&](std::uint64_t epoch, Index id) {
    return CounterRng(o.seed, RngPurpose::kGenerate, epoch, static_cast<std::uint64_t>(id)).next_uniform();
  };
  for (Index c = 0; c < k; ++c) {
    weights[c] = 0.5 + u(2, c);
    for (Index j = 0; j < d; ++j) means(c, j) = o.center_box * (2 * u(3, c * d + j) - 1);
    for (Index j = 0; j < cov.cols(); ++j) {
      const double sd = o.cluster_std * (0.5 + u(4, c * cov.cols() + j));
      cov(c, j) = sd * sd;
    }
  }
  weights /= weights.sum();
  gmm.set_parameters(weights, means, cov);
  return gmm;
}

void write_sampled_shards(const FittedModel& model, const io::ShardLayout& layout, Index first_shard, Index last_shard,
                          const std::function<std::string(Index)>& shard_path, io::DType dtype, std::uint64_t seed,
                          int threads, const std::function<void(Index)>& rows_done) {
  const Index d = model.num_features();
  tbb::task_arena arena(threads);
  constexpr Index kSlab = 8192, kPiece = 256;
  RowMatrix slab;
  std::vector<std::int64_t> labels;
  for (Index s = first_shard; s < last_shard; ++s) {
    const Index begin = layout.begin(s), rows = layout.begin(s + 1) - begin;
    io::H5Writer w(shard_path(s), false);
    w.attr("/", "format_version", static_cast<std::int64_t>(io::kDataFormatVersion));
    w.attr("/", "kind", std::string("dense"));
    w.attr("/", "seed", static_cast<std::int64_t>(seed));
    w.create(io::kDataDataset, dtype, rows, d);
    w.create(io::kLabelsDataset, io::DType::kInt64, rows, 0);
    for (Index first = 0; first < rows; first += kSlab) {
      stop_point();
      const Index count = std::min(kSlab, rows - first);
      slab.resize(count, d);
      labels.resize(static_cast<std::size_t>(count));
      arena.execute([&] {
        tbb::parallel_for(Index{0}, (count + kPiece - 1) / kPiece, [&](Index p) {
          const Index i0 = p * kPiece, m = std::min(kPiece, count - i0);
          std::vector<std::int64_t> piece_labels;
          slab.middleRows(i0, m) = model.sample(begin + first + i0, m, seed, piece_labels);
          std::copy(piece_labels.begin(), piece_labels.end(), labels.begin() + i0);
        });
      });
      w.write_rows(io::kDataDataset, first, slab);
      w.write_rows(io::kLabelsDataset, first, labels);
      if (rows_done) rows_done(begin + first + count - layout.begin(first_shard));
    }
    w.commit();
    heartbeat();
  }
}

}  // namespace latent::models
