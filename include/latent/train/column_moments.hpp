#pragma once
/// \file Per-column sums, sums of squares, minima and maxima of a row-major block in one
/// pass over its rows (the data summary's inner loop, docs/ARCHITECTURE.md §6 rule 5).
#include "latent/core/types.hpp"

namespace latent::train {

/// x: n × d, row-major, finite. sum[j] = Σ_i x_ij and sum_sq[j] = Σ_i x_ij² (each a plain
/// double sum over the rows in order, x² rounded before it is added: the same bits in
/// every build), lo[j] = min(lo[j], min_i x_ij), hi[j] = max(hi[j], max_i x_ij) (the caller
/// initialises lo and hi). One pass over the rows, contiguous reads (Eigen's column-wise
/// reductions of a row-major matrix read each column strided). Thread-safe; no allocation.
void column_moments(const RowMatrix& x, double* sum, double* sum_sq, double* lo, double* hi);
/// The same of float32 rows (a float32 block), each value widened to double as it is read:
/// the bits of column_moments on the rows widened to double, without the widened copy.
void column_moments(const RowMatrixF& x, double* sum, double* sum_sq, double* lo, double* hi);

/// True if any entry of x is NaN: one contiguous pass without early exit (vectorised;
/// Eigen's hasNaN() on a row-major matrix walks it column by column).
bool any_nan(const RowMatrix& x) noexcept;
bool any_nan(const RowMatrixF& x) noexcept;

}  // namespace latent::train
