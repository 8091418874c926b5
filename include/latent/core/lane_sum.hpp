#pragma once
/// \file Sums in double over eight lanes and a fixed tree (docs/ARCHITECTURE.md §4, §5.9).
///
/// Term i goes to lane i mod 8, in order; the lanes are then added as
/// ((0 + 4) + (2 + 6)) + ((1 + 5) + (3 + 7)). The order depends on n only, never on where the
/// arrays lie or on the vector width the compiler picks, so the bits are the same for every
/// kernel variant, thread and address (Eigen's vectorised reductions peel by alignment and
/// are not: an Eigen row sum over a std::vector's memory gave two results in two runs).
/// Used where a small reduction's bits reach a model: the float32 GMM and MFA passes.
#include "latent/core/types.hpp"

namespace latent::lanes {

/// Σ_{i<n} term(i) over eight lanes and the fixed tree above. term: Index → double,
/// inlined. Local, allocation-free.
template <class Term>
inline double sum8(Index n, Term&& term) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  Index i = 0;
  for (; i + 8 <= n; i += 8)
    for (int t = 0; t < 8; ++t) acc[t] += term(i + t);
  for (int t = 0; i < n; ++i, ++t) acc[t] += term(i);
  return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

/// Σ_{i<n} x_i y_i (x, y: n doubles).
inline double dot(const double* x, const double* y, Index n) {
  return sum8(n, [&](Index i) { return x[i] * y[i]; });
}

/// Σ_{i<n} x_i (x: n doubles).
inline double sum(const double* x, Index n) {
  return sum8(n, [&](Index i) { return x[i]; });
}

/// Σ_{i<n} y_i² in double (y: n floats, each widened before the square).
inline double sum_squares(const float* y, Index n) {
  return sum8(n, [&](Index i) {
    const double v = static_cast<double>(y[i]);
    return v * v;
  });
}

}  // namespace latent::lanes
