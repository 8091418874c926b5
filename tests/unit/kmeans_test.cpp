#include "latent/models/kmeans/kmeans.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <sstream>

#include "../support/fixtures.hpp"
#include "../support/pipeline.hpp"
#include "latent/core/error.hpp"
#include "latent/core/kernel.hpp"
#include "latent/core/rng.hpp"
#include "latent/models/gmm/gmm_fit.hpp"
#include "latent/train/data_summary.hpp"

namespace latent::models {
namespace {

using latent::testing::blobs;
using latent::testing::TempDir;

// A frame about 0 for rows x (in tests: the bound is each column's largest |x|).
KmeansFrame frame_about_zero(const RowMatrix& x, double mean_variance = 1.0) {
  return KmeansFrame{RowVector::Zero(x.cols()), mean_variance, x.cwiseAbs().colwise().maxCoeff()};
}

TEST(Kmeans, SquaredDistancesAndNearestByHand) {
  RowMatrix x(2, 2), c(2, 2);
  x << 0, 0, 3, 4;
  c << 0, 0, 3, 0;
  RowMatrix d;
  squared_distances(x, c, c.rowwise().squaredNorm(), d);
  EXPECT_DOUBLE_EQ(d(0, 0), 0);
  EXPECT_DOUBLE_EQ(d(0, 1), 9);
  EXPECT_DOUBLE_EQ(d(1, 0), 25);
  EXPECT_DOUBLE_EQ(d(1, 1), 16);
  std::vector<Index> labels;
  Vector best;
  nearest_centers(d, labels, best);
  EXPECT_EQ(labels, (std::vector<Index>{0, 1}));
  EXPECT_DOUBLE_EQ(best[1], 16);
}

TEST(Kmeans, LloydStepByHand) {
  // Points 0, 1 (near center 0) and 10, 12 (near center 1): new centers 0.5 and 11.
  RowMatrix c(2, 1);
  c << 0, 10;
  io::DenseBlock b;
  b.x.resize(4, 1);
  b.x << 0, 1, 10, 12;
  KmeansLloyd lloyd(c, frame_about_zero(b.x));
  std::vector<double> partial(lloyd.num_stats(), 0.0);
  lloyd.e_step_block(b, partial);
  EXPECT_DOUBLE_EQ(partial[0], 0 + 1 + 0 + 4);  // inertia
  const auto step = lloyd.m_step(partial);
  EXPECT_DOUBLE_EQ(step.objective, 5);
  EXPECT_DOUBLE_EQ(lloyd.centers()(0, 0), 0.5);
  EXPECT_DOUBLE_EQ(lloyd.centers()(1, 0), 11);
  EXPECT_DOUBLE_EQ(step.change, 0.25 + 1.0);
}

// One Lloyd step of each model over the blocks, in order; their statistics must be the first
// model's, bit for bit (memcmp).
void step_all(const std::vector<KmeansLloyd*>& models, const std::vector<io::DenseBlock>& blocks, int step) {
  std::vector<std::vector<double>> stats;
  for (const KmeansLloyd* m : models) stats.emplace_back(m->num_stats(), 0.0);
  for (const auto& block : blocks)
    for (std::size_t i = 0; i < models.size(); ++i) models[i]->e_step_block(block, stats[i]);
  for (std::size_t i = 1; i < models.size(); ++i)
    ASSERT_EQ(0, std::memcmp(stats[0].data(), stats[i].data(), stats[0].size() * sizeof(double)))
        << "step " << step << ", model " << i;
  for (std::size_t i = 0; i < models.size(); ++i) models[i]->m_step(stats[i]);
}

// The bounds (Hamerly's pruning) change which distances are computed, never the result:
// a model keeping them and one computing every distance give the same statistics bit for
// bit at every step, from the same centres, over blocks of several sizes, while the bounds
// settle most rows once the centres slow down. The data include rows tied between two
// centres at the start (rows on the x axis, centres mirrored about it; the tie rows pull
// the first centre, so later they are near-ties), a duplicated row, and a far cluster
// whose rows never change centre.
TEST(Kmeans, BoundsPruneRowsWithTheBitsOfComputingEveryDistance) {
  std::mt19937_64 gen(4);
  std::normal_distribution<double> normal(0.0, 1.0);
  const Index d = 19, half = 300;
  RowMatrix x(2 * half + 40 + 60, d);
  for (Index i = 0; i < half; ++i) {  // clusters at y = ±4, mirrored row for row
    for (Index j = 0; j < d; ++j) x(i, j) = normal(gen);
    x(i, 1) += 4.0;
    x.row(half + i) = x.row(i);
    x(half + i, 1) = -x(i, 1);
  }
  for (Index i = 0; i < 40; ++i) {  // on the axis: tied between the two
    x.row(2 * half + i).setZero();
    x(2 * half + i, 0) = std::round(normal(gen) * 4.0) / 4.0;
  }
  for (Index i = 0; i < 60; ++i)  // far away
    for (Index j = 0; j < d; ++j) x(2 * half + 40 + i, j) = 50.0 + normal(gen);
  x.row(7) = x.row(8);
  RowMatrix c(4, d);
  c.row(0) = x.row(0);
  c.row(1) = c.row(0);
  c(1, 1) = -c(0, 1);  // the mirror of centre 0
  c.row(2) = x.row(2 * half + 40);
  c.row(3) = x.row(5);
  const KmeansFrame frame = frame_about_zero(x);
  // `capped` keeps state for the first block only (the rest computed in full every step).
  const std::size_t one_block = 250 * KmeansLloyd::bound_bytes_per_row(4) + KmeansLloyd::block_state_bytes(4, d);
  KmeansLloyd with(c, frame), without(c, frame, 0), capped(c, frame, one_block + 1);
  // Blocks of 250, 250, 100 and 100 rows (their own bounds each).
  std::vector<io::DenseBlock> blocks;
  for (Index r0 = 0; r0 < x.rows();) {
    const Index n = std::min<Index>(r0 < 500 ? 250 : 100, x.rows() - r0);
    io::DenseBlock b;
    b.ref.global_row_begin = r0;
    b.x = x.middleRows(r0, n);
    blocks.push_back(std::move(b));
    r0 += n;
  }
  Index pruned = 0, late_pruned = 0, late_unread = 0;
  for (int step = 0; step < 25; ++step) {
    ASSERT_NO_FATAL_FAILURE(step_all({&with, &without, &capped}, blocks, step));
    EXPECT_LE(capped.last_pruned_rows(), 250) << "step " << step;  // the first block only
    ASSERT_EQ(with.centered_centers(), without.centered_centers());
    EXPECT_EQ(with.last_rows(), x.rows());
    EXPECT_EQ(without.last_pruned_rows(), 0);
    if (step == 0) {
      EXPECT_EQ(with.last_pruned_rows(), 0);  // no bounds yet
    }
    EXPECT_LE(with.last_unread_rows(), with.last_pruned_rows());
    pruned += with.last_pruned_rows();
    if (step >= 20) {
      late_pruned += with.last_pruned_rows();
      late_unread += with.last_unread_rows();
    }
  }
  EXPECT_GT(pruned, 0);
  EXPECT_GT(late_pruned, 5 * x.rows() * 8 / 10);  // most rows, late on
  EXPECT_GT(late_unread, 5 * x.rows() * 7 / 10);  // most of them not even read
  // A copy starts without bounds (they belong to one model's centres) and gives the same bits.
  KmeansLloyd copy = with;
  std::vector<double> a(with.num_stats(), 0.0), b(copy.num_stats(), 0.0);
  for (const auto& block : blocks) {
    with.e_step_block(block, a);
    copy.e_step_block(block, b);
  }
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(double)));
  copy.m_step(b);
  EXPECT_EQ(copy.last_pruned_rows(), 0);
}

