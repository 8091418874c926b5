#include "latent/models/kmeans/kmeans.hpp"

#include "latent/models/gmm/float32_tiles.hpp"
#include "latent/models/gmm/gmm_diag_kernel.hpp"

#include "latent/train/restarts.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <optional>

#include <fmt/format.h>

#include "latent/core/error.hpp"
#include "latent/core/profile.hpp"
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

KmeansFrame kmeans_frame(const comm::Communicator& comm, io::BlockSource& source, const RowVector& mean, int threads) {
  const Index d = source.info().num_features;
  const auto nd = static_cast<std::size_t>(d);
  const std::vector<double> s =
      train::reduce_global(comm, source, nd + 1, threads, [&](const io::DenseBlock& b, std::span<double> partial) {
        Eigen::Map<RowVector> q(partial.data(), d);
        const RowMatrix xc = b.x.rowwise() - mean;
        q = xc.array().isNaN().select(0.0, xc).array().square().colwise().sum().matrix();
        partial[nd] = static_cast<double>(b.x.rows());
      });
  KmeansFrame f;
  f.origin = mean;
  f.mean_variance = d > 0 ? (Eigen::Map<const RowVector>(s.data(), d) / std::max(1.0, s[nd])).mean() : 0.0;
  return f;
}

KmeansLloyd::KmeansLloyd(RowMatrix centers, KmeansFrame frame, std::size_t max_bound_bytes)
    : centers_(std::move(centers)), frame_(std::move(frame)), max_bound_bytes_(max_bound_bytes) {
  prepare();
}

void KmeansLloyd::BoundCache::clear() {
  std::lock_guard lock(mutex);
  blocks.clear();
  bytes = 0;
  pruned = 0;
  rows = 0;
}

KmeansLloyd::BlockBounds* KmeansLloyd::bounds_for(Index first_row, Index rows) const {
  const auto n = static_cast<std::size_t>(rows);
  std::lock_guard lock(bounds_.mutex);
  const auto it = bounds_.blocks.find(first_row);
  if (it != bounds_.blocks.end()) {
    if (it->second.lower.size() == n) return &it->second;
    bounds_.bytes -= it->second.lower.size() * kBoundBytesPerRow;  // another block plan: start again
    bounds_.blocks.erase(it);
  }
  if (bounds_.bytes + n * kBoundBytesPerRow > max_bound_bytes_) return nullptr;
  bounds_.bytes += n * kBoundBytesPerRow;
  BlockBounds& b = bounds_.blocks[first_row];
  b.lower.assign(n, 0.0f);
  b.label.assign(n, 0);
  return &b;
}

void KmeansLloyd::prepare() {
  const Index k = centers_.rows(), d = centers_.cols(), dp = gmm_kernel::padded(d);
  shift32_.assign(static_cast<std::size_t>(k * dp), 0.0f);
  for (Index c = 0; c < k; ++c)
    for (Index j = 0; j < d; ++j) shift32_[static_cast<std::size_t>(c * dp + j)] = static_cast<float>(-centers_(c, j));
}

void KmeansLloyd::save_state(train::TrainState& state) const {
  state.arrays["centers"] = centers_;
  state.scalars["num_empty"] = static_cast<double>(num_empty_);
}

void KmeansLloyd::load_state(const train::TrainState& state) {
  centers_ = state.array("centers");
  prepare();
  bounds_.clear();  // of other centres
  const auto it = state.scalars.find("num_empty");
  num_empty_ = it == state.scalars.end() ? 0 : static_cast<Index>(it->second);
}

std::size_t KmeansLloyd::num_stats() const {
  return static_cast<std::size_t>(1 + centers_.rows() + centers_.rows() * centers_.cols());
}

