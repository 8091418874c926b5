#include "latent/core/vector_exp.hpp"

#include <immintrin.h>

#include <cmath>

namespace latent {
namespace {

constexpr double kLog2e = 1.4426950408889634074;
constexpr double kLn2Hi = 6.93147180369123816490e-01;  // 0x3FE62E42FEE00000: 11 trailing zero bits
constexpr double kLn2Lo = 1.90821492927058770002e-10;  // ln 2 − kLn2Hi
constexpr double kFloor = -708.0;                      // exp(−708) ≈ 3.3e-308, still normal
// 1/k! for k = 13 down to 2 (Horner from the highest degree).
constexpr double kInvFact[] = {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
                               1.0 / 362880.0,     1.0 / 40320.0,     1.0 / 5040.0,     1.0 / 720.0,
                               1.0 / 120.0,        1.0 / 24.0,        1.0 / 6.0,        0.5};

[[gnu::target("avx2,fma")]] inline __m256d exp4(__m256d z) {
  const __m256d n = _mm256_round_pd(_mm256_mul_pd(z, _mm256_set1_pd(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256d r = _mm256_fnmadd_pd(n, _mm256_set1_pd(kLn2Hi), z);
  r = _mm256_fnmadd_pd(n, _mm256_set1_pd(kLn2Lo), r);
  __m256d p = _mm256_set1_pd(kInvFact[0]);
  for (int i = 1; i < 12; ++i) p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(kInvFact[i]));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0));
  // 2^n: n + 1023 in the exponent field (n ≥ −1022 above the floor, n ≤ 0 below 0).
  const __m256i e = _mm256_slli_epi64(_mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(n)), _mm256_set1_epi64x(1023)), 52);
  const __m256d y = _mm256_mul_pd(p, _mm256_castsi256_pd(e));
  // Below the floor (and −inf): 0. NaN compares false and stays NaN (p is NaN).
  return _mm256_andnot_pd(_mm256_cmp_pd(z, _mm256_set1_pd(kFloor), _CMP_LT_OQ), y);
}

}  // namespace

[[gnu::target("avx2,fma")]] void exp_nonpositive_array(const double* z, double* out, std::ptrdiff_t n) noexcept {
  std::ptrdiff_t i = 0;
  for (; i + 4 <= n; i += 4) _mm256_storeu_pd(out + i, exp4(_mm256_loadu_pd(z + i)));
  if (i < n) {  // the tail through a padded vector: the same operations per lane
    alignas(32) double buf[4] = {0, 0, 0, 0};
    for (std::ptrdiff_t j = i; j < n; ++j) buf[j - i] = z[j];
    _mm256_store_pd(buf, exp4(_mm256_load_pd(buf)));
    for (std::ptrdiff_t j = i; j < n; ++j) out[j] = buf[j - i];
  }
}

}  // namespace latent
