#include "latent/core/gemm_f64.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "latent/core/kernel.hpp"

namespace latent::matmul {
namespace {

// One tile of R rows × V vectors of 8 columns (AVX-512F) over k steps: R·V accumulators held
// in registers, B's row p loaded once per step for the R rows; started from +0, or resumed
// from the sums C holds (`resume`: a double stored and loaded again is exact, so the chain
// is the same). The last vector is masked (`last`: its valid columns), so nothing past n is
// read or written.
template <int R, int V>
[[gnu::target("avx512f")]] void tile512(const double* a, Index lda, const double* b, Index ldb, double* c, Index ldc,
                                        Index k, __mmask8 last, bool resume) {
  __m512d acc[R][V];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) {
      if (!resume) acc[r][v] = _mm512_setzero_pd();
      else if (v + 1 < V) acc[r][v] = _mm512_loadu_pd(c + r * ldc + 8 * v);
      else acc[r][v] = _mm512_maskz_loadu_pd(last, c + r * ldc + 8 * v);
    }
  for (Index p = 0; p < k; ++p) {
    const double* bp = b + p * ldb;
    __m512d bv[V];
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v)
      bv[v] = v + 1 < V ? _mm512_loadu_pd(bp + 8 * v) : _mm512_maskz_loadu_pd(last, bp + 8 * v);
    // B's vectors in registers: folded into the multiply-adds as memory operands, each would
    // be loaded R times (57 against 73 GFLOP/s with 7 vectors).
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) asm("" : "+v"(bv[v]));
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512d ar = _mm512_set1_pd(a[r * lda + p]);
#pragma GCC unroll 8
      for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_pd(ar, bv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) {
      if (v + 1 < V) _mm512_storeu_pd(c + r * ldc + 8 * v, acc[r][v]);
      else _mm512_mask_storeu_pd(c + r * ldc + 8 * v, last, acc[r][v]);
    }
}

template <int R>
[[gnu::target("avx512f")]] void rows512(const double* a, Index lda, const double* b, Index ldb, double* c, Index ldc,
                                        Index k, Index n, bool resume) {
  // At most 6 vectors a tile: 24 accumulators, B's 6 and one broadcast in the 32 registers
  // (7 spill: 75 against 95 GFLOP/s on 784 × 784 × 48 on the AMD EPYC family 26). The
  // vectors of a row are split evenly into tiles (50 columns: 4 + 3 vectors, not 6 + 1,
  // whose one-vector tile waits on its loads).
  const Index vectors = (n + 7) / 8;
  const Index tiles = (vectors + 5) / 6;
  Index j = 0;
  for (Index t = 0, done = 0; t < tiles; ++t) {
    const Index v = (vectors - done + (tiles - t) - 1) / (tiles - t);
    const Index w = std::min(8 * v, n - j);
    const Index tail = w - 8 * (v - 1);
    const auto last = static_cast<__mmask8>(tail >= 8 ? 0xffu : (1u << tail) - 1u);
    const double* bj = b + j;
    double* cj = c + j;
    switch (v) {
      case 1: tile512<R, 1>(a, lda, bj, ldb, cj, ldc, k, last, resume); break;
      case 2: tile512<R, 2>(a, lda, bj, ldb, cj, ldc, k, last, resume); break;
      case 3: tile512<R, 3>(a, lda, bj, ldb, cj, ldc, k, last, resume); break;
      case 4: tile512<R, 4>(a, lda, bj, ldb, cj, ldc, k, last, resume); break;
      case 5: tile512<R, 5>(a, lda, bj, ldb, cj, ldc, k, last, resume); break;
      default: tile512<R, 6>(a, lda, bj, ldb, cj, ldc, k, last, resume); break;
    }
    done += v;
    j += w;
  }
}

