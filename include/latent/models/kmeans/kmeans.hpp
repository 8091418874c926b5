#pragma once
/// \file k-means: Lloyd's algorithm as hard EM (Lloyd 1982; Bishop PRML §9.1) on streamed
/// blocks, with distributed k-means|| seeding (Bahmani et al. 2012).
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "latent/comm/communicator.hpp"
#include "latent/core/log.hpp"
#include "latent/core/types.hpp"
#include "latent/io/block_source.hpp"
#include "latent/train/batch_em.hpp"

namespace latent::models {

/// Squared Euclidean distances of the rows of x (B × D) to centers (K × D): out is B × K,
/// clamped at 0. `center_sq_norms` holds ||c_k||² (K). Computed with one GEMM through the
/// expansion ||x||² − 2x·c + ||c||², whose rounding error is of order ε(||x||² + ||c||²):
/// pass coordinates centred near the data (KmeansFrame), never raw coordinates far from 0.
void squared_distances(const Eigen::Ref<const RowMatrix>& x, const RowMatrix& centers, const Vector& center_sq_norms,
                       RowMatrix& out);

/// Index of the nearest center per row (lowest index on ties) and the squared distance.
void nearest_centers(const RowMatrix& sq_dist, std::vector<Index>& labels, Vector& min_sq_dist);

/// Where k-means works: the data centred on their column mean, as scikit-learn's KMeans
/// does (it subtracts the mean before fitting and adds it back to cluster_centers_).
/// About a column offset by 1e8 (or held at 3e38) the expansion in squared_distances
/// loses every digit of the distances; about the mean it keeps them. Every pass subtracts
/// `origin` from each block as it is read (no copy of the data). Centers inside k-means are
/// in these centred coordinates; fitted centers are reported in the data's.
struct KmeansFrame {
  /// D: the column mean (DataSummary::mean, an exact reduction), rounded to float32 where
  /// that moves it by at most 2⁻¹⁰ of the column's standard deviation
  RowVector origin;
  double mean_variance = 0;  ///< mean over features of Σ(x − origin)²/N: the scale of tol
  /// D: a bound on |x_j − origin_j| over every row, √Σ_i (x_ij − origin_j)² with a margin
  /// for rounding: it fixes the grid of KmeansLloyd's exact sums (0: a constant column).
  RowVector bound;
};

/// One pass: the frame about `mean` (N from the pass; the origin as KmeansFrame says).
/// Collective; the same bits for any rank and thread count (per-block sums, combined exactly).
KmeansFrame kmeans_frame(const comm::Communicator& comm, io::BlockSource& source, const RowVector& mean, int threads);

/// Initial responsibilities of mixtures (B × K): one-hot on the nearest center ("kmeans"
/// initialisation; `centers` centred on `origin`, `center_sq_norms` their squared norms,
/// x in the data's coordinates), or uniform draws normalised per row, keyed by (seed,
/// global row) ("random", scikit-learn's init_params='random'). Thread-safe.
RowMatrix hard_responsibilities(const Eigen::Ref<const RowMatrix>& x, const RowMatrix& centers, const Vector& center_sq_norms,
                                const RowVector& origin);
RowMatrix random_responsibilities(Index rows, Index first_global_row, Index k, std::uint64_t seed);

/// The Lloyd step as an EmModel, in the frame's centred coordinates. Statistics:
/// [inertia, counts (K), sums of centred rows (K × D)]. Objective: inertia (sum of squared
/// distances, squared data units) of the centers used in the E-step; change: sum of
/// squared center shifts divided by the frame's mean feature variance (scikit-learn's tol
/// convention). An empty cluster keeps its center.
///
/// Exact sums. Each centred float32 value x_j is rounded to the block's grid, a multiple of
/// 2^-g_j with |x_j|·2^g_j ≤ 2^40 (frame.bound; for a block of more than 8192 rows the
/// grid is coarser by its row count's extra bits), so a block's sum of them is an integer
/// multiple of 2^-g_j below 2^53 of them: exact in double, whatever the order in which
/// rows are added or taken away. (The grid is finer than float32's rounding of the data:
/// 2^-40·√N·σ_j.) A block's sums are thus a function of its rows and their labels only,
/// and may be kept and updated by the rows that change centre. The inertia of a block is
/// Σ‖x‖² − Σ_c (2 c·S_c − n_c‖c‖²) (S_c, n_c: the sums and count of centre c's rows; c the
/// float32 operand of the distances), in double.
///
/// Exact pruning (Elkan 2003, "Using the triangle inequality to accelerate k-means", §2
/// lemma 2 and §3; tested against the least lower bound as in Hamerly 2010, "Making k-means
/// even faster", §3): each row keeps, between E-steps,
/// its label, an upper bound on its true distance to that centre and a lower bound on its
/// true distance to each other centre (8 + 4K bytes a row), and each block its sums,
/// counts and Σ‖x‖² (8·(K·padded(D) + K + 1) bytes): at most kMaxBoundBytes per rank,
/// blocks beyond that computed in full every step. After a step that moved centre c by
/// δ_c, a row's upper bound rises by δ of its own centre and each lower bound falls by δ of
/// its centre. A row whose bounds show, allowing for the kernel's rounding (relative
/// (dp/16 + 8)·2⁻²³), that its centre's float32 distance is below every other centre's
/// keeps its label without being read; failing that, the same test with its distance to
/// its centre computed (the upper bound tightened), then every distance (where most of a
/// row tile needs reading, the whole tile in order). Labels and sums are therefore those of
/// computing every distance, bit for bit; only the time changes.
class KmeansLloyd final : public train::EmModel {
 public:
  /// Bytes of per-row and per-block state one rank keeps at most (about 3.5 M rows at
  /// K = 10, D = 784 and 2048-row blocks; 0.6 M rows at K = 100).
  static constexpr std::size_t kMaxBoundBytes = std::size_t{256} << 20;
  /// Bytes of bounds per row with K centres (label, upper bound, K lower bounds).
  static std::size_t bound_bytes_per_row(Index k);
  /// Bytes of state per block of a fit with K centres and D features (the block's sums
  /// and counts, Σ‖x‖²).
  static std::size_t block_state_bytes(Index k, Index d);
  /// Both, per row, for blocks of `block_rows` rows (the memory estimate's row state).
  static std::int64_t state_bytes_per_row(Index k, Index d, Index block_rows) {
    const auto b = static_cast<std::int64_t>(block_state_bytes(k, d));
    return static_cast<std::int64_t>(bound_bytes_per_row(k)) + (b + std::max<Index>(1, block_rows) - 1) / std::max<Index>(1, block_rows);
  }
  /// `centers`: K × D, centred (data coordinates − frame.origin). `max_bound_bytes`: the
  /// bounds kept per rank (0: none, every distance computed each E-step).
  KmeansLloyd(RowMatrix centers, KmeansFrame frame, std::size_t max_bound_bytes = kMaxBoundBytes);
  std::size_t num_stats() const override;
  /// Distances in float32 (gmm_kernel::quadratic_unit, quadratic with σ⁻¹ = 1: Σ_j (x_j − c_j)², no
  /// cancellation), the nearest centre the first of the smallest; the sums exact on the
  /// block's grid and the inertia in double (class comment). Reads float32 blocks
  /// (accepts_float32_blocks). Rows the bounds settle are not read, or have only their own
  /// centre's distance computed (class comment). Thread-safe for distinct blocks; a block
  /// is identified by its global first row. Throws Error (kInternal) for a NaN or a block
  /// of 2^23 rows or more.
  void e_step_block(const io::DenseBlock& block, std::span<double> partial) const override;
  bool accepts_float32_blocks() const override { return true; }
  Step m_step(std::span<const double> stats) override;
  void save_state(train::TrainState& state) const override;
  void load_state(const train::TrainState& state) override;
  /// Centred centers (K × D).
  const RowMatrix& centered_centers() const noexcept { return centers_; }
  /// The centers in the data's coordinates (centred + origin).
  RowMatrix centers() const { return centers_.rowwise() + frame_.origin; }
  const KmeansFrame& frame() const noexcept { return frame_; }
  Index num_empty_clusters() const noexcept { return num_empty_; }
  /// Rows of the last E-step (before the last m_step) that the bounds settled, those of
  /// them not read at all, and all its rows.
  Index last_pruned_rows() const noexcept { return last_pruned_; }
  Index last_unread_rows() const noexcept { return last_unread_; }
  Index last_rows() const noexcept { return last_rows_; }
  /// Rows of the last E-step that the row test left open but Elkan's per-centre test left
  /// at most a quarter of the other centres' distances to compute (K ≥ 8).
  Index last_few_rows() const noexcept { return last_few_; }

