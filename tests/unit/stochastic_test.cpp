// The stochastic trainer (latent/train/stochastic.hpp): the order of steps, boundaries and
// snapshots, mid-epoch resume, convergence, stop signals, and the schedules' closed forms.
#include "latent/train/stochastic.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include "latent/comm/communicator.hpp"
#include "latent/core/control.hpp"
#include "latent/core/error.hpp"
#include "latent/core/log.hpp"
#include "latent/core/stop_request.hpp"
#include "latent/train/checkpoint.hpp"

namespace latent::train {
namespace {

struct Call {
  std::string what;
  std::int64_t a = 0, b = 0, c = 0, d = 0;
  bool operator==(const Call&) const = default;
};

// A fake model that records every call; `converge_at` (0-based epoch) makes end_epoch
// report convergence; `stop_at` (a step) makes the boundary throw as a stop signal does.
struct Recorder {
  std::vector<Call> calls;
  int converge_at = -1;
  std::int64_t stop_at = -1;
  StochasticSteps steps() {
    StochasticSteps s;
    s.begin_epoch = [this](int e, const std::vector<Index>& order, Index first) {
      calls.push_back({"begin", e, first, static_cast<std::int64_t>(order.size()), order.empty() ? -1 : order[0]});
    };
    s.skip = [this](Index m) { calls.push_back({"skip", m}); };
    s.step = [this](int e, Index pos, Index m, std::int64_t update) { calls.push_back({"step", e, pos, m, update}); };
    s.end_epoch = [this](int e) {
      calls.push_back({"end", e});
      return e == converge_at;
    };
    s.snapshot = [this](const StochasticPosition& at) {
      calls.push_back({"snapshot", at.epoch, at.step_in_epoch, at.step});
      TrainState st;
      st.scalars["epoch"] = at.epoch;
      st.scalars["step_in_epoch"] = static_cast<double>(at.step_in_epoch);
      st.scalars["step"] = static_cast<double>(at.step);
      return st;
    };
    return s;
  }
  // Takes the snapshot at every boundary (as a checkpoint every step would).
  BoundaryFn boundary(std::vector<TrainState>* states) {
    return [this, states](std::int64_t step, const std::function<TrainState()>& snapshot) {
      calls.push_back({"boundary", step});
      states->push_back(snapshot());
      if (step == stop_at) throw Error(ErrorKind::kRequeue, "stop");
    };
  }
};

TEST(Stochastic, StepsBoundariesAndSnapshotsInOrder) {
  Recorder r;
  std::vector<TrainState> states;
  const StochasticPosition end = run_stochastic({2, 3, false, 7}, {}, r.steps(), r.boundary(&states));
  EXPECT_EQ(end.epoch, 2);
  EXPECT_EQ(end.step, 6);
  EXPECT_EQ(end.step_in_epoch, 0);
  std::vector<Call> want;
  std::int64_t update = 0;
  for (int e = 0; e < 2; ++e) {
    want.push_back({"begin", e, 0, 3, 0});
    for (Index s = 0; s < 3; ++s) {
      want.push_back({"step", e, s, s, ++update});
      if (s + 1 < 3) {
        want.push_back({"boundary", update});
        want.push_back({"snapshot", e, s + 1, update});
      } else {  // the last step's boundary comes after the epoch's bookkeeping
        want.push_back({"end", e});
        want.push_back({"boundary", update});
        want.push_back({"snapshot", e + 1, 0, update});
      }
    }
  }
  EXPECT_EQ(r.calls, want);
}

// Resuming from any boundary's snapshot runs exactly the steps an uninterrupted fit runs
// after it, having skipped the minibatches already taken in the epoch's (shuffled) order.
TEST(Stochastic, ResumeFromEveryBoundaryContinuesTheSameSteps) {
  const StochasticOptions options{3, 4, true, 11};
  Recorder full;
  std::vector<TrainState> states;
  run_stochastic(options, {}, full.steps(), full.boundary(&states));
  std::vector<Call> full_steps;
  for (const Call& c : full.calls)
    if (c.what == "step") full_steps.push_back(c);
  ASSERT_EQ(full_steps.size(), 12u);
  ASSERT_EQ(states.size(), 12u);  // a boundary after every step
  for (const TrainState& st : states) {
    const StochasticPosition at{static_cast<int>(st.scalar("epoch")), static_cast<Index>(st.scalar("step_in_epoch")),
                                static_cast<std::int64_t>(st.scalar("step"))};
    Recorder resumed;
    std::vector<TrainState> ignored;
    const StochasticPosition end = run_stochastic(options, at, resumed.steps(), resumed.boundary(&ignored));
    EXPECT_EQ(end.step, 12);
    std::vector<Call> tail, skipped;
    for (const Call& c : resumed.calls) {
      if (c.what == "step") tail.push_back(c);
      if (c.what == "skip") skipped.push_back(c);
    }
    EXPECT_EQ(tail, std::vector<Call>(full_steps.begin() + at.step, full_steps.end())) << "resumed at step " << at.step;
    ASSERT_EQ(skipped.size(), static_cast<std::size_t>(at.step_in_epoch));
    if (at.epoch < options.epochs) {
      const std::vector<Index> order = epoch_order(4, true, 11, RngPurpose::kVaeShuffle, at.epoch);
      for (std::size_t i = 0; i < skipped.size(); ++i) EXPECT_EQ(skipped[i].a, order[i]);
    }
  }
}

TEST(Stochastic, ConvergenceEndsTheFitAfterItsCheckpoint) {
  Recorder r;
  r.converge_at = 1;
  std::vector<TrainState> states;
  const StochasticPosition end = run_stochastic({5, 2, false, 0}, {}, r.steps(), r.boundary(&states));
  EXPECT_EQ(end.epoch, 2);
  EXPECT_EQ(end.step, 4);
  ASSERT_FALSE(states.empty());
  EXPECT_EQ(states.back().scalar("epoch"), 2);  // the converged epoch's boundary was taken
  EXPECT_EQ(r.calls.back(), (Call{"snapshot", 2, 0, 4}));
}

TEST(Stochastic, StopSignalAtABoundaryPropagatesAfterTheSnapshot) {
  Recorder r;
  r.stop_at = 3;
  std::vector<TrainState> states;
  try {
    run_stochastic({3, 2, false, 0}, {}, r.steps(), r.boundary(&states));
    FAIL() << "the stop did not propagate";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kRequeue);
  }
  ASSERT_EQ(states.size(), 3u);
  EXPECT_EQ(states.back().scalar("epoch"), 1);
  EXPECT_EQ(states.back().scalar("step_in_epoch"), 1);
  std::int64_t steps = 0;
  for (const Call& c : r.calls) steps += c.what == "step";
  EXPECT_EQ(steps, 3);  // nothing ran after the stop
}

// A host's stop request (the Python module's Ctrl-C) ends a fit at its next boundary as a
// stop signal does, on the communicator without MPI; clear_stop() forgets it.
TEST(FitControl, HostStopRequestEndsAtTheNextBoundaryAndClears) {
  const comm::Communicator comm = comm::Communicator::single_process();
  EXPECT_EQ(comm.size(), 1);
  const Logger log = Logger::silent();
  FitControl control(comm, nullptr, log);
  int snapshots = 0;
  const auto snapshot = [&] {
    ++snapshots;
    return TrainState{};
  };
  EXPECT_NO_THROW(control.boundary(0, 1, snapshot));
  request_stop(SIGINT);
  EXPECT_EQ(stop_signal(), SIGINT);
  try {
    control.boundary(0, 2, snapshot);
    ADD_FAILURE() << "the stop request was ignored";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kRequeue);
    EXPECT_NE(std::string(e.what()).find("after iteration 2"), std::string::npos) << e.what();
  }
  clear_stop();
  EXPECT_EQ(stop_signal(), 0);
  EXPECT_NO_THROW(control.boundary(0, 3, snapshot));
  EXPECT_EQ(snapshots, 0);  // no checkpoint store: nothing to snapshot
}