// Elkan's per-centre test (K ≥ 8): a row the row test leaves open gets only the distances of
// the centres its lower bounds do not exclude, when they are at most a quarter of K. The
// statistics stay those of computing every distance, bit for bit, at every step, with many
// open rows taking that path (24 overlapping blobs, K = 24 started from rows of three blobs,
// so the centres travel and rows change centre for many steps); a model whose state covers
// only the first block agrees too.
TEST(Kmeans, PerCentreBoundsComputeFewDistancesWithTheSameBits) {
  const Index d = 21, k = 24;
  const RowMatrix x = blobs(3000, d, k, 17, nullptr, 3.0, 1.0);
  RowMatrix c(k, d);
  for (Index e = 0; e < k; ++e) c.row(e) = x.row(e * k + e % 3);  // row i is in blob i % k: blobs 0-2 only
  const KmeansFrame frame = frame_about_zero(x);
  const std::size_t one_block = 1000 * KmeansLloyd::bound_bytes_per_row(k) + KmeansLloyd::block_state_bytes(k, d);
  KmeansLloyd with(c, frame), without(c, frame, 0), capped(c, frame, one_block + 1);
  std::vector<io::DenseBlock> blocks;
  for (Index r0 = 0; r0 < x.rows(); r0 += 1000) {
    io::DenseBlock b;
    b.ref.global_row_begin = r0;
    b.x = x.middleRows(r0, 1000);
    blocks.push_back(std::move(b));
  }
  Index few = 0, open = 0;
  for (int step = 0; step < 30; ++step) {
    ASSERT_NO_FATAL_FAILURE(step_all({&with, &without, &capped}, blocks, step));
    ASSERT_EQ(with.centered_centers(), without.centered_centers());
    EXPECT_EQ(without.last_few_rows(), 0);
    EXPECT_LE(capped.last_few_rows(), 1000);
    if (step == 0) {
      EXPECT_EQ(with.last_few_rows(), 0);  // no bounds yet
    }
    few += with.last_few_rows();
    open += with.last_rows() - with.last_pruned_rows();
  }
  EXPECT_GT(few, 0);
  // Step 0 opens every row; after it, a tenth or more of the open row visits take the path
  // (most others fall in tiles read whole).
  EXPECT_GT(few * 10, open - x.rows()) << "few " << few << " of " << open << " open row visits";
}

