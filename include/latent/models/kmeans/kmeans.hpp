#pragma once
/// \file k-means: Lloyd's algorithm as hard EM (Lloyd 1982; Bishop PRML §9.1) on streamed
/// blocks, with distributed k-means|| seeding (Bahmani et al. 2012).
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "latent/comm/communicator.hpp"
#include "latent/core/log.hpp"
#include "latent/core/types.hpp"
#include "latent/io/block_source.hpp"
#include "latent/train/batch_em.hpp"

namespace latent::models {

/// Squared Euclidean distances of the rows of x (B × D) to centers (K × D): out is B × K,
/// clamped at 0. `center_sq_norms` holds ||c_k||² (K). Computed with one GEMM.
void squared_distances(const Eigen::Ref<const RowMatrix>& x, const RowMatrix& centers, const Vector& center_sq_norms,
                       RowMatrix& out);

/// Index of the nearest center per row (lowest index on ties) and the squared distance.
void nearest_centers(const RowMatrix& sq_dist, std::vector<Index>& labels, Vector& min_sq_dist);

/// Initial responsibilities of mixtures (B × K): one-hot on the nearest center ("kmeans"
/// initialisation), or uniform draws normalised per row, keyed by (seed, global row)
/// ("random", scikit-learn's init_params='random'). Thread-safe.
RowMatrix hard_responsibilities(const Eigen::Ref<const RowMatrix>& x, const RowMatrix& centers, const Vector& center_sq_norms);
RowMatrix random_responsibilities(Index rows, Index first_global_row, Index k, std::uint64_t seed);

/// The Lloyd step as an EmModel. Statistics: [inertia, counts (K), sums (K × D)].
/// Objective: inertia (sum of squared distances, squared data units) of the centers used
/// in the E-step; change: sum of squared center shifts divided by the mean feature
/// variance (scikit-learn's tol convention). An empty cluster keeps its center.
class KmeansLloyd final : public train::EmModel {
 public:
  KmeansLloyd(RowMatrix centers, double mean_variance);
  std::size_t num_stats() const override;
  void e_step_block(const io::DenseBlock& block, std::span<double> partial) const override;
  Step m_step(std::span<const double> stats) override;
  void save_state(train::TrainState& state) const override { state.arrays["centers"] = centers_; }
  void load_state(const train::TrainState& state) override {
    centers_ = state.array("centers");
    sq_norms_ = centers_.rowwise().squaredNorm();
  }
  const RowMatrix& centers() const noexcept { return centers_; }
  Index num_empty_clusters() const noexcept { return num_empty_; }

 private:
  RowMatrix centers_;
  Vector sq_norms_;
  double mean_variance_;
  Index num_empty_ = 0;
};

/// Rows drawn without replacement with probability proportional to the squared distance
/// to `centers` (to 1 when centers is empty), by exponential keys log(u)/w
/// (Efraimidis & Spirakis 2006); u comes from CounterRng(seed, kKmeansSeeding, round,
/// global row), so the draw is identical for any rank/thread count. Rows at distance 0
/// are never drawn; fewer than `count` rows come back if fewer have positive weight.
/// Collective.
struct SampledRows {
  RowMatrix rows;
  std::vector<Index> ids;  ///< global row ids
};
SampledRows sample_rows_d2(const comm::Communicator& comm, io::BlockSource& source, const RowMatrix& centers,
                           Index count, std::uint64_t seed, std::uint64_t round, int threads);

/// Initial centers. `method`: "k-means||" (Bahmani et al. 2012, 5 rounds of 2K draws
/// each, then weighted k-means++ and Lloyd on the candidates; deviation: each round draws
/// exactly 2K rows by weighted sampling without replacement instead of Bernoulli draws),
/// "k-means++" (Arthur & Vassilvitskii 2007, K passes), "random" (K distinct rows
/// uniformly). Returns K × D; warns if fewer distinct points than K exist. Collective.
RowMatrix init_centers(const comm::Communicator& comm, io::BlockSource& source, Index k, const std::string& method,
                       std::uint64_t seed, int threads, const Logger& log);

struct KmeansConfig {
  Index n_clusters = 8;
  std::string init = "k-means||";
  int max_iter = 300;
  double tol = 1e-4;
  int n_init = 1;
  std::uint64_t seed = 0;
  int threads = 1;
};

struct KmeansResult {
  RowMatrix centers;     ///< K × D
  double inertia = 0;    ///< of the final centers
  train::EmResult em;
};

/// Seeding and Lloyd iterations; with n_init > 1 keeps the run of lowest inertia.
/// `mean_variance` is the mean per-feature variance of the data (for tol). Collective.
/// With `control`, resumes from and writes checkpoints, and honours stop signals.
KmeansResult fit_kmeans(const comm::Communicator& comm, io::BlockSource& source, Index num_samples,
                        double mean_variance, const KmeansConfig& config, const Logger& log,
                        const train::IterationObserver& observer, train::FitControl* control = nullptr);

/// Inertia of `centers` over the data. Collective.
double kmeans_inertia(const comm::Communicator& comm, io::BlockSource& source, const RowMatrix& centers, int threads);

/// The k-means a mixture starts from: k-means|| seeding and Lloyd with the defaults of
/// KmeansConfig for K clusters and this seed, logged on one line. Collective.
KmeansResult initial_kmeans(const comm::Communicator& comm, io::BlockSource& source, Index num_samples,
                            double mean_variance, Index k, std::uint64_t seed, int threads, const Logger& log);

}  // namespace latent::models