 private:
  // One block's state for the centres of E-step `generation`: lower[i·K + c] ≤ the true
  // distance of row i to centre c for every c but label[i] (that entry unused), upper[i] ≥
  // its distance to label[i]; sums (K × dp, on the block's grid, in units of 2^-g_j:
  // integers), counts (K) and Σ‖x‖² of its rows.
  struct BlockBounds {
    std::uint64_t generation = 0;
    std::vector<float> lower, upper;
    std::vector<std::int32_t> label;
    std::vector<double> sums, counts;
    double norms = 0;
  };
  // The blocks' bounds, by global first row (node-based: an entry stays where it is while
  // others are added). A copy starts empty: bounds belong to one model's centres.
  struct BoundCache {
    BoundCache() = default;
    BoundCache(const BoundCache&) {}
    BoundCache& operator=(const BoundCache&) {
      clear();
      return *this;
    }
    void clear();
    std::mutex mutex;
    std::unordered_map<Index, BlockBounds> blocks;
    std::size_t bytes = 0;
    std::atomic<Index> pruned{0}, unread{0}, rows{0}, few{0};
  };
  void prepare();  // the float32 operands from centers_
  BlockBounds* bounds_for(Index first_row, Index rows) const;
  // The block's partial statistics from its sums, counts and Σ‖x‖² (grid: 2^-g_j = unit[j]).
  void block_partial(const double* sums, const double* counts, double norms, const double* unit,
                     std::span<double> partial) const;
  RowMatrix centers_;
  LineFloats shift32_;  // K × padded(D): −c (zero padding), on cache lines
  std::vector<float> neg_origin32_;  // D: −origin as floats where each origin_j is a float, else empty
  std::vector<double> grid_;    // padded(D): 2^g_j, the scale of a block of ≤ 8192 rows (0 in the padding)
  std::vector<double> cnorm_;   // K: ‖c‖² of each float32 centre (−shift32_), summed in double in column order
  KmeansFrame frame_;
  Index num_empty_ = 0;
  std::size_t max_bound_bytes_ = kMaxBoundBytes;
  mutable BoundCache bounds_;
  std::uint64_t generation_ = 2;     // of the current centres; a block's bounds from generation_ − 1 need moved_
  std::vector<double> moved_;        // K: each centre's own shift in the last m_step
  Index last_pruned_ = 0, last_unread_ = 0, last_rows_ = 0, last_few_ = 0;
};

/// Rows drawn without replacement with probability proportional to the squared distance
/// to `centers` (to 1 when centers is empty), by exponential keys log(u)/w
/// (Efraimidis & Spirakis 2006); u comes from CounterRng(seed, kKmeansSeeding, round,
/// global row), so the draw is identical for any rank/thread count. Distances are taken
/// in coordinates centred on `origin` (`centers` and the returned rows are centred), and
/// one small enough for the expansion's rounding to matter is recomputed directly, so a
/// row has weight 0 exactly when it equals a center: rows at distance 0 are never drawn,
/// and fewer than `count` rows come back only if fewer rows differ from every center.
/// Collective.
struct SampledRows {
  RowMatrix rows;
  std::vector<Index> ids;  ///< global row ids
};
SampledRows sample_rows_d2(const comm::Communicator& comm, io::BlockSource& source, const RowVector& origin,
                           const RowMatrix& centers, Index count, std::uint64_t seed, std::uint64_t round, int threads);

/// Initial centers, centred on `origin`. `method`: "k-means||" (Bahmani et al. 2012, 5
/// rounds of 2K draws each, then weighted k-means++ and Lloyd on the candidates; deviation:
/// each round draws exactly 2K rows by weighted sampling without replacement instead of
/// Bernoulli draws), "k-means++" (Arthur & Vassilvitskii 2007, K passes), "random" (K
/// distinct rows uniformly). Returns K × D; warns if the data has fewer distinct points
/// than K. Collective. Interruptible: `points.at` is called after every pass over the data
/// and every Lloyd iteration on the candidates (snapshot: "stage" = 1 and "seed_*" keys),
/// and a snapshot of stage 1 in `points.resumed` continues from there with the same bits.
RowMatrix init_centers(const comm::Communicator& comm, io::BlockSource& source, const RowVector& origin, Index k,
                       const std::string& method, std::uint64_t seed, int threads, const Logger& log,
                       const train::InitPoints& points = {});

struct KmeansConfig {
  Index n_clusters = 8;
  std::string init = "k-means||";
  int max_iter = 300;
  double tol = 1e-4;
  int n_init = 1;
  std::uint64_t seed = 0;
  int threads = 1;
  std::size_t max_bound_bytes = KmeansLloyd::kMaxBoundBytes;  ///< per rank: the bounds' state (KmeansLloyd)
};

struct KmeansResult {
  RowMatrix centers;           ///< K × D, in the data's coordinates
  RowMatrix centered_centers;  ///< K × D, centred on frame.origin (for hard_responsibilities)
  KmeansFrame frame;
  double inertia = 0;          ///< fit_kmeans: of the final centers; initial_kmeans: of the last E-step's
  train::EmResult em;
};

/// Seeding and Lloyd iterations about the data mean `mean` (DataSummary::mean); with
/// n_init > 1 keeps the run of lowest inertia. Collective. With `control`, resumes from and
/// writes checkpoints, and honours stop signals after every seeding pass and Lloyd
/// iteration.
KmeansResult fit_kmeans(const comm::Communicator& comm, io::BlockSource& source, Index num_samples,
                        const RowVector& mean, const KmeansConfig& config, const Logger& log,
                        const train::IterationObserver& observer, train::FitControl* control = nullptr);

/// Inertia of `centers` (centred on `origin`) over the data. Collective.
double kmeans_inertia(const comm::Communicator& comm, io::BlockSource& source, const RowVector& origin,
                      const RowMatrix& centers, int threads);

/// The k-means a mixture starts from: k-means|| seeding and Lloyd with the defaults of
/// KmeansConfig for K clusters and this seed, about the data mean `mean`, logged every 10
/// iterations. Collective. Interruptible through `points` (the seeding's, then "stage" = 2
/// with the Lloyd centers and history under "km_" keys after every Lloyd iteration).
/// `max_bound_bytes`: the bounds' state per rank (KmeansLloyd; any value, the same bits).
KmeansResult initial_kmeans(const comm::Communicator& comm, io::BlockSource& source, Index num_samples,
                            const RowVector& mean, Index k, std::uint64_t seed, int threads, const Logger& log,
                            const train::InitPoints& points = {},
                            std::size_t max_bound_bytes = KmeansLloyd::kMaxBoundBytes);
/// The bounds' state a fit may keep per rank: the model's cap, or less where the memory
/// budget left less (FitCommon::row_state_bytes).
inline std::size_t bound_bytes_for(double row_state_bytes) {
  return row_state_bytes >= static_cast<double>(KmeansLloyd::kMaxBoundBytes) ? KmeansLloyd::kMaxBoundBytes
         : row_state_bytes > 0                                                ? static_cast<std::size_t>(row_state_bytes)
                                                                              : 0;
}

}  // namespace latent::models
