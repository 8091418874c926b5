#pragma once
/// \file The restart driver shared by every EM model (docs/ARCHITECTURE.md §4): `n_init`
/// runs from different seeds, the best kept (scikit-learn's BaseMixture.fit loop), with
/// checkpoints that hold the current run's state and the best run so far, so a preempted
/// fit resumes inside the run it was in and still knows the best of the earlier ones.
///
/// Checkpoint keys: the current model's state (Model::save_state) and history, "run",
/// "has_best", and for the best run "best_model_<key>" (its state), its history with prefix
/// "best_", "best_run" and "best_score". A checkpoint taken inside an initialisation
/// (InitPoints) has "in_init" = 1 and the initialisation's snapshot under "init_<key>"
/// instead of the current model's state and history; resuming it calls `initial` again
/// with that snapshot.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>

#include "latent/core/log.hpp"
#include "latent/train/batch_em.hpp"
#include "latent/train/checkpoint.hpp"

namespace latent::train {

/// The seed of restart `run`: `seed` itself for run 0 (so n_init = 1 is the plain fit),
/// else a draw from CounterRng(seed, kNInit, 0, run). Pure.
std::uint64_t restart_seed(std::uint64_t seed, int run);

template <class Model>
struct BestRun {
  Model model;
  EmResult em;
  int run = 0;
  double score = 0;  ///< higher is better
};

/// What a model gives the driver. Every function is called on every rank (collective).
template <class Model>
struct RestartSteps {
  /// The starting model of run `run` drawn from `seed` (restart_seed of the run). A long
  /// initialisation calls `points.at` at its boundaries (a stop there checkpoints its
  /// snapshot) and continues from `points.resumed` when it is set; others ignore `points`.
  std::function<Model(int run, std::uint64_t seed, const InitPoints& points)> initial;
  /// A model to load_state() a checkpoint into.
  std::function<Model()> blank;
  /// EM from `model`, continuing `start` (a resumed run's history; empty otherwise), with
  /// `hook` called at every iteration boundary.
  std::function<EmResult(Model& model, EmResult start, const IterationHook& hook)> fit;
  /// The run's score, higher is better (empty: the final objective).
  std::function<double(const Model& model, const EmResult& em)> score;
};

/// Runs restarts 0 .. max(1, n_init) − 1 (after a resume: from the checkpoint's run on)
/// and returns the best (the first of equal scores). Collective. Throws what the steps
/// throw, and Error(kRequeue) after a stop signal (from `control`).
template <class Model>
BestRun<Model> run_restarts(FitControl* control, int n_init, std::uint64_t seed, const Logger& log,
                            const RestartSteps<Model>& steps) {
  const std::optional<TrainState> resumed = control ? control->resume() : std::nullopt;
  std::optional<BestRun<Model>> best;
  int first = 0;
  // A checkpoint taken inside the initialisation of run `first`: its snapshot.
  std::optional<TrainState> resumed_init;
  if (resumed) {
    first = static_cast<int>(resumed->scalar("run"));
    const auto in_init = resumed->scalars.find("in_init");
    if (in_init != resumed->scalars.end() && in_init->second != 0) {
      const std::string prefix = "init_";
      resumed_init.emplace();
      for (const auto& [key, value] : resumed->arrays)
        if (key.rfind(prefix, 0) == 0) resumed_init->arrays[key.substr(prefix.size())] = value;
      for (const auto& [key, value] : resumed->scalars)
        if (key.rfind(prefix, 0) == 0) resumed_init->scalars[key.substr(prefix.size())] = value;
    }
    if (resumed->scalar("has_best") != 0) {
      const std::string prefix = "best_model_";
      TrainState b;
      for (const auto& [key, value] : resumed->arrays)
        if (key.rfind(prefix, 0) == 0) b.arrays[key.substr(prefix.size())] = value;
      for (const auto& [key, value] : resumed->scalars)
        if (key.rfind(prefix, 0) == 0) b.scalars[key.substr(prefix.size())] = value;
      Model m = steps.blank();
      m.load_state(b);
      best = BestRun<Model>{std::move(m), load_history(*resumed, "best_"), static_cast<int>(resumed->scalar("best_run")),
                            resumed->scalar("best_score")};
    }
  }
  const int runs = std::max(1, n_init);
  for (int run = first; run < runs; ++run) {
    if (runs > 1) log.info("initialisation " + std::to_string(run + 1) + " of " + std::to_string(runs));
    // The run and the best so far, which every checkpoint of this run carries.
    const auto add_restart_state = [&](TrainState& s) {
      s.scalars["run"] = run;
      s.scalars["has_best"] = best ? 1.0 : 0.0;
      if (best) {
        TrainState b;
        best->model.save_state(b);
        for (auto& [key, value] : b.arrays) s.arrays["best_model_" + key] = std::move(value);
        for (const auto& [key, value] : b.scalars) s.scalars["best_model_" + key] = value;
        save_history(best->em, s, "best_");
        s.scalars["best_run"] = best->run;
        s.scalars["best_score"] = best->score;
      }
    };
    const bool resuming_init = resumed_init && run == first;
    const bool resuming = resumed && run == first && !resuming_init;
    InitPoints points;
    if (resuming_init) points.resumed = &*resumed_init;
    if (control)
      points.point = [&](const std::function<TrainState()>& snapshot) {
        control->init_boundary(run, [&] {
          TrainState s;
          TrainState init = snapshot();
          for (auto& [key, value] : init.arrays) s.arrays["init_" + key] = std::move(value);
          for (const auto& [key, value] : init.scalars) s.scalars["init_" + key] = value;
          s.scalars["in_init"] = 1.0;
          add_restart_state(s);
          return s;
        });
      };
    Model model = resuming ? steps.blank() : steps.initial(run, restart_seed(seed, run), points);
    if (resuming) model.load_state(*resumed);
    IterationHook hook;
    if (control)
      hook = [&](const EmResult& so_far) {
        control->boundary(run, so_far.n_iter, [&] {
          TrainState s;
          model.save_state(s);
          save_history(so_far, s);
          add_restart_state(s);
          return s;
        });
      };
    EmResult em = steps.fit(model, resuming ? load_history(*resumed) : EmResult{}, hook);
    const double score = steps.score ? steps.score(model, em) : em.objective;
    if (!best || score > best->score) best = BestRun<Model>{std::move(model), std::move(em), run, score};
  }
  return std::move(*best);
}

}  // namespace latent::train
