#include "latent/models/kmeans/kmeans.hpp"

#include <gtest/gtest.h>

#include "../support/fixtures.hpp"
#include "../support/pipeline.hpp"
#include "latent/train/data_summary.hpp"

namespace latent::models {
namespace {

using latent::testing::blobs;
using latent::testing::TempDir;

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
  KmeansLloyd lloyd(c, 1.0);
  io::DenseBlock b;
  b.x.resize(4, 1);
  b.x << 0, 1, 10, 12;
  std::vector<double> partial(lloyd.num_stats(), 0.0);
  lloyd.e_step_block(b, partial);
  EXPECT_DOUBLE_EQ(partial[0], 0 + 1 + 0 + 4);  // inertia
  const auto step = lloyd.m_step(partial);
  EXPECT_DOUBLE_EQ(step.objective, 5);
  EXPECT_DOUBLE_EQ(lloyd.centers()(0, 0), 0.5);
  EXPECT_DOUBLE_EQ(lloyd.centers()(1, 0), 11);
  EXPECT_DOUBLE_EQ(step.change, 0.25 + 1.0);
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
  const auto fit = fit_kmeans(comm, *source, summary.num_samples, summary.variance.mean(), c, Logger::silent(), {});
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
  const auto s = sample_rows_d2(comm, *source, centers, 5, 1, 1, 1);
  ASSERT_EQ(s.rows.rows(), 2);  // only rows 8 and 9 have positive weight
  std::vector<Index> ids = s.ids;
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<Index>{8, 9}));
}

}  // namespace
}  // namespace latent::models
