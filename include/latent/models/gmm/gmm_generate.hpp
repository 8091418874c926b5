#pragma once
/// \file Synthetic dense data (`latent generate gmm`): a random generating mixture, and
/// shards of rows sampled from a fitted model. Row i is a pure function of (seed, i), so
/// the data do not depend on the rank count, the thread count or the number of shards.
#include <cstdint>
#include <functional>
#include <string>

#include "latent/core/types.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/models/fitted_model.hpp"
#include "latent/models/gmm/gmm.hpp"

namespace latent::models {

/// The generating mixture's shape and scales (docs/COMMANDS.md "latent generate").
struct GmmGeneratorOptions {
  Index n_components = 1;
  Index n_features = 1;
  CovarianceType covariance_type = CovarianceType::kDiag;  ///< kDiag or kSpherical
  double cluster_std = 1.0;
  double center_box = 10.0;
  std::uint64_t seed = 0;
};

/// The generating mixture: means uniform in [-box, box]^D, standard deviations
/// cluster_std · U(0.5, 1.5) per component and feature (diag) or per component
/// (spherical), weights ∝ U(0.5, 1.5); every value keyed by (seed, kGenerate, parameter
/// index). Local.
Gmm generating_gmm(const GmmGeneratorOptions& options);

/// Dense shards first_shard .. last_shard-1 of `layout` written to shard_path(s): /data
/// (rows × D in `dtype`) with row i = model.sample(i, 1, seed) and /labels (its
/// component), root attributes format_version, kind = "dense", seed. Rows are drawn in
/// pieces of 256 in parallel on `threads` threads and written in slabs of 8192. Local
/// (each rank its own shards). `rows_done`, if set, is told the rows written so far after
/// each slab (a progress line).
void write_sampled_shards(const FittedModel& model, const io::ShardLayout& layout, Index first_shard, Index last_shard,
                          const std::function<std::string(Index)>& shard_path, io::DType dtype, std::uint64_t seed,
                          int threads, const std::function<void(Index)>& rows_done = {});

}  // namespace latent::models
