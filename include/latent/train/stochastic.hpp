#pragma once
/// \file The stochastic trainer shared by online LDA and the VAE (docs/ARCHITECTURE.md §4):
/// it owns the epoch loop, the order of an epoch's minibatches, mid-epoch resume, the
/// checkpoint boundaries (after every step but an epoch's last, and after each epoch's
/// bookkeeping), stop signals (through FitControl::boundary) and the step-size schedules.
/// A model supplies one step, the epoch's opening and closing, and its checkpoint state;
/// it keeps its gradients, E/M steps and files.
///
/// Position: `epoch` (0-based, the next epoch to run or the one in progress), `step_in_epoch`
/// (steps of that epoch already taken) and `step` (updates taken since the start of the
/// fit). A checkpoint records the position; a resumed fit continues from it with the same
/// bits on any number of ranks, since the order of an epoch depends on (seed, epoch) only.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "latent/core/rng.hpp"
#include "latent/core/types.hpp"
#include "latent/train/checkpoint.hpp"

namespace latent::train {

/// Where a stochastic fit is: see the file comment.
struct StochasticPosition {
  int epoch = 0;
  Index step_in_epoch = 0;
  std::int64_t step = 0;
};

/// The order of an epoch's `steps` minibatches: storage order 0 .. steps − 1, or with
/// `shuffle` a Fisher–Yates shuffle drawn from CounterRng(seed, purpose, epoch, 0). Pure.
std::vector<Index> epoch_order(Index steps, bool shuffle, std::uint64_t seed, RngPurpose purpose, int epoch);

/// Robbins–Monro step size of online variational Bayes, ρ_t = (τ₀ + t)^(−κ) for update t
/// (1-based) (Hoffman, Blei & Bach 2010, "Online learning for LDA", §2.2, eq. 5; scikit-
/// learn's learning_offset τ₀ and learning_decay κ ∈ (0.5, 1]). Pure.
double robbins_monro_rate(double learning_offset, double learning_decay, std::int64_t update);

/// Epoch learning-rate schedules (PyTorch's StepLR and CosineAnnealingLR, eta_min = 0):
/// "constant" → `base`; "step" → base · gamma^⌊epoch / step_size⌋; "cosine" →
/// base · (1 + cos(π · epoch / epochs)) / 2. `epoch` is 0-based. Throws Error(kUsage) for
/// another name.
double epoch_learning_rate(const std::string& schedule, double base, double gamma, int step_size, int epochs, int epoch);

/// What a model gives the trainer. Every function is called on every rank, in the same
/// order (collective where the model's code is).
struct StochasticSteps {
  /// Opens epoch `epoch` whose minibatches are taken in `order` (order[s] is the minibatch
  /// of position s); `first_step` > 0 when resumed in the middle of it (the model's running
  /// sums for the epoch come from the checkpoint then).
  std::function<void(int epoch, const std::vector<Index>& order, Index first_step)> begin_epoch;
  /// Passes over minibatch `minibatch`, already taken before a mid-epoch checkpoint (reads
  /// and drops its blocks so that the streams stand where the step after it starts). Optional.
  std::function<void(Index minibatch)> skip;
  /// Takes one update on minibatch `minibatch` (position `s` of the epoch); `update` is its
  /// 1-based number since the start of the fit.
  std::function<void(int epoch, Index s, Index minibatch, std::int64_t update)> step;
  /// The epoch's bookkeeping after its last step (scores, early stopping); returns true
  /// when the fit has converged and stops.
  std::function<bool(int epoch)> end_epoch;
  /// The model's state for a checkpoint at position `at` (at.step_in_epoch = 0: between
  /// epochs, at.epoch is the next one).
  std::function<TrainState(const StochasticPosition& at)> snapshot;
};

/// The boundary protocol the trainer calls: FitControl::boundary(0, step, snapshot) in a
/// fit; tests record the calls.
using BoundaryFn = std::function<void(std::int64_t step, const std::function<TrainState()>& snapshot)>;

/// The boundary of `control` (nothing when null).
BoundaryFn boundary_of(FitControl* control);

/// Options of the loop.
struct StochasticOptions {
  int epochs = 1;              ///< epochs (passes) at most
  Index steps_per_epoch = 1;   ///< updates per epoch (≥ 1)
  bool shuffle = false;        ///< shuffle the minibatch order of each epoch
  std::uint64_t seed = 0;      ///< with `shuffle_purpose`: the key of the orders
  RngPurpose shuffle_purpose = RngPurpose::kVaeShuffle;
};

/// Runs epochs from `start` (a resumed position, or the default) until `options.epochs` or
/// until end_epoch reports convergence; returns the final position. After each step but an
/// epoch's last it calls `boundary(step, snapshot at (epoch, s + 1))`, and after end_epoch
/// `boundary(step, snapshot at (epoch + 1, 0))`: a stop signal there throws Error(kRequeue)
/// on every rank, after the checkpoint. Throws what the steps throw. Collective.
StochasticPosition run_stochastic(const StochasticOptions& options, StochasticPosition start, const StochasticSteps& steps,
                                  const BoundaryFn& boundary);

}  // namespace latent::train
