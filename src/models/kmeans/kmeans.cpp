#include "latent/models/kmeans/kmeans.hpp"

#include "latent/train/restarts.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <optional>

#include "latent/core/error.hpp"
#include "latent/core/rng.hpp"
#include "latent/train/block_reduce.hpp"

namespace latent::models {

void squared_distances(const Eigen::Ref<const RowMatrix>& x, const RowMatrix& centers, const Vector& center_sq_norms,
                       RowMatrix& out) {
  out.noalias() = x * centers.transpose();
  const Vector x_sq = x.rowwise().squaredNorm();
  out = ((-2.0 * out).colwise() + x_sq).rowwise() + center_sq_norms.transpose();
  out = out.cwiseMax(0.0);
}

void nearest_centers(const RowMatrix& sq_dist, std::vector<Index>& labels, Vector& min_sq_dist) {
  const Index b = sq_dist.rows();
  labels.resize(static_cast<std::size_t>(b));
  min_sq_dist.resize(b);
  for (Index i = 0; i < b; ++i) {
    Index best = 0;
    double best_d = sq_dist(i, 0);
    for (Index k = 1; k < sq_dist.cols(); ++k) {
      if (sq_dist(i, k) < best_d) {
        best_d = sq_dist(i, k);
        best = k;
      }
    }
    labels[static_cast<std::size_t>(i)] = best;
    min_sq_dist[i] = best_d;
  }
}

KmeansLloyd::KmeansLloyd(RowMatrix centers, double mean_variance)
    : centers_(std::move(centers)), sq_norms_(centers_.rowwise().squaredNorm()), mean_variance_(mean_variance) {}

std::size_t KmeansLloyd::num_stats() const {
  return static_cast<std::size_t>(1 + centers_.rows() + centers_.rows() * centers_.cols());
}

void KmeansLloyd::e_step_block(const io::DenseBlock& block, std::span<double> partial) const {
  // Row tiles keep the distance GEMM's operands in cache (fixed size: deterministic).
  constexpr Index kTileRows = 128;
  const Index k = centers_.rows(), d = centers_.cols();
  double* counts = partial.data() + 1;
  Eigen::Map<RowMatrix> sums(partial.data() + 1 + k, k, d);
  RowMatrix dist;
  std::vector<Index> labels;
  Vector min_d;
  for (Index r0 = 0; r0 < block.x.rows(); r0 += kTileRows) {
    const Index n = std::min(kTileRows, block.x.rows() - r0);
    const auto tile = block.x.middleRows(r0, n);
    squared_distances(tile, centers_, sq_norms_, dist);
    nearest_centers(dist, labels, min_d);
    partial[0] += min_d.sum();
    for (Index i = 0; i < n; ++i) {
      const Index l = labels[static_cast<std::size_t>(i)];
      counts[l] += 1.0;
      sums.row(l) += tile.row(i);
    }
  }
}

train::EmModel::Step KmeansLloyd::m_step(std::span<const double> stats) {
  const Index k = centers_.rows(), d = centers_.cols();
  const double* counts = stats.data() + 1;
  Eigen::Map<const RowMatrix> sums(stats.data() + 1 + k, k, d);
  RowMatrix next = centers_;
  num_empty_ = 0;
  for (Index j = 0; j < k; ++j) {
    if (counts[j] > 0)
      next.row(j) = sums.row(j) / counts[j];
    else
      ++num_empty_;
  }
  const double shift = (next - centers_).squaredNorm();
  centers_ = std::move(next);
  sq_norms_ = centers_.rowwise().squaredNorm();
  return Step{stats[0], mean_variance_ > 0 ? shift / mean_variance_ : shift};
}

namespace {

struct Candidate {
  double key;
  Index id;
  std::vector<double> row;
};

bool better(const Candidate& a, const Candidate& b) { return a.key > b.key || (a.key == b.key && a.id < b.id); }

void keep_best(std::vector<Candidate>& list, Index count) {
  std::sort(list.begin(), list.end(), better);
  if (static_cast<Index>(list.size()) > count) list.resize(static_cast<std::size_t>(count));
}

// Weighted k-means++ followed by weighted Lloyd on a small candidate set (local, serial).
RowMatrix reduce_candidates(const RowMatrix& cand, const Vector& weight, Index k, std::uint64_t seed) {
  const Index m = cand.rows();
  RowMatrix centers(k, cand.cols());
  Vector best = Vector::Constant(m, std::numeric_limits<double>::infinity());
  std::vector<bool> chosen(static_cast<std::size_t>(m), false);
  CounterRng rng(seed, RngPurpose::kCandidateReduce, 0, 0);
  for (Index c = 0; c < k; ++c) {
    Vector p(m);
    for (Index i = 0; i < m; ++i) p[i] = chosen[static_cast<std::size_t>(i)] ? 0.0 : weight[i] * (c == 0 ? 1.0 : best[i]);
    const double total = p.sum();
    Index pick = -1;
    if (total > 0) {
      double u = rng.next_uniform() * total;
      for (Index i = 0; i < m; ++i) {
        if (p[i] <= 0) continue;
        pick = i;
        u -= p[i];
        if (u <= 0) break;
      }
    } else {
      for (Index i = 0; i < m && pick < 0; ++i)
        if (!chosen[static_cast<std::size_t>(i)]) pick = i;
      if (pick < 0) pick = c % m;
    }
    chosen[static_cast<std::size_t>(pick)] = true;
    centers.row(c) = cand.row(pick);
    best = best.cwiseMin((cand.rowwise() - cand.row(pick)).rowwise().squaredNorm());
  }
  for (int it = 0; it < 300; ++it) {
    RowMatrix dist;
    squared_distances(cand, centers, centers.rowwise().squaredNorm(), dist);
    std::vector<Index> labels;
    Vector min_d;
    nearest_centers(dist, labels, min_d);
    RowMatrix sums = RowMatrix::Zero(k, cand.cols());
    Vector w = Vector::Zero(k);
    for (Index i = 0; i < m; ++i) {
      sums.row(labels[static_cast<std::size_t>(i)]) += weight[i] * cand.row(i);
      w[labels[static_cast<std::size_t>(i)]] += weight[i];
    }
    RowMatrix next = centers;
    for (Index j = 0; j < k; ++j)
      if (w[j] > 0) next.row(j) = sums.row(j) / w[j];
    const bool same = next == centers;
    centers = std::move(next);
    if (same) break;
  }
  return centers;
}

}  // namespace

SampledRows sample_rows_d2(const comm::Communicator& comm, io::BlockSource& source, const RowMatrix& centers,
                           Index count, std::uint64_t seed, std::uint64_t round, int threads) {
  const Index d = source.info().num_features;
  const Vector center_norms = centers.rowwise().squaredNorm();
  std::vector<Candidate> local;
  std::mutex mutex;
  comm::run_agreed(comm, [&] {
    train::for_each_block(source, threads, [&](const io::DenseBlock& b) {
      Vector w;
      if (centers.rows() > 0) {
        RowMatrix dist;
        squared_distances(b.x, centers, center_norms, dist);
        w = dist.rowwise().minCoeff();
      } else {
        w = Vector::Ones(b.x.rows());
      }
      std::vector<Candidate> mine;
      for (Index i = 0; i < b.x.rows(); ++i) {
        if (!(w[i] > 0)) continue;
        const Index id = b.ref.global_row_begin + i;
        CounterRng rng(seed, RngPurpose::kKmeansSeeding, round, static_cast<std::uint64_t>(id));
        mine.push_back(Candidate{std::log(rng.next_uniform()) / w[i], id, {}});
      }
      keep_best(mine, count);
      for (auto& c : mine) {
        const Index i = c.id - b.ref.global_row_begin;
        c.row.assign(b.x.row(i).data(), b.x.row(i).data() + d);
      }
      std::lock_guard lock(mutex);
      local.insert(local.end(), std::make_move_iterator(mine.begin()), std::make_move_iterator(mine.end()));
      keep_best(local, count);
    });
  });
  std::vector<double> packed;
  packed.reserve(local.size() * static_cast<std::size_t>(d + 2));
  for (const auto& c : local) {
    packed.push_back(c.key);
    packed.push_back(static_cast<double>(c.id));
    packed.insert(packed.end(), c.row.begin(), c.row.end());
  }
  const std::vector<double> all = comm.allgatherv(packed);
  std::vector<Candidate> global;
  for (std::size_t off = 0; off < all.size(); off += static_cast<std::size_t>(d + 2))
    global.push_back(Candidate{all[off], static_cast<Index>(all[off + 1]),
                               std::vector<double>(all.begin() + static_cast<std::ptrdiff_t>(off + 2),
                                                   all.begin() + static_cast<std::ptrdiff_t>(off + 2 + d))});
  keep_best(global, count);
  SampledRows out;
  out.rows.resize(static_cast<Index>(global.size()), d);
  for (std::size_t i = 0; i < global.size(); ++i) {
    out.rows.row(static_cast<Index>(i)) = Eigen::Map<const RowVector>(global[i].row.data(), d);
    out.ids.push_back(global[i].id);
  }
  return out;
}

namespace {

RowMatrix append_rows(const RowMatrix& a, const RowMatrix& b) {
  RowMatrix out(a.rows() + b.rows(), std::max(a.cols(), b.cols()));
  if (a.rows() > 0) out.topRows(a.rows()) = a;
  if (b.rows() > 0) out.bottomRows(b.rows()) = b;
  return out;
}

Index count_distinct_rows(const RowMatrix& c) {
  Index distinct = 0;
  for (Index i = 0; i < c.rows(); ++i) {
    bool seen = false;
    for (Index j = 0; j < i && !seen; ++j) seen = c.row(j) == c.row(i);
    distinct += seen ? 0 : 1;
  }
  return distinct;
}

// Exactly k rows (repeating if fewer were found); warns if fewer than k are distinct.
RowMatrix pad_centers(const RowMatrix& c, Index k, const Logger& log) {
  RowMatrix out(k, c.cols());
  for (Index i = 0; i < k; ++i) out.row(i) = c.row(i % c.rows());
  const Index distinct = count_distinct_rows(out);
  if (distinct < k)
    log.warn("the data has only " + std::to_string(distinct) + " distinct points, fewer than n_clusters=" +
             std::to_string(k) + "; some clusters start identical and will stay empty");
  return out;
}

}  // namespace

RowMatrix init_centers(const comm::Communicator& comm, io::BlockSource& source, Index k, const std::string& method,
                       std::uint64_t seed, int threads, const Logger& log) {
  const Index d = source.info().num_features;
  if (method == "random") return pad_centers(sample_rows_d2(comm, source, RowMatrix(0, d), k, seed, 0, threads).rows, k, log);
  RowMatrix centers = sample_rows_d2(comm, source, RowMatrix(0, d), 1, seed, 0, threads).rows;
  if (method == "k-means++") {
    for (Index i = 1; i < k; ++i) {
      const RowMatrix next = sample_rows_d2(comm, source, centers, 1, seed, static_cast<std::uint64_t>(i), threads).rows;
      if (next.rows() == 0) break;
      centers = append_rows(centers, next);
    }
    return pad_centers(centers, k, log);
  }
  if (method != "k-means||") throw_usage("unknown init '" + method + "' (choose k-means||, k-means++ or random)");
  constexpr int kRounds = 5;
  const Index per_round = 2 * k;
  for (int r = 1; r <= kRounds; ++r)
    centers = append_rows(centers, sample_rows_d2(comm, source, centers, per_round, seed, static_cast<std::uint64_t>(r), threads).rows);
  if (centers.rows() <= k) return pad_centers(centers, k, log);
  // Weight each candidate by the number of rows nearest to it.
  const Vector norms = centers.rowwise().squaredNorm();
  const auto m = static_cast<std::size_t>(centers.rows());
  const std::vector<double> counts = train::reduce_global(comm, source, m, threads, [&](const io::DenseBlock& b, std::span<double> partial) {
    RowMatrix dist;
    squared_distances(b.x, centers, norms, dist);
    std::vector<Index> labels;
    Vector min_d;
    nearest_centers(dist, labels, min_d);
    for (Index l : labels) partial[static_cast<std::size_t>(l)] += 1.0;
  });
  return pad_centers(reduce_candidates(centers, Eigen::Map<const Vector>(counts.data(), static_cast<Index>(m)), k, seed), k, log);
}

double kmeans_inertia(const comm::Communicator& comm, io::BlockSource& source, const RowMatrix& centers, int threads) {
  const Vector norms = centers.rowwise().squaredNorm();
  return train::reduce_global(comm, source, 1, threads, [&](const io::DenseBlock& b, std::span<double> partial) {
    RowMatrix dist;
    squared_distances(b.x, centers, norms, dist);
    partial[0] = dist.rowwise().minCoeff().sum();
  })[0];
}

KmeansResult fit_kmeans(const comm::Communicator& comm, io::BlockSource& source, Index num_samples,
                        double mean_variance, const KmeansConfig& config, const Logger& log,
                        const train::IterationObserver& observer, train::FitControl* control) {
  if (config.n_clusters < 1) throw_usage("--n-clusters must be at least 1");
  if (config.n_clusters > num_samples)
    throw_usage("n_samples=" + std::to_string(num_samples) + " should be >= n_clusters=" + std::to_string(config.n_clusters));
  train::RestartSteps<KmeansLloyd> steps;
  steps.initial = [&](int, std::uint64_t seed, const train::InitPoints&) {
    return KmeansLloyd(init_centers(comm, source, config.n_clusters, config.init, seed, config.threads, log),
                       mean_variance);
  };
  steps.blank = [&] { return KmeansLloyd(RowMatrix(), mean_variance); };
  steps.fit = [&](KmeansLloyd& lloyd, train::EmResult start, const train::IterationHook& hook) {
    train::EmResult em = train::run_batch_em(comm, source, num_samples, lloyd,
                                             {config.max_iter, config.tol, config.threads}, observer, std::move(start), hook);
    if (lloyd.num_empty_clusters() > 0)
      log.warn(std::to_string(lloyd.num_empty_clusters()) + " cluster(s) ended empty and kept their previous center");
    return em;
  };
  // The lowest inertia wins (negation is exact, so the checkpointed score gives it back).
  steps.score = [&](const KmeansLloyd& lloyd, const train::EmResult&) {
    return -kmeans_inertia(comm, source, lloyd.centers(), config.threads);
  };
  train::BestRun<KmeansLloyd> best = train::run_restarts(control, config.n_init, config.seed, log, steps);
  KmeansResult out;
  out.centers = best.model.centers();
  out.inertia = -best.score;
  out.em = std::move(best.em);
  return out;
}

KmeansResult initial_kmeans(const comm::Communicator& comm, io::BlockSource& source, Index num_samples,
                            double mean_variance, Index k, std::uint64_t seed, int threads, const Logger& log) {
  KmeansConfig kc;
  kc.n_clusters = k;
  kc.seed = seed;
  kc.threads = threads;
  log.info("initialising with k-means (k-means|| seeding, then Lloyd)");
  return fit_kmeans(comm, source, num_samples, mean_variance, kc, log, {});
}

RowMatrix hard_responsibilities(const Eigen::Ref<const RowMatrix>& x, const RowMatrix& centers, const Vector& center_sq_norms) {
  RowMatrix dist;
  squared_distances(x, centers, center_sq_norms, dist);
  std::vector<Index> labels;
  Vector min_d;
  nearest_centers(dist, labels, min_d);
  RowMatrix resp = RowMatrix::Zero(x.rows(), centers.rows());
  for (Index i = 0; i < x.rows(); ++i) resp(i, labels[static_cast<std::size_t>(i)]) = 1.0;
  return resp;
}

RowMatrix random_responsibilities(Index rows, Index first_global_row, Index k, std::uint64_t seed) {
  RowMatrix resp(rows, k);
  for (Index i = 0; i < rows; ++i) {
    CounterRng rng(seed, RngPurpose::kRandomInit, 0, static_cast<std::uint64_t>(first_global_row + i));
    for (Index j = 0; j < k; ++j) resp(i, j) = rng.next_uniform();
    resp.row(i) /= resp.row(i).sum();
  }
  return resp;
}

}  // namespace latent::models