namespace {
// acc[j] = Σ_o x[rows[o]·dp + j] for j < dp (a multiple of 16), the rows added in the
// order given, each sum a float32 chain from 0: the bits of adding row after row to a
// zeroed acc, whatever the vector width. 64 columns at a time stay in eight registers
// while the rows stream past, so acc is not read and written once per row.
[[gnu::target("avx2")]] void sum_rows(const float* x, Index dp, const Index* rows, Index count, float* acc) {
  Index j = 0;
  for (; j + 64 <= dp; j += 64) {
    __m256 a[8];
    for (auto& v : a) v = _mm256_setzero_ps();
    for (Index o = 0; o < count; ++o) {
      const float* p = x + rows[o] * dp + j;
      for (int l = 0; l < 8; ++l) a[l] = _mm256_add_ps(a[l], _mm256_loadu_ps(p + 8 * l));
    }
    for (int l = 0; l < 8; ++l) _mm256_storeu_ps(acc + j + 8 * l, a[l]);
  }
  for (; j < dp; j += 16) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (Index o = 0; o < count; ++o) {
      const float* p = x + rows[o] * dp + j;
      a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p));
      a1 = _mm256_add_ps(a1, _mm256_loadu_ps(p + 8));
    }
    _mm256_storeu_ps(acc + j, a0);
    _mm256_storeu_ps(acc + j + 8, a1);
  }
}
}  // namespace

namespace {
// v rounded down to a float (v ≥ 0; +inf stays).
float float_below(double v) {
  if (!(v > 0)) return 0.0f;
  float f = static_cast<float>(v);
  if (static_cast<double>(f) > v) f = std::nextafter(f, 0.0f);
  return f;
}
}  // namespace

