#include "latent/train/batch_em.hpp"

#include <chrono>
#include <cmath>
#include <limits>

#include "latent/core/error.hpp"
#include "latent/train/block_reduce.hpp"

namespace latent::train {

EmResult run_batch_em(const comm::Communicator& comm, io::BlockSource& source, Index num_samples,
                      EmModel& model, const EmOptions& options, const IterationObserver& observer) {
  EmResult result;
  const auto kernel = [&model](const io::DenseBlock& b, std::span<double> partial) { model.e_step_block(b, partial); };
  for (int it = 1; it <= options.max_iter; ++it) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<double> stats = reduce_global(comm, source, model.num_stats(), options.threads, kernel);
    const EmModel::Step step = model.m_step(stats);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    IterationRecord rec{it, step.objective, step.change, seconds,
                        seconds > 0 ? static_cast<double>(num_samples) / seconds : 0.0};
    result.history.push_back(rec);
    result.n_iter = it;
    result.objective = step.objective;
    if (observer) observer(rec);
    if (!std::isfinite(step.objective))
      throw_numerical("the objective became " + std::to_string(step.objective) + " at iteration " +
                      std::to_string(it) + "; try a larger --reg-covar or standardise the data");
    if (std::abs(step.change) < options.tol) {
      result.converged = true;
      break;
    }
  }
  return result;
}

}  // namespace latent::train
