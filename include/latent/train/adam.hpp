#pragma once
/// \file The Adam update of the minibatch trainer, fused with the exact sum of the step's
/// gradients (docs/ARCHITECTURE.md §5).
///
/// Gradients travel on a fixed-point grid: a float32 gradient entry g becomes the integer
/// q(g) = round(g · 2^bits) (to nearest, ties to even), and a step's gradient is the
/// integer sum over its micro-batches (and ranks), which no order of summation can change.
/// The update is Adam (Kingma & Ba 2015, Algorithm 1) with PyTorch's placement of ε
/// (torch.optim.Adam):
///   m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²,
///   θ ← θ − (α / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε),
/// except that √v / √(1 − β₂ᵗ) + ε is formed as one fused multiply-add with the float32
/// reciprocal of √(1 − β₂ᵗ) (within an ulp or two of PyTorch's quotient), so each entry
/// costs one square root and one division.
/// The update runs with flush-to-zero and denormals-are-zero (as PyTorch with
/// torch.set_flush_denormal(True)): a subnormal input (θ, m, v or the gradient) reads as
/// ±0 and a subnormal result is stored as ±0. m and v of parameters whose gradients vanish
/// decay into that range, where each result would otherwise cost a microcode assist (3.6×
/// slower updates measured on an AMD EPYC). A subnormal v never changes θ (√v ≪ ε), and a
/// subnormal m (< 2^-126, divided by at least ε > 2^-27) moves θ by less than 2^-99 times
/// the step size α / (1 − β₁ᵗ): below the rounding of any |θ| above 2^-75 times it.
/// Every entry is computed by the same sequence of correctly rounded operations wherever a
/// call's range starts or ends (AVX-512 with masked tails in the kernel variants avx512 and
/// avx512bf16, the portable scalar path in avx2: latent/core/kernel.hpp, one for the whole
/// job), so the result does not depend on how [0, P) is cut into calls or spread over
/// threads, nor on the variant.
#include <cstddef>
#include <cstdint>
#include <span>

namespace latent::train {

/// One step's constants.
struct AdamStep {
  /// β₁, β₂ and 1 − β (formed in double, as PyTorch's Python scalars are) are rounded to
  /// float32 for the update.
  double beta1 = 0.9, beta2 = 0.999;
  float eps = 1e-8f;
  float step_size = 0;   ///< α / (1 − β₁ᵗ)
  float sqrt_bc2 = 1;    ///< √(1 − β₂ᵗ)
  double grad_scale = 0; ///< the gradient is grad_scale × the integer sum (2^−bits / rows, times any clip factor)
};

/// out[j] = q(g[j]), or out[j] += q(g[j]) if accumulate, for j < n, with q(x) = x · scale
/// rounded to the nearest integer (ties to even). scale is a power of two chosen so that
/// every |x · scale| and every sum stays below 2^62 (the caller's bound). Local.
void add_to_grid(const float* g, std::int64_t* out, std::size_t n, double scale, bool accumulate);

/// Adam on entries [offset, offset + n) of θ, m and v (full-length arrays). The gradient of
/// entry j is s.grad_scale × G_j, with G_j = sum[j] if sum is non-null (an integer sum
/// formed by add_to_grid and maybe allreduced), else Σ_i q(grads[i][j]) formed here with
/// q as in add_to_grid (the same integers; grads non-empty). Local.
void adam_update(const AdamStep& s, std::span<const float* const> grads, double scale, const std::int64_t* sum,
                 float* theta, float* m, float* v, std::size_t offset, std::size_t n);

}  // namespace latent::train
