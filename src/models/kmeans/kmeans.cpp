#include "latent/models/kmeans/kmeans.hpp"

#include "latent/models/gmm/float32_tiles.hpp"
#include "latent/models/gmm/gmm_diag_kernel.hpp"

#include "latent/train/restarts.hpp"

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <bit>
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
  // Per block and column Σ_i (x_ij − mean_j)² over the non-NaN entries, the rows in order
  // (the bits of the Eigen column-wise sum this replaced), float32 rows widened as read:
  // no centred copy of the block, contiguous reads.
  const io::BlockSource::Float32Scope as_stored(source, true);
  const std::vector<double> s =
      train::reduce_global(comm, source, nd + 1, threads, [&](const io::DenseBlock& b, std::span<double> partial) {
        double* q = partial.data();
        const auto add = [&](const auto& x) {  // x: the block's float or double rows
          for (Index i = 0; i < x.rows(); ++i) {
            const auto* row = &x(i, 0);
            for (Index j = 0; j < d; ++j) {
              const double e = static_cast<double>(row[j]) - mean[j];
              if (!std::isnan(e)) q[j] += e * e;
            }
          }
          return x.rows();
        };
        const Index n = b.is_float32() ? add(b.xf) : add(b.x);
        partial[nd] = static_cast<double>(n);
      });
  // The origin: gmm_kernel::float32_centre() of the mean (float32 rows centred by one
  // float32 add), and Σ_i (x_ij − origin_j)² = Σ_i (x_ij − mean_j)² + N (origin_j −
  // mean_j)² (NaN entries counted in N: an upper bound).
  const double n = std::max(1.0, s[nd]);
  const RowVector variance = Eigen::Map<const RowVector>(s.data(), d) / n;
  const RowVector origin = gmm_kernel::float32_centre(mean, variance);
  const RowVector sq = (variance.array() + (origin - mean).array().square()).matrix() * n;
  KmeansFrame f;
  f.origin = origin;
  f.mean_variance = d > 0 ? (sq / n).mean() : 0.0;
  // |x_ij − origin_j| ≤ √Σ_i (x_ij − origin_j)²; the margin covers the per-block sums'
  // rounding (relative ≤ rows·ε) and the float32 conversion (2⁻²⁴).
  f.bound = sq.cwiseSqrt() * (1.0 + 0x1p-20);
  return f;
}

KmeansLloyd::KmeansLloyd(RowMatrix centers, KmeansFrame frame, std::size_t max_bound_bytes)
    : centers_(std::move(centers)), frame_(std::move(frame)), max_bound_bytes_(max_bound_bytes) {
  prepare();
}

std::size_t KmeansLloyd::bound_bytes_per_row(Index k) { return 8 + 4 * static_cast<std::size_t>(k); }

std::size_t KmeansLloyd::block_state_bytes(Index k, Index d) {
  return static_cast<std::size_t>(k * gmm_kernel::padded(d) + k + 1) * sizeof(double);
}

void KmeansLloyd::BoundCache::clear() {
  std::lock_guard lock(mutex);
  blocks.clear();
  bytes = 0;
  pruned = 0;
  unread = 0;
  rows = 0;
  few = 0;
}

KmeansLloyd::BlockBounds* KmeansLloyd::bounds_for(Index first_row, Index rows) const {
  const auto n = static_cast<std::size_t>(rows);
  const std::size_t per_block = block_state_bytes(centers_.rows(), centers_.cols());
  const std::size_t per_row = bound_bytes_per_row(centers_.rows());
  const std::size_t need = n * per_row + per_block;
  std::lock_guard lock(bounds_.mutex);
  const auto it = bounds_.blocks.find(first_row);
  if (it != bounds_.blocks.end()) {
    if (it->second.upper.size() == n) return &it->second;
    bounds_.bytes -= it->second.upper.size() * per_row + per_block;  // another block plan: start again
    bounds_.blocks.erase(it);
  }
  if (bounds_.bytes + need > max_bound_bytes_) return nullptr;
  bounds_.bytes += need;
  BlockBounds& b = bounds_.blocks[first_row];
  b.lower.assign(n * static_cast<std::size_t>(centers_.rows()), 0.0f);
  b.upper.assign(n, 0.0f);
  b.label.assign(n, 0);
  return &b;
}

