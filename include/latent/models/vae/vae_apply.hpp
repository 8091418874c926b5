#pragma once
/// \file Applying a fitted VAE to data: the exact ELBO and IWAE totals of `latent score`,
/// the posterior (and reconstructions) of `latent transform`, and the decoded prior draws
/// of `latent sample`. Every row's result depends only on the row (and the seed), so the
/// outputs do not depend on the rank or thread counts.
#include <cstdint>
#include <functional>
#include <vector>

#include "latent/comm/communicator.hpp"
#include "latent/core/types.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/io/dense_dataset.hpp"
#include "latent/models/vae/vae.hpp"

namespace latent::models {

/// How a pass over a rank's blocks runs: threads (a task arena of this size) and blocks read ahead.
struct VaePassOptions {
  int threads = 1;
  int prefetch = 4;
};

/// Mean scores over every rank's rows (nats per row; 0 when there are no rows).
struct VaeScore {
  std::int64_t num_rows = 0;
  double elbo = 0;                 ///< mean of vae_elbo_rows (one z ~ q per row, closed-form KL)
  double iwae_log_likelihood = 0;  ///< mean of vae_iwae_rows; 0 when iw_samples = 0
};

/// Per-block per-row scores: `local_row` is the block's first row among this rank's rows;
/// elbo and iwae are B × 1 (iwae is unspecified when iw_samples = 0).
using VaeScoreVisitor = std::function<void(Index local_row, const RowMatrix& elbo, const RowMatrix& iwae)>;

/// Scores `blocks` (this rank's share of the plan) of the dataset: per row the ELBO and,
/// with iw_samples > 0, the IWAE estimate of log p(x) with k = iw_samples (noise keyed by
/// (seed, global row)), rows in chunks of 16 on the pass's threads. The totals are summed in
/// fixed point with 24 fractional bits (exact, rank-invariant), then divided by the rows.
/// `visit` (may be empty) gets each block's rows in block order. Collective (errors agreed,
/// then one allreduce of 3 int64).
VaeScore score_vae_rows(const comm::Communicator& comm, const io::DenseDatasetInfo& info,
                        const std::vector<io::BlockRef>& blocks, const Vae& model, int iw_samples, std::uint64_t seed,
                        const VaePassOptions& options, const VaeScoreVisitor& visit);

/// Per-block posterior: mean and log-variance of q(z|x) (B × L) and, with reconstruct, the
/// decoder's mean at z = the posterior mean (B × D; otherwise B × 0).
using VaeTransformVisitor =
    std::function<void(Index local_row, const RowMatrix& mean, const RowMatrix& log_var, const RowMatrix& reconstruction)>;

/// Encodes `blocks` (this rank's share) of the dataset, rows in chunks of 16 on the pass's
/// threads, and hands each block's results to `visit` in block order. Collective (errors
/// agreed).
void transform_vae_rows(const comm::Communicator& comm, const io::DenseDatasetInfo& info,
                        const std::vector<io::BlockRef>& blocks, const Vae& model, bool reconstruct,
                        const VaePassOptions& options, const VaeTransformVisitor& visit);

/// The decoder's mean of its output `out` (B × D): σ(logits) for Bernoulli, the output for
/// Gaussian.
RowMatrix vae_decoded_mean(const Vae& model, const RowMatrixF& out);

/// Prior draws first .. first+count-1: z_i ~ N(0, I) keyed by (seed, kSample, i) into
/// `latent` (count × L) and their decoded means into `data` (count × D). Local.
void sample_vae_rows(const Vae& model, Index first, Index count, std::uint64_t seed, VaeWorkspace& workspace,
                     RowMatrix& data, RowMatrix& latent);

}  // namespace latent::models
