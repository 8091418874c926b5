#pragma once
/// \file Kernel variants: which of latent's own vector kernels run (docs/ARCHITECTURE.md §5.7).
///
/// The binary is compiled for one baseline instruction set (LATENT_MARCH, x86-64-v3 by
/// default), and so is all of Eigen. A few of latent's own kernels (the packed products of
/// core/matmul.hpp, the Adam step of train/adam.hpp) have versions for wider instruction
/// sets, compiled with [[gnu::target]] on functions that instantiate no Eigen template.
/// The variant is the one thing that decides which of them run:
///  - kAvx2:       AVX2 + FMA (x86-64-v3, Intel Haswell / AMD Zen 1 and later);
///  - kAvx512:     also AVX-512 F, BW, DQ, VL (Intel Skylake-SP, AMD Zen 4 and later);
///  - kAvx512Bf16: also AVX512_BF16 (Intel Cooper Lake / Sapphire Rapids, AMD Zen 4),
///                 which `--matmul-precision medium` needs;
///  - kAmxBf16:    also AMX-TILE and AMX-BF16 (Intel Sapphire Rapids and later), with
///                 Linux's permission for the tile data: the bfloat16 products on AMX tiles.
/// Every product in float32 sums the same terms in the same order in every variant, so all
/// four give the same float32 bits. The bfloat16 products (medium) exist in the last two
/// only, and differ between them in the last bits: AMX's TDPBF16PS rounds its sums inside
/// the instruction its own way, not as VDPBF16PS's two roundings per pair (measured on an
/// Intel Xeon family 6 model 167: about 40 % of a product's entries differ in the last bits).
///
/// One variant per job: every rank takes LATENT_KERNEL if set (refused if this CPU lacks
/// it) or else the best its CPU supports, and the job uses the minimum over the ranks
/// (cli::run, before any command; the Python module's in-process fits use this process's
/// choice). The variant is logged at the start of a fit and recorded in the model file
/// (attribute `kernel_variant`, docs/FORMATS.md).
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace latent::kernel {

enum class Variant { kAvx2 = 0, kAvx512 = 1, kAvx512Bf16 = 2, kAmxBf16 = 3 };

/// Every variant, slowest first.
std::vector<Variant> all_variants();
/// "avx2", "avx512", "avx512bf16", "amxbf16".
std::string to_string(Variant v);
/// The inverse of to_string; nullopt for any other text. Local.
std::optional<Variant> parse(std::string_view s);

/// True if this CPU runs the variant's instructions (and the OS saves their registers), as
/// __builtin_cpu_supports reports it. Local.
bool supported(Variant v) noexcept;
/// The best variant this CPU supports; nullopt if it lacks even AVX2 + FMA. Local.
std::optional<Variant> best_supported() noexcept;

/// This process's choice: LATENT_KERNEL if set, else best_supported(). Throws
/// Error(kUsage) (exit 64) if LATENT_KERNEL names no variant or one this CPU lacks, or if the
/// CPU lacks AVX2 + FMA. Local.
Variant local_choice();

/// The variant in use. Until set_active() it is local_choice() (taken once, on the first
/// call; its error propagates). Thread-safe to read.
Variant active();
/// Sets the variant in use (the agreed one, or a test's). Throws Error(kUsage) if this CPU
/// does not support it. Call before any kernel runs (between kernels in tests). Local.
void set_active(Variant v);

/// Whether the float32 passes ask for the next tile's rows while they compute (a non-empty
/// models::gmm_kernel::PrefetchRange from BlockRows::next_tile): a property of the CPU, not
/// of the bits. Taken once per process: LATENT_TILE_PREFETCH=1 or 0 if set, else on for
/// Intel CPUs and AMD family 25 (Zen 3/4) and off for the others. Measured
/// (docs/PERFORMANCE.md): on the Intel Xeon it took the diagonal GMM's iteration 0.078 ->
/// 0.074 s; on the AMD EPYC family 25 model 17 (Zen 4) the diagonal GMM's 0.037-0.038 ->
/// 0.0345-0.0355 s and k-means' 0.025-0.026 -> 0.021-0.022 s (three A/B pairs each; MFA
/// unchanged); on the AMD EPYC family 26 model 2 the software prefetches stalled the
/// arithmetic and the next convert was no faster, and turning them off took k-means
/// 0.032-0.035 -> 0.023-0.028 s per iteration (four A/B pairs) and the diagonal GMM's CPU
/// time 3 % lower. Results never depend on it. Local, thread-safe.
bool tile_prefetch() noexcept;

/// A test's scope with another variant, restoring the previous one on destruction.
class ScopedVariant {
 public:
  explicit ScopedVariant(Variant v) : previous_(active()) { set_active(v); }
  ~ScopedVariant() { set_active(previous_); }
  ScopedVariant(const ScopedVariant&) = delete;
  ScopedVariant& operator=(const ScopedVariant&) = delete;

 private:
  Variant previous_;
};

}  // namespace latent::kernel