// One centre: every row's bound is infinite after the first step, so every later step
// settles every row, with the first step's bits.
TEST(Kmeans, OneCentreSettlesEveryRowAfterTheFirstStep) {
  const RowMatrix x = blobs(300, 3, 2, 5, nullptr, 4.0, 1.0);
  KmeansLloyd with(RowMatrix(x.topRows(1)), frame_about_zero(x)), without(RowMatrix(x.topRows(1)), frame_about_zero(x), 0);
  io::DenseBlock b;
  b.x = x;
  for (int step = 0; step < 3; ++step) {
    std::vector<double> p(with.num_stats(), 0.0), q(without.num_stats(), 0.0);
    with.e_step_block(b, p);
    without.e_step_block(b, q);
    ASSERT_EQ(p, q);
    with.m_step(p);
    without.m_step(q);
    EXPECT_EQ(with.last_pruned_rows(), step == 0 ? 0 : 300);
  }
}

// The sums are exact on the block's grid: each centred float32 value rounded (half to
// even) to a multiple of 2^-g_j with |x|·2^g ≤ 2^40, then summed; so they equal that sum
// computed here in long double, do not depend on the rows' order within a block, and a
// block of more than 8192 rows is on a grid one bit coarser per doubling. The inertia is
// Σ‖x − c‖² over the float32 rows and centres (here in long double) to 1e-10 relative (the
// closed form cancels Σ‖x‖², here 50 times the inertia, and uses the sums on the grid).
TEST(Kmeans, SumsAreExactOnTheBlocksGridInAnyRowOrder) {
  std::mt19937_64 gen(11);
  std::normal_distribution<double> normal(0.0, 1.0);
  const Index d = 5, k = 3, n = 9000;
  RowMatrix x(n, d), c(k, d);
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < d; ++j) x(i, j) = 30.0 * static_cast<double>(i % k) + normal(gen) * std::ldexp(1.0, static_cast<int>(j) * 3 - 10);
  for (Index t = 0; t < k; ++t)
    for (Index j = 0; j < d; ++j) c(t, j) = 30.0 * static_cast<double>(t);
  const KmeansFrame frame = frame_about_zero(x);
  const auto expected = [&](const RowMatrix& rows, int extra) {  // [inertia, counts, sums] by the definition
    std::vector<long double> out(static_cast<std::size_t>(1 + k + k * d), 0.0L);
    for (Index i = 0; i < rows.rows(); ++i) {
      const auto t = static_cast<Index>(std::lround(rows(i, 0) / 30.0));  // well separated: the nearest
      out[static_cast<std::size_t>(1 + t)] += 1;
      for (Index j = 0; j < d; ++j) {
        int e = 0;
        std::frexp(frame.bound[j], &e);
        const long double scale = std::ldexp(1.0L, 40 - e - extra);
        const auto xf = static_cast<long double>(static_cast<float>(rows(i, j)));
        out[static_cast<std::size_t>(1 + k + t * d + j)] += std::nearbyint(xf * scale) / scale;
        const long double diff = xf - static_cast<long double>(static_cast<float>(c(t, j)));
        out[0] += diff * diff;
      }
    }
    return out;
  };
  for (const Index rows_in_block : {Index{3000}, Index{9000}}) {
    const int extra = rows_in_block > 8192 ? 1 : 0;
    io::DenseBlock b;
    b.x = x.topRows(rows_in_block);
    KmeansLloyd lloyd(c, frame, 0);
    std::vector<double> p(lloyd.num_stats(), 0.0);
    lloyd.e_step_block(b, p);
    const std::vector<long double> want = expected(b.x, extra);
    EXPECT_NEAR(p[0], static_cast<double>(want[0]), 1e-10 * static_cast<double>(want[0]));
    for (std::size_t e = 1; e < p.size(); ++e) EXPECT_EQ(p[e], static_cast<double>(want[e])) << rows_in_block << " cell " << e;
    // The rows reversed: the same counts and sums, bit for bit.
    io::DenseBlock r;
    r.x = b.x.colwise().reverse();
    std::vector<double> pr(lloyd.num_stats(), 0.0);
    lloyd.e_step_block(r, pr);
    EXPECT_EQ(0, std::memcmp(p.data() + 1, pr.data() + 1, (p.size() - 1) * sizeof(double))) << rows_in_block;
  }
}