void KmeansLloyd::prepare() {
  const Index k = centers_.rows(), d = centers_.cols(), dp = gmm_kernel::padded(d);
  shift32_.assign(static_cast<std::size_t>(k * dp), 0.0f);
  for (Index c = 0; c < k; ++c)
    for (Index j = 0; j < d; ++j) shift32_[static_cast<std::size_t>(c * dp + j)] = static_cast<float>(-centers_(c, j));
  if (k == 0) return;  // a blank model, for load_state
  if (frame_.bound.size() != d)
    throw Error(ErrorKind::kInternal, "k-means: the frame has no bound for each of the " + std::to_string(d) + " features");
  // ‖c‖² of each float32 centre, summed in column order (block_partial's inertia).
  cnorm_.assign(static_cast<std::size_t>(k), 0.0);
  for (Index c = 0; c < k; ++c) {
    double cc = 0;
    for (Index j = 0; j < d; ++j) {
      const auto cj = static_cast<double>(shift32_[static_cast<std::size_t>(c * dp + j)]);
      cc += cj * cj;
    }
    cnorm_[static_cast<std::size_t>(c)] = cc;
  }
  if (grid_.size() == static_cast<std::size_t>(dp)) return;  // the frame's, fixed for the model's life
  neg_origin32_ = gmm_kernel::negated_float(frame_.origin.data(), d);
  // 2^g_j with |x_j|·2^g_j ≤ 2^40 for every centred float32 value (|x_j| ≤ bound_j ≤ 2^e,
  // and a float32 is below 2^128); a zero bound means a column of zeros.
  grid_.assign(static_cast<std::size_t>(dp), 0.0);
  for (Index j = 0; j < d; ++j) {
    const double b = frame_.bound[j];
    int e = 129;
    if (std::isfinite(b)) std::frexp(b, &e);
    e = std::clamp(e, -149, 129);
    grid_[static_cast<std::size_t>(j)] = std::ldexp(1.0, 40 - e);
  }
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
// acc[l] += round(p[4l + i]·u[l]_i) for l < 4, i < 4 (add_rows_on_grid's step).
[[gnu::target("avx2"), gnu::always_inline]] inline void add_on_grid(const float* p, const __m256d* u, __m256d magic,
                                                                    __m256d* acc) {
  for (int l = 0; l < 4; ++l) {
    __m256d v = _mm256_mul_pd(_mm256_cvtps_pd(_mm_loadu_ps(p + 4 * l)), u[l]);
    v = _mm256_sub_pd(_mm256_add_pd(v, magic), magic);
    acc[l] = _mm256_add_pd(acc[l], v);
  }
}

// s[j] + Σ_o round(x[rows[o]·dp + j]·unit[j]) for j < dp (a multiple of 16; unit 0 in the
// padding), rounded half to even by adding and taking away 1.5·2^52: each term an integer of
// magnitude at most 2^40 (class comment), so s stays an exact integer below 2^53, the same
// bits on every CPU and in any row order. Sixteen columns at a time, in two sets of four
// registers (even and odd rows, added at the end: the sums are exact, so the same bits), so
// that two rows' adds are in flight instead of one chain of dependent adds. With −unit a
// row is taken away (rounding is odd, so exactly).
[[gnu::target("avx2")]] void add_rows_on_grid(const float* x, Index dp, const std::int32_t* rows, Index count,
                                              const double* unit, double* s) {
  const __m256d magic = _mm256_set1_pd(0x1.8p52);
  for (Index j = 0; j < dp; j += 16) {
    __m256d u[4], a[2][4];
    for (int l = 0; l < 4; ++l) {
      u[l] = _mm256_loadu_pd(unit + j + 4 * l);
      a[0][l] = _mm256_loadu_pd(s + j + 4 * l);
    }
    if (count == 1) {  // a row that changes centre (the bounded iterations): one set
      add_on_grid(x + static_cast<Index>(rows[0]) * dp + j, u, magic, a[0]);
      for (int l = 0; l < 4; ++l) _mm256_storeu_pd(s + j + 4 * l, a[0][l]);
      continue;
    }
    for (int l = 0; l < 4; ++l) a[1][l] = _mm256_setzero_pd();
    Index o = 0;
    for (; o + 2 <= count; o += 2) {
      add_on_grid(x + static_cast<Index>(rows[o]) * dp + j, u, magic, a[0]);
      add_on_grid(x + static_cast<Index>(rows[o + 1]) * dp + j, u, magic, a[1]);
    }
    if (o < count) add_on_grid(x + static_cast<Index>(rows[o]) * dp + j, u, magic, a[0]);
    for (int l = 0; l < 4; ++l) _mm256_storeu_pd(s + j + 4 * l, _mm256_add_pd(a[0][l], a[1][l]));
  }
}

// Σ_j x_j² in double (each square exact), four lanes added pairwise at the end: the same
// bits on every CPU.
[[gnu::target("avx2")]] double row_norm(const float* x, Index dp) {
  __m256d a = _mm256_setzero_pd();
  for (Index j = 0; j < dp; j += 4) {
    const __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(x + j));
    a = _mm256_add_pd(a, _mm256_mul_pd(v, v));
  }
  alignas(32) double t[4];
  _mm256_store_pd(t, a);
  return (t[0] + t[1]) + (t[2] + t[3]);
}

