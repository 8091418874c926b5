#pragma once
/// \file Flush-to-zero and denormals-are-zero for a scope (docs/ARCHITECTURE.md §5.9).
///
/// Subnormal floats (below FLT_MIN ≈ 1.2e-38, DBL_MIN ≈ 2.2e-308) cost a microcode assist
/// of about 100 cycles per operation on Intel cores (and on some AMD ones) when they are an
/// operation's input or result. Kernels whose small values are negligible by construction
/// (responsibilities of far components, Adam's decayed moments, LDA's products of tiny
/// topic weights) run inside a FlushDenormals: such results become ±0 and such inputs read
/// as ±0. The same on every x86-64 CPU and kernel variant (SSE, AVX2 and AVX-512 arithmetic
/// all follow MXCSR), so the bits stay rank-, thread- and variant-invariant; they differ
/// from a run without the flush only where a subnormal arose.
#include <xmmintrin.h>

namespace latent {

/// Sets MXCSR's FTZ (bit 15) and DAZ (bit 6) for the calling thread while alive and restores
/// the previous mode after. Local to the thread; cheap (two MXCSR accesses), so take one per
/// call of a kernel over a block, not per value.
class FlushDenormals {
 public:
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | kFtz | kDaz); }
  ~FlushDenormals() { _mm_setcsr(saved_); }
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

 private:
  static constexpr unsigned kFtz = 1u << 15, kDaz = 1u << 6;
  unsigned saved_;
};

}  // namespace latent
