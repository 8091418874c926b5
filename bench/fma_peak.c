/* The core's measured FMA throughput (bench/common.py measure_fma_peak): 12 independent
 * chains of vector fused multiply-adds on the widest vectors the build targets (AVX-512 with
 * -march=native on a CPU that has it, else AVX2), one thread, single and double precision.
 * Prints one JSON line: {"vector_bits": B, "float32_gflops": x, "float64_gflops": y}, and
 * on a CPU with AVX512_BF16 "bfloat16_dot_gflops": the same for VDPBF16PS (the products
 * of --matmul-precision medium: 32 bfloat16 pairs multiplied and added into 16 float32
 * lanes, counted as 64 flops), and on a CPU with AMX-BF16 where Linux grants the tile data
 * "amx_bf16_gflops": TDPBF16PS on four independent 16 x 16 float32 accumulator tiles
 * (the products of --matmul-precision medium in kernel variant amxbf16: 16 x 16 x 32
 * bfloat16 products and sums, counted as 16384 flops an instruction; tiles stay in
 * registers, no loads). Each chain depends on itself only, so the loop is bound by issue,
 * not latency. Also "read_gbytes_per_s": one thread summing a 512 MiB float32 array (far
 * larger than any cache, on the pages the kernel gives it) in sequence, best of 3 passes:
 * the rate at which a pass that streams its data from memory can read it. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#if defined(__AVX512BF16__) || defined(__AMX_BF16__)
#include <immintrin.h>
#endif
#if defined(__AMX_BF16__)
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__AVX512F__)
#define VBYTES 64
#else
#define VBYTES 32
#endif
typedef float vf __attribute__((vector_size(VBYTES)));
typedef double vd __attribute__((vector_size(VBYTES)));
#define CHAINS 12

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define KERNEL(NAME, V, T)                                                                  \
  static double NAME(long iters) {                                                          \
    const V b = (V){} + (T)0.999999, c = (V){} + (T)1e-7;                                   \
    V a0 = (V){} + (T)1.00, a1 = (V){} + (T)1.01, a2 = (V){} + (T)1.02, a3 = (V){} + (T)1.03; \
    V a4 = (V){} + (T)1.04, a5 = (V){} + (T)1.05, a6 = (V){} + (T)1.06, a7 = (V){} + (T)1.07; \
    V a8 = (V){} + (T)1.08, a9 = (V){} + (T)1.09, a10 = (V){} + (T)1.10, a11 = (V){} + (T)1.11; \
    double t0 = now();                                                                      \
    for (long n = 0; n < iters; ++n) {                                                      \
      a0 = a0 * b + c; a1 = a1 * b + c; a2 = a2 * b + c; a3 = a3 * b + c;                     \
      a4 = a4 * b + c; a5 = a5 * b + c; a6 = a6 * b + c; a7 = a7 * b + c;                     \
      a8 = a8 * b + c; a9 = a9 * b + c; a10 = a10 * b + c; a11 = a11 * b + c;                 \
      __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5));    \
      __asm__ volatile("" : "+v"(a6), "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));  \
    }                                                                                       \
    double t = now() - t0;                                                                  \
    V s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;                      \
    volatile T sink = s[0];                                                                 \
    (void)sink;                                                                             \
    return 2.0 * CHAINS * (VBYTES / sizeof(T)) * (double)iters / t / 1e9;                   \
  }

KERNEL(run_f32, vf, float)
KERNEL(run_f64, vd, double)

#if defined(__AVX512BF16__)
static double run_bf16(long iters) {
  const __m512bh b = (__m512bh)_mm512_set1_epi32(0x3f803f80); /* the pair (1, 1) */
  __m512 a0 = _mm512_set1_ps(0.00f), a1 = _mm512_set1_ps(0.01f), a2 = _mm512_set1_ps(0.02f), a3 = _mm512_set1_ps(0.03f);
  __m512 a4 = _mm512_set1_ps(0.04f), a5 = _mm512_set1_ps(0.05f), a6 = _mm512_set1_ps(0.06f), a7 = _mm512_set1_ps(0.07f);
  __m512 a8 = _mm512_set1_ps(0.08f), a9 = _mm512_set1_ps(0.09f), a10 = _mm512_set1_ps(0.10f), a11 = _mm512_set1_ps(0.11f);
  double t0 = now();
  for (long n = 0; n < iters; ++n) {
    a0 = _mm512_dpbf16_ps(a0, b, b); a1 = _mm512_dpbf16_ps(a1, b, b); a2 = _mm512_dpbf16_ps(a2, b, b);
    a3 = _mm512_dpbf16_ps(a3, b, b); a4 = _mm512_dpbf16_ps(a4, b, b); a5 = _mm512_dpbf16_ps(a5, b, b);
    a6 = _mm512_dpbf16_ps(a6, b, b); a7 = _mm512_dpbf16_ps(a7, b, b); a8 = _mm512_dpbf16_ps(a8, b, b);
    a9 = _mm512_dpbf16_ps(a9, b, b); a10 = _mm512_dpbf16_ps(a10, b, b); a11 = _mm512_dpbf16_ps(a11, b, b);
    __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5));
    __asm__ volatile("" : "+v"(a6), "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));
  }
  double t = now() - t0;
  __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                           _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
  s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
  volatile float sink = _mm512_reduce_add_ps(s);
  (void)sink;
  return 64.0 * CHAINS * (double)iters / t / 1e9;
}
#endif