void KmeansLloyd::e_step_block(const io::DenseBlock& block, std::span<double> partial) const {
  // Row tiles of fixed size (deterministic), each converted once to float32, centred on
  // the frame's origin. With usable bounds (class comment) each row's distance to its last
  // centre comes with the conversion (convert_pairs) and the rows it does not settle are
  // gathered into a tile of their own; those rows (all, without bounds) get every distance
  // (quadratic_unit; where kernel::tile_prefetch() is on, the next tile's rows are brought
  // into L2 meanwhile). Then each centre's rows are summed in row order. The same bits
  // either way: the labels, the float32 distances and the sums do not depend on which
  // distances were computed.
  constexpr Index kTileRows = 128;
  const Index k = centers_.rows(), d = centers_.cols(), dp = gmm_kernel::padded(d);
  const auto uk = static_cast<std::size_t>(k), udp = static_cast<std::size_t>(dp);
  double* counts = partial.data() + 1;
  double* sums = partial.data() + 1 + k;
  std::vector<float> xf(kTileRows * udp, 0.0f), xg, q(kTileRows * uk), qbest(kTileRows), acc(udp);
  std::vector<std::int32_t> label(kTileRows), cand(kTileRows), full(kTileRows);
  std::vector<double> lower(kTileRows), thr(kTileRows);
  std::vector<Index> first(uk + 1), order(kTileRows);
  const gmm_kernel::BlockRows rows(block);
  // A computed distance q of true squared distance t satisfies |q − t| ≤ γ·t + τ: per
  // lane a chain of dp/16 fused adds of terms rounded twice, then four adds of the tree,
  // with γ taken twice over; τ covers gradual underflow.
  BlockBounds* bb = max_bound_bytes_ > 0 && k > 0 ? bounds_for(block.ref.global_row_begin, rows.rows()) : nullptr;
  const bool drifted = bb != nullptr && bb->generation + 1 == generation_ && !drift_.empty();
  const bool usable = bb != nullptr && (bb->generation == generation_ || drifted);
  if (bb != nullptr) bb->generation = 0;  // until the whole block is done (an error leaves it unusable)
  const double gamma = static_cast<double>(dp / gmm_kernel::kLanes + 8) * 0x1p-23;
  const double tau = static_cast<double>(dp + 16) * 0x1p-148;
  // The largest lower bound the computed distances q of all centres but the nearest allow:
  // √((q − τ)/(1 + γ)), rounded down; an overflowed q still means ≥ FLT_MAX; +inf when
  // there is no other centre.
  const auto lower_of = [&](float q2) {
    if (k == 1) return std::numeric_limits<float>::infinity();
    const double v = std::min(static_cast<double>(q2), static_cast<double>(std::numeric_limits<float>::max()));
    return float_below(std::sqrt(std::max(0.0, v - tau) / (1.0 + gamma)) * (1.0 - 0x1p-40));
  };
  const auto nan_error = [] {
    return Error(ErrorKind::kInternal, "k-means: a NaN reached Lloyd's E-step (the source fills them)");
  };
  Index pruned = 0;
  for (Index r0 = 0; r0 < rows.rows(); r0 += kTileRows) {
    const Index n = std::min(kTileRows, rows.rows() - r0);
    const auto un = static_cast<std::size_t>(n);
    std::size_t m = 0;  // rows that need every distance: full[0, m)
    if (usable) {
      // A row keeps its label if its distance to it is below what its bound guarantees
      // for every other centre, allowing for the kernel's rounding.
      for (std::size_t i = 0; i < un; ++i) {
        const std::size_t r = static_cast<std::size_t>(r0) + i;
        cand[i] = bb->label[r];
        lower[i] = static_cast<double>(bb->lower[r]) - (drifted ? drift_[static_cast<std::size_t>(cand[i])] : 0.0);
        thr[i] = lower[i] > 0 ? (1.0 - gamma) * lower[i] * lower[i] - tau : -1.0;
      }
      if (rows.convert_pairs(r0, n, d, frame_.origin.data(), xf.data(), dp, shift32_.data(), cand.data(), qbest.data()))
        throw nan_error();
      for (std::size_t i = 0; i < un; ++i) {
        if (static_cast<double>(qbest[i]) < thr[i]) {
          label[i] = cand[i];
          bb->lower[static_cast<std::size_t>(r0) + i] = float_below(lower[i]);
          ++pruned;
        } else {
          full[m++] = static_cast<std::int32_t>(i);
        }
      }
    } else {
      if (rows.convert(r0, n, d, frame_.origin.data(), xf.data(), dp)) throw nan_error();
      for (std::size_t i = 0; i < un; ++i) full[m++] = static_cast<std::int32_t>(i);
    }
    if (m > 0) {
      const float* xs = xf.data();
      if (m < un) {
        xg.resize(kTileRows * udp);
        for (std::size_t o = 0; o < m; ++o)
          std::copy_n(xf.data() + static_cast<std::size_t>(full[o]) * udp, udp, xg.data() + o * udp);
        xs = xg.data();
      }
      const auto mi = static_cast<Index>(m);
      gmm_kernel::PrefetchRange pf = rows.next_tile(r0, n, kTileRows);
      const Index steps = std::max<Index>(1, (mi + 3) / 4 * ((k + 4) / 5) * (dp / gmm_kernel::kLanes));
      pf.lines = static_cast<int>(std::clamp<Index>((static_cast<Index>(pf.end - pf.next) / 64 + steps - 1) / steps, 1, 64));
      gmm_kernel::quadratic_unit(xs, mi, dp, shift32_.data(), k, q.data(), pf);
      // Nearest centre (the first of the smallest) and the nearest of the others (for the
      // bounds) in one sweep: a centre displaced from first place becomes a candidate
      // for second, and a tie with the first goes to second.
      for (std::size_t o = 0; o < m; ++o) {
        const float* qo = q.data() + o * uk;
        Index best = 0;
        float other = std::numeric_limits<float>::infinity();
        for (Index c = 1; c < k; ++c) {
          if (qo[c] < qo[best]) {
            other = qo[best];
            best = c;
          } else {
            other = std::min(other, qo[c]);
          }
        }
        const auto i = static_cast<std::size_t>(full[o]);
        label[i] = static_cast<std::int32_t>(best);
        qbest[i] = qo[best];
        if (bb != nullptr) {
          bb->label[static_cast<std::size_t>(r0) + i] = label[i];
          bb->lower[static_cast<std::size_t>(r0) + i] = lower_of(other);
        }
      }
    }
    // Inertia in row order; the rows of each centre in row order.
    double inertia = 0;
    std::fill(first.begin(), first.end(), Index{0});
    for (std::size_t i = 0; i < un; ++i) {
      inertia += static_cast<double>(qbest[i]);
      ++first[static_cast<std::size_t>(label[i]) + 1];
    }
    partial[0] += inertia;
    for (std::size_t c = 0; c < uk; ++c) first[c + 1] += first[c];
    {
      std::vector<Index> fill(first.begin(), first.end() - 1);
      for (std::size_t i = 0; i < un; ++i) order[static_cast<std::size_t>(fill[static_cast<std::size_t>(label[i])]++)] = static_cast<Index>(i);
    }
    // Sums of each centre's rows of the tile: float32 lanes added in row order (the same
    // bits for any vector width), then added to the double statistics once per tile.
    for (Index c = 0; c < k; ++c) {
      const Index lo = first[static_cast<std::size_t>(c)], hi = first[static_cast<std::size_t>(c + 1)];
      if (lo == hi) continue;
      counts[c] += static_cast<double>(hi - lo);
      sum_rows(xf.data(), dp, order.data() + lo, hi - lo, acc.data());
      double* s = sums + c * d;
      for (Index j = 0; j < d; ++j) s[j] += static_cast<double>(acc[static_cast<std::size_t>(j)]);
    }
  }
  if (bb != nullptr) bb->generation = generation_;
  bounds_.pruned += pruned;
  bounds_.rows += rows.rows();
  if (pruned > 0) profile::add(profile::Counter::kSettledRows, static_cast<double>(pruned));
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
  // Each centre's shift in the float32 operands the distances use (in double, rounded
  // up), and for each centre the largest shift of the others: what a row's lower bound
  // loses (class comment).
  const std::vector<float> before = shift32_;
  prepare();
  const Index dp = gmm_kernel::padded(d);
  std::vector<double> moved(static_cast<std::size_t>(k), 0.0);
  for (Index c = 0; c < k; ++c) {
    double ss = 0;
    for (Index j = 0; j < dp; ++j) {
      const auto e = static_cast<std::size_t>(c * dp + j);
      const double v = static_cast<double>(shift32_[e]) - static_cast<double>(before[e]);
      ss += v * v;
    }
    moved[static_cast<std::size_t>(c)] = std::sqrt(ss) * (1.0 + 0x1p-30);
  }
  std::size_t top = 0;
  for (std::size_t c = 1; c < moved.size(); ++c)
    if (moved[c] > moved[top]) top = c;
  double runner = 0;
  for (std::size_t c = 0; c < moved.size(); ++c)
    if (c != top) runner = std::max(runner, moved[c]);
  drift_.assign(moved.size(), moved.empty() ? 0.0 : moved[top]);
  if (!moved.empty()) drift_[top] = runner;
  ++generation_;
  last_pruned_ = bounds_.pruned.exchange(0);
  last_rows_ = bounds_.rows.exchange(0);
  return Step{stats[0], frame_.mean_variance > 0 ? shift / frame_.mean_variance : shift};
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

// Each row's squared distance to its nearest center. The expansion in squared_distances
// errs by up to about (D + 2)ε(||x||² + ||c||²); an entry that small is recomputed as
// Σ(x − c)², so a distance is 0 exactly when the row equals the center.
Vector min_sq_distances(const RowMatrix& x, const RowMatrix& centers, const Vector& center_norms) {
  RowMatrix dist;
  squared_distances(x, centers, center_norms, dist);
  Vector min_d = dist.rowwise().minCoeff();
  const Vector x_sq = x.rowwise().squaredNorm();
  const double u = 4.0 * static_cast<double>(x.cols() + 2) * std::numeric_limits<double>::epsilon();
  const double max_norm = center_norms.maxCoeff();
  for (Index i = 0; i < dist.rows(); ++i) {
    if (min_d[i] > u * (x_sq[i] + max_norm)) continue;  // no entry of the row is that small
    for (Index k = 0; k < dist.cols(); ++k)
      if (dist(i, k) <= u * (x_sq[i] + center_norms[k])) dist(i, k) = (x.row(i) - centers.row(k)).squaredNorm();
    min_d[i] = dist.row(i).minCoeff();
  }
  return min_d;
}

// The Lloyd iterations of the candidate reduction (weighted, local, serial), from
// `centers` after `done` iterations; `at_iteration(centers, done)` after each one that
// moved a center (a stop point). At most 300 iterations in all.
RowMatrix reduce_lloyd(const RowMatrix& cand, const Vector& weight, RowMatrix centers, int done,
                       const std::function<void(const RowMatrix&, int)>& at_iteration) {
  const Index k = centers.rows(), m = cand.rows();
  for (int it = done; it < 300; ++it) {
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
    at_iteration(centers, it + 1);
  }
  return centers;
}

// Weighted k-means++ on a small candidate set (local, serial): the starting centers of
// reduce_lloyd.
RowMatrix reduce_seed(const RowMatrix& cand, const Vector& weight, Index k, std::uint64_t seed) {
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
  return centers;
}

}  // namespace

