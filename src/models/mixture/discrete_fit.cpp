#include "latent/models/mixture/discrete_fit.hpp"

#include <fmt/format.h>

#include "latent/core/control.hpp"
#include "latent/core/error.hpp"
#include "latent/core/rng.hpp"
#include "latent/models/kmeans/kmeans.hpp"
#include "latent/train/block_reduce.hpp"
#include "latent/train/content_hash.hpp"
#include "latent/train/restarts.hpp"

namespace latent::models {
namespace {

class BmmEm final : public train::EmModel {
 public:
  explicit BmmEm(DiscreteMixture m) : em_(std::move(m)) {}
  DiscreteEm& em() { return em_; }
  std::size_t num_stats() const override { return em_.num_stats(); }
  void e_step_block(const io::DenseBlock& b, std::span<double> partial) const override {
    RowMatrix resp;
    Vector lp;
    em_.model().weighted_log_prob(b.x, resp);
    DiscreteMixture::normalize(resp, lp);
    partial[0] += lp.sum();
    em_.accumulate(b.x, resp, partial);
  }
  Step m_step(std::span<const double> stats) override { return em_.m_step(stats); }
  void save_state(train::TrainState& s) const override { em_.save_state(s); }
  void load_state(const train::TrainState& s) override { em_.load_state(s); }

 private:
  DiscreteEm em_;
};

class MmmEm final : public train::CountsEmModel {
 public:
  explicit MmmEm(DiscreteMixture m) : em_(std::move(m)) {}
  DiscreteEm& em() { return em_; }
  std::size_t num_stats() const override { return em_.num_stats(); }
  void e_step_block(const io::CsrBlock& b, std::span<double> partial) const override {
    RowMatrix resp;
    Vector lp;
    em_.model().weighted_log_prob(b, resp);
    DiscreteMixture::normalize(resp, lp);
    partial[0] += lp.sum();
    em_.accumulate(b, resp, partial);
  }
  Step m_step(std::span<const double> stats) override { return em_.m_step(stats); }
  void save_state(train::TrainState& s) const override { em_.save_state(s); }
  void load_state(const train::TrainState& s) override { em_.load_state(s); }