// out[i] = row_norm(x + i·dp, dp) for i < rows, the same bits, eight rows at a time: one
// row's sum is a chain of dependent adds (an add's latency per four values), and eight
// chains side by side keep the adders busy. In a Lloyd iteration of Fashion-MNIST (K = 10)
// on the AMD EPYC family 26 the one-row chain was a fifth of the time.
[[gnu::target("avx2")]] void row_norms(const float* x, Index rows, Index dp, double* out) {
  constexpr int kRows = 8;
  Index i = 0;
  for (; i + kRows <= rows; i += kRows) {
    __m256d a[kRows];
    for (int r = 0; r < kRows; ++r) a[r] = _mm256_setzero_pd();
    for (Index j = 0; j < dp; j += 4)
      for (int r = 0; r < kRows; ++r) {
        const __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(x + (i + r) * dp + j));
        a[r] = _mm256_add_pd(a[r], _mm256_mul_pd(v, v));
      }
    for (int r = 0; r < kRows; ++r) {
      alignas(32) double t[4];
      _mm256_store_pd(t, a[r]);
      out[i + r] = (t[0] + t[1]) + (t[2] + t[3]);
    }
  }
  for (; i < rows; ++i) out[i] = row_norm(x + i * dp, dp);
}

// v rounded down to a float (0 for v ≤ 0; at most FLT_MAX for a finite v).
float float_below(double v) {
  if (!(v > 0)) return 0.0f;
  float f = static_cast<float>(v);
  if (static_cast<double>(f) > v) f = std::bit_cast<float>(std::bit_cast<std::uint32_t>(f) - 1);  // f > 0: the float below
  return f;
}

// v ≥ 0 rounded up to a float (+inf for NaN or beyond the float range).
float float_above(double v) {
  if (!(v <= static_cast<double>(std::numeric_limits<float>::max()))) return std::numeric_limits<float>::infinity();
  float f = static_cast<float>(v);
  if (static_cast<double>(f) < v) f = std::bit_cast<float>(std::bit_cast<std::uint32_t>(f) + 1);  // f ≥ 0: the float above
  return f;
}
}  // namespace

void KmeansLloyd::block_partial(const double* sums, const double* counts, double norms, const double* unit,
                                std::span<double> partial) const {
  const Index k = centers_.rows(), d = centers_.cols(), dp = gmm_kernel::padded(d);
  double* out_counts = partial.data() + 1;
  double* out_sums = partial.data() + 1 + k;
  double fit = 0;  // Σ_c (2 c·S_c − n_c‖c‖²), c the float32 operand
  // unit[j] is a power of two in [2^-99, 2^189] (the grid, coarsened by at most 10 bits for
  // the block's rows), so 1/unit[j] is exact and s·(1/unit) is s/unit.
  std::vector<double> inverse(static_cast<std::size_t>(d));
  for (Index j = 0; j < d; ++j) inverse[static_cast<std::size_t>(j)] = 1.0 / unit[j];
  for (Index c = 0; c < k; ++c) {
    const double n = counts[c];
    if (n == 0) continue;
    out_counts[c] += n;
    const double* s = sums + c * dp;
    const float* t = shift32_.data() + c * dp;  // −c
    double dot = 0;
    for (Index j = 0; j < d; ++j) {
      const double v = s[j] * inverse[j];  // exact
      out_sums[c * d + j] += v;
      dot += -static_cast<double>(t[j]) * v;
    }
    fit += 2.0 * dot - n * cnorm_[static_cast<std::size_t>(c)];
  }
  partial[0] += std::max(0.0, norms - fit);
}