// The state a rank keeps per row: label, upper bound and K lower bounds (8 + 4K bytes),
// plus each block's K × padded(D) sums, K counts and Σ‖x‖² spread over its rows.
TEST(Kmeans, StateBytesPerRow) {
  EXPECT_EQ(KmeansLloyd::bound_bytes_per_row(10), 48u);
  EXPECT_EQ(KmeansLloyd::block_state_bytes(10, 784), 8u * (10 * 784 + 10 + 1));
  EXPECT_EQ(KmeansLloyd::state_bytes_per_row(10, 784, 2048), 48 + (8 * (10 * 784 + 11) + 2047) / 2048);
  EXPECT_EQ(KmeansLloyd::block_state_bytes(3, 5), 8u * (3 * 16 + 3 + 1));  // D padded to 16
}

// A frame without a bound per feature is refused (the sums need the grid).
TEST(Kmeans, AFrameWithoutBoundsIsRefused) {
  RowMatrix c = RowMatrix::Zero(2, 3);
  EXPECT_THROW(KmeansLloyd(c, KmeansFrame{RowVector::Zero(3), 1.0, RowVector()}), latent::Error);
}

class KmeansInit : public ::testing::TestWithParam<std::string> {};

TEST_P(KmeansInit, FindsKnownClusters) {
  const auto comm = comm::Communicator::world();
  TempDir dir("km");
  std::vector<std::int64_t> labels;
  RowMatrix centers;
  const RowMatrix x = blobs(2000, 5, 4, 9, &labels, 20.0, 1.0, &centers);
  auto source = latent::testing::write_and_open(comm, dir / "d", x, {700, 1300}, 128);
  const auto summary = train::summarize(comm, *source, 2);
  KmeansConfig c;
  c.n_clusters = 4;
  c.init = GetParam();
  c.threads = 2;
  c.n_init = 3;
  const auto fit = fit_kmeans(comm, *source, summary.num_samples, summary.mean, c, Logger::silent(), {});
  EXPECT_LT(latent::testing::worst_center_error(fit.centers, centers), 0.2);
  // Inertia of unit-variance blobs: about N·D.
  EXPECT_NEAR(fit.inertia / (2000.0 * 5), 1.0, 0.1);
  EXPECT_TRUE(fit.em.converged);
}

INSTANTIATE_TEST_SUITE_P(Methods, KmeansInit, ::testing::Values("k-means||", "k-means++", "random"),
                         [](const auto& p) {
                           return p.param == "k-means||" ? std::string("kmeans_parallel")
                                  : p.param == "k-means++" ? std::string("kmeans_plusplus")
                                                           : p.param;
                         });

TEST(Kmeans, SeedingDrawsDistinctRowsAndNeverRowsAtDistanceZero) {
  const auto comm = comm::Communicator::world();
  TempDir dir("seed");
  RowMatrix x(10, 1);
  x << 0, 0, 0, 0, 0, 0, 0, 0, 1, 2;  // only three distinct points
  if (comm.is_root()) latent::testing::write_shards(dir / "d", x, {10});
  comm.barrier();
  auto source = latent::testing::make_source(comm, dir / "d", 3);
  RowMatrix centers(1, 1);
  centers << 0;
  const auto s = sample_rows_d2(comm, *source, RowVector::Zero(1), centers, 5, 1, 1, 1);
  ASSERT_EQ(s.rows.rows(), 2);  // only rows 8 and 9 have positive weight
  std::vector<Index> ids = s.ids;
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<Index>{8, 9}));
}

bool same_bits(const RowMatrix& a, const RowMatrix& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         (a.size() == 0 || std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.size()) * sizeof(double)) == 0);
}

// The label of every row under fitted centers (data coordinates).
std::vector<Index> labels_of(const RowMatrix& x, const KmeansResult& km) {
  const RowMatrix resp = hard_responsibilities(x, km.centered_centers, km.centered_centers.rowwise().squaredNorm(),
                                               km.frame.origin);
  std::vector<Index> out(static_cast<std::size_t>(x.rows()));
  for (Index i = 0; i < x.rows(); ++i) resp.row(i).maxCoeff(&out[static_cast<std::size_t>(i)]);
  return out;
}

