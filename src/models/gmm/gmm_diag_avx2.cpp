// The avx2 variant of the GMM diagonal kernels (gmm_diag_kernel.hpp): two __m256 per 16
// floats, added lane for lane as the avx512 variant adds them, so both give the same bits.
// Compiled for the baseline (x86-64-v3: AVX2 + FMA).
#include <immintrin.h>

#include <cstddef>

#include "latent/models/gmm/gmm_diag_kernel.hpp"

namespace latent::models::gmm_kernel::avx2 {
namespace {

struct V {
  __m256 lo, hi;
};
inline V vzero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
inline V vload(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
inline V vset1(float a) { return {_mm256_set1_ps(a), _mm256_set1_ps(a)}; }
inline V vfma(V a, V b, V c) { return {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)}; }
inline V vmul(V a, V b) { return {_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)}; }
inline void vstore(float* p, V a) {
  _mm256_storeu_ps(p, a.lo);
  _mm256_storeu_ps(p + 8, a.hi);
}
inline float vsum(V a) {
  const __m256 t8 = _mm256_add_ps(a.lo, a.hi);
  const __m128 t4 = _mm_add_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps(t8, 1));
  const __m128 t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
  return _mm_cvtss_f32(_mm_add_ss(t2, _mm_shuffle_ps(t2, t2, 0x55)));
}
// 16 ymm registers, two per V: 2 × 2 accumulators + 2 rows + 2 operands in quadratic();
// 1 × 3 × 2 accumulators + 2 row vectors + 1 broadcast in moments().
constexpr int kQuadRows = 2, kQuadComps = 2, kMomWidth = 1, kMomComps = 3;

}  // namespace

#include "gmm_diag_impl.hpp"

bool convert(const double* x, std::ptrdiff_t rows, std::ptrdiff_t ld, std::ptrdiff_t d, const double* c, float* out,
             std::ptrdiff_t dp) {
  return convert_impl(x, rows, ld, d, c, out, dp);
}

bool convert(const float* x, std::ptrdiff_t rows, std::ptrdiff_t ld, std::ptrdiff_t d, const double* c, float* out,
             std::ptrdiff_t dp) {
  return convert_f32_impl(x, rows, ld, d, c, out, dp);
}

void quadratic(const float* x, std::ptrdiff_t rows, std::ptrdiff_t dp, const float* s, const float* t, std::ptrdiff_t k,
               float* q, PrefetchRange& prefetch) {
  quadratic_impl(x, rows, dp, s, t, k, q, prefetch);
}

void moments(const float* x, std::ptrdiff_t rows, std::ptrdiff_t dp, std::ptrdiff_t d, const float* r, std::ptrdiff_t k,
             double* first, double* second, PrefetchRange& prefetch) {
  moments_impl(x, rows, dp, d, r, k, first, second, prefetch);
}

}  // namespace latent::models::gmm_kernel::avx2
