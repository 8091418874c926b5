#include "latent/models/vae/vae_fit.hpp"

#include <fmt/format.h>
#include <oneapi/tbb/enumerable_thread_specific.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <utility>
#include <limits>
#include <numbers>
#include <numeric>

#include "latent/core/control.hpp"
#include "latent/core/error.hpp"
#include "latent/core/profile.hpp"
#include "latent/core/rng.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/io/block_source.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/models/fitted_model.hpp"
#include "latent/train/adam.hpp"
#include "latent/train/content_hash.hpp"
#include "latent/train/stochastic.hpp"

namespace latent::models {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kLossFracBits = 20;  // the loss travels with the gradient in fixed point (2^-20 nats)

void draw_noise(RowMatrixF& eps, Index rows, Index l, std::uint64_t seed, RngPurpose purpose, std::uint64_t epoch,
                Index first_row) {
  eps.resize(rows, l);
  for (Index r = 0; r < rows; ++r) {
    CounterRng rng(seed, purpose, epoch, static_cast<std::uint64_t>(first_row + r));
    for (Index j = 0; j < l; ++j) eps(r, j) = static_cast<float>(rng.next_normal());
  }
}

std::int64_t to_fixed(double x, double scale) {
  const double y = x * scale;
  return static_cast<std::int64_t>(y + (y >= 0 ? 0.5 : -0.5));
}

// The next block of a pass, float32 blocks as stored (the products take float32: a float64
// block is narrowed by DenseBlock::as_float32).
std::shared_ptr<const io::DenseBlock> next_f32(io::BlockSource& source) {
  const io::BlockSource::Float32Scope as_stored(source, true);
  return source.next();
}

// A validating pass over this rank's share of the data: values must lie in [0, 1] for a
// Bernoulli decoder (NaN/Inf are refused by the block reader). Collective (errors agreed).
// Returns the shards' content hashes (latent/train/content_hash.hpp).
std::vector<std::uint64_t> validate_data(const comm::Communicator& comm, const io::DenseDatasetInfo& info,
                                         const VaeFitConfig& c) {
  train::ContentHasher content(info.shards.size());
  comm::run_agreed(comm, [&] {
    io::BlockSourceOptions o;
    o.prefetch_blocks = c.prefetch;
    o.float32 = true;  // float32 shards hashed and checked as stored (the same hash and test)
    io::BlockSource source(info, io::rank_blocks(io::make_block_plan(info, 2048), comm.rank(), comm.size()), o);
    source.start_pass();
    while (auto block = next_f32(source)) {
      heartbeat();
      content.add(*block);
      if (c.arch.likelihood != VaeLikelihood::kBernoulli) continue;
      const auto check = [&](const auto& x) {  // finite (the reader refuses NaN/Inf)
        if (x.size() == 0 || (x.minCoeff() >= 0 && x.maxCoeff() <= 1)) return;
        for (Index i = 0; i < x.rows(); ++i)
          for (Index j = 0; j < x.cols(); ++j) {
            const auto v = static_cast<double>(x(i, j));
            if (!(v >= 0.0 && v <= 1.0))
              throw_input(fmt::format("file {}, dataset /data, row {}, column {}: value {} is outside [0, 1], which a "
                                      "Bernoulli decoder needs (dataset row {}); scale the data (latent import dense "
                                      "--scale) or use --likelihood gaussian",
                                      info.shards[static_cast<std::size_t>(block->ref.shard)].path,
                                      block->ref.row_begin + i, j, v, block->ref.global_row_begin + i));
          }
      };
      if (block->is_float32()) check(block->xf);
      else check(block->x);
    }
  });
  return content.global(comm);
}

void check_config(const VaeFitConfig& c) {
  if (c.arch.latent_dim < 1) throw_usage("--latent-dim must be at least 1");
  if (c.batch_size < 1) throw_usage("--batch-size must be at least 1");
  if (c.micro_batch_rows < 1) throw_usage("--micro-batch-rows must be at least 1");
  if (c.epochs < 1) throw_usage("--epochs must be at least 1");
  if (!(c.learning_rate > 0) || !std::isfinite(c.learning_rate)) throw_usage("--learning-rate must be positive");
  if (!(c.beta1 >= 0 && c.beta1 < 1) || !(c.beta2 >= 0 && c.beta2 < 1)) throw_usage("--beta1 and --beta2 must be in [0, 1)");
  if (!(c.adam_epsilon > 0)) throw_usage("--adam-epsilon must be positive");
  if (c.lr_schedule != "constant" && c.lr_schedule != "step" && c.lr_schedule != "cosine")
    throw_usage("--lr-schedule must be constant, step or cosine (got '" + c.lr_schedule + "')");
  if (!(c.max_grad_norm >= 0)) throw_usage("--max-grad-norm must be >= 0");
  if (!(c.validation_fraction >= 0 && c.validation_fraction < 1)) throw_usage("--validation-fraction must be in [0, 1)");
  if (c.n_iter_no_change < 1) throw_usage("--n-iter-no-change must be at least 1");
}

// The sum of per-row ELBOs of the local blocks in fixed point, and the row count, summed
// over ranks (exact). Collective.
double mean_elbo(const comm::Communicator& comm, const Vae& model, io::BlockSource& source, std::uint64_t seed,
                 tbb::task_arena& arena, tbb::enumerable_thread_specific<VaeWorkspace>& ws) {
  std::vector<std::int64_t> sums(2, 0);
  comm::run_agreed(comm, [&] {
    // Blocks in groups of a few per thread (memory stays bounded however large the split).
    const auto group = static_cast<std::size_t>(4 * std::max(1, arena.max_concurrency()));
    std::vector<std::shared_ptr<const io::DenseBlock>> blocks;
    std::vector<std::int64_t> part;
    source.start_pass();
    for (bool more = true; more;) {
      blocks.clear();
      while (blocks.size() < group) {
        auto b = next_f32(source);
        if (!b) {
          more = false;
          break;
        }
        blocks.push_back(std::move(b));
      }
      part.assign(blocks.size(), 0);
      arena.execute([&] {
        tbb::parallel_for(std::size_t{0}, blocks.size(), [&](std::size_t i) {
          RowMatrixF scratch;
          const RowMatrixF& x = blocks[i]->as_float32(scratch);
          std::vector<double> rows(static_cast<std::size_t>(x.rows()));
          vae_elbo_rows(model, x, blocks[i]->ref.global_row_begin, seed, ws.local(), rows);
          for (double v : rows) part[i] += to_fixed(v, std::ldexp(1.0, kLossFracBits));
        });
      });
      for (std::size_t i = 0; i < blocks.size(); ++i) {
        sums[0] += part[i];
        sums[1] += blocks[i]->rows();
      }
    }
  });
  comm.allreduce_sum(sums);
  return sums[1] > 0 ? std::ldexp(static_cast<double>(sums[0]), -kLossFracBits) / static_cast<double>(sums[1]) : 0.0;
}

// An int64 as two doubles (exact at any magnitude), for checkpoint scalars.
double high_part(std::int64_t x) { return std::floor(static_cast<double>(x) / 4294967296.0); }
double low_part(std::int64_t x) { return static_cast<double>(x) - high_part(x) * 4294967296.0; }
std::int64_t from_parts(double high, double low) {
  return static_cast<std::int64_t>(high) * 4294967296LL + static_cast<std::int64_t>(low);
}

RowMatrix as_rows(std::span<const float> v) {
  RowMatrix m(static_cast<Index>(v.size()), 1);
  for (std::size_t i = 0; i < v.size(); ++i) m(static_cast<Index>(i), 0) = v[i];
  return m;
}

void from_rows(const RowMatrix& m, std::span<float> v, const std::string& name) {
  if (m.size() != static_cast<Index>(v.size())) throw_input("checkpoint: " + name + " has the wrong size for this VAE");
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(m(static_cast<Index>(i), 0));
}

// The micro-batch plan: training blocks [0, nt), validation blocks [nt, nb).
struct VaePlan {
  std::vector<io::BlockRef> blocks;
  Index micro = 0, nt = 0, nv = 0, per_step = 0, steps_per_epoch = 0;
};

VaePlan make_plan(const io::DenseDatasetInfo& info, const VaeFitConfig& c) {
  VaePlan plan;
  plan.micro = std::min(c.micro_batch_rows, c.batch_size);
  plan.blocks = io::make_block_plan(info, plan.micro);
  const auto nb = static_cast<Index>(plan.blocks.size());
  plan.nv = c.validation_fraction > 0
                ? std::max<Index>(1, static_cast<Index>(std::llround(c.validation_fraction * static_cast<double>(nb))))
                : 0;
  if (plan.nv >= nb) throw_usage("--validation-fraction leaves no training rows");
  plan.nt = nb - plan.nv;
  plan.per_step = (c.batch_size + plan.micro - 1) / plan.micro;
  plan.steps_per_epoch = (plan.nt + plan.per_step - 1) / plan.per_step;
  return plan;
}

}  // namespace

