#pragma once
/// \file The rows of a dense block as the float32 passes (the GMM's, k-means') read them
/// tile by tile: float32 blocks (io::DenseBlock::xf) as stored, double blocks as they are;
/// gmm_kernel::convert() of a tile and the PrefetchRange of the next one, and the
/// responsibilities of a tile from its float32 distances (docs/ARCHITECTURE.md §5.9).
/// Used by the GMM, k-means and the mixture of factor analysers.
#include <algorithm>
#include <cstddef>
#include <span>
#include <vector>

#include "latent/core/kernel.hpp"
#include "latent/core/matmul.hpp"
#include "latent/core/types.hpp"
#include "latent/io/block_source.hpp"
#include "latent/models/gmm/gmm_diag_kernel.hpp"

namespace latent::models::gmm_kernel {

/// Responsibilities of n rows from float32 distances q (n × k, row-major): w = bias − ½ q,
/// normalised by a double log-sum-exp with one exp per entry (core/vector_exp.hpp, over the
/// whole tile at once; non-finite rows as log_sum_exp_rows), stored as float32 in r (n × k);
/// adds r's column sums to nk (k doubles, rows in order) and returns Σ log p(x) over the
/// rows (nats). w: scratch (n·k + n doubles). Local, allocation-free once w is large enough.
double softmax_rows(const float* q, Index n, Index k, const RowVector& bias, float* r, double* nk,
                    std::vector<double>& w);

/// The float32 distance pass's per-component scale and shift: with σ⁻¹ = sd_inv(k, j) (or
/// sd_inv(k, 0) for every j when sd_inv has one column) and μ̃ = shifted_means (k × d),
/// inv_sd[k·dp + j] = float(σ⁻¹) and shift[k·dp + j] = float(−μ̃ σ⁻¹), zero in the padding
/// (dp = padded(d)), so that gmm_kernel::quadratic sums (x̃ σ⁻¹ − μ̃ σ⁻¹)². Used by the
/// diagonal/spherical GMM and the mixture of factor analysers (σ² = ψ) once per M-step.
void scale_and_shift32(const RowMatrix& shifted_means, const RowMatrix& sd_inv, LineFloats& inv_sd,
                       LineFloats& shift);

/// The centre the float32 passes subtract from every row: mean_j rounded to float32 where
/// that moves it by at most 2⁻¹⁰ of the column's standard deviation (√variance_j), else
/// mean_j (an offset large against the spread, a mean beyond the float range). Rows are
/// centred for precision, and any point that near the mean serves as well; a float-valued
/// one lets convert() centre float32 rows by one float32 add (negated_float(): the same
/// bits, a third of the instructions). mean, variance: D. Local.
RowVector float32_centre(const RowVector& mean, const RowVector& variance);

/// Scratch of full_moments(), kept across calls (grown as needed).
struct FullScratch {
  std::vector<Index> rows;
  std::vector<matmul::Packed> ra, a;
  std::vector<float> product;
};

/// The full GMM's statistics of one component from one float32 tile: with a_i = x̃_i − m
/// (float32; x̃: n × dp row-major, m: d floats, the component's mean minus the centre),
/// adds Σ_i r_i a_i to first (d doubles; a double FMA chain over the rows in order) and
/// the lower triangle of Σ_i (r_i a_i) a_iᵀ to second (d × d row-major doubles; a float32
/// product, one chain per entry over the rows in order, matmul::multiply_lower_packed, its
/// entries added to the doubles once). r: the component's responsibilities, row i at
/// r[i·ldr]. With skip_zeros (the default) rows whose r is exactly zero are left out of
/// both: such a row adds ±0 to every chain, so the bits are the same, for a fraction of
/// the work when most rows belong to other components. Local, single-threaded; throws
/// only std::bad_alloc.
void full_moments(const float* xf, Index n, Index dp, Index d, const float* r, Index ldr, const float* m,
                  double* first, double* second, FullScratch& scratch, bool skip_zeros = true);

class BlockRows {
 public:
  explicit BlockRows(const io::DenseBlock& block)
      : block_(block),
        f32_(block.is_float32()),
        rows_(f32_ ? block.xf.rows() : block.x.rows()),
        ld_(f32_ ? block.xf.outerStride() : block.x.outerStride()) {}

  Index rows() const noexcept { return rows_; }

  /// convert() of rows [r0, r0 + n): out (n × dp) = float(x − c) for the first d columns.
  /// True if any value is NaN (out is then incomplete). neg_c32: negated_float() of c (may
  /// be empty; used for float32 rows: the same bits, fewer instructions).
  bool convert(Index r0, Index n, Index d, const double* c, float* out, Index dp,
               std::span<const float> neg_c32 = {}) const {
    return f32_ ? gmm_kernel::convert(&block_.xf(r0, 0), n, ld_, d, c, out, dp, or_null(neg_c32))
                : gmm_kernel::convert(&block_.x(r0, 0), n, ld_, d, c, out, dp);
  }

  /// convert_pairs() of rows [r0, r0 + n): convert() and each row's distance to the
  /// component comps[i] of t (q[i]).
  bool convert_pairs(Index r0, Index n, Index d, const double* c, float* out, Index dp, const float* t,
                     const std::int32_t* comps, float* q, std::span<const float> neg_c32 = {}) const {
    return f32_ ? gmm_kernel::convert_pairs(&block_.xf(r0, 0), n, ld_, d, c, out, dp, t, comps, q, or_null(neg_c32))
                : gmm_kernel::convert_pairs(&block_.x(r0, 0), n, ld_, d, c, out, dp, t, comps, q);
  }

  /// x_ij as a double (a float32 value widened exactly).
  double at(Index i, Index j) const { return f32_ ? static_cast<double>(block_.xf(i, j)) : block_.x(i, j); }

  /// Rows [r0, r0 + n) as doubles (a tile with missing values takes the double path).
  RowMatrix widened(Index r0, Index n) const {
    return f32_ ? RowMatrix(block_.xf.middleRows(r0, n).cast<double>()) : RowMatrix(block_.x.middleRows(r0, n));
  }

  /// The rows of the tile that follows [r0, r0 + n) (at most tile_rows of them), to be
  /// brought into L2 `lines` cache lines per kernel step; empty after the last tile and
  /// where kernel::tile_prefetch() is off.
  PrefetchRange next_tile(Index r0, Index n, Index tile_rows, int lines = 1) const {
    PrefetchRange pf;
    const Index next = std::min(tile_rows, rows_ - r0 - n);
    if (next > 0 && kernel::tile_prefetch()) {
      pf.next = f32_ ? reinterpret_cast<const char*>(&block_.xf(r0 + n, 0))
                     : reinterpret_cast<const char*>(&block_.x(r0 + n, 0));
      pf.end = pf.next + static_cast<std::size_t>(next * ld_) * (f32_ ? sizeof(float) : sizeof(double));
      pf.lines = lines;
    }
    return pf;
  }

 private:
  static const float* or_null(std::span<const float> v) { return v.empty() ? nullptr : v.data(); }
  const io::DenseBlock& block_;
  bool f32_;
  Index rows_, ld_;
};

}  // namespace latent::models::gmm_kernel