// Slices of kSlice steps: a slice of B (kSlice × 48 doubles, 24 KiB) stays in L1 while every
// row group runs through it, where the whole depth of B (D × L: 313 KiB for the factor
// model's 784 × 50) would come from L2 again for every group of 4 rows (784 × 784 × 50 on
// the AMD EPYC family 26: 75 GFLOP/s unsliced, 83 sliced; Eigen's product 46).
constexpr Index kSlice = 64;

[[gnu::target("avx512f")]] void multiply512(const double* a, Index lda, const double* b, Index ldb, double* c,
                                            Index ldc, Index m, Index k, Index n) {
  Index p = 0;
  do {
    const Index steps = std::min(kSlice, k - p);
    const bool resume = p > 0;
    const double* ap = a + p;
    const double* bp = b + p * ldb;
    Index i = 0;
    for (; i + 4 <= m; i += 4) rows512<4>(ap + i * lda, lda, bp, ldb, c + i * ldc, ldc, steps, n, resume);
    switch (m - i) {
      case 3: rows512<3>(ap + i * lda, lda, bp, ldb, c + i * ldc, ldc, steps, n, resume); break;
      case 2: rows512<2>(ap + i * lda, lda, bp, ldb, c + i * ldc, ldc, steps, n, resume); break;
      case 1: rows512<1>(ap + i * lda, lda, bp, ldb, c + i * ldc, ldc, steps, n, resume); break;
      default: break;
    }
    p += steps;
  } while (p < k);
}

// The AVX2 + FMA tile: R rows × 2 vectors of 4 columns (8 accumulators, 16 registers).
template <int R>
void tile256(const double* a, Index lda, const double* b, Index ldb, double* c, Index ldc, Index k, Index w) {
  const __m256i lane = _mm256_setr_epi64x(0, 1, 2, 3);
  const __m256i m0 = _mm256_cmpgt_epi64(_mm256_set1_epi64x(w), lane);
  const __m256i m1 = _mm256_cmpgt_epi64(_mm256_set1_epi64x(w - 4), lane);
  __m256d acc[R][2];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_pd();
  for (Index p = 0; p < k; ++p) {
    const double* bp = b + p * ldb;
    const __m256d b0 = _mm256_maskload_pd(bp, m0), b1 = _mm256_maskload_pd(bp + 4, m1);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m256d ar = _mm256_broadcast_sd(a + r * lda + p);
      acc[r][0] = _mm256_fmadd_pd(ar, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_pd(ar, b1, acc[r][1]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    _mm256_maskstore_pd(c + r * ldc, m0, acc[r][0]);
    _mm256_maskstore_pd(c + r * ldc + 4, m1, acc[r][1]);
  }
}

void multiply256(const double* a, Index lda, const double* b, Index ldb, double* c, Index ldc, Index m, Index k,
                 Index n) {
  for (Index j = 0; j < n; j += 8) {
    const Index w = std::min<Index>(8, n - j);
    Index i = 0;
    for (; i + 4 <= m; i += 4) tile256<4>(a + i * lda, lda, b + j, ldb, c + i * ldc + j, ldc, k, w);
    for (; i < m; ++i) tile256<1>(a + i * lda, lda, b + j, ldb, c + i * ldc + j, ldc, k, w);
  }
}

}  // namespace

void multiply_f64(const double* a, Index lda, const double* b, Index ldb, double* c, Index ldc, Index m, Index k,
                  Index n) {
  if (m <= 0 || n <= 0) return;
  if (kernel::active() >= kernel::Variant::kAvx512) multiply512(a, lda, b, ldb, c, ldc, m, k, n);
  else multiply256(a, lda, b, ldb, c, ldc, m, k, n);
}

void multiply_f64_reference(const double* a, Index lda, const double* b, Index ldb, double* c, Index ldc, Index m,
                            Index k, Index n) {
  for (Index i = 0; i < m; ++i)
    for (Index j = 0; j < n; ++j) {
      double s = 0.0;
      for (Index p = 0; p < k; ++p) s = std::fma(a[i * lda + p], b[p * ldb + j], s);
      c[i * ldc + j] = s;
    }
}

}  // namespace latent::matmul
