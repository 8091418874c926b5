#pragma once
/// \file Evaluation metrics over data spread across the ranks: the exact order statistic
/// (quantile) of per-row values, and the agreement of a clustering with true labels
/// (adjusted Rand index, purity) from a contingency table summed over the ranks.
///
/// They live in train (below models) because they are model-independent and collective:
/// any model's scoring pass fills a ContingencyTable, and the commands print the result.
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "latent/comm/communicator.hpp"

namespace latent::train {

/// Counts of rows by (predicted cluster, true label): table[{predicted, truth}] = rows.
/// Labels are arbitrary int64 values (not necessarily 0..K-1); absent pairs count 0.
using ContingencyTable = std::map<std::pair<std::int64_t, std::int64_t>, std::int64_t>;

/// Agreement between a clustering and the true labels of the same N rows.
struct ClusteringAgreement {
  /// Adjusted Rand index (Hubert & Arabie 1985, "Comparing partitions", J. Classif. 2:193):
  /// (Σ_ij C(n_ij,2) − E) / (½(Σ_i C(a_i,2) + Σ_j C(b_j,2)) − E) with
  /// E = Σ_i C(a_i,2) Σ_j C(b_j,2) / C(N,2), a_i the row (predicted) sums and b_j the column
  /// (true) sums of the table. 1 for identical partitions (up to renaming), about 0 for
  /// independent ones, can be negative. Defined as 1 when the denominator is 0 (both
  /// partitions trivial: one cluster each, or every row alone), as scikit-learn's
  /// adjusted_rand_score.
  double adjusted_rand_index = 0;
  /// Purity: (1/N) Σ_i max_j n_ij, the fraction of rows whose true label is the most
  /// frequent one of their predicted cluster (Manning, Raghavan & Schütze 2008 §16.3).
  /// In (0, 1]; 0 for an empty table.
  double purity = 0;
};

/// ARI and purity of one table (this process's counts only). Local.
ClusteringAgreement clustering_agreement(const ContingencyTable& table);

/// ARI and purity of the table summed over the ranks (each rank passes its own counts;
/// every rank receives the same result). Collective: one allgatherv of 3 int64 per
/// non-zero cell.
ClusteringAgreement global_clustering_agreement(const comm::Communicator& comm, const ContingencyTable& local);

/// The k-th smallest (0-based, 0 <= k < N) of the N values spread over the ranks (each rank
/// passes its own values, any order; no NaN), exactly: a bisection over the order-preserving
/// 64-bit codes of doubles with one int64 allreduce per step (64 steps at most), so the
/// result is one of the values, bit for bit, whatever the rank count. Memory: the local
/// values, sorted in place. Collective; every rank receives the same value.
double global_order_statistic(const comm::Communicator& comm, std::vector<double> local, std::int64_t k);

/// The order statistic index floor(q (N − 1)) of the lower q-quantile of N values
/// (0 <= q <= 1, N >= 1): `--outlier-quantile q` flags the values at or below it.
std::int64_t quantile_index(double q, std::int64_t n);

/// Information criteria of a fit from its total log-likelihood (nats, summed over the
/// N samples), N and the number p of free parameters: BIC = −2 ℓ + p ln N (Schwarz 1978)
/// and AIC = −2 ℓ + 2 p (Akaike 1974), scikit-learn's GaussianMixture.bic/aic. Pure.
struct InformationCriteria {
  double bic = 0;
  double aic = 0;
};
InformationCriteria information_criteria(double total_log_likelihood, double n_samples, double n_parameters);

}  // namespace latent::train