TEST(Stochastic, RefusesAPositionOutsideTheEpoch) {
  Recorder r;
  std::vector<TrainState> states;
  try {
    run_stochastic({3, 2, false, 0}, {0, 2, 2}, r.steps(), r.boundary(&states));
    FAIL() << "accepted step_in_epoch 2 of 2";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInput);
  }
  EXPECT_TRUE(r.calls.empty());
}

TEST(Stochastic, EpochOrderIsAKeyedPermutation) {
  const std::vector<Index> plain = epoch_order(50, false, 3, RngPurpose::kVaeShuffle, 4);
  for (Index i = 0; i < 50; ++i) EXPECT_EQ(plain[static_cast<std::size_t>(i)], i);
  const std::vector<Index> a = epoch_order(50, true, 3, RngPurpose::kVaeShuffle, 4);
  EXPECT_EQ(a, epoch_order(50, true, 3, RngPurpose::kVaeShuffle, 4));
  EXPECT_NE(a, epoch_order(50, true, 3, RngPurpose::kVaeShuffle, 5));
  EXPECT_NE(a, epoch_order(50, true, 4, RngPurpose::kVaeShuffle, 4));
  EXPECT_NE(a, plain);
  std::vector<Index> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, plain);
}

TEST(Stochastic, SchedulesFollowTheirClosedForms) {
  EXPECT_DOUBLE_EQ(robbins_monro_rate(10.0, 0.7, 1), std::pow(11.0, -0.7));
  EXPECT_DOUBLE_EQ(robbins_monro_rate(0.0, 1.0, 4), 0.25);
  EXPECT_DOUBLE_EQ(epoch_learning_rate("constant", 1e-3, 0.5, 2, 10, 7), 1e-3);
  EXPECT_DOUBLE_EQ(epoch_learning_rate("step", 0.1, 0.5, 2, 10, 0), 0.1);
  EXPECT_DOUBLE_EQ(epoch_learning_rate("step", 0.1, 0.5, 2, 10, 3), 0.05);
  EXPECT_DOUBLE_EQ(epoch_learning_rate("step", 0.1, 0.5, 2, 10, 4), 0.025);
  EXPECT_DOUBLE_EQ(epoch_learning_rate("cosine", 0.2, 0.5, 2, 10, 0), 0.2);
  EXPECT_NEAR(epoch_learning_rate("cosine", 0.2, 0.5, 2, 10, 5), 0.1, 1e-15);
  EXPECT_NEAR(epoch_learning_rate("cosine", 0.2, 0.5, 2, 10, 10), 0.0, 1e-15);
  EXPECT_THROW(epoch_learning_rate("linear", 0.2, 0.5, 2, 10, 0), Error);
}

}  // namespace
}  // namespace latent::train
