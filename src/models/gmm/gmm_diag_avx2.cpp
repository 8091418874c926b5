// The avx2 variant of the GMM diagonal kernels (gmm_diag_kernel.hpp): two __m256 per 16
// floats, added lane for lane as the avx512 variant adds them, so both give the same bits.
// Compiled for the baseline (x86-64-v3: AVX2 + FMA).
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "latent/models/gmm/gmm_diag_kernel.hpp"

namespace latent::models::gmm_kernel {
namespace avx2 {
namespace {

struct V {
  __m256 lo, hi;
};
inline V vzero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
inline V vload(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
inline V vset1(float a) { return {_mm256_set1_ps(a), _mm256_set1_ps(a)}; }
inline V vfma(V a, V b, V c) { return {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)}; }
inline V vmul(V a, V b) { return {_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)}; }
inline V vadd(V a, V b) { return {_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)}; }
inline void vstore(float* p, V a) {
  _mm256_storeu_ps(p, a.lo);
  _mm256_storeu_ps(p + 8, a.hi);
}
inline __m256 vfold8(V a) { return _mm256_add_ps(a.lo, a.hi); }
// 16 ymm registers, two per V: 2 × 2 accumulators + 2 rows + 2 operands in quadratic();
// 1 × 3 × 2 accumulators + 2 row vectors + 1 broadcast in moments().
constexpr int kQuadRows = 2, kQuadComps = 2, kMomWidth = 1, kMomComps = 3;
// moments_sparse(): 1 × 2 accumulators (four ymm chains).
constexpr int kSparseWidth = 1;

}  // namespace

#include "gmm_diag_impl.hpp"

}  // namespace avx2
}  // namespace latent::models::gmm_kernel
