#pragma once
/// \file The batch EM driver: per iteration one streamed pass computes the E-step
/// statistics of every local block, one allreduce sums them exactly, and every rank runs
/// the same M-step, so parameters stay identical without a broadcast (docs/ARCHITECTURE.md §1).
#include <functional>
#include <span>
#include <vector>

#include "latent/comm/communicator.hpp"
#include "latent/io/block_source.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/train/checkpoint.hpp"

namespace latent::train {

/// One M-step's result: the objective evaluated in the E-step (for example the mean
/// log-likelihood in nats per sample) and the convergence measure compared against tol.
struct EmStep {
  double objective = 0;
  double change = 0;  ///< compared with tol in absolute value
};

/// What a model provides to the EM driver, for dense blocks (EmModel) or blocks of
/// documents (CountsEmModel).
template <class Block>
class EmModelOf {
 public:
  virtual ~EmModelOf() = default;
  /// Length of the flat statistics buffer.
  virtual std::size_t num_stats() const = 0;
  /// E-step on one block with the current parameters: adds the block's sufficient
  /// statistics and its objective contribution into `partial` (zeroed). Thread-safe (const).
  virtual void e_step_block(const Block& block, std::span<double> partial) const = 0;
  /// True if e_step_block() reads float32 blocks (io::DenseBlock::is_float32) as they are
  /// stored; the trainer then runs its passes in an io::BlockSource::Float32Scope.
  virtual bool accepts_float32_blocks() const { return false; }
  /// M-step from the global statistics. Throws Error(kNumerical) on a degenerate solution.
  using Step = EmStep;
  virtual Step m_step(std::span<const double> stats) = 0;
  /// Everything the next iteration depends on (parameters and the previous objective).
  virtual void save_state(TrainState& state) const = 0;
  virtual void load_state(const TrainState& state) = 0;
};
using EmModel = EmModelOf<io::DenseBlock>;
using CountsEmModel = EmModelOf<io::CsrBlock>;

struct EmOptions {
  int max_iter = 100;
  double tol = 1e-3;
  int threads = 1;
};

struct IterationRecord {
  int iteration = 0;
  double objective = 0;
  double change = 0;
  double seconds = 0;             ///< wall time of this iteration
  double samples_per_second = 0;  ///< N / seconds, all ranks together
  double tokens_per_second = 0;   ///< count data: tokens / seconds, all ranks together (0: n/a)
  /// False when the objective was not computed this iteration (LDA's --evaluate-every):
  /// `objective` and `change` are then 0 and the log shows "not evaluated".
  bool evaluated = true;
};

struct EmResult {
  std::vector<IterationRecord> history;
  int n_iter = 0;
  bool converged = false;
  double objective = 0;  ///< last objective (sklearn's lower_bound_)
};

using IterationObserver = std::function<void(const IterationRecord&)>;
/// Called on every rank after each iteration with the result so far (collective: used for
/// checkpoints and stop signals; may throw).
using IterationHook = std::function<void(const EmResult&)>;

/// Where an iteration's statistics come from. `statistics(iteration)` returns the global
/// statistics under the model's current parameters (collective; a data pass or an
/// in-memory product such as the factor models' covariance solver), `m_step` updates the
/// parameters from them.
struct EmIterations {
  std::function<AlignedDoubles(int iteration)> statistics;
  std::function<EmStep(std::span<const double> stats)> m_step;
  Index num_samples = 0;   ///< for samples_per_second (0 when no data pass: reported as 0)
  bool in_memory = false;  ///< the profile counts the statistics as M-step time (no data read)
  /// The error when the objective becomes NaN/Inf: "... at iteration N<nan_note>; the model
  /// was not updated and the last checkpoint is intact. <nan_advice>".
  std::string nan_note = " (diverging parameters)";
  std::string nan_advice = "Try a larger --reg-covar or standardise the data";
};

/// The EM loop every batch EM model shares (docs/ARCHITECTURE.md §4): iterations after
/// `start` until |change| < tol or max_iter, a NaN objective refused before the M-step
/// (Error(kNumerical); the model and the last checkpoint are untouched), the observer and
/// the hook (checkpoints, stop signals) after each. Collective.
EmResult run_em_iterations(const EmIterations& em, const EmOptions& options, const IterationObserver& observer,
                           EmResult start = {}, const IterationHook& hook = {});

/// Runs EM until |change| < tol or max_iter iterations, continuing after `start` (the
/// history of a resumed run; empty for a new one). Collective; `observer` is called on
/// every rank after each iteration (print on rank 0 only). Errors in any rank's pass are
/// agreed before the allreduce and thrown identically everywhere. Honours LATENT_FAULT
/// kinds throw (exception in this rank's pass) and nan (NaN statistics).
EmResult run_batch_em(const comm::Communicator& comm, io::BlockSource& source, Index num_samples,
                      EmModel& model, const EmOptions& options, const IterationObserver& observer,
                      EmResult start = {}, const IterationHook& hook = {});
/// The same over a rank's blocks of documents.
EmResult run_batch_em(const comm::Communicator& comm, io::CountsSource& source, Index num_samples,
                      CountsEmModel& model, const EmOptions& options, const IterationObserver& observer,
                      EmResult start = {}, const IterationHook& hook = {});

/// EM history as checkpoint state ("<prefix>history" array, "<prefix>n_iter" and
/// "<prefix>converged" scalars), and back.
void save_history(const EmResult& result, TrainState& state, const std::string& prefix = "");
EmResult load_history(const TrainState& state, const std::string& prefix = "");

/// The usual hook: at each iteration boundary `control` checkpoints the model's state
/// (save_state) with the history as run `run`, and honours stop signals. Empty without
/// control. `model` must outlive the hook.
template <class Model>
IterationHook checkpoint_hook(FitControl* control, const Model& model, std::int64_t run = 0) {
  if (!control) return {};
  return [control, &model, run](const EmResult& so_far) {
    control->boundary(run, so_far.n_iter, [&] {
      TrainState s;
      model.save_state(s);
      save_history(so_far, s);
      return s;
    });
  };
}

}  // namespace latent::train