void KmeansLloyd::e_step_block(const io::DenseBlock& block, std::span<double> partial) const {
  // Row tiles of fixed size, each row converted to float32 centred on the frame's origin.
  // Without usable bounds every row gets every distance (quadratic_unit; where
  // kernel::tile_prefetch() is on, the next tile's rows are brought into L2 meanwhile) and
  // is added to its centre's sums; the block's Σ‖x‖² is summed in row order. With them
  // (class comment) a row the bounds settle is not read; the others are converted with
  // their distance to their last centre (convert_pairs), and the rows that test does not
  // settle are gathered into a tile of their own for every distance; a row that changes
  // centre moves from one centre's sums to the other's. The sums are exact (class
  // comment), so they do not depend on which rows were read.
  constexpr Index kTileRows = 128;
  const Index k = centers_.rows(), d = centers_.cols(), dp = gmm_kernel::padded(d);
  const auto uk = static_cast<std::size_t>(k), udp = static_cast<std::size_t>(dp);
  const gmm_kernel::BlockRows rows(block);
  const Index num_rows = rows.rows();
  const std::span<const float> neg_origin = neg_origin32_;  // float32 centring (empty: through double)
  if (num_rows >= (Index{1} << 23))
    throw Error(ErrorKind::kInternal, "k-means: a block of " + std::to_string(num_rows) +
                                          " rows; at most 8388607 (--block-rows)");
  // The block's grid: coarser by the bits its row count adds beyond 2^13, so that its sums
  // stay below 2^53 units.
  std::vector<double> unit(grid_);
  int extra = 0;
  while ((Index{8192} << extra) < num_rows) ++extra;
  if (extra > 0)
    for (double& u : unit) u = std::ldexp(u, -extra);
  std::vector<double> minus_unit(unit.size());
  for (std::size_t j = 0; j < unit.size(); ++j) minus_unit[j] = -unit[j];
  // The tiles' rows, kept by the thread from block to block (no allocation, no zeroing per
  // block: both were a tenth of a bounded iteration). Zeroed when the width changes: the
  // columns from d to dp must stay zero, and the conversions write only the first d.
  struct TileScratch {
    Index d = -1;
    LineFloats xf, xg;  // on cache lines (CacheLineAllocator)
  };
  thread_local TileScratch scratch;
  if (scratch.d != d) {
    scratch.xf.assign(kTileRows * udp, 0.0f);
    scratch.xg.assign(kTileRows * udp, 0.0f);
    scratch.d = d;
  }
  LineFloats& xf = scratch.xf;
  LineFloats& xg = scratch.xg;
  std::vector<float> q(kTileRows * uk), qbest(kTileRows);
  std::array<double, kTileRows> tile_norms;
  std::vector<std::int32_t> cand(kTileRows), full(kTileRows), open(kTileRows), label(kTileRows), order(kTileRows);
  std::vector<Index> first(uk + 1);
  std::vector<double> lower(kTileRows);
  // A computed distance q of true squared distance t satisfies |q − t| ≤ γ·t + τ: per
  // lane a chain of dp/16 fused adds of terms rounded twice, then four adds of the tree,
  // with γ taken twice over; τ covers gradual underflow.
  BlockBounds* bb = max_bound_bytes_ > 0 && k > 0 ? bounds_for(block.ref.global_row_begin, num_rows) : nullptr;
  const bool drifted = bb != nullptr && bb->generation + 1 == generation_ && !moved_.empty();
  const bool usable = bb != nullptr && (bb->generation == generation_ || drifted);
  if (bb != nullptr) bb->generation = 0;  // until the whole block is done (an error leaves it unusable)
  const double gamma = static_cast<double>(dp / gmm_kernel::kLanes + 8) * 0x1p-23;
  const double tau = static_cast<double>(dp + 16) * 0x1p-148;
  // A lower bound on the true distance of a centre whose computed squared distance is q:
  // √((q − τ)/(1 + γ)). In float32, vectorised over the centres: √q·kf with kf = (1 −
  // 2⁻¹⁹)/√(1 + γ) rounded down stays below it after two roundings for q ≥ 2²⁰τ (below
  // that, 0); an overflowed q still means ≥ FLT_MAX.
  const float kf = float_below((1.0 - 0x1p-19) / std::sqrt(1.0 + gamma));
  const auto tiny = static_cast<float>(0x1p20 * tau);
  // A row's lower bounds after the last step: each falls by its centre's shift. In float32:
  // (l − δ)·(1 − 2⁻²²) stays below l − δ after both roundings (δ rounded up; 0 below 0).
  std::vector<float> moved32(uk, 0.0f);
  if (drifted)
    for (std::size_t e = 0; e < uk; ++e) moved32[e] = float_above(moved_[e]);
  constexpr float kDown = 1.0f - 0x1p-22f;
  // The smallest upper bound a computed distance q to the nearest allows:
  // √((q + τ)/(1 − γ)), rounded up.
  const auto upper_of = [&](float q2) {
    return float_above(std::sqrt((std::max(0.0, static_cast<double>(q2)) + tau) / (1.0 - gamma)) * (1.0 + 0x1p-40));
  };
  const auto nan_error = [] {
    return Error(ErrorKind::kInternal, "k-means: a NaN reached Lloyd's E-step (the source fills them)");
  };
  // The block's sums, counts and Σ‖x‖²: kept with its bounds, else for this step only.
  std::vector<double> own_sums, own_counts;
  double fresh_norms = 0;
  double* sums = nullptr;
  double* counts = nullptr;
  if (bb != nullptr) {
    if (!usable) {
      bb->sums.assign(uk * udp, 0.0);
      bb->counts.assign(uk, 0.0);
    }
    sums = bb->sums.data();
    counts = bb->counts.data();
  } else {
    own_sums.assign(uk * udp, 0.0);
    own_counts.assign(uk, 0.0);
    sums = own_sums.data();
    counts = own_counts.data();
  }
  // Elkan's test per centre, for a row the row test left open (its own centre c and computed
  // distance q_c known): a centre e with q_c < (1 − γ)l_e² − τ has a computed distance above
  // q_c, so it can be neither the nearest nor tied with it. Where at most a quarter of the
  // other centres remain (K ≥ 8), only theirs are computed, one row and centre at a time
  // (quadratic_unit gives the bits of any blocking): the label is the first of the smallest
  // over c and them, as over every centre; their lower bounds and c's are renewed, the
  // others keep their moved ones; the row moves sums if its label changed. Returns false
  // (nothing done) where more remain.
  std::vector<std::int32_t> few(uk);
  std::vector<float> qfew(uk);
  const auto few_centres = [&](std::size_t o, std::size_t i, std::size_t r) -> bool {
    if (uk < 8) return false;
    const auto c = static_cast<std::size_t>(cand[o]);
    float* lr = bb->lower.data() + r * uk;
    const auto qown = static_cast<double>(qbest[o]);
    std::size_t nf = 0;
    for (std::size_t e = 0; e < uk; ++e) {
      if (e == c) continue;
      const auto l = static_cast<double>(lr[e]);
      if (l > 0 && qown < (1.0 - gamma) * l * l - tau) continue;
      if (4 * (nf + 1) > uk) return false;
      few[nf++] = static_cast<std::int32_t>(e);
    }
    const float* xr = xf.data() + i * udp;
    gmm_kernel::PrefetchRange none;
    for (std::size_t f = 0; f < nf; ++f)
      gmm_kernel::quadratic_unit(xr, 1, dp, shift32_.data() + static_cast<std::size_t>(few[f]) * udp, 1, &qfew[f], none);
    std::size_t best = c;
    float qb = qbest[o];
    for (std::size_t f = 0; f < nf; ++f) {
      const auto e = static_cast<std::size_t>(few[f]);
      if (qfew[f] < qb || (qfew[f] == qb && e < best)) {
        best = e;
        qb = qfew[f];
      }
    }
    const auto lower_of = [&](float q2) {
      const float v = std::min(q2, std::numeric_limits<float>::max());
      return v < tiny ? 0.0f : std::sqrt(v) * kf;
    };
    for (std::size_t f = 0; f < nf; ++f) lr[few[f]] = lower_of(qfew[f]);
    lr[c] = lower_of(qbest[o]);
    bb->label[r] = static_cast<std::int32_t>(best);
    bb->upper[r] = upper_of(qb);
    if (best != c) {
      constexpr std::int32_t kFirst = 0;
      add_rows_on_grid(xr, dp, &kFirst, 1, minus_unit.data(), sums + c * udp);
      counts[c] -= 1.0;
      add_rows_on_grid(xr, dp, &kFirst, 1, unit.data(), sums + best * udp);
      counts[best] += 1.0;
    }
    return true;
  };
  Index pruned = 0, unread = 0, num_few = 0;
  for (Index r0 = 0; r0 < num_rows; r0 += kTileRows) {
    const Index n = std::min(kTileRows, num_rows - r0);
    const auto un = static_cast<std::size_t>(n);
    std::size_t m = 0;    // rows that need every distance: full[0, m)
    bool whole = !usable;  // the whole tile converted into xf, its rows' distances computed in place
    if (usable) {
      // A row keeps its label unread if its bounds, moved by the last step's shifts (each
      // lower bound by its own centre's), show that its centre's computed distance is
      // below every other's.
      std::size_t num_open = 0;
      for (std::size_t i = 0; i < un; ++i) {
        const std::size_t r = static_cast<std::size_t>(r0) + i;
        const auto c = static_cast<std::size_t>(bb->label[r]);
        float* lr = bb->lower.data() + r * uk;
        const float own = lr[c];
        lr[c] = std::numeric_limits<float>::infinity();  // (unused: out of the least below)
        float least = std::numeric_limits<float>::infinity();  // the least lower bound of the others
        if (drifted) {
          for (std::size_t e = 0; e < uk; ++e) {
            const float v = std::max((lr[e] - moved32[e]) * kDown, 0.0f);
            lr[e] = v;
            least = std::min(least, v);
          }
        } else {
          for (std::size_t e = 0; e < uk; ++e) least = std::min(least, lr[e]);
        }
        lr[c] = own;
        const double u = static_cast<double>(bb->upper[r]) + (drifted ? moved_[c] : 0.0);
        const auto l = static_cast<double>(least);
        if (l > 0 && (1.0 + gamma) * u * u + tau < (1.0 - gamma) * l * l - tau) {
          bb->upper[r] = float_above(u);
          ++unread;
          continue;
        }
        cand[num_open] = bb->label[r];
        lower[num_open] = l;
        open[num_open++] = static_cast<std::int32_t>(i);
      }
      if (num_open * 2 > un) {
        // Most of the tile open: read it whole, in order, and give the open rows every
        // distance (the tile's distances computed in one run, the settled rows' unused).
        if (rows.convert(r0, n, d, frame_.origin.data(), xf.data(), dp, neg_origin)) throw nan_error();
        for (std::size_t o = 0; o < num_open; ++o) full[m++] = open[o];
        whole = true;
      }
      // Else the others, run by run of consecutive rows, converted with their distance to
      // their centre: the same test with that distance.
      for (std::size_t a = 0; a < num_open && !whole;) {
        std::size_t b = a + 1;
        while (b < num_open && open[b] == open[b - 1] + 1) ++b;
        const auto i0 = static_cast<std::size_t>(open[a]);
        if (rows.convert_pairs(r0 + static_cast<Index>(i0), static_cast<Index>(b - a), d, frame_.origin.data(),
                               xf.data() + i0 * udp, dp, shift32_.data(), cand.data() + a, qbest.data() + a,
                               neg_origin))
          throw nan_error();
        a = b;
      }
      for (std::size_t o = 0; o < num_open && !whole; ++o) {
        const auto i = static_cast<std::size_t>(open[o]);
        const std::size_t r = static_cast<std::size_t>(r0) + i;
        const double thr = lower[o] > 0 ? (1.0 - gamma) * lower[o] * lower[o] - tau : -1.0;
        if (static_cast<double>(qbest[o]) < thr) {
          bb->upper[r] = upper_of(qbest[o]);
          ++pruned;
        } else if (few_centres(o, i, r)) {
          ++num_few;
        } else {
          full[m++] = static_cast<std::int32_t>(i);
        }
      }
    } else {
      if (rows.convert(r0, n, d, frame_.origin.data(), xf.data(), dp, neg_origin)) throw nan_error();
      row_norms(xf.data(), n, dp, tile_norms.data());
      for (std::size_t i = 0; i < un; ++i) {
        full[m++] = static_cast<std::int32_t>(i);
        fresh_norms += tile_norms[i];
      }
    }
    if (m == 0) continue;
    const float* xs = xf.data();
    if (!whole) {
      for (std::size_t o = 0; o < m; ++o)
        std::copy_n(xf.data() + static_cast<std::size_t>(full[o]) * udp, udp, xg.data() + o * udp);
      xs = xg.data();
    }
    const auto mi = static_cast<Index>(whole ? un : m);
    gmm_kernel::PrefetchRange pf;  // gathered rows: the next tile's are not known yet
    if (whole) {
      pf = rows.next_tile(r0, n, kTileRows);
      const Index steps = std::max<Index>(1, (mi + 3) / 4 * ((k + 4) / 5) * (dp / gmm_kernel::kLanes));
      pf.lines = static_cast<int>(std::clamp<Index>((static_cast<Index>(pf.end - pf.next) / 64 + steps - 1) / steps, 1, 64));
    }
    gmm_kernel::quadratic_unit(xs, mi, dp, shift32_.data(), k, q.data(), pf);
    // Nearest centre (the first of the smallest); each other centre's distance gives its
    // lower bound.
    for (std::size_t o = 0; o < m; ++o) {
      const auto i = static_cast<std::size_t>(full[o]);
      const std::size_t at = whole ? i : o;  // the row's place in xs and q
      const float* qo = q.data() + at * uk;
      Index best = 0;
      for (Index c = 1; c < k; ++c)
        if (qo[c] < qo[best]) best = c;
      const std::size_t r = static_cast<std::size_t>(r0) + i;
      const std::int32_t was = usable ? bb->label[r] : -1;
      if (bb != nullptr) {
        bb->label[r] = static_cast<std::int32_t>(best);
        float* lr = bb->lower.data() + r * uk;
        for (std::size_t e = 0; e < uk; ++e) {  // (its own: unused)
          const float v = std::min(qo[e], std::numeric_limits<float>::max());
          lr[e] = v < tiny ? 0.0f : std::sqrt(v) * kf;
        }
        bb->upper[r] = upper_of(qo[best]);
      }
      if (!usable) {
        label[i] = static_cast<std::int32_t>(best);  // added below, by centre
      } else if (best != was) {
        const float* xr = xs + at * udp;
        constexpr std::int32_t kFirst = 0;
        add_rows_on_grid(xr, dp, &kFirst, 1, minus_unit.data(), sums + static_cast<std::size_t>(was) * udp);
        counts[was] -= 1.0;
        add_rows_on_grid(xr, dp, &kFirst, 1, unit.data(), sums + static_cast<std::size_t>(best) * udp);
        counts[best] += 1.0;
      }
    }
    if (!usable) {  // every row of the tile: each centre's rows added together
      std::fill(first.begin(), first.end(), Index{0});
      for (std::size_t i = 0; i < un; ++i) ++first[static_cast<std::size_t>(label[i]) + 1];
      for (std::size_t c = 0; c < uk; ++c) first[c + 1] += first[c];
      std::vector<Index> fill(first.begin(), first.end() - 1);
      for (std::size_t i = 0; i < un; ++i)
        order[static_cast<std::size_t>(fill[static_cast<std::size_t>(label[i])]++)] = static_cast<std::int32_t>(i);
      for (std::size_t c = 0; c < uk; ++c) {
        const Index lo = first[c], hi = first[c + 1];
        if (lo == hi) continue;
        add_rows_on_grid(xf.data(), dp, order.data() + lo, hi - lo, unit.data(), sums + c * udp);
        counts[c] += static_cast<double>(hi - lo);
      }
    }
  }
  if (bb != nullptr && !usable) bb->norms = fresh_norms;
  block_partial(sums, counts, bb != nullptr ? bb->norms : fresh_norms, unit.data(), partial);
  if (bb != nullptr) bb->generation = generation_;
  bounds_.pruned += pruned + unread;
  bounds_.unread += unread;
  bounds_.rows += num_rows;
  bounds_.few += num_few;
  if (pruned + unread > 0) profile::add(profile::Counter::kSettledRows, static_cast<double>(pruned + unread));
  profile::add(profile::Counter::kKmeansRows, static_cast<double>(num_rows));
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
  // up): what its rows' upper bounds gain and every row's lower bound for it loses.
  const LineFloats before = shift32_;
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
  moved_ = std::move(moved);
  ++generation_;
  last_pruned_ = bounds_.pruned.exchange(0);
  last_unread_ = bounds_.unread.exchange(0);
  last_rows_ = bounds_.rows.exchange(0);
  last_few_ = bounds_.few.exchange(0);
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

// Each row's squared distance to its nearest center and, if `labels`, that center (the
// first of the smallest expanded distance). The expansion in squared_distances errs by up
// to about (D + 2)ε(||x||² + ||c||²); an entry that small is recomputed as Σ(x − c)², so a
// distance is 0 exactly when the row equals the center.
Vector min_sq_distances(const RowMatrix& x, const RowMatrix& centers, const Vector& center_norms,
                        std::vector<Index>* labels = nullptr) {
  RowMatrix dist;
  squared_distances(x, centers, center_norms, dist);
  Vector min_d;
  if (labels != nullptr) nearest_centers(dist, *labels, min_d);
  else min_d = dist.rowwise().minCoeff();
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

// The seeding's distances (sample_rows_d2, the candidates' weights): float32, as the Lloyd
// E-step takes them. Each centred centre c is the operand −c rounded once to float32
// (zero-padded to dp); each row is converted to float(x − origin) tile by tile and
// gmm_kernel::quadratic_unit gives Σ_j (x̃_j − c̃_j)², no cancellation, the same bits in
// every kernel variant and for any blocking of rows or centres, so a row's distances
// depend on it and the centres only. These were the double expansion ‖x‖² − 2x·c + ‖c‖²
// through Eigen's double GEMM on widened copies of the blocks: the seeding took 1.19 s of
// a 2.16 s k-means fit of Fashion-MNIST at K = 10 on the AMD EPYC family 26, 0.29 s now
// (docs/PERFORMANCE.md, "eighth session").
struct SeedOperands {
  Index k = 0, d = 0, dp = 0;
  LineFloats shift;             // k × dp: −c
  std::vector<float> neg_origin;  // d: −origin as floats (gmm_kernel::negated_float), or empty: centring through double
};

SeedOperands seed_operands(const RowVector& origin, const RowMatrix& centers) {
  SeedOperands o;
  o.k = centers.rows();
  o.d = centers.cols();
  o.dp = gmm_kernel::padded(o.d);
  o.neg_origin = gmm_kernel::negated_float(origin.data(), o.d);
  o.shift.assign(static_cast<std::size_t>(o.k * o.dp), 0.0f);
  for (Index c = 0; c < o.k; ++c)
    for (Index j = 0; j < o.d; ++j) o.shift[static_cast<std::size_t>(c * o.dp + j)] = static_cast<float>(-centers(c, j));
  return o;
}

// For every row of b: the squared distance to its nearest centre (dist) and, if `nearest`,
// that centre (the first of the smallest float32 distance). A float32 distance of 0 is
// taken again in double, Σ_j ((x_j − origin_j) − c_j)², over the centres at 0: so a row
// has distance 0 exactly when it equals a centre in centred double coordinates, as before,
// even where float32 rounding makes distinct rows meet. A tile with a NaN takes the double
// expansion (min_sq_distances; the seeding's sources fill NaN, so this is a safeguard).
void seed_distances(const io::DenseBlock& b, const RowVector& origin, const RowMatrix& centers, const SeedOperands& ops,
                    std::vector<double>& dist, std::vector<Index>* nearest) {
  constexpr Index kTile = 128;
  const gmm_kernel::BlockRows rows(b);
  const Index n_rows = rows.rows(), k = ops.k, d = ops.d, dp = ops.dp;
  const auto uk = static_cast<std::size_t>(k), udp = static_cast<std::size_t>(dp);
  dist.assign(static_cast<std::size_t>(n_rows), 0.0);
  if (nearest != nullptr) nearest->assign(static_cast<std::size_t>(n_rows), 0);
  struct Scratch {
    Index d = -1;
    LineFloats xf;
    std::vector<float> q;
  };
  thread_local Scratch scratch;
  if (scratch.d != d) {
    scratch.xf.assign(static_cast<std::size_t>(kTile) * udp, 0.0f);  // the padding stays zero
    scratch.d = d;
  }
  scratch.q.resize(static_cast<std::size_t>(kTile) * uk);
  float* xf = scratch.xf.data();
  float* q = scratch.q.data();
  const auto exact = [&](Index r, Index c) {
    double s = 0;
    for (Index j = 0; j < d; ++j) {
      const double e = (rows.at(r, j) - origin[j]) - centers(c, j);
      s += e * e;
    }
    return s;
  };
  for (Index r0 = 0; r0 < n_rows; r0 += kTile) {
    const Index n = std::min(kTile, n_rows - r0);
    if (rows.convert(r0, n, d, origin.data(), xf, dp, ops.neg_origin)) {  // a NaN: the double expansion for this tile
      const RowMatrix xc = rows.widened(r0, n).rowwise() - origin;
      std::vector<Index> labels;
      const Vector m = min_sq_distances(xc, centers, centers.rowwise().squaredNorm(), &labels);
      for (Index i = 0; i < n; ++i) {
        dist[static_cast<std::size_t>(r0 + i)] = m[i];
        if (nearest != nullptr) (*nearest)[static_cast<std::size_t>(r0 + i)] = labels[static_cast<std::size_t>(i)];
      }
      continue;
    }
    gmm_kernel::PrefetchRange pf = rows.next_tile(r0, n, kTile, 4);
    gmm_kernel::quadratic_unit(xf, n, dp, ops.shift.data(), k, q, pf);
    for (Index i = 0; i < n; ++i) {
      const float* qi = q + static_cast<std::size_t>(i) * uk;
      Index best = 0;
      for (Index c = 1; c < k; ++c)
        if (qi[c] < qi[best]) best = c;
      double v = static_cast<double>(qi[best]);
      if (v == 0) {
        v = std::numeric_limits<double>::infinity();
        for (Index c = 0; c < k && v > 0; ++c)
          if (qi[c] == 0) v = std::min(v, exact(r0 + i, c));
      }
      dist[static_cast<std::size_t>(r0 + i)] = v;
      if (nearest != nullptr) (*nearest)[static_cast<std::size_t>(r0 + i)] = best;
    }
  }
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
  std::vector<Candidate> local;
  std::mutex mutex;
  const SeedOperands ops = seed_operands(origin, centers);
  const io::BlockSource::Float32Scope as_stored(source, true);  // float32 rows are read as they are
  comm::run_agreed(comm, [&] {
    train::for_each_block(source, threads, [&](const io::DenseBlock& b) {
      const Index n = b.rows();
      std::vector<double> w;
      if (centers.rows() > 0) seed_distances(b, origin, centers, ops, w, nullptr);
      else w.assign(static_cast<std::size_t>(n), 1.0);
      std::vector<Candidate> mine;
      for (Index i = 0; i < n; ++i) {
        const double wi = w[static_cast<std::size_t>(i)];
        if (!(wi > 0)) continue;
        const Index id = b.ref.global_row_begin + i;
        CounterRng rng(seed, RngPurpose::kKmeansSeeding, round, static_cast<std::uint64_t>(id));
        mine.push_back(Candidate{std::log(rng.next_uniform()) / wi, id, {}});
      }
      keep_best(mine, count);
      const gmm_kernel::BlockRows rows(b);
      for (auto& c : mine) {  // the row centred in double, as a centre
        const Index i = c.id - b.ref.global_row_begin;
        c.row.resize(static_cast<std::size_t>(d));
        for (Index j = 0; j < d; ++j) c.row[static_cast<std::size_t>(j)] = rows.at(i, j) - origin[j];
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
    const SeedOperands ops = seed_operands(origin, rows);
    const io::BlockSource::Float32Scope as_stored(source, true);
    const std::vector<double> counts =
        train::reduce_global(comm, source, m, threads, [&](const io::DenseBlock& b, std::span<double> partial) {
          std::vector<double> dist;
          std::vector<Index> labels;
          seed_distances(b, origin, rows, ops, dist, &labels);
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
                       *frame, config.max_bound_bytes);
  };
  steps.blank = [&] { return KmeansLloyd(RowMatrix(), get_frame(), config.max_bound_bytes); };
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
                            const train::InitPoints& points, std::size_t max_bound_bytes) {
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
                    frame, max_bound_bytes);
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
