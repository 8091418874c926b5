#pragma once
/// \file A double-precision product C = A B for the small dense solvers whose products have
/// one long dimension (the factor model's covariance solver: D × D times D × L per EM
/// iteration), with every entry summed in one fixed order, so the bits are the same in
/// every kernel variant (latent/core/kernel.hpp) and at every row count or tiling.
#include "latent/core/types.hpp"

namespace latent::matmul {

/// C (m × n, row-major, leading dimension ldc ≥ n) = A (m × k, row-major, lda ≥ k) times
/// B (k × n, row-major, ldb ≥ n), in double precision. Each entry is one chain of fused
/// multiply-adds over k in order from +0: c_ij = fma(a_i,k−1, b_k−1,j, … fma(a_i0, b_0j, +0)),
/// so a row of C depends only on that row of A and on B, and the result is the same bits in
/// kernel variant avx2 (AVX2 + FMA tiles of 4 rows × 8 columns) and the AVX-512 variants
/// (tiles of 4 rows × at most 48 columns, in slices of 64 steps whose sums are stored and
/// resumed, which keeps the chain) as in multiply_f64_reference. k = 0 gives zeros. C must
/// not overlap A or B. Single-threaded, local; no allocation, throws nothing.
void multiply_f64(const double* a, Index lda, const double* b, Index ldb, double* c, Index ldc, Index m, Index k,
                  Index n);

/// The same chain, one entry at a time (the tests' reference).
void multiply_f64_reference(const double* a, Index lda, const double* b, Index ldb, double* c, Index ldc, Index m,
                            Index k, Index n);

}  // namespace latent::matmul