Index vae_steps_per_epoch(const io::DenseDatasetInfo& info, const VaeFitConfig& config) {
  return make_plan(info, config).steps_per_epoch;
}

double vae_elbo_rows(const Vae& model, const RowMatrixF& x, Index global_row_begin, std::uint64_t seed, VaeWorkspace& w,
                     std::span<double> elbo_rows) {
  RowMatrixF eps;
  draw_noise(eps, x.rows(), model.architecture().latent_dim, seed, RngPurpose::kVaeEval, 0, global_row_begin);
  const double total = model.loss(x, eps, w, {}, elbo_rows);
  return x.rows() > 0 ? -total / static_cast<double>(x.rows()) : 0.0;
}

void vae_iwae_rows(const Vae& model, const RowMatrixF& x, Index global_row_begin, std::uint64_t seed, int k,
                   VaeWorkspace& w, std::span<double> out) {
  const Index l = model.architecture().latent_dim;
  constexpr Index kChunk = 256;
  model.encode(x, w);
  const RowMatrixF mu = w.mu, log_var = w.log_var;
  RowMatrixF eps, z, xr;
  std::vector<double> ll;
  for (Index r = 0; r < x.rows(); ++r) {
    CounterRng rng(seed, RngPurpose::kVaeEval, 1, static_cast<std::uint64_t>(global_row_begin + r));
    const double log_var_sum = static_cast<double>(log_var.row(r).sum());
    double max_log_w = -std::numeric_limits<double>::infinity(), sum = 0;
    for (Index first = 0; first < k; first += kChunk) {
      const Index n = std::min<Index>(kChunk, k - first);
      eps.resize(n, l);
      for (Index i = 0; i < n; ++i)
        for (Index j = 0; j < l; ++j) eps(i, j) = static_cast<float>(rng.next_normal());
      z = (eps.array().rowwise() * (0.5f * log_var.row(r).array()).exp()).matrix();
      z.rowwise() += mu.row(r);
      model.decode(z, w);
      xr = x.row(r).replicate(n, 1);
      ll.resize(static_cast<std::size_t>(n));
      model.log_likelihood_rows(xr, w.out, ll);
      for (Index i = 0; i < n; ++i) {
        // log p(z) − log q(z|x) = −½ Σ (z² − ε² − log σ²).
        const double log_prior_ratio =
            -0.5 * (static_cast<double>(z.row(i).squaredNorm()) - static_cast<double>(eps.row(i).squaredNorm()) - log_var_sum);
        const double lw = ll[static_cast<std::size_t>(i)] + log_prior_ratio;
        if (lw > max_log_w) {
          sum = sum * std::exp(max_log_w - lw) + 1.0;
          max_log_w = lw;
        } else {
          sum += std::exp(lw - max_log_w);
        }
      }
    }
    out[static_cast<std::size_t>(r)] = max_log_w + std::log(sum) - std::log(static_cast<double>(k));
  }
}

