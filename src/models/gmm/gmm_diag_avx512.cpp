// The avx512 variant of the GMM diagonal kernels (gmm_diag_kernel.hpp): one __m512 per 16
// floats. Compiled with AVX-512 F/BW/DQ/VL (src/CMakeLists.txt) and run only when
// kernel::active() is avx512 or better; it includes nothing but intrinsics, so no inline
// function compiled here can stand in for one the avx2 variant calls.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "latent/models/gmm/gmm_diag_kernel.hpp"

namespace latent::models::gmm_kernel {
namespace avx512 {
namespace {

struct V {
  __m512 v;
};
inline V vzero() { return {_mm512_setzero_ps()}; }
inline V vload(const float* p) { return {_mm512_loadu_ps(p)}; }
inline V vset1(float a) { return {_mm512_set1_ps(a)}; }
inline V vfma(V a, V b, V c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
inline V vmul(V a, V b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline V vadd(V a, V b) { return {_mm512_add_ps(a.v, b.v)}; }
inline void vstore(float* p, V a) { _mm512_storeu_ps(p, a.v); }
inline __m256 vfold8(V a) { return _mm256_add_ps(_mm512_castps512_ps256(a.v), _mm512_extractf32x8_ps(a.v, 1)); }
// 32 zmm registers: 4 × 5 accumulators + 4 rows + 2 operands + 1 temporary in quadratic();
// 2 × 5 × 2 accumulators + 4 row vectors + 1 broadcast in moments().
constexpr int kQuadRows = 4, kQuadComps = 5, kMomWidth = 2, kMomComps = 5;
// moments_sparse(): 4 × 2 accumulator chains (enough FMAs in flight), 4 rows, 1 broadcast.
constexpr int kSparseWidth = 4;

}  // namespace

#include "gmm_diag_impl.hpp"

}  // namespace avx512
}  // namespace latent::models::gmm_kernel
