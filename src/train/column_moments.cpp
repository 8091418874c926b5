#include "latent/train/column_moments.hpp"

#include <algorithm>

namespace latent::train {

// Compiled with -ffp-contract=off (src/CMakeLists.txt): x² and the addition after it are
// two roundings in every build, whatever the compiler would fuse.
namespace {

// T: double, or float widened exactly to double as it is read (the same bits).
template <class T>
void moments(const T* x0, Index n, Index d, double* sum, double* sum_sq, double* lo, double* hi) {
  std::fill(sum, sum + d, 0.0);
  std::fill(sum_sq, sum_sq + d, 0.0);
  for (Index i = 0; i < n; ++i) {
    const T* a = x0 + i * d;
    for (Index j = 0; j < d; ++j) {
      const double v = a[j];
      sum[j] += v;
      sum_sq[j] += v * v;
      lo[j] = std::min(lo[j], v);
      hi[j] = std::max(hi[j], v);
    }
  }
}

template <class T>
bool has_nan(const T* p, Index n) noexcept {
  bool nan = false;
  for (Index i = 0; i < n; ++i) nan |= p[i] != p[i];
  return nan;
}

}  // namespace

void column_moments(const RowMatrix& x, double* sum, double* sum_sq, double* lo, double* hi) {
  moments(x.data(), x.rows(), x.cols(), sum, sum_sq, lo, hi);
}

void column_moments(const RowMatrixF& x, double* sum, double* sum_sq, double* lo, double* hi) {
  moments(x.data(), x.rows(), x.cols(), sum, sum_sq, lo, hi);
}

bool any_nan(const RowMatrix& x) noexcept { return has_nan(x.data(), x.size()); }

bool any_nan(const RowMatrixF& x) noexcept { return has_nan(x.data(), x.size()); }

}  // namespace latent::train