VaeFitResult fit_vae(const comm::Communicator& comm, const io::DenseDatasetInfo& info, VaeFitConfig c, const Logger& log,
                     const VaeObserver& observer, train::FitControl* control) {
  check_config(c);
  // Every rank must have the kernels (a mixed cluster would otherwise fail on some ranks).
  comm::run_agreed(comm, [&] {
    if (c.matmul_precision == matmul::Precision::kMedium) matmul::require(c.matmul_precision);
  });
  c.arch.input_dim = info.num_features;
  const std::vector<std::uint64_t> shard_hashes = validate_data(comm, info, c);
  if (control != nullptr) {
    control->set_data_content(train::content_json(info.shards, shard_hashes));
  }
  VaeFitResult result;
  result.model = Vae(c.arch);
  Vae& model = result.model;
  model.init_parameters(c.seed);
  const auto p = static_cast<std::size_t>(model.num_parameters());

  // The schedule: micro-batches of the global plan; the last fraction is validation.
  const VaePlan vp = make_plan(info, c);
  const auto& plan = vp.blocks;
  const Index nb = static_cast<Index>(plan.size()), nv = vp.nv, nt = vp.nt, per_step = vp.per_step;
  const Index steps_per_epoch = vp.steps_per_epoch;
  // Rank r's share of minibatch `sid`: a contiguous range of the step's micro-batches
  // (io::rank_blocks), its count in closed form.
  const auto blocks_of = [&](Index sid, int r) {
    const Index count = std::min(per_step, nt - sid * per_step);
    const io::BlockRange range = io::rank_block_range(count, r, comm.size());
    return static_cast<std::size_t>(range.last - range.first);
  };
  const auto step_blocks = [&](Index sid) { return static_cast<Index>(blocks_of(sid, comm.rank())); };
  // Float32 shards' rows stay float32 (half the bytes read and cached; no widened copy).
  const auto stream_options = [&](std::size_t cache_bytes) {
    io::BlockSourceOptions o;
    o.prefetch_blocks = c.prefetch;
    o.cache_bytes = cache_bytes;
    o.float32 = true;
    return o;
  };
  // The rank's blocks in the order of `order` (cached across epochs only without shuffling).
  const auto open_epoch = [&](const std::vector<Index>& order) {
    std::vector<io::BlockRef> refs;
    for (Index sid : order) {
      const Index first = sid * per_step, count = std::min(per_step, nt - first);
      const std::vector<io::BlockRef> mine = io::rank_blocks(plan, first, first + count, comm.rank(), comm.size());
      refs.insert(refs.end(), mine.begin(), mine.end());
    }
    return std::make_unique<io::BlockSource>(info, std::move(refs), stream_options(c.shuffle ? 0 : c.cache_bytes));
  };
  // Every step but the last has per_step micro-batches: the first and the last step cover
  // every step's shares.
  std::size_t max_any = 0;  // micro-batches of any rank in any step
  for (const Index sid : {Index{0}, steps_per_epoch - 1})
    for (int r = 0; r < comm.size(); ++r) max_any = std::max(max_any, blocks_of(sid, r));
  Index max_local = 0;
  for (const Index sid : {Index{0}, steps_per_epoch - 1}) max_local = std::max(max_local, step_blocks(sid));
  for (Index b = 0; b < nt; ++b) result.num_train_rows += plan[static_cast<std::size_t>(b)].num_rows;
  for (Index b = nt; b < nb; ++b) result.num_validation_rows += plan[static_cast<std::size_t>(b)].num_rows;
  std::vector<io::BlockRef> val_refs = io::rank_blocks(plan, nt, nt + nv, comm.rank(), comm.size());
  std::unique_ptr<io::BlockSource> train_source;
  std::unique_ptr<io::BlockSource> val_source;
  if (nv > 0) val_source = std::make_unique<io::BlockSource>(info, std::move(val_refs), stream_options(c.cache_bytes));

  // Adam state (Kingma & Ba 2015, Alg. 1; PyTorch's placement of ε).
  LineFloats m(p, 0.0f), v(p, 0.0f);  // on cache lines, like θ: Adam reads 64 bytes at a time
  std::vector<float> best_params;
  std::int64_t step = 0, epoch_loss = 0, epoch_rows = 0;
  int start_epoch = 0, no_improve = 0;
  Index resume_step = 0;  // steps of the current epoch already taken (a mid-epoch checkpoint)
  double best = -std::numeric_limits<double>::infinity(), prev_score = 0;
  if (control != nullptr) {
    if (auto state = control->resume()) {
      from_rows(state->array("parameters"), model.parameters(), "parameters");
      from_rows(state->array("adam_m"), m, "adam_m");
      from_rows(state->array("adam_v"), v, "adam_v");
      step = static_cast<std::int64_t>(state->scalar("step"));
      start_epoch = static_cast<int>(state->scalar("epoch"));
      resume_step = static_cast<Index>(state->scalar("step_in_epoch"));
      epoch_loss = from_parts(state->scalar("epoch_loss_high"), state->scalar("epoch_loss_low"));
      epoch_rows = from_parts(state->scalar("epoch_rows_high"), state->scalar("epoch_rows_low"));
      no_improve = static_cast<int>(state->scalar("no_improve"));
      best = state->scalar("best");
      prev_score = state->scalar("prev_score");
      if (state->arrays.count("best_parameters") != 0) {
        best_params.resize(p);
        from_rows(state->array("best_parameters"), best_params, "best_parameters");
      }
      result.em = train::load_history(*state);
      result.validation_elbo = state->scalar("validation_elbo");
    }
  }

  tbb::task_arena arena(std::max(1, c.threads));
  tbb::enumerable_thread_specific<VaeWorkspace> ws;
  // The packed weights of the products (update_parameters keeps them current), for the
  // job's kernel variant (core/kernel.hpp).
  const auto prepare = [&] { arena.execute([&] { model.prepare(c.matmul_precision); }); };
  prepare();
  // Aligned buffers (Eigen's allocator): where a product's destination starts relative to
  // a packet boundary (EIGEN_MAX_ALIGN_BYTES) decides which entries Eigen computes on its scalar path, and the
  // scalar and vector paths round differently (fused multiply-add).
  //
  // Ranks on one node (and no clipping, which needs the summed gradient's norm first) keep
  // their micro-batch gradients in node-shared memory (comm::NodeSharedMemory): after the
  // step's flags are agreed, every rank forms the step's integer sums from every rank's
  // gradients in place, inside its Adam pass, as one rank does from its own. No pass onto
  // the grid, no allreduce of the 8P-byte sums: the same integers, so the same bits. Two
  // buffers a rank, by step parity: a rank writes step t + 1's gradients while another may
  // still read step t's, and cannot reach step t + 2 before every rank has passed step t + 1's
  // agreement (which follows its step-t update). Segments start on 64-byte cache lines, like Packed's own words.
  //
  // The update is sharded too: rank r runs Adam on the model's segments that start in
  // [P·r/R, P·(r+1)/R) only, keeping the node's one copy of m and v and publishing its new
  // parameters in rank 0's segment; after a barrier every rank copies the other shares'
  // biases and log-variances into its own parameters (their weight rows only when the
  // parameters are read whole: take_shares below). The packed weights the products read
  // are one copy in rank 0's segment too: each rank repacks the segments it updated. Adam
  // is elementwise, so the same bits. The next writes to the published parameters follow
  // the next step's agreement, which every rank reaches only after its copy.
  const std::size_t grad_stride = (p + 15) / 16 * 16;  // floats per gradient: whole 64-byte lines
  const std::size_t grad_bytes = 2 * max_any * grad_stride * sizeof(float);
  std::unique_ptr<comm::NodeSharedMemory> shared;
  if (!(c.max_grad_norm > 0))
    shared = comm::NodeSharedMemory::create(
        comm, grad_bytes + (comm.rank() == 0 ? 3 * grad_stride * sizeof(float) + model.packed_words() * 4 : 0));
  // m and v as the update reads them, and this rank's share of the entries.
  std::span<float> m_all(m), v_all(v);
  float* published = nullptr;
  const std::size_t share_lo = p * static_cast<std::size_t>(comm.rank()) / static_cast<std::size_t>(comm.size());
  const std::size_t share_hi = p * static_cast<std::size_t>(comm.rank() + 1) / static_cast<std::size_t>(comm.size());
  if (shared) {
    float* state = reinterpret_cast<float*>(shared->segment(0) + grad_bytes);
    m_all = {state, p};
    v_all = {state + grad_stride, p};
    published = state + 2 * grad_stride;
    // One copy of the packed weights for the node: each rank repacks the segments it updates.
    model.place_packs(reinterpret_cast<std::uint32_t*>(state + 3 * grad_stride), comm.rank() == 0);
    std::copy(m.begin() + static_cast<std::ptrdiff_t>(share_lo), m.begin() + static_cast<std::ptrdiff_t>(share_hi), m_all.begin() + static_cast<std::ptrdiff_t>(share_lo));
    std::copy(v.begin() + static_cast<std::ptrdiff_t>(share_lo), v.begin() + static_cast<std::ptrdiff_t>(share_hi), v_all.begin() + static_cast<std::ptrdiff_t>(share_lo));
    m = LineFloats();
    v = LineFloats();
    shared->fence(comm);
  }
  // The other ranks' shares of the parameters, from the published copy: after every step
  // only the entries the products do not read through the shared packs (biases,
  // log-variances); the weight rows only where the parameters are read whole (snapshots,
  // the best parameters, the end), at a step boundary, when the published copy is complete
  // and no rank writes it until every rank has entered the next step's agreement.
  bool theta_whole = true;
  const auto take_shares = [&](Vae::Segments which) {
    arena.execute([&] {
      const auto take = [&](float* theta, std::size_t offset, std::size_t n) { std::copy_n(published + offset, n, theta + offset); };
      model.update_parameters(take, 0, share_lo, false, which);
      model.update_parameters(take, share_hi, p, false, which);
    });
  };
  const auto whole_theta = [&] {
    if (theta_whole) return;
    take_shares(Vae::Segments::kAll);
    theta_whole = true;
  };
  // Gradient i of this step on rank r: in the shared segment, or this rank's own buffers.
  const auto shared_grad = [&](int r, std::int64_t update, std::size_t i) {
    return reinterpret_cast<float*>(shared->segment(r)) + (static_cast<std::size_t>(update % 2) * max_any + i) * grad_stride;
  };
  std::vector<Eigen::VectorXf> grads(shared ? 0 : static_cast<std::size_t>(max_local), Eigen::VectorXf(static_cast<Index>(p)));
  std::vector<const float*> grad_ptrs;  // the gradients the fused Adam pass sums
  std::vector<double> block_loss(static_cast<std::size_t>(max_local)), block_max(static_cast<std::size_t>(max_local));
  // One rank without clipping, or ranks sharing a node's memory: the step's integer sums are
  // formed inside the update (the same integers, one pass over memory fewer), and only the
  // step's rows and loss are summed here; otherwise the P sums are too (then rows and loss).
  const bool fused = (comm.size() == 1 && !(c.max_grad_norm > 0)) || shared;
  std::vector<std::int64_t> acc(fused ? 2 : p + 2);
  const std::size_t rows_at = acc.size() - 2;
  std::vector<std::shared_ptr<const io::DenseBlock>> blocks;
  const FaultPlan& fault = FaultPlan::get();
  const double loss_scale = std::ldexp(1.0, kLossFracBits);

  // Everything an exact resume needs, at a step boundary (`next_epoch`, `step_in_epoch`
  // steps into it).
  const auto snapshot = [&](int next_epoch, Index step_in_epoch) {
    whole_theta();
    train::TrainState st;
    st.arrays["parameters"] = as_rows(std::as_const(model).parameters());
    st.arrays["adam_m"] = as_rows(m_all);
    st.arrays["adam_v"] = as_rows(v_all);
    if (!best_params.empty()) st.arrays["best_parameters"] = as_rows(best_params);
    st.scalars["step"] = static_cast<double>(step);
    st.scalars["epoch"] = next_epoch;
    st.scalars["step_in_epoch"] = static_cast<double>(step_in_epoch);
    st.scalars["epoch_loss_high"] = high_part(step_in_epoch > 0 ? epoch_loss : 0);
    st.scalars["epoch_loss_low"] = low_part(step_in_epoch > 0 ? epoch_loss : 0);
    st.scalars["epoch_rows_high"] = high_part(step_in_epoch > 0 ? epoch_rows : 0);
    st.scalars["epoch_rows_low"] = low_part(step_in_epoch > 0 ? epoch_rows : 0);
    st.scalars["no_improve"] = no_improve;
    st.scalars["best"] = best;
    st.scalars["prev_score"] = prev_score;
    st.scalars["validation_elbo"] = result.validation_elbo;
    train::save_history(result.em, st);
    return st;
  };

  // The epoch loop, minibatch order, mid-epoch resume and checkpoint boundaries are the
  // stochastic trainer's (latent/train/stochastic.hpp); here: one Adam step and an epoch's scores.
  double lr = 0;
  Clock::time_point t0;
  train::StochasticSteps steps;
  steps.begin_epoch = [&](int e, const std::vector<Index>& order, Index first_step) {
    t0 = Clock::now();
    profile::begin_iteration();
    lr = train::epoch_learning_rate(c.lr_schedule, c.learning_rate, c.lr_gamma, c.lr_step_size, c.epochs, e);
    if (c.shuffle || !train_source) train_source = open_epoch(order);
    train_source->start_pass();
    if (first_step == 0) epoch_loss = epoch_rows = 0;
  };
  // Resumed mid-epoch: pass over the blocks of the steps already taken.
  steps.skip = [&](Index sid) {
    for (Index i = 0; i < step_blocks(sid); ++i) train_source->next();
  };
  steps.step = [&](int epoch, Index, Index sid, std::int64_t) {
    const auto nloc = static_cast<std::size_t>(step_blocks(sid));
    std::exception_ptr error;
    std::vector<double> flags(2, 0.0);  // largest |gradient entry|, non-finite seen
    try {
      if (fault.due(comm.rank(), static_cast<int>(step + 1), "throw"))
        throw std::runtime_error("injected fault (LATENT_FAULT kind=throw) in step " + std::to_string(step + 1));
      blocks.clear();
      for (std::size_t i = 0; i < nloc; ++i) {
        auto b = next_f32(*train_source);
        if (!b) throw Error(ErrorKind::kIo, "data " + info.location + ": a block ended the pass early");
        blocks.push_back(std::move(b));
      }
      heartbeat();
      arena.execute([&] {
        tbb::parallel_for(std::size_t{0}, nloc, [&](std::size_t i) {
          const io::DenseBlock& b = *blocks[i];
          RowMatrixF scratch;
          const RowMatrixF& x = b.as_float32(scratch);
          RowMatrixF eps;
          draw_noise(eps, x.rows(), c.arch.latent_dim, c.seed, RngPurpose::kVaeNoise, static_cast<std::uint64_t>(step + 1),
                     b.ref.global_row_begin);
          float mx = 0;  // max |gradient entry|, NaN/Inf if one is
          float* g = shared ? shared_grad(comm.rank(), step + 1, i) : grads[i].data();
          block_loss[i] = model.loss(x, eps, ws.local(), {g, p}, {}, &mx);
          block_max[i] = std::isfinite(block_loss[i]) && std::isfinite(mx) ? mx : std::numeric_limits<double>::infinity();
        });
      });
      for (std::size_t i = 0; i < nloc; ++i) {
        if (!std::isfinite(block_max[i])) flags[1] = 1;
        else flags[0] = std::max(flags[0], block_max[i]);
      }
    } catch (...) {
      error = std::current_exception();
    }
    if (shared) shared->sync();  // this rank's gradients are written ...
    comm.agree(error);
    comm.allreduce_max(flags);
    if (shared) shared->sync();  // ... and every rank's can be read
    if (flags[1] > 0)
      throw_numerical(fmt::format("the loss or its gradient became NaN/Inf at epoch {}, step {}; the parameters were not "
                                  "updated and the last checkpoint is intact. Lower --learning-rate or set --max-grad-norm",
                                  epoch + 1, step + 1));
    // The grid: the sum of the step's micro-batch gradients cannot exceed 2^61.
    const Index global_blocks = std::min(per_step, nt - sid * per_step);
    const double bound = flags[0] * static_cast<double>(global_blocks);
    const int bits = bound > 0 ? std::clamp(61 - static_cast<int>(std::ceil(std::log2(bound))) - 1, -1000, 1000) : 0;
    const double scale = std::ldexp(1.0, bits);
    grad_ptrs.clear();
    if (shared) {
      for (int r = 0; r < comm.size(); ++r)
        for (std::size_t i = 0, n = blocks_of(sid, r); i < n; ++i) grad_ptrs.push_back(shared_grad(r, step + 1, i));
    } else if (fused) {
      for (std::size_t i = 0; i < nloc; ++i) grad_ptrs.push_back(grads[i].data());
    }
    if (!fused) arena.execute([&] {
      tbb::parallel_for(tbb::blocked_range<std::size_t>(0, p, 16384), [&](const tbb::blocked_range<std::size_t>& r) {
        std::int64_t* out = acc.data() + r.begin();
        if (nloc == 0) std::fill(out, out + r.size(), std::int64_t{0});  // no share of this step
        for (std::size_t i = 0; i < nloc; ++i) train::add_to_grid(grads[i].data() + r.begin(), out, r.size(), scale, i > 0);
      });
    });
    std::int64_t rows = 0, loss_fixed = 0;
    for (std::size_t i = 0; i < nloc; ++i) {
      rows += blocks[i]->rows();
      loss_fixed += to_fixed(block_loss[i], loss_scale);
    }
    acc[rows_at] = rows;
    acc[rows_at + 1] = loss_fixed;
    comm.allreduce_sum(acc);
    const auto step_rows = static_cast<double>(acc[rows_at]);
    epoch_rows += acc[rows_at];
    epoch_loss += acc[rows_at + 1];
    // The mean gradient, clipped (PyTorch's clip_grad_norm_), then Adam on every rank.
    std::optional<profile::ScopedTimer> m_step_timer(std::in_place, profile::Counter::kMstepSeconds);
    const double to_mean = std::ldexp(1.0, -bits) / step_rows;
    double clip = 1.0;
    if (c.max_grad_norm > 0) {
      double norm2 = 0;
      for (std::size_t j = 0; j < p; ++j) {
        const double g = static_cast<double>(acc[j]) * to_mean;
        norm2 += g * g;
      }
      if (std::sqrt(norm2) > c.max_grad_norm) clip = c.max_grad_norm / (std::sqrt(norm2) + 1e-6);
    }
    ++step;
    train::AdamStep adam;
    adam.beta1 = c.beta1;
    adam.beta2 = c.beta2;
    adam.eps = static_cast<float>(c.adam_epsilon);
    adam.step_size = static_cast<float>(lr / (1.0 - std::pow(c.beta1, static_cast<double>(step))));
    adam.sqrt_bc2 = static_cast<float>(std::sqrt(1.0 - std::pow(c.beta2, static_cast<double>(step))));
    adam.grad_scale = to_mean * clip;
    const std::span<const float* const> step_grads(grad_ptrs);
    float* mp = m_all.data();
    float* vd = v_all.data();
    const std::int64_t* sum = fused ? nullptr : acc.data();
    // Segment by segment; a prepared model's packed weights are rebuilt as each segment is
    // updated (the result does not depend on the segments, see latent/train/adam.hpp).
    if (!shared) {
      arena.execute([&] {
        model.update_parameters([&](float* theta, std::size_t offset, std::size_t n) {
          train::adam_update(adam, step_grads, scale, sum, theta, mp, vd, offset, n);
        });
      });
    } else {  // this rank's share, published; then the others' shares
      arena.execute([&] {
        model.update_parameters(
            [&](float* theta, std::size_t offset, std::size_t n) {
              train::adam_update(adam, step_grads, scale, sum, theta, mp, vd, offset, n);
              std::copy_n(theta + offset, n, published + offset);
            },
            share_lo, share_hi);
      });
      shared->fence(comm);
      take_shares(Vae::Segments::kUnpacked);
      theta_whole = false;
    }
    m_step_timer.reset();
  };
  steps.end_epoch = [&](int epoch) {
    train_source->cancel_pass();
    const double train_elbo = epoch_rows > 0 ? -std::ldexp(static_cast<double>(epoch_loss), -kLossFracBits) / static_cast<double>(epoch_rows) : 0.0;
    double score = train_elbo, val_elbo = 0;
    if (val_source) {
      val_elbo = mean_elbo(comm, model, *val_source, c.seed, arena, ws);
      score = val_elbo;
    }
    // scikit-learn's MLP rule (BaseMultilayerPerceptron._update_no_improvement_count): an
    // epoch counts as no improvement when the score is below the best + tol; the best
    // parameters (with a validation split) are kept on any improvement of the best.
    if (score < best + c.tol) ++no_improve;
    else no_improve = 0;
    if (score > best) {
      best = score;
      if (val_source) {
        whole_theta();
        const auto params = std::as_const(model).parameters();
        best_params.assign(params.begin(), params.end());
        result.validation_elbo = val_elbo;
      }
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    train::IterationRecord rec{epoch + 1, train_elbo, epoch == 0 && result.em.history.empty() ? 0.0 : score - prev_score,
                               seconds, seconds > 0 ? static_cast<double>(epoch_rows) / seconds : 0.0};
    prev_score = score;
    result.em.history.push_back(rec);
    result.em.n_iter = epoch + 1;
    result.em.objective = train_elbo;
    if (no_improve >= c.n_iter_no_change) result.em.converged = true;
    if (observer) observer(rec, val_elbo);
    return result.em.converged;
  };
  steps.snapshot = [&](const train::StochasticPosition& at) { return snapshot(at.epoch, at.step_in_epoch); };
  if (!result.em.converged) {
    train::StochasticOptions options;
    options.epochs = c.epochs;
    options.steps_per_epoch = steps_per_epoch;
    options.shuffle = c.shuffle;
    options.seed = c.seed;
    options.shuffle_purpose = RngPurpose::kVaeShuffle;
    train::run_stochastic(options, {start_epoch, resume_step, step}, steps, train::boundary_of(control));
  }
  if (shared) {
    whole_theta();
    model.own_packs();  // the model outlives the window
  }
  if (val_source && !best_params.empty()) {
    std::copy(best_params.begin(), best_params.end(), model.parameters().begin());
    prepare();
  }
  result.steps = step;
  (void)log;
  return result;
}

void save_vae(const Vae& model, const std::string& config_json, const train::EmResult& em, Index n_samples,
              const std::string& data_location, const std::string& path, bool overwrite) {
  io::H5Writer w(path, overwrite);
  write_fit_record(w, "vae", FitRecord{config_json, em, n_samples, data_location});
  const VaeArchitecture& a = model.architecture();
  const auto params = model.parameters();
  const auto write_net = [&](const std::string& name, const std::vector<VaeLayer>& layers) {
    for (std::size_t i = 0; i < layers.size(); ++i) {
      const VaeLayer& l = layers[i];
      const RowMatrix weight = Eigen::Map<const RowMatrixF>(params.data() + l.weight_offset, l.out, l.in).cast<double>();
      w.write(fmt::format("{}/{}/weight", name, i), weight);
      std::vector<double> bias(params.begin() + l.bias_offset, params.begin() + l.bias_offset + l.out);
      w.write(fmt::format("{}/{}/bias", name, i), std::span<const double>(bias));
    }
  };
  write_net("encoder", model.encoder_layers());
  write_net("decoder", model.decoder_layers());
  if (a.likelihood == VaeLikelihood::kGaussian) {
    std::vector<double> lv(static_cast<std::size_t>(a.input_dim), a.fixed_log_variance);
    if (model.log_variance_offset() >= 0)
      for (Index d = 0; d < a.input_dim; ++d) lv[static_cast<std::size_t>(d)] = params[static_cast<std::size_t>(model.log_variance_offset() + d)];
    w.write("log_variance", std::span<const double>(lv));
  }
  std::vector<std::int64_t> hidden(a.hidden.begin(), a.hidden.end());
  w.write("hidden", std::span<const std::int64_t>(hidden));
  w.attr("/", "input_dim", static_cast<std::int64_t>(a.input_dim));
  w.attr("/", "latent_dim", static_cast<std::int64_t>(a.latent_dim));
  w.attr("/", "activation", to_string(a.activation));
  w.attr("/", "likelihood", to_string(a.likelihood));
  w.attr("/", "learn_variance", static_cast<std::int64_t>(a.learn_variance ? 1 : 0));
  w.commit();
}

Vae load_vae(const std::string& path) {
  io::H5Reader r(path);
  const std::string where = "model " + path;
  if (!r.has_attr("/", "model") || r.attr_string("/", "model") != "vae") throw_input(where + ": is not a vae model");
  VaeArchitecture a;
  for (const char* name : {"input_dim", "latent_dim", "activation", "likelihood", "learn_variance"})
    if (!r.has_attr("/", name)) throw_input(where + ": root attribute " + name + " is missing");
  a.input_dim = r.attr_int("/", "input_dim");
  a.latent_dim = r.attr_int("/", "latent_dim");
  if (a.input_dim < 1 || a.latent_dim < 1 || a.input_dim > (Index{1} << 26) || a.latent_dim > (Index{1} << 20))
    throw_input(where + ": input_dim/latent_dim out of range");
  a.activation = parse_vae_activation(r.attr_string("/", "activation"));
  a.likelihood = parse_vae_likelihood(r.attr_string("/", "likelihood"));
  a.learn_variance = r.attr_int("/", "learn_variance") != 0;
  if (!r.has("hidden")) throw_input(where + ": dataset /hidden is missing");
  for (std::int64_t h : r.read_int64("hidden")) {
    if (h < 1 || h > (Index{1} << 24)) throw_input(where + ": /hidden has a width out of range");
    a.hidden.push_back(h);
  }
  std::vector<double> log_var;
  if (a.likelihood == VaeLikelihood::kGaussian) {
    if (!r.has("log_variance")) throw_input(where + ": dataset /log_variance is missing");
    log_var = r.read_doubles("log_variance");
    if (static_cast<Index>(log_var.size()) != a.input_dim) throw_input(where + ": /log_variance must have input_dim entries");
    a.fixed_log_variance = log_var[0];
  }
  Vae model(a);
  auto params = model.parameters();
  const auto read_net = [&](const std::string& name, const std::vector<VaeLayer>& layers) {
    for (std::size_t i = 0; i < layers.size(); ++i) {
      const VaeLayer& l = layers[i];
      const std::string wn = fmt::format("{}/{}/weight", name, i), bn = fmt::format("{}/{}/bias", name, i);
      if (!r.has(wn) || !r.has(bn)) throw_input(where + ": dataset /" + wn + " or /" + bn + " is missing");
      const std::vector<Index> ws = r.shape(wn), bs = r.shape(bn);
      if (ws.size() != 2 || ws[0] != l.out || ws[1] != l.in || bs.size() != 1 || bs[0] != l.out)
        throw_input(fmt::format("{}: /{} must be {} x {} and /{} {} long", where, wn, l.out, l.in, bn, l.out));
      const RowMatrix weight = r.read_matrix(wn);
      const std::vector<double> bias = r.read_doubles(bn);
      if (!weight.allFinite()) throw_input(where + ": /" + wn + " has NaN or infinite entries");
      Eigen::Map<RowMatrixF>(params.data() + l.weight_offset, l.out, l.in) = weight.cast<float>();
      for (Index o = 0; o < l.out; ++o) params[static_cast<std::size_t>(l.bias_offset + o)] = static_cast<float>(bias[static_cast<std::size_t>(o)]);
    }
  };
  read_net("encoder", model.encoder_layers());
  read_net("decoder", model.decoder_layers());
  if (model.log_variance_offset() >= 0)
    for (Index d = 0; d < a.input_dim; ++d)
      params[static_cast<std::size_t>(model.log_variance_offset() + d)] = static_cast<float>(log_var[static_cast<std::size_t>(d)]);
  // Evaluation (score, transform, sample) in float32 with the packed kernels where the CPU has them.
  model.prepare(matmul::Precision::kHighest);
  return model;
}

}  // namespace latent::models