// True if b relabels a by a one-to-one map.
bool same_partition(const std::vector<Index>& a, const std::vector<Index>& b) {
  std::map<Index, Index> ab, ba;
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (ab.emplace(a[i], b[i]).first->second != b[i] || ba.emplace(b[i], a[i]).first->second != a[i]) return false;
  return true;
}

// Issue 19: one column offset by 1e8 or 1e12 (a timestamp, a coordinate in metres). k-means
// and the GMM are translation invariant, so the fits must be those of the data without the
// offset. Before k-means worked about the data mean, the expansion ||x||² − 2x·c + ||c||²
// lost every digit: inertia wrong by 10x at 1e8, empty clusters at 1e12, and the GMM's
// k-means start (and so its bound) off. The column lies on a 2^-10 grid, so x + 1e12 is
// exact and the offset data are the same points moved.
TEST(Kmeans, AnOffsetColumnGivesTheFitOfTheDataWithoutIt) {
  const auto comm = comm::Communicator::world();
  TempDir dir("km-offset");
  RowMatrix base = blobs(6000, 4, 5, 11, nullptr, 10.0, 1.0);
  base.col(1) = ((base.col(1).array() * 1024.0).round() / 1024.0).matrix();
  struct Fit {
    KmeansResult km;
    std::vector<Index> labels;
    double gmm_bound = 0;
  };
  const auto fit_with = [&](double offset, const std::string& name) {
    RowMatrix x = base;
    x.col(1).array() += offset;
    auto source = latent::testing::write_and_open(comm, dir / name, x, {2500, 3500}, 512);
    const auto summary = train::summarize(comm, *source, 2);
    KmeansConfig c;
    c.n_clusters = 5;
    c.n_init = 4;
    c.threads = 2;
    Fit f;
    f.km = fit_kmeans(comm, *source, summary.num_samples, summary.mean, c, Logger::silent(), {});
    f.labels = labels_of(x, f.km);
    GmmConfig g;
    g.n_components = 5;
    g.covariance_type = CovarianceType::kDiag;
    g.threads = 2;
    f.gmm_bound = fit_gmm(comm, *source, summary, g, Logger::silent(), {}).em.objective;
    return f;
  };
  const Fit ref = fit_with(0.0, "base");
  EXPECT_NEAR(ref.km.inertia / (6000.0 * 4), 1.0, 0.1);  // unit-variance blobs, found
  for (const double offset : {1e8, 1e12}) {
    const Fit f = fit_with(offset, offset == 1e8 ? "e8" : "e12");
    EXPECT_NEAR(f.km.inertia, ref.km.inertia, 1e-9 * ref.km.inertia) << offset;
    EXPECT_TRUE(same_partition(ref.labels, f.labels)) << offset;
    RowMatrix moved_back = f.km.centers;
    moved_back.col(1).array() -= offset;
    EXPECT_LT(latent::testing::worst_center_error(moved_back, ref.km.centers), 1e-3) << offset;  // ulp of 1e12: 1.2e-4
    EXPECT_TRUE(f.km.em.converged) << offset;
    EXPECT_EQ(f.km.em.n_iter, ref.km.em.n_iter) << offset;
    // nats/sample: the mixture keeps its means in the data's coordinates, where an ulp of
    // 1e12 is 1.2e-4 (the fit's bound before: off by units).
    EXPECT_NEAR(f.gmm_bound, ref.gmm_bound, 1e-6) << offset;
  }
}

// Issue 19: a float32 column held at 3e38. Its squares (9e76) swamped the other features in
// the distances, every row seemed at distance 0 from the first center, and the seeding
// warned that 20,000 distinct rows were "only 1 distinct points". About the data mean
// the column is 0 and the fit is that of the other columns.
TEST(Kmeans, AFloat32ColumnHeldAt3e38IsNotOneDistinctPoint) {
  const auto comm = comm::Communicator::world();
  TempDir dir("km-3e38");
  RowMatrix x = blobs(20000, 3, 4, 12, nullptr, 10.0, 1.0);
  x.col(2).setConstant(3e38);
  RowMatrix without = x;
  without.col(2).setZero();
  const auto fit_of = [&](const RowMatrix& data, const std::string& name, std::string& log_text) {
    if (comm.is_root()) {
      std::filesystem::create_directories(dir / name);
      latent::testing::write_shard(dir / name + "/part-00000.h5", data, {}, io::DType::kFloat32);
    }
    comm.barrier();
    auto source = latent::testing::make_source(comm, dir / name, 1024);
    const auto summary = train::summarize(comm, *source, 2);
    KmeansConfig c;
    c.n_clusters = 4;
    c.threads = 2;
    std::ostringstream out;
    const Logger log(&out, comm.is_root());
    const KmeansResult km = fit_kmeans(comm, *source, summary.num_samples, summary.mean, c, log, {});
    log_text = out.str();
    return km;
  };
  std::string huge_log, plain_log;
  const KmeansResult huge = fit_of(x, "huge", huge_log);
  const KmeansResult plain = fit_of(without, "plain", plain_log);
  EXPECT_EQ(huge_log.find("distinct"), std::string::npos) << huge_log;
  EXPECT_EQ(huge_log.find("empty"), std::string::npos) << huge_log;
  EXPECT_NEAR(huge.inertia / (20000.0 * 2), 1.0, 0.1);
  EXPECT_NEAR(huge.inertia, plain.inertia, 1e-9 * plain.inertia);
  EXPECT_TRUE((huge.centers.col(2).array() == static_cast<double>(3e38f)).all()) << huge.centers;
}

