// The avx512 variant of the GMM diagonal kernels (gmm_diag_kernel.hpp): one __m512 per 16
// floats. Compiled with AVX-512 F/BW/DQ/VL (src/CMakeLists.txt) and run only when
// kernel::active() is avx512 or better; it includes nothing but intrinsics, so no inline
// function compiled here can stand in for one the avx2 variant calls.
#include <immintrin.h>

#include <cstddef>

#include "latent/models/gmm/gmm_diag_kernel.hpp"

namespace latent::models::gmm_kernel::avx512 {
namespace {

struct V {
  __m512 v;
};
inline V vzero() { return {_mm512_setzero_ps()}; }
inline V vload(const float* p) { return {_mm512_loadu_ps(p)}; }
inline V vset1(float a) { return {_mm512_set1_ps(a)}; }
inline V vfma(V a, V b, V c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
inline V vmul(V a, V b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline void vstore(float* p, V a) { _mm512_storeu_ps(p, a.v); }
inline float vsum(V a) {
  const __m256 lo = _mm512_castps512_ps256(a.v);
  const __m256 hi = _mm512_extractf32x8_ps(a.v, 1);
  const __m256 t8 = _mm256_add_ps(lo, hi);
  const __m128 t4 = _mm_add_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps(t8, 1));
  const __m128 t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
  return _mm_cvtss_f32(_mm_add_ss(t2, _mm_shuffle_ps(t2, t2, 0x55)));
}
// 32 zmm registers: 4 × 5 accumulators + 4 rows + 2 operands + 1 temporary in quadratic();
// 2 × 5 × 2 accumulators + 4 row vectors + 1 broadcast in moments().
constexpr int kQuadRows = 4, kQuadComps = 5, kMomWidth = 2, kMomComps = 5;

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

}  // namespace latent::models::gmm_kernel::avx512
