// train/metrics: adjusted Rand index and purity against scikit-learn, the distributed
// order statistic against a sort. Works at any rank count (each rank holds a share).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "latent/comm/communicator.hpp"
#include "latent/train/metrics.hpp"

namespace latent::train {
namespace {

// The table of paired labels (predicted[i], truth[i]).
ContingencyTable table_of(const std::vector<std::int64_t>& predicted, const std::vector<std::int64_t>& truth) {
  ContingencyTable t;
  for (std::size_t i = 0; i < predicted.size(); ++i) ++t[{predicted[i], truth[i]}];
  return t;
}

// Reference values: sklearn.metrics.adjusted_rand_score(truth, predicted) (scikit-learn
// 1.2, computed once), purity = contingency_matrix(truth, predicted).max(axis=0).sum() / N.
TEST(Metrics, AgreementMatchesScikitLearn) {
  {
    const auto a = clustering_agreement(table_of({0, 0, 1, 1, 2, 2}, {0, 0, 0, 1, 1, 1}));
    EXPECT_NEAR(a.adjusted_rand_index, 0.24242424242424243, 1e-15);  // 8/33
    EXPECT_NEAR(a.purity, 0.8333333333333334, 1e-15);                // 5/6
  }
  {
    const auto a = clustering_agreement(table_of({0, 1, 0, 1}, {0, 0, 1, 1}));
    EXPECT_NEAR(a.adjusted_rand_index, -0.5, 1e-15);
    EXPECT_NEAR(a.purity, 0.5, 1e-15);
  }
  {
    // 200 rows, 4 true labels and 5 clusters with arbitrary int64 values (seeded numpy draw,
    // 70% of the predictions equal to a relabelled truth): {(predicted, truth), count}.
    const ContingencyTable t{{{-1, -3}, 1},         {{-1, 7}, 34},        {{-1, 42}, 5},         {{-1, 1000000000000}, 2},
                             {{2, -3}, 1},          {{2, 7}, 3},          {{2, 42}, 41},         {{2, 1000000000000}, 7},
                             {{5, -3}, 38},         {{5, 7}, 3},          {{5, 42}, 1},          {{5, 1000000000000}, 5},
                             {{9, -3}, 3},          {{9, 7}, 2},          {{9, 42}, 3},          {{9, 1000000000000}, 32},
                             {{123456789, -3}, 5},  {{123456789, 7}, 5},  {{123456789, 42}, 2},  {{123456789, 1000000000000}, 7}};
    const auto a = clustering_agreement(t);
    EXPECT_NEAR(a.adjusted_rand_index, 0.46402142722311923, 1e-14);
    EXPECT_NEAR(a.purity, 0.76, 1e-15);
  }
}

TEST(Metrics, AgreementClosedForms) {
  // Identical partitions up to renaming: ARI = purity = 1.
  auto a = clustering_agreement(table_of({5, 5, 9, 9, -2}, {0, 0, 1, 1, 2}));
  EXPECT_DOUBLE_EQ(a.adjusted_rand_index, 1.0);
  EXPECT_DOUBLE_EQ(a.purity, 1.0);
  // Both trivial (one cluster each; every row alone): the 0/0 case is 1, as scikit-learn.
  a = clustering_agreement(table_of({1, 1, 1, 1, 1}, {0, 0, 0, 0, 0}));
  EXPECT_DOUBLE_EQ(a.adjusted_rand_index, 1.0);
  a = clustering_agreement(table_of({3, 4, 5}, {0, 1, 2}));
  EXPECT_DOUBLE_EQ(a.adjusted_rand_index, 1.0);
  // One cluster against two equal classes: ARI 0, purity 1/2.
  a = clustering_agreement(table_of({7, 7, 7, 7}, {0, 0, 1, 1}));
  EXPECT_DOUBLE_EQ(a.adjusted_rand_index, 0.0);
  EXPECT_DOUBLE_EQ(a.purity, 0.5);
  // Empty table: purity 0.
  a = clustering_agreement(ContingencyTable{});
  EXPECT_DOUBLE_EQ(a.purity, 0.0);
}

TEST(Metrics, GlobalAgreementSumsTheRanksTables) {
  const auto comm = comm::Communicator::world();
  const std::vector<std::int64_t> predicted{0, 0, 1, 1, 2, 2, 2, 0, 1, 3, 3, 3};
  const std::vector<std::int64_t> truth{0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 0, 1};
  // Row i is counted on rank i mod P; some ranks may hold nothing.
  ContingencyTable local;
  for (std::size_t i = 0; i < predicted.size(); ++i)
    if (static_cast<int>(i % static_cast<std::size_t>(comm.size())) == comm.rank()) ++local[{predicted[i], truth[i]}];
  const auto global = global_clustering_agreement(comm, local);
  const auto whole = clustering_agreement(table_of(predicted, truth));
  EXPECT_EQ(global.adjusted_rand_index, whole.adjusted_rand_index);
  EXPECT_EQ(global.purity, whole.purity);
}

TEST(Metrics, OrderStatisticIsExactOverRanks) {
  const auto comm = comm::Communicator::world();
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<double> all{3.5,  -1.25, 0.0,  -0.0,   1e-310, -1e-310, 7.0, 7.0, -inf, inf,
                                -2e300, 2e300, 0.1,  -0.1,  42.0,   3.5,     -7,  1,   2,    2.5};
  std::vector<double> local;
  for (std::size_t i = 0; i < all.size(); ++i)
    if (static_cast<int>((i * 7) % static_cast<std::size_t>(comm.size())) == comm.rank()) local.push_back(all[i]);
  std::vector<double> sorted = all;
  std::sort(sorted.begin(), sorted.end());
  for (std::int64_t k = 0; k < static_cast<std::int64_t>(all.size()); ++k) {
    const double v = global_order_statistic(comm, local, k);
    // -0.0 and 0.0 compare equal: both of their ranks give the first in code order, -0.0.
    EXPECT_EQ(v, sorted[static_cast<std::size_t>(k)]) << "k = " << k;
  }
  EXPECT_EQ(global_order_statistic(comm, local, 0), -inf);
  EXPECT_EQ(global_order_statistic(comm, local, 19), inf);
  EXPECT_TRUE(std::signbit(global_order_statistic(comm, local, 6)));
  EXPECT_TRUE(std::signbit(global_order_statistic(comm, local, 7)));
  EXPECT_EQ(global_order_statistic(comm, local, 8), 1e-310);
}

TEST(Metrics, InformationCriteriaClosedForms) {
  // ln N = 2 exactly enough: N = e^2.
  const InformationCriteria ic = information_criteria(-100.0, std::exp(2.0), 7.0);
  EXPECT_NEAR(ic.bic, 200.0 + 14.0, 1e-12);
  EXPECT_DOUBLE_EQ(ic.aic, 200.0 + 14.0);
  EXPECT_DOUBLE_EQ(information_criteria(-3.5, 1.0, 4.0).bic, 7.0);  // ln 1 = 0
}

TEST(Metrics, QuantileIndex) {
  EXPECT_EQ(quantile_index(0.0, 10), 0);
  EXPECT_EQ(quantile_index(1.0, 10), 9);
  EXPECT_EQ(quantile_index(0.5, 10), 4);    // floor(4.5)
  EXPECT_EQ(quantile_index(0.01, 1001), 10);
  EXPECT_EQ(quantile_index(0.3, 1), 0);
}

}  // namespace
}  // namespace latent::train