// A seeding weight is 0 exactly when the row equals a center: rows 1e-7 from a center at
// 1e3 (squared distance 1e-14, below the expansion's rounding error of ~1e-9 there) are
// still drawn.
// Lloyd reads float32 shards as float32 blocks (cached and streamed) and gives the bits of
// the same data read as double.
TEST(Kmeans, Float32BlocksGiveTheBitsOfDoubleBlocks) {
  TempDir dir("kmf32");
  const auto comm = comm::Communicator::world();
  const auto results = latent::testing::fit_float32_shards_four_ways(
      dir.path(), blobs(700, 13, 4, 9, nullptr, 5.0, 1.0), 300, 250, false,
      [&](io::BlockSource& source, const train::DataSummary& summary) {
        KmeansConfig c;
        c.n_clusters = 4;
        c.threads = 2;
        const KmeansResult r = fit_kmeans(comm, source, summary.num_samples, summary.mean, c, Logger::silent(), {});
        std::vector<double> v(r.centers.data(), r.centers.data() + r.centers.size());
        v.push_back(r.inertia);
        return v;
      });
  for (std::size_t i = 1; i < results.size(); ++i) EXPECT_EQ(results[i], results[0]) << "configuration " << i;
}

TEST(Kmeans, SeedingWeighsNearDuplicatesAboveZero) {
  const auto comm = comm::Communicator::world();
  TempDir dir("seed-near");
  RowMatrix x(6, 2);
  x << 1000, 0, 1000 + 1e-7, 0, 1000 + 2e-7, 0, 1000, 3e-7, -1000, 0, 1000, 0;
  if (comm.is_root()) latent::testing::write_shards(dir / "d", x, {6});
  comm.barrier();
  auto source = latent::testing::make_source(comm, dir / "d", 4);
  RowMatrix centers(1, 2);
  centers << 1000, 0;
  const auto s = sample_rows_d2(comm, *source, RowVector::Zero(2), centers, 10, 1, 1, 1);
  std::vector<Index> ids = s.ids;
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<Index>{1, 2, 3, 4}));  // rows 0 and 5 equal the center
}

// The seeding's draw (Efraimidis & Spirakis 2006) on the squared distance to the nearest
// centre, taken in float32 (quadratic_unit): on integer data about a half-integer origin
// every float32 distance is exact, so the rows drawn must be the `count` largest keys
// log(u)/d², u from CounterRng(seed, kKmeansSeeding, round, global row), computed here in
// double, in key order; rows at distance 0 (the centres' own) never drawn; each row
// returned centred on the origin. In every kernel variant, from double shards and from
// float32 shards read as float32 blocks, at 1 and 2 threads.
namespace {

// Integer rows (every float32 distance exact about a half-integer origin) and the rows
// the seeding must draw from them: the `count` largest keys log(u)/d², d² the squared
// distance to the nearest centre computed here in double, u from CounterRng(seed,
// kKmeansSeeding, round, global row), rows at distance 0 or NaN left out, in key order.
struct SeedingCase {
  RowMatrix x, centers;
  RowVector origin;
  std::uint64_t seed = 9, round = 2;
  Index count = 25;
  std::vector<Index> drawn() const {
    std::vector<std::pair<double, Index>> keys;  // (key, row)
    for (Index i = 0; i < x.rows(); ++i) {
      double d2 = std::numeric_limits<double>::infinity();
      for (Index c = 0; c < centers.rows(); ++c) d2 = std::min(d2, ((x.row(i) - origin) - centers.row(c)).squaredNorm());
      if (!(d2 > 0) || x.row(i).hasNaN()) continue;
      CounterRng rng(seed, RngPurpose::kKmeansSeeding, round, static_cast<std::uint64_t>(i));
      keys.emplace_back(std::log(rng.next_uniform()) / d2, i);
    }
    std::sort(keys.begin(), keys.end(), [](const auto& a, const auto& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    });
    std::vector<Index> want;
    for (Index i = 0; i < count && i < static_cast<Index>(keys.size()); ++i) want.push_back(keys[static_cast<std::size_t>(i)].second);
    return want;
  }
};

SeedingCase integer_seeding_case() {
  SeedingCase sc;
  const Index n = 300, d = 21;
  std::mt19937_64 gen(3);
  std::uniform_int_distribution<int> value(-8, 8);
  sc.x.resize(n, d);
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < d; ++j) sc.x(i, j) = value(gen);
  sc.origin = RowVector::Constant(d, 0.5);
  sc.centers.resize(3, d);
  sc.centers.row(0) = sc.x.row(0) - sc.origin;
  sc.centers.row(1) = sc.x.row(7) - sc.origin;
  sc.centers.row(2) = RowVector::Constant(d, 2.0) - sc.origin;
  return sc;
}

}  // namespace

