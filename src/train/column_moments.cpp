#include "latent/train/column_moments.hpp"

#include <algorithm>

namespace latent::train {

// Compiled with -ffp-contract=off (src/CMakeLists.txt): x² and the addition after it are
// two roundings in every build, whatever the compiler would fuse.
void column_moments(const RowMatrix& x, double* sum, double* sum_sq, double* lo, double* hi) {
  const Index n = x.rows(), d = x.cols();
  std::fill(sum, sum + d, 0.0);
  std::fill(sum_sq, sum_sq + d, 0.0);
  const double* x0 = x.data();
  for (Index i = 0; i < n; ++i) {
    const double* a = x0 + i * d;
    for (Index j = 0; j < d; ++j) {
      sum[j] += a[j];
      sum_sq[j] += a[j] * a[j];
      lo[j] = std::min(lo[j], a[j]);
      hi[j] = std::max(hi[j], a[j]);
    }
  }
}

bool any_nan(const RowMatrix& x) noexcept {
  const double* p = x.data();
  const Index n = x.size();
  bool nan = false;
  for (Index i = 0; i < n; ++i) nan |= p[i] != p[i];
  return nan;
}

}  // namespace latent::train
