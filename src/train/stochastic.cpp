#include "latent/train/stochastic.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <numeric>
#include <utility>

#include "latent/core/error.hpp"

namespace latent::train {

std::vector<Index> epoch_order(Index steps, bool shuffle, std::uint64_t seed, RngPurpose purpose, int epoch) {
  std::vector<Index> order(static_cast<std::size_t>(std::max<Index>(steps, 0)));
  std::iota(order.begin(), order.end(), Index{0});
  if (shuffle) {
    CounterRng rng(seed, purpose, static_cast<std::uint64_t>(epoch), 0);
    for (std::size_t i = order.size(); i-- > 1;) std::swap(order[i], order[rng.next_u64() % (i + 1)]);
  }
  return order;
}

double robbins_monro_rate(double learning_offset, double learning_decay, std::int64_t update) {
  return std::pow(learning_offset + static_cast<double>(update), -learning_decay);
}

double epoch_learning_rate(const std::string& schedule, double base, double gamma, int step_size, int epochs, int epoch) {
  if (schedule == "constant") return base;
  if (schedule == "step") return base * std::pow(gamma, epoch / std::max(1, step_size));
  if (schedule == "cosine")
    return 0.5 * base * (1.0 + std::cos(std::numbers::pi * static_cast<double>(epoch) / std::max(1, epochs)));
  throw_usage("--lr-schedule must be constant, step or cosine (got '" + schedule + "')");
}

BoundaryFn boundary_of(FitControl* control) {
  if (control == nullptr) return [](std::int64_t, const std::function<TrainState()>&) {};
  return [control](std::int64_t step, const std::function<TrainState()>& snapshot) { control->boundary(0, step, snapshot); };
}

StochasticPosition run_stochastic(const StochasticOptions& options, StochasticPosition start, const StochasticSteps& steps,
                                  const BoundaryFn& boundary) {
  if (options.steps_per_epoch < 1) throw Error(ErrorKind::kInternal, "run_stochastic: an epoch needs at least one step");
  StochasticPosition at = start;
  if (at.step_in_epoch < 0 || at.step_in_epoch >= options.steps_per_epoch)
    throw_input("checkpoint: step_in_epoch " + std::to_string(at.step_in_epoch) + " is outside the epoch's " +
                std::to_string(options.steps_per_epoch) + " steps (was the data or --batch-size changed?)");
  for (bool converged = false; at.epoch < options.epochs && !converged; ++at.epoch) {
    const std::vector<Index> order =
        epoch_order(options.steps_per_epoch, options.shuffle, options.seed, options.shuffle_purpose, at.epoch);
    const Index first = at.step_in_epoch;
    at.step_in_epoch = 0;
    steps.begin_epoch(at.epoch, order, first);
    if (steps.skip)
      for (Index s = 0; s < first; ++s) steps.skip(order[static_cast<std::size_t>(s)]);
    for (Index s = first; s < options.steps_per_epoch; ++s) {
      steps.step(at.epoch, s, order[static_cast<std::size_t>(s)], at.step + 1);
      ++at.step;
      if (s + 1 < options.steps_per_epoch) {
        const StochasticPosition here{at.epoch, s + 1, at.step};
        boundary(at.step, [&] { return steps.snapshot(here); });
      }
    }
    converged = steps.end_epoch(at.epoch);
    const StochasticPosition next{at.epoch + 1, 0, at.step};
    boundary(at.step, [&] { return steps.snapshot(next); });
  }
  return at;
}

}  // namespace latent::train