// The seeding's draw (Efraimidis & Spirakis 2006) on the squared distance to the nearest
// centre, taken in float32 (quadratic_unit): on integer data the rows drawn must be
// SeedingCase::drawn()'s, in key order, never the centres' own rows, each returned
// centred on the origin. In every kernel variant, from double shards and from float32
// shards read as float32 blocks, at 1 and 2 threads.
TEST(Kmeans, SeedingDrawsTheLargestKeysOfTheSquaredDistances) {
  const auto comm = comm::Communicator::world();
  TempDir dir("seed-keys");
  const SeedingCase sc = integer_seeding_case();
  const Index n = sc.x.rows();
  const std::vector<Index> want = sc.drawn();
  ASSERT_EQ(static_cast<Index>(want.size()), sc.count);
  ASSERT_EQ(std::count(want.begin(), want.end(), Index{0}) + std::count(want.begin(), want.end(), Index{7}), 0);
  if (comm.is_root()) {
    latent::testing::write_shards(dir / "f64", sc.x, {120, 180});
    std::filesystem::create_directories(dir / "f32");
    latent::testing::write_shard(dir / "f32" + "/part-00000.h5", sc.x.topRows(130), {}, io::DType::kFloat32);
    latent::testing::write_shard(dir / "f32" + "/part-00001.h5", sc.x.bottomRows(n - 130), {}, io::DType::kFloat32);
  }
  comm.barrier();
  for (const auto v : kernel::all_variants()) {
    if (!kernel::supported(v)) continue;
    const kernel::ScopedVariant scope(v);
    for (const bool f32 : {false, true})
      for (const int threads : {1, 2}) {
        auto info = io::open_dense_dataset(dir / (f32 ? "f32" : "f64"));
        auto mine = io::rank_blocks(io::make_block_plan(info, 64), comm.rank(), comm.size());
        io::BlockSourceOptions o;
        o.float32 = f32;
        io::BlockSource source(std::move(info), std::move(mine), o);
        const auto s = sample_rows_d2(comm, source, sc.origin, sc.centers, sc.count, sc.seed, sc.round, threads);
        const std::string where = kernel::to_string(v) + (f32 ? " float32" : " double") + " threads " + std::to_string(threads);
        ASSERT_EQ(s.ids, want) << where;
        for (Index i = 0; i < sc.count; ++i)
          ASSERT_TRUE(s.rows.row(i) == sc.x.row(want[static_cast<std::size_t>(i)]) - sc.origin) << where << " row " << i;
      }
  }
}

// A tile with a NaN (a source that keeps them; the fits' seeding sources fill them) takes
// the double expansion: the NaN row is never drawn and the others are drawn as before
// (on integer data the expansion is exact too).
TEST(Kmeans, SeedingSkipsANaNRowAndDrawsTheOthersAsBefore) {
  const auto comm = comm::Communicator::world();
  TempDir dir("seed-nan");
  SeedingCase sc = integer_seeding_case();
  sc.x(40, 3) = std::numeric_limits<double>::quiet_NaN();
  const std::vector<Index> want = sc.drawn();
  ASSERT_EQ(std::count(want.begin(), want.end(), Index{40}), 0);
  if (comm.is_root()) latent::testing::write_shards(dir / "d", sc.x, {120, 180});
  comm.barrier();
  for (const auto v : kernel::all_variants()) {
    if (!kernel::supported(v)) continue;
    const kernel::ScopedVariant scope(v);
    auto source = latent::testing::make_source(comm, dir / "d", 64, 0, false, true);
    const auto s = sample_rows_d2(comm, *source, sc.origin, sc.centers, sc.count, sc.seed, sc.round, 2);
    EXPECT_EQ(s.ids, want) << kernel::to_string(v);
  }
}

// Issue 19: the seeding stops at every pass over the data and every Lloyd iteration on the
// k-means|| candidates; resumed from any of those snapshots it gives the same bits.
class KmeansSeedingResume : public ::testing::TestWithParam<std::string> {};