#if defined(__AMX_BF16__)
struct tile_config {
  unsigned char palette_id, start_row, reserved[14];
  unsigned short colsb[16];
  unsigned char rows[16];
};

static double run_amx(long iters) {
  if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) != 0) return 0;
  struct tile_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.palette_id = 1;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  static unsigned short ones[16 * 32];
  for (int i = 0; i < 16 * 32; ++i) ones[i] = 0x3c00; /* bfloat16 2^-7: sums stay finite */
  _tile_loadconfig(&cfg);
  _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
  _tile_loadd(4, ones, 64); _tile_loadd(5, ones, 64); _tile_loadd(6, ones, 64); _tile_loadd(7, ones, 64);
  double t0 = now();
  for (long n = 0; n < iters; ++n) {
    _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7); _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
  }
  double t = now() - t0;
  static float out[16 * 16];
  _tile_stored(0, out, 64);
  _tile_release();
  volatile float sink = out[0];
  (void)sink;
  return 16384.0 * 4 * (double)iters / t / 1e9;
}
#endif

static double run_read(void) {
  const size_t n = (size_t)512 << 20 >> 2; /* floats */
  vf* a = aligned_alloc(64, n * sizeof(float));
  if (a == NULL) return 0;
  const size_t nv = n * sizeof(float) / VBYTES;
  for (size_t i = 0; i < nv; ++i) a[i] = (vf){} + (float)(i & 7);
  double best = 0;
  for (int r = 0; r < 3; ++r) {
    vf s0 = (vf){}, s1 = (vf){}, s2 = (vf){}, s3 = (vf){};
    double t0 = now();
    for (size_t i = 0; i < nv; i += 4) {
      s0 += a[i];
      s1 += a[i + 1];
      s2 += a[i + 2];
      s3 += a[i + 3];
    }
    double t = now() - t0;
    vf s = s0 + s1 + s2 + s3;
    volatile float sink = s[0];
    (void)sink;
    const double rate = (double)(n * sizeof(float)) / t / 1e9;
    if (rate > best) best = rate;
  }
  free(a);
  return best;
}

int main(void) {
  const long iters = 40000000;
  double f32 = 0, f64 = 0, bf16 = 0, amx = 0;
  for (int r = 0; r < 3; ++r) { /* best of 3 */
    double a = run_f32(iters), b = run_f64(iters);
    if (a > f32) f32 = a;
    if (b > f64) f64 = b;
#if defined(__AVX512BF16__)
    double c = run_bf16(iters);
    if (c > bf16) bf16 = c;
#endif
#if defined(__AMX_BF16__)
    double d = run_amx(iters / 32);
    if (d > amx) amx = d;
#endif
  }
  const double read = run_read();
  printf("{\"vector_bits\": %d, \"float32_gflops\": %.2f, \"float64_gflops\": %.2f", VBYTES * 8, f32, f64);
  if (read > 0) printf(", \"read_gbytes_per_s\": %.2f", read);
  if (bf16 > 0) printf(", \"bfloat16_dot_gflops\": %.2f", bf16);
  if (amx > 0) printf(", \"amx_bf16_gflops\": %.2f", amx);
  printf("}\n");
  return 0;
}