 private:
  DiscreteEm em_;
};

void check_config(const DiscreteConfig& c, Index n) {
  if (c.n_components < 1) throw_usage("--n-components must be at least 1");
  if (c.n_components > n)
    throw_usage(fmt::format("Expected n_samples >= n_components but got n_components = {}, n_samples = {}", c.n_components, n));
  if (c.max_iter < 1) throw_usage("--max-iter must be at least 1");
  if (c.tol < 0) throw_usage("--tol must be non-negative");
}

}  // namespace

DiscreteFitResult fit_bmm(const comm::Communicator& comm, io::BlockSource& source, const train::DataSummary& summary,
                          const DiscreteConfig& c, const Logger& log, const train::IterationObserver& observer,
                          train::FitControl* control) {
  check_config(c, summary.num_samples);
  const Index k = c.n_components, d = source.info().num_features;
  if ((summary.min.array() < 0.0).any() || (summary.max.array() > 1.0).any()) {
    comm::run_agreed(comm, [&] {
      train::for_each_block(source, 1, [&](const io::DenseBlock& b) {
        for (Index i = 0; i < b.x.rows(); ++i)
          for (Index j = 0; j < d; ++j)
            if (!(b.x(i, j) >= 0.0 && b.x(i, j) <= 1.0))
              throw_input(fmt::format("file {}, dataset /data, row {}, column {}: value {} is outside [0, 1], which a "
                                      "Bernoulli mixture needs (dataset row {}); binarise or scale the data (latent "
                                      "import dense --scale)",
                                      source.info().shards[static_cast<std::size_t>(b.ref.shard)].path, b.ref.row_begin + i, j,
                                      b.x(i, j), b.ref.global_row_begin + i));
      });
    });
  }
  const auto blank = [&] { return BmmEm(DiscreteMixture(k, d, DiscreteKind::kBernoulli, c.alpha, c.weight_alpha)); };
  train::RestartSteps<BmmEm> steps;
  steps.blank = blank;
  steps.initial = [&](int, std::uint64_t seed, const train::InitPoints& points) {
    BmmEm em = blank();
    KmeansResult km;
    if (c.init_params == "kmeans") {
      km = initial_kmeans(comm, source, summary.num_samples, summary.mean, k, seed, c.threads, log, points,
                          bound_bytes_for(c.row_state_bytes));
    } else if (c.init_params != "random") {
      throw_usage("invalid --init-params '" + c.init_params + "' for bmm (choose kmeans or random)");
    }
    const Vector norms = km.centered_centers.rowwise().squaredNorm();
    const std::vector<double> stats =
        train::reduce_global(comm, source, em.num_stats(), c.threads, [&](const io::DenseBlock& b, std::span<double> p) {
          const RowMatrix resp = c.init_params == "kmeans"
                                     ? hard_responsibilities(b.x, km.centered_centers, norms, km.frame.origin)
                                     : random_responsibilities(b.x.rows(), b.ref.global_row_begin, k, seed);
          em.em().accumulate(b.x, resp, p);
        });
    // A component that k-means left empty keeps the smoothed data mean.
    std::vector<double> s = stats;
    em.em().model().set_parameters(RowVector::Constant(k, 1.0 / static_cast<double>(k)), RowMatrix::Constant(k, d, 0.5));
    em.m_step(s);
    em.em().reset_objective();
    return em;
  };
  steps.fit = [&](BmmEm& em, train::EmResult start, const train::IterationHook& hook) {
    return train::run_batch_em(comm, source, summary.num_samples, em, {c.max_iter, c.tol, c.threads}, observer,
                               std::move(start), hook);
  };
  train::BestRun<BmmEm> best = train::run_restarts(control, c.n_init, c.seed, log, steps);
  if (!best.em.converged) log.warn("bmm did not converge; raise --max-iter or --tol");
  return {best.model.em().model(), std::move(best.em)};
}

DiscreteFitResult fit_mmm(const comm::Communicator& comm, io::CountsSource& source, Index num_documents,
                          const DiscreteConfig& c, const Logger& log, const train::IterationObserver& observer,
                          train::FitControl* control) {
  check_config(c, num_documents);
  const Index k = c.n_components, v = source.info().vocab_size;
  if (c.init_params != "random" && c.init_params != "kmeans")
    throw_usage("invalid --init-params '" + c.init_params + "' for mmm (random)");
  if (control != nullptr && control->checkpoints()) {
    // Checkpoints record the shards' content hashes (one pass), so that a resume on changed data is refused.
    train::ContentHasher content(source.info().shards.size());
    comm::run_agreed(comm, [&] {
      source.start_pass();
      while (auto block = source.next()) {
        heartbeat();
        content.add_counts(*block);
      }
    });
    control->set_data_content(train::content_json(source.info().shards, content.global(comm)));
  }
  const auto blank = [&] { return MmmEm(DiscreteMixture(k, v, DiscreteKind::kMultinomial, c.alpha, c.weight_alpha)); };
  train::RestartSteps<MmmEm> steps;
  steps.blank = blank;
  steps.initial = [&](int, std::uint64_t seed, const train::InitPoints&) {
    MmmEm em = blank();
    const std::vector<double> stats =
        train::reduce_global(comm, source, em.num_stats(), c.threads, [&](const io::CsrBlock& b, std::span<double> p) {
          em.em().accumulate(b, random_responsibilities(b.num_rows(), b.ref.global_row_begin, k, seed), p);
        });
    em.em().model().set_parameters(RowVector::Constant(k, 1.0 / static_cast<double>(k)),
                                   RowMatrix::Constant(k, v, 1.0 / static_cast<double>(v)));
    em.m_step(stats);
    em.em().reset_objective();
    return em;
  };
  steps.fit = [&](MmmEm& em, train::EmResult start, const train::IterationHook& hook) {
    return train::run_batch_em(comm, source, num_documents, em, {c.max_iter, c.tol, c.threads}, observer,
                               std::move(start), hook);
  };
  train::BestRun<MmmEm> best = train::run_restarts(control, c.n_init, c.seed, log, steps);
  if (!best.em.converged) log.warn("mmm did not converge; raise --max-iter or --tol");
  return {best.model.em().model(), std::move(best.em)};
}

}  // namespace latent::models