TEST_P(KmeansSeedingResume, FromEverySnapshotGivesTheSameBits) {
  const auto comm = comm::Communicator::world();
  TempDir dir("seed-resume");
  const RowMatrix x = blobs(3000, 3, 6, 21, nullptr, 5.0, 1.0);
  auto source = latent::testing::write_and_open(comm, dir / "d", x, {1000, 2000}, 256);
  const auto summary = train::summarize(comm, *source, 2);
  const Index k = 6;
  const RowMatrix plain = init_centers(comm, *source, summary.mean, k, GetParam(), 5, 2, Logger::silent());
  std::vector<train::TrainState> snapshots;
  train::InitPoints record;
  record.point = [&](const std::function<train::TrainState()>& snapshot) { snapshots.push_back(snapshot()); };
  const RowMatrix recorded = init_centers(comm, *source, summary.mean, k, GetParam(), 5, 2, Logger::silent(), record);
  EXPECT_TRUE(same_bits(plain, recorded));
  // random: one pass; k-means++: K passes; k-means||: 6 passes, the weights, Lloyd iterations.
  const std::size_t expected = GetParam() == "random" ? 1 : GetParam() == "k-means++" ? 6 : 8;
  if (GetParam() == "k-means||")
    EXPECT_GE(snapshots.size(), expected);
  else
    EXPECT_EQ(snapshots.size(), expected);
  for (std::size_t i = 0; i < snapshots.size(); ++i) {
    EXPECT_EQ(snapshots[i].scalar("stage"), 1.0);
    train::InitPoints resume;
    resume.resumed = &snapshots[i];
    std::size_t later = 0;
    resume.point = [&](const std::function<train::TrainState()>&) { ++later; };
    const RowMatrix again = init_centers(comm, *source, summary.mean, k, GetParam(), 5, 1, Logger::silent(), resume);
    EXPECT_TRUE(same_bits(plain, again)) << "snapshot " << i;
    EXPECT_EQ(later, snapshots.size() - 1 - i) << "snapshot " << i;  // only the points after it
  }
}

INSTANTIATE_TEST_SUITE_P(Methods, KmeansSeedingResume, ::testing::Values("k-means||", "k-means++", "random"),
                         [](const auto& p) {
                           return p.param == "k-means||" ? std::string("kmeans_parallel")
                                  : p.param == "k-means++" ? std::string("kmeans_plusplus")
                                                           : p.param;
                         });

// Issue 19: the GMM's k-means start stops after its frame pass, every seeding pass and every
// Lloyd iteration; resumed from any of those snapshots it gives the same mixture.
TEST(Kmeans, MixtureInitialisationResumesFromEverySnapshotWithTheSameBits) {
  const auto comm = comm::Communicator::world();
  TempDir dir("gmm-init-resume");
  const RowMatrix x = blobs(3000, 3, 4, 23, nullptr, 3.0, 1.0);
  auto source = latent::testing::write_and_open(comm, dir / "d", x, {1500, 1500}, 256);
  const auto summary = train::summarize(comm, *source, 2);
  for (const auto type : {CovarianceType::kFull, CovarianceType::kDiag}) {
    GmmConfig g;
    g.n_components = 4;
    g.covariance_type = type;
    g.threads = 2;
    const Gmm plain = initial_gmm(comm, *source, summary, g, 9, Logger::silent());
    std::vector<train::TrainState> snapshots;
    train::InitPoints record;
    record.point = [&](const std::function<train::TrainState()>& snapshot) { snapshots.push_back(snapshot()); };
    const Gmm recorded = initial_gmm(comm, *source, summary, g, 9, Logger::silent(), record);
    EXPECT_TRUE(same_bits(plain.means(), recorded.means()));
    std::map<double, int> stages;
    for (const auto& s : snapshots) ++stages[s.scalar("stage")];
    EXPECT_EQ(stages[0], 1);   // after the frame pass
    EXPECT_GE(stages[1], 8);   // seeding
    EXPECT_GE(stages[2], 2);   // Lloyd iterations
    for (std::size_t i = 0; i < snapshots.size(); ++i) {
      train::InitPoints resume;
      resume.resumed = &snapshots[i];
      const Gmm again = initial_gmm(comm, *source, summary, g, 9, Logger::silent(), resume);
      EXPECT_TRUE(same_bits(plain.weights(), again.weights())) << to_string(type) << " snapshot " << i;
      EXPECT_TRUE(same_bits(plain.means(), again.means())) << to_string(type) << " snapshot " << i;
      EXPECT_TRUE(same_bits(plain.covariances(), again.covariances())) << to_string(type) << " snapshot " << i;
    }
  }
}

}  // namespace
}  // namespace latent::models
