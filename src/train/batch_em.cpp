#include "latent/train/batch_em.hpp"

#include <chrono>
#include <cmath>
#include <limits>
#include <optional>

#include "latent/core/control.hpp"
#include "latent/core/error.hpp"
#include "latent/core/profile.hpp"
#include "latent/train/block_reduce.hpp"

namespace latent::train {

namespace {

template <class Source, class Model>
EmResult run_em(const comm::Communicator& comm, Source& source, Index num_samples, Model& model, const EmOptions& options,
                const IterationObserver& observer, EmResult start, const IterationHook& hook) {
  const FaultPlan& fault = FaultPlan::get();
  EmIterations em;
  em.num_samples = num_samples;
  em.statistics = [&](int it) {
    const bool inject_throw = fault.due(comm.rank(), it, "throw"), inject_nan = fault.due(comm.rank(), it, "nan");
    const auto kernel = [&](const auto& b, std::span<double> partial) {
      if (inject_throw) throw std::runtime_error("injected fault (LATENT_FAULT kind=throw) in iteration " + std::to_string(it));
      model.e_step_block(b, partial);
      if (inject_nan) partial[0] = std::numeric_limits<double>::quiet_NaN();
    };
    // Aligned to Eigen's widest packet, like the kernels' buffers: an M-step's Eigen reductions over maps of
    // the statistics must not depend on where the heap put them.
    const std::vector<double> raw = reduce_global(comm, source, model.num_stats(), options.threads, kernel);
    return AlignedDoubles(raw.begin(), raw.end());
  };
  em.m_step = [&](std::span<const double> stats) { return model.m_step(stats); };
  return run_em_iterations(em, options, observer, std::move(start), hook);
}

}  // namespace

EmResult run_em_iterations(const EmIterations& em, const EmOptions& options, const IterationObserver& observer,
                           EmResult start, const IterationHook& hook) {
  EmResult result = std::move(start);
  if (!result.history.empty() && std::abs(result.history.back().change) < options.tol) {
    result.converged = true;
    return result;
  }
  for (int it = result.n_iter + 1; it <= options.max_iter; ++it) {
    const auto t0 = std::chrono::steady_clock::now();
    profile::begin_iteration();
    std::optional<profile::ScopedTimer> in_memory;
    if (em.in_memory) in_memory.emplace(profile::Counter::kMstepSeconds);
    const AlignedDoubles stats = em.statistics(it);
    if (!std::isfinite(stats[0]))
      throw_numerical("the objective became NaN/Inf at iteration " + std::to_string(it) + em.nan_note +
                      "; the model was not updated and the last checkpoint is intact. " + em.nan_advice);
    const EmStep step = [&] {
      std::optional<profile::ScopedTimer> timer;
      if (!em.in_memory) timer.emplace(profile::Counter::kMstepSeconds);
      return em.m_step(stats);
    }();
    in_memory.reset();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    IterationRecord rec{it, step.objective, step.change, seconds,
                        seconds > 0 && em.num_samples > 0 ? static_cast<double>(em.num_samples) / seconds : 0.0};
    result.history.push_back(rec);
    result.n_iter = it;
    result.objective = step.objective;
    if (observer) observer(rec);
    if (hook) hook(result);
    if (std::abs(step.change) < options.tol) {
      result.converged = true;
      break;
    }
  }
  return result;
}

EmResult run_batch_em(const comm::Communicator& comm, io::BlockSource& source, Index num_samples, EmModel& model,
                      const EmOptions& options, const IterationObserver& observer, EmResult start, const IterationHook& hook) {
  const io::BlockSource::Float32Scope scope(source, model.accepts_float32_blocks());
  return run_em(comm, source, num_samples, model, options, observer, std::move(start), hook);
}

EmResult run_batch_em(const comm::Communicator& comm, io::CountsSource& source, Index num_samples, CountsEmModel& model,
                      const EmOptions& options, const IterationObserver& observer, EmResult start, const IterationHook& hook) {
  return run_em(comm, source, num_samples, model, options, observer, std::move(start), hook);
}

void save_history(const EmResult& result, TrainState& state, const std::string& prefix) {
  RowMatrix h(static_cast<Index>(result.history.size()), 5);
  for (std::size_t i = 0; i < result.history.size(); ++i) {
    const auto& r = result.history[i];
    h.row(static_cast<Index>(i)) << r.iteration, r.objective, r.change, r.seconds, r.samples_per_second;
  }
  state.arrays[prefix + "history"] = h;
  state.scalars[prefix + "n_iter"] = result.n_iter;
  state.scalars[prefix + "converged"] = result.converged ? 1.0 : 0.0;
}

EmResult load_history(const TrainState& state, const std::string& prefix) {
  EmResult r;
  const RowMatrix& h = state.array(prefix + "history");
  for (Index i = 0; i < h.rows() && h.cols() == 5; ++i)
    r.history.push_back({static_cast<int>(h(i, 0)), h(i, 1), h(i, 2), h(i, 3), h(i, 4)});
  r.n_iter = static_cast<int>(state.scalar(prefix + "n_iter"));
  r.converged = state.scalar(prefix + "converged") != 0;
  r.objective = r.history.empty() ? 0.0 : r.history.back().objective;
  return r;
}

}  // namespace latent::train
