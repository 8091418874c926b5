#include "latent/models/vae/vae_apply.hpp"

#include <oneapi/tbb/enumerable_thread_specific.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>

#include <cmath>

#include "latent/core/control.hpp"
#include "latent/core/rng.hpp"
#include "latent/io/block_source.hpp"
#include "latent/models/vae/vae_fit.hpp"

namespace latent::models {
namespace {

constexpr int kFracBits = 24;  // per-row nats summed in fixed point (exact, rank-invariant)

// Runs fn(block, local_row, arena) for the blocks in order. Collective (errors agreed).
template <class Fn>
void for_each_local_block(const comm::Communicator& comm, const io::DenseDatasetInfo& info,
                          const std::vector<io::BlockRef>& blocks, const VaePassOptions& o, Fn&& fn) {
  comm::run_agreed(comm, [&] {
    io::BlockSourceOptions bo;
    bo.prefetch_blocks = o.prefetch;
    bo.float32 = true;  // float32 shards' rows as stored: the products take float32
    io::BlockSource source(info, blocks, bo);
    const io::BlockSource::Float32Scope as_stored(source, true);
    source.start_pass();
    tbb::task_arena arena(std::max(1, o.threads));
    Index local_row = 0;
    while (auto block = source.next()) {
      heartbeat();
      fn(*block, local_row, arena);
      local_row += block->rows();
    }
  });
}

// fn(x_chunk, first) for the rows of x in chunks of 16 on the arena's threads (each row's
// result depends only on the row).
template <class Fn>
void parallel_rows(tbb::task_arena& arena, const RowMatrixF& x, Fn&& fn) {
  constexpr Index kChunk = 16;
  const Index chunks = (x.rows() + kChunk - 1) / kChunk;
  arena.execute([&] {
    tbb::parallel_for(Index{0}, chunks, [&](Index c) {
      const Index first = c * kChunk;
      fn(RowMatrixF(x.middleRows(first, std::min(kChunk, x.rows() - first))), first);
    });
  });
}

}  // namespace

VaeScore score_vae_rows(const comm::Communicator& comm, const io::DenseDatasetInfo& info,
                        const std::vector<io::BlockRef>& blocks, const Vae& model, int iw_samples, std::uint64_t seed,
                        const VaePassOptions& options, const VaeScoreVisitor& visit) {
  tbb::enumerable_thread_specific<VaeWorkspace> ws;
  std::vector<std::int64_t> sums(3, 0);
  const double scale = std::ldexp(1.0, kFracBits);
  for_each_local_block(comm, info, blocks, options, [&](const io::DenseBlock& block, Index local_row, tbb::task_arena& arena) {
    RowMatrixF scratch;
    const RowMatrixF& x = block.as_float32(scratch);
    RowMatrix elbo(x.rows(), 1), iwae(x.rows(), 1);
    parallel_rows(arena, x, [&](const RowMatrixF& chunk, Index first) {
      vae_elbo_rows(model, chunk, block.ref.global_row_begin + first, seed, ws.local(),
                    {elbo.data() + first, static_cast<std::size_t>(chunk.rows())});
      if (iw_samples > 0)
        vae_iwae_rows(model, chunk, block.ref.global_row_begin + first, seed, iw_samples, ws.local(),
                      {iwae.data() + first, static_cast<std::size_t>(chunk.rows())});
    });
    for (Index i = 0; i < x.rows(); ++i) {
      sums[0] += std::llround(elbo(i, 0) * scale);
      if (iw_samples > 0) sums[1] += std::llround(iwae(i, 0) * scale);
    }
    sums[2] += x.rows();
    if (visit) visit(local_row, elbo, iwae);
  });
  comm.allreduce_sum(sums);
  const auto n = static_cast<double>(sums[2]);
  VaeScore s;
  s.num_rows = sums[2];
  s.elbo = n > 0 ? std::ldexp(static_cast<double>(sums[0]), -kFracBits) / n : 0.0;
  s.iwae_log_likelihood = n > 0 ? std::ldexp(static_cast<double>(sums[1]), -kFracBits) / n : 0.0;
  return s;
}

void transform_vae_rows(const comm::Communicator& comm, const io::DenseDatasetInfo& info,
                        const std::vector<io::BlockRef>& blocks, const Vae& model, bool reconstruct,
                        const VaePassOptions& options, const VaeTransformVisitor& visit) {
  const Index l = model.architecture().latent_dim;
  tbb::enumerable_thread_specific<VaeWorkspace> ws;
  for_each_local_block(comm, info, blocks, options, [&](const io::DenseBlock& block, Index local_row, tbb::task_arena& arena) {
    RowMatrixF scratch;
    const RowMatrixF& x = block.as_float32(scratch);
    RowMatrix mean(x.rows(), l), log_var(x.rows(), l), recon(x.rows(), reconstruct ? info.num_features : 0);
    parallel_rows(arena, x, [&](const RowMatrixF& chunk, Index first) {
      VaeWorkspace& w = ws.local();
      model.encode(chunk, w);
      mean.middleRows(first, chunk.rows()) = w.mu.cast<double>();
      log_var.middleRows(first, chunk.rows()) = w.log_var.cast<double>();
      if (reconstruct) {
        const RowMatrixF z = w.mu;
        model.decode(z, w);
        recon.middleRows(first, chunk.rows()) = vae_decoded_mean(model, w.out);
      }
    });
    visit(local_row, mean, log_var, recon);
  });
}

RowMatrix vae_decoded_mean(const Vae& model, const RowMatrixF& out) {
  if (model.architecture().likelihood == VaeLikelihood::kBernoulli)
    return (1.0f + (-out.array()).exp()).inverse().matrix().cast<double>();
  return out.cast<double>();
}

void sample_vae_rows(const Vae& model, Index first, Index count, std::uint64_t seed, VaeWorkspace& workspace,
                     RowMatrix& data, RowMatrix& latent) {
  const Index l = model.architecture().latent_dim;
  RowMatrixF z(count, l);
  for (Index i = 0; i < count; ++i) {
    CounterRng rng(seed, RngPurpose::kSample, 0, static_cast<std::uint64_t>(first + i));
    for (Index j = 0; j < l; ++j) z(i, j) = static_cast<float>(rng.next_normal());
  }
  model.decode(z, workspace);
  data = vae_decoded_mean(model, workspace.out);
  latent = z.cast<double>();
}

}  // namespace latent::models