SampledRows sample_rows_d2(const comm::Communicator& comm, io::BlockSource& source, const RowVector& origin,
                           const RowMatrix& centers, Index count, std::uint64_t seed, std::uint64_t round, int threads) {
  const Index d = source.info().num_features;
  const Vector center_norms = centers.rowwise().squaredNorm();
  std::vector<Candidate> local;
  std::mutex mutex;
  comm::run_agreed(comm, [&] {
    train::for_each_block(source, threads, [&](const io::DenseBlock& b) {
      const RowMatrix xc = b.x.rowwise() - origin;
      const Vector w = centers.rows() > 0 ? min_sq_distances(xc, centers, center_norms) : Vector(Vector::Ones(xc.rows()));
      std::vector<Candidate> mine;
      for (Index i = 0; i < xc.rows(); ++i) {
        if (!(w[i] > 0)) continue;
        const Index id = b.ref.global_row_begin + i;
        CounterRng rng(seed, RngPurpose::kKmeansSeeding, round, static_cast<std::uint64_t>(id));
        mine.push_back(Candidate{std::log(rng.next_uniform()) / w[i], id, {}});
      }
      keep_best(mine, count);
      for (auto& c : mine) {
        const Index i = c.id - b.ref.global_row_begin;
        c.row.assign(xc.row(i).data(), xc.row(i).data() + d);
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

// Distinct rows of c (exact comparison), by sorting: O(n log n · D).
Index count_distinct_rows(const RowMatrix& c) {
  std::vector<Index> order(static_cast<std::size_t>(c.rows()));
  for (Index i = 0; i < c.rows(); ++i) order[static_cast<std::size_t>(i)] = i;
  const auto less = [&](Index a, Index b) {
    for (Index j = 0; j < c.cols(); ++j)
      if (c(a, j) != c(b, j)) return c(a, j) < c(b, j);
    return false;
  };
  std::sort(order.begin(), order.end(), less);
  Index distinct = 0;
  for (std::size_t i = 0; i < order.size(); ++i) distinct += i == 0 || less(order[i - 1], order[i]) ? 1 : 0;
  return distinct;
}

// Exactly k rows (repeating if fewer were found); warns if fewer than k are distinct.
// `data_distinct` is the number of distinct points of the data when the seeding proved it
// (a draw found no further row at a positive distance from the centers), else -1: only
// then does the warning say the data has that few.
RowMatrix pad_centers(const RowMatrix& c, Index k, Index data_distinct, const std::string& method, const Logger& log) {
  RowMatrix out(k, c.cols());
  for (Index i = 0; i < k; ++i) out.row(i) = c.row(i % c.rows());
  const Index distinct = count_distinct_rows(out);
  if (distinct < k) {
    if (data_distinct >= 0 && data_distinct < k)
      log.warn("the data has only " + std::to_string(data_distinct) + " distinct points, fewer than n_clusters=" +
               std::to_string(k) + "; some clusters start identical and will stay empty");
    else
      log.warn("the " + method + " initialisation gave only " + std::to_string(distinct) +
               " distinct centers for n_clusters=" + std::to_string(k) +
               "; some clusters start identical and will stay empty (try another --seed or --init)");
  }
  return out;
}

}  // namespace

RowMatrix init_centers(const comm::Communicator& comm, io::BlockSource& source, const RowVector& origin, Index k,
                       const std::string& method, std::uint64_t seed, int threads, const Logger& log,
                       const train::InitPoints& points) {
  if (method != "random" && method != "k-means++" && method != "k-means||")
    throw_usage("unknown init '" + method + "' (choose k-means||, k-means++ or random)");
  const Index d = source.info().num_features;
  // Progress, as the stage-1 snapshot holds it: the passes over the data done
  // ("seed_round"), the rows drawn ("seed_rows", centred), whether a draw ran out of rows
  // at a positive distance ("seed_exhausted"); for k-means|| then the candidates' weights
  // ("seed_weights") and the reduction's Lloyd centers after "seed_lloyd_iter" iterations.
  const train::TrainState* r = points.resumed_in(1);
  int done = r ? static_cast<int>(r->scalar("seed_round")) : 0;
  RowMatrix rows = r ? r->array("seed_rows") : RowMatrix(0, d);
  bool exhausted = r ? r->scalar("seed_exhausted") != 0 : false;
  const auto snapshot = [&](train::TrainState& s) {
    s.scalars["stage"] = 1;
    s.scalars["seed_round"] = done;
    s.scalars["seed_exhausted"] = exhausted ? 1.0 : 0.0;
    s.arrays["seed_rows"] = rows;
  };
  const auto point = [&] {
    points.at([&] {
      train::TrainState s;
      snapshot(s);
      return s;
    });
  };
  // One pass: `count` rows drawn by squared distance to `rows`; appended.
  const auto draw = [&](Index count, int round) {
    const RowMatrix next = sample_rows_d2(comm, source, origin, rows, count, seed, static_cast<std::uint64_t>(round), threads).rows;
    exhausted = exhausted || (rows.rows() > 0 && next.rows() < count);
    rows = append_rows(rows, next);
    done = round + 1;
    return next.rows();
  };
  const auto data_distinct = [&] { return exhausted ? count_distinct_rows(rows) : Index{-1}; };
  if (method == "random") {
    if (done == 0) {
      draw(k, 0);
      point();
    }
    return pad_centers(rows, k, data_distinct(), method, log);
  }
  if (done == 0) {
    draw(1, 0);
    point();
  }
  if (method == "k-means++") {
    for (int i = done; i < k; ++i) {
      if (draw(1, i) == 0) break;
      point();
    }
    return pad_centers(rows, k, data_distinct(), method, log);
  }
  constexpr int kRounds = 5;
  for (int round = done; round <= kRounds; ++round) {
    draw(2 * k, round);
    point();
  }
  if (rows.rows() <= k) return pad_centers(rows, k, data_distinct(), method, log);
  // Weight each candidate by the number of rows nearest to it.
  const auto m = static_cast<std::size_t>(rows.rows());
  Vector weights;
  if (r && r->arrays.count("seed_weights")) {
    weights = Eigen::Map<const Vector>(r->array("seed_weights").data(), static_cast<Index>(m));
  } else {
    const Vector norms = rows.rowwise().squaredNorm();
    const std::vector<double> counts =
        train::reduce_global(comm, source, m, threads, [&](const io::DenseBlock& b, std::span<double> partial) {
          RowMatrix dist;
          squared_distances(b.x.rowwise() - origin, rows, norms, dist);
          std::vector<Index> labels;
          Vector min_d;
          nearest_centers(dist, labels, min_d);
          for (Index l : labels) partial[static_cast<std::size_t>(l)] += 1.0;
        });
    weights = Eigen::Map<const Vector>(counts.data(), static_cast<Index>(m));
  }
  const auto weighted_snapshot = [&](train::TrainState& s) {
    snapshot(s);
    s.arrays["seed_weights"] = RowMatrix(Eigen::Map<const RowMatrix>(weights.data(), weights.size(), 1));
  };
  if (!(r && r->arrays.count("seed_weights")))
    points.at([&] {
      train::TrainState s;
      weighted_snapshot(s);
      return s;
    });
  // Weighted k-means++ then weighted Lloyd on the candidates (local; every rank computes
  // the same), resumable at each Lloyd iteration.
  const bool in_lloyd = r && r->arrays.count("seed_centers");
  RowMatrix start = in_lloyd ? r->array("seed_centers") : reduce_seed(rows, weights, k, seed);
  const int lloyd_done = in_lloyd ? static_cast<int>(r->scalar("seed_lloyd_iter")) : 0;
  const RowMatrix centers = reduce_lloyd(rows, weights, std::move(start), lloyd_done, [&](const RowMatrix& c, int it) {
    points.at([&] {
      train::TrainState s;
      weighted_snapshot(s);
      s.arrays["seed_centers"] = c;
      s.scalars["seed_lloyd_iter"] = it;
      return s;
    });
  });
  return pad_centers(centers, k, data_distinct(), method, log);
}

double kmeans_inertia(const comm::Communicator& comm, io::BlockSource& source, const RowVector& origin,
                      const RowMatrix& centers, int threads) {
  const Vector norms = centers.rowwise().squaredNorm();
  return train::reduce_global(comm, source, 1, threads, [&](const io::DenseBlock& b, std::span<double> partial) {
    RowMatrix dist;
    squared_distances(b.x.rowwise() - origin, centers, norms, dist);
    partial[0] = dist.rowwise().minCoeff().sum();
  })[0];
}

namespace {

void check_k(Index k, Index num_samples) {
  if (k < 1) throw_usage("--n-clusters must be at least 1");
  if (k > num_samples)
    throw_usage("n_samples=" + std::to_string(num_samples) + " should be >= n_clusters=" + std::to_string(k));
}

void warn_empty(const KmeansLloyd& lloyd, const Logger& log) {
  if (lloyd.num_empty_clusters() > 0)
    log.warn(std::to_string(lloyd.num_empty_clusters()) + " cluster(s) ended empty and kept their previous center");
}

// The snapshot after the frame's pass, before any draw: a resume starts the seeding over.
train::TrainState frame_snapshot() {
  train::TrainState s;
  s.scalars["stage"] = 0;
  return s;
}

}  // namespace

KmeansResult fit_kmeans(const comm::Communicator& comm, io::BlockSource& source, Index num_samples,
                        const RowVector& mean, const KmeansConfig& config, const Logger& log,
                        const train::IterationObserver& observer, train::FitControl* control) {
  check_k(config.n_clusters, num_samples);
  // One pass for the frame, when the first run starts or a resumed one needs it.
  std::optional<KmeansFrame> frame;
  const auto get_frame = [&]() -> const KmeansFrame& {
    if (!frame) frame = kmeans_frame(comm, source, mean, config.threads);
    return *frame;
  };
  train::RestartSteps<KmeansLloyd> steps;
  steps.initial = [&](int, std::uint64_t seed, const train::InitPoints& points) {
    if (!frame) {
      get_frame();
      // A stop here keeps what a resumed run had.
      if (points.resumed != nullptr)
        points.at([&] { return *points.resumed; });
      else
        points.at(frame_snapshot);
    }
    return KmeansLloyd(init_centers(comm, source, frame->origin, config.n_clusters, config.init, seed, config.threads,
                                    log, points),
                       *frame);
  };
  steps.blank = [&] { return KmeansLloyd(RowMatrix(), get_frame()); };
  steps.fit = [&](KmeansLloyd& lloyd, train::EmResult start, const train::IterationHook& hook) {
    train::EmResult em = train::run_batch_em(comm, source, num_samples, lloyd,
                                             {config.max_iter, config.tol, config.threads}, observer, std::move(start), hook);
    warn_empty(lloyd, log);
    return em;
  };
  // The lowest inertia wins (negation is exact, so the checkpointed score gives it back).
  steps.score = [&](const KmeansLloyd& lloyd, const train::EmResult&) {
    return -kmeans_inertia(comm, source, lloyd.frame().origin, lloyd.centered_centers(), config.threads);
  };
  train::BestRun<KmeansLloyd> best = train::run_restarts(control, config.n_init, config.seed, log, steps);
  KmeansResult out;
  out.centers = best.model.centers();
  out.centered_centers = best.model.centered_centers();
  out.frame = best.model.frame();
  out.inertia = -best.score;
  out.em = std::move(best.em);
  return out;
}

KmeansResult initial_kmeans(const comm::Communicator& comm, io::BlockSource& source, Index num_samples,
                            const RowVector& mean, Index k, std::uint64_t seed, int threads, const Logger& log,
                            const train::InitPoints& points) {
  check_k(k, num_samples);
  const KmeansConfig kc;
  log.info("initialising with k-means (k-means|| seeding, then Lloyd)");
  const KmeansFrame frame = kmeans_frame(comm, source, mean, threads);
  const train::TrainState* lloyd_state = points.resumed_in(2);
  if (points.resumed != nullptr)
    points.at([&] { return *points.resumed; });
  else
    points.at(frame_snapshot);
  KmeansLloyd lloyd(lloyd_state ? RowMatrix() : init_centers(comm, source, frame.origin, k, kc.init, seed, threads, log, points),
                    frame);
  train::EmResult start;
  if (lloyd_state) {
    train::TrainState m;
    const std::string prefix = "km_";
    for (const auto& [key, value] : lloyd_state->arrays)
      if (key.rfind(prefix, 0) == 0) m.arrays[key.substr(prefix.size())] = value;
    for (const auto& [key, value] : lloyd_state->scalars)
      if (key.rfind(prefix, 0) == 0) m.scalars[key.substr(prefix.size())] = value;
    lloyd.load_state(m);
    start = train::load_history(*lloyd_state, "km_");
  }
  const auto observer = [&](const train::IterationRecord& rec) {
    if (rec.iteration % 10 == 0)
      log.info(fmt::format("  k-means iter {:>4}  inertia {:.6g}  shift/variance {:.3e}  {:.3f} s", rec.iteration,
                           rec.objective, rec.change, rec.seconds));
  };
  const auto hook = [&](const train::EmResult& so_far) {
    points.at([&] {
      train::TrainState s, m;
      lloyd.save_state(m);
      for (auto& [key, value] : m.arrays) s.arrays["km_" + key] = std::move(value);
      for (const auto& [key, value] : m.scalars) s.scalars["km_" + key] = value;
      train::save_history(so_far, s, "km_");
      s.scalars["stage"] = 2;
      return s;
    });
  };
  train::EmResult em =
      train::run_batch_em(comm, source, num_samples, lloyd, {kc.max_iter, kc.tol, threads}, observer, std::move(start), hook);
  warn_empty(lloyd, log);
  log.info(fmt::format("  k-means {} after {} iterations, inertia {:.6g}", em.converged ? "converged" : "stopped",
                       em.n_iter, em.objective));
  KmeansResult out;
  out.centers = lloyd.centers();
  out.centered_centers = lloyd.centered_centers();
  out.frame = frame;
  out.inertia = em.objective;
  out.em = std::move(em);
  return out;
}

RowMatrix hard_responsibilities(const Eigen::Ref<const RowMatrix>& x, const RowMatrix& centers, const Vector& center_sq_norms,
                                const RowVector& origin) {
  RowMatrix dist;
  squared_distances(x.rowwise() - origin, centers, center_sq_norms, dist);
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
