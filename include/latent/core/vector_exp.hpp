#pragma once
/// \file exp over an array of non-positive doubles, four lanes at a time (docs/ARCHITECTURE.md §5.9).
///
/// The log-sum-exp of the float32 mixture passes takes one exp per entry (n × K per tile);
/// glibc's scalar exp was about a tenth of the diagonal GMM's EM iteration. This one is
/// AVX2 + FMA code that every kernel variant runs (the baseline ISA has it), so its bits
/// depend on neither the variant nor the CPU.
///
/// Method: Cody–Waite reduction z = n·ln 2 + r with n = round(z / ln 2), |r| ≤ ln 2 / 2,
/// ln 2 split in a high part with 11 trailing zero bits (n·ln2_hi exact for |n| < 2¹¹) and
/// a low part; exp(r) by its Taylor polynomial to degree 13 in Horner form with FMAs
/// (truncation below 2⁻⁵⁵ relative); scaled by 2ⁿ built in the exponent field. Error
/// against glibc's exp over [−708, 0]: at most 1 ulp, and 94 % of values the same bits
/// (2·10⁶ random points; tests/unit/vector_exp_test.cpp holds it to 1 ulp). 0.9 ns per
/// value against glibc's 4.9 on the AMD EPYC (family 26 model 2).
#include <cstddef>

namespace latent {

/// out[i] = exp(z[i]) for i < n, for z[i] ≤ 0: exactly 1 at 0; exactly 0 below −708 (where
/// exp is below 3.4e-308: nothing a sum that includes a term of 1 can see; the scalar
/// exp_nonpositive of the double path stops at −746); NaN for NaN. Inputs above 0 are
/// outside the contract (the result is finite but not exp). z and out may be the same
/// array. Local, thread-safe, allocates nothing.
void exp_nonpositive_array(const double* z, double* out, std::ptrdiff_t n) noexcept;

}  // namespace latent
