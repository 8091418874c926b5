#include "latent/train/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace latent::train {
namespace {

double comb2(double n) { return n * (n - 1) / 2; }

// Doubles in an order-preserving int64 code (NaN excluded), and back.
std::int64_t order_code(double x) {
  std::int64_t i;
  std::memcpy(&i, &x, sizeof i);
  return i >= 0 ? i : std::numeric_limits<std::int64_t>::min() - i - 1;
}
double from_order_code(std::int64_t i) {
  const std::int64_t bits = i >= 0 ? i : std::numeric_limits<std::int64_t>::min() - i - 1;
  double x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

}  // namespace

ClusteringAgreement clustering_agreement(const ContingencyTable& table) {
  std::map<std::int64_t, double> rows, cols;
  std::map<std::int64_t, double> best_in_cluster;
  double n = 0, index = 0;
  for (const auto& [key, count] : table) {
    const double c = static_cast<double>(count);
    rows[key.first] += c;
    cols[key.second] += c;
    best_in_cluster[key.first] = std::max(best_in_cluster[key.first], c);
    n += c;
    index += comb2(c);
  }
  double sum_rows = 0, sum_cols = 0, best = 0;
  for (const auto& [k, v] : rows) sum_rows += comb2(v);
  for (const auto& [k, v] : cols) sum_cols += comb2(v);
  for (const auto& [k, v] : best_in_cluster) best += v;
  const double expected = n > 1 ? sum_rows * sum_cols / comb2(n) : 0;
  const double max_index = 0.5 * (sum_rows + sum_cols);
  ClusteringAgreement a;
  a.adjusted_rand_index = max_index == expected ? 1.0 : (index - expected) / (max_index - expected);
  a.purity = n > 0 ? best / n : 0;
  return a;
}

ClusteringAgreement global_clustering_agreement(const comm::Communicator& comm, const ContingencyTable& local) {
  std::vector<std::int64_t> flat;
  for (const auto& [key, count] : local) flat.insert(flat.end(), {key.first, key.second, count});
  const auto all = comm.allgatherv(flat);
  ContingencyTable global;
  for (std::size_t i = 0; i + 2 < all.size(); i += 3) global[{all[i], all[i + 1]}] += all[i + 2];
  return clustering_agreement(global);
}

double global_order_statistic(const comm::Communicator& comm, std::vector<double> local, std::int64_t k) {
  std::sort(local.begin(), local.end());
  // Every code between those of -inf and +inf is a non-NaN double. Invariant: the answer's
  // code is in [lo, hi].
  std::int64_t lo = order_code(-std::numeric_limits<double>::infinity());
  std::int64_t hi = order_code(std::numeric_limits<double>::infinity());
  while (lo < hi) {
    const std::int64_t mid = lo + static_cast<std::int64_t>((static_cast<std::uint64_t>(hi) - static_cast<std::uint64_t>(lo)) / 2);
    const double v = from_order_code(mid);
    std::int64_t count[1] = {static_cast<std::int64_t>(std::upper_bound(local.begin(), local.end(), v) - local.begin())};
    comm.allreduce_sum(count);
    if (count[0] > k) hi = mid;
    else lo = mid + 1;
  }
  return from_order_code(lo);
}

std::int64_t quantile_index(double q, std::int64_t n) {
  return static_cast<std::int64_t>(std::floor(q * static_cast<double>(n - 1)));
}

InformationCriteria information_criteria(double total_log_likelihood, double n_samples, double n_parameters) {
  return {-2 * total_log_likelihood + n_parameters * std::log(n_samples), -2 * total_log_likelihood + 2 * n_parameters};
}

}  // namespace latent::train
