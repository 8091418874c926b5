/* The core's measured FMA throughput (bench/common.py measure_fma_peak): 12 independent
 * chains of vector fused multiply-adds on the widest vectors the build targets (AVX-512 with
 * -march=native on a CPU that has it, else AVX2), one thread, single and double precision.
 * Prints one JSON line: {"vector_bits": B, "float32_gflops": x, "float64_gflops": y}.
 * Each chain depends on itself only, so the loop is bound by FMA issue, not latency. */
#include <stdio.h>
#include <time.h>

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

int main(void) {
  const long iters = 40000000;
  double f32 = 0, f64 = 0;
  for (int r = 0; r < 3; ++r) { /* best of 3 */
    double a = run_f32(iters), b = run_f64(iters);
    if (a > f32) f32 = a;
    if (b > f64) f64 = b;
  }
  printf("{\"vector_bits\": %d, \"float32_gflops\": %.2f, \"float64_gflops\": %.2f}\n", VBYTES * 8, f32, f64);
  return 0;
}
