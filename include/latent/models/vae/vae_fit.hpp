#pragma once
/// \file Distributed minibatch training of a VAE (Kingma & Welling 2014) with Adam
/// (Kingma & Ba 2015).
///
/// Schedule (docs/ARCHITECTURE.md §5): the training rows are cut into micro-batches of
/// micro_batch_rows rows (the global block plan; a shard's last block may be short); a
/// minibatch is ceil(batch_size / micro_batch_rows) consecutive micro-batches in storage
/// order; with `shuffle` the minibatches of each epoch are visited in an order drawn from
/// (seed, epoch) (their contents stay fixed, so streaming reads stay sequential within a
/// micro-batch).
/// Each rank computes the gradients of a contiguous share of every minibatch's
/// micro-batches, one thread per micro-batch. The micro-batch gradients are added in 64-bit
/// fixed point (rounded to nearest, ties to even: latent/train/adam.hpp) on a grid chosen
/// from the global largest gradient entry (one small max allreduce), so their sum is
/// exact; one allreduce of the flat integer gradient (with the loss and row count)
/// follows, and every rank takes the same Adam step. The trained
/// parameters are therefore bitwise identical for any number of ranks and threads.
/// The reparameterisation noise of row r at step t is drawn from (seed, t, r).
#include <cstdint>
#include <functional>
#include <string>

#include "latent/comm/communicator.hpp"
#include "latent/core/log.hpp"
#include "latent/io/dense_dataset.hpp"
#include "latent/models/vae/vae.hpp"
#include "latent/train/batch_em.hpp"
#include "latent/train/checkpoint.hpp"

namespace latent::models {

struct VaeFitConfig {
  VaeArchitecture arch;            ///< input_dim is taken from the data
  Index batch_size = 128;          ///< rows per optimiser step (global)
  /// Rows per micro-batch, the unit of gradient computation and of parallelism (a step has
  /// ceil(batch_size / micro_batch_rows) of them to spread over ranks × threads). The bits
  /// depend on it, never on the rank or thread count. Larger is faster per core (each
  /// micro-batch writes and the step reads back one P-float gradient, and the weight-gradient
  /// products run longer along the rows).
  Index micro_batch_rows = 64;
  /// Products of the layers: kHighest (float32) or kMedium (bfloat16 operands, float32
  /// sums; needs AVX512_BF16 on every rank). PyTorch's torch.set_float32_matmul_precision.
  matmul::Precision matmul_precision = matmul::Precision::kHighest;
  int epochs = 10;                 ///< passes over the training rows (scikit-learn's max_iter)
  bool shuffle = false;            ///< visit each epoch's minibatches in a seeded random order
  double learning_rate = 1e-3;
  double beta1 = 0.9, beta2 = 0.999, adam_epsilon = 1e-8;
  std::string lr_schedule = "constant";  ///< constant | step | cosine (per epoch)
  int lr_step_size = 10;           ///< step: multiply by lr_gamma every this many epochs
  double lr_gamma = 0.1;
  double max_grad_norm = 0;        ///< clip the global gradient's L2 norm (0: off)
  double validation_fraction = 0;  ///< the last fraction of the micro-batches, held out
  int n_iter_no_change = 10;       ///< stop after this many epochs whose score is below the best + tol
  double tol = 1e-4;               ///< nats per sample
  std::uint64_t seed = 0;
  int threads = 1;
  int prefetch = 4;
  std::size_t cache_bytes = 0;
};

struct VaeFitResult {
  Vae model;
  /// Per epoch: objective = mean training ELBO (nats per sample, at the parameters of
  /// each step, as PyTorch's running loss), change = improvement of the monitored score.
  train::EmResult em;
  double validation_elbo = 0;  ///< best mean validation ELBO (nats per sample), if any
  Index num_train_rows = 0, num_validation_rows = 0;
  std::int64_t steps = 0;
};

using VaeObserver = std::function<void(const train::IterationRecord&, double validation_elbo)>;

/// Validates the data (finite; within [0, 1] for a Bernoulli decoder: Error(kInput)
/// naming file, dataset, row and column), then trains. Collective: every rank calls it
/// with the same arguments. Throws Error(kNumerical) if the loss or gradient becomes NaN or
/// infinite (before the update: parameters and the last checkpoint are intact), and
/// Error(kRequeue) after a stop signal (FitControl). FitControl::boundary is called after
/// every step with the global step count as the iteration (checkpoints every N steps, stop
/// signals honoured within a step); a mid-epoch checkpoint resumes exactly.
VaeFitResult fit_vae(const comm::Communicator& comm, const io::DenseDatasetInfo& info, VaeFitConfig config,
                     const Logger& log, const VaeObserver& observer, train::FitControl* control);

/// Optimiser steps per epoch for this data and configuration (the training micro-batches
/// grouped into minibatches). Throws Error(kUsage) if the validation split leaves nothing.
Index vae_steps_per_epoch(const io::DenseDatasetInfo& info, const VaeFitConfig& config);

/// The mean ELBO (nats per row) of `rows` local rows x (B × D) with ε keyed by (seed,
/// kVaeEval, 0, global row). Used for validation and `latent score`. Local, thread-safe.
double vae_elbo_rows(const Vae& model, const RowMatrixF& x, Index global_row_begin, std::uint64_t seed,
                     VaeWorkspace& w, std::span<double> elbo_rows);

/// The importance-weighted estimate of log p(x) of each row (Burda et al. 2016, eq. 8):
/// log (1/k Σ_j p(x, z_j) / q(z_j|x)), z_j ~ q(z|x) keyed by (seed, kVaeEval, 1, row), the k
/// samples decoded in chunks. Nats. Local, thread-safe.
void vae_iwae_rows(const Vae& model, const RowMatrixF& x, Index global_row_begin, std::uint64_t seed, int k,
                   VaeWorkspace& w, std::span<double> out);

/// Model files: /encoder/<i>/weight (out × in) and /bias, /decoder/<i>/..., /log_variance
/// (D, Gaussian), root attributes model = "vae", latent_dim, hidden, activation,
/// likelihood, learn_variance, input_dim, plus the common fit record. Local.
void save_vae(const Vae& model, const std::string& config_json, const train::EmResult& em, Index n_samples,
              const std::string& data_location, const std::string& path, bool overwrite);
/// Throws Error(kInput) naming the file for a missing or mis-shaped dataset. The model comes
/// back prepared for float32 products (Vae::prepare(kHighest)) on CPUs with AVX-512.
Vae load_vae(const std::string& path);

}  // namespace latent::models
