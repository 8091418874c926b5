#pragma once
/// \file The float32 kernels of the diagonal and spherical GMM's fused E+M pass
/// (docs/ARCHITECTURE.md §5.9).
///
/// A tile of rows is converted once to float32 (centred, each row padded with zeros to a
/// multiple of 16 floats); quadratic() gives every row's Mahalanobis distances to the K
/// components and moments() adds the responsibility-weighted first and second moments of
/// the same tile to double statistics while the tile is in cache. The products are float32;
/// moments() sums a tile's rows in float32 and adds the tile's sums to double.
///
/// Bits: every sum has one fixed order, lane-parallel over 16 floats with a fixed final
/// tree (lanes i and i+8, then i and i+4, i and i+2, i and i+1), so the avx2 variant (two
/// 8-float halves) and the avx512 variant (one 16-float register) give the same bits, and
/// neither depends on how rows or components are blocked in registers. Which variant runs
/// is kernel::active() (core/kernel.hpp). All functions are local, thread-safe and
/// allocate nothing.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace latent::models::gmm_kernel {

/// Floats per lane group; rows of tiles and operands are padded to a multiple of it.
inline constexpr std::ptrdiff_t kLanes = 16;
/// Memory the kernels bring into L2, `lines` cache lines per step of their loops, while
/// they compute (the next tile's rows); `next` advances. A caller that runs only
/// quadratic() over a tile (k-means) asks for more lines per step than one that also runs
/// moments() (the GMM), so the whole next tile arrives either way.
struct PrefetchRange {
  const char* next = nullptr;
  const char* end = nullptr;
  int lines = 1;
};

/// D rounded up to a multiple of kLanes.
inline constexpr std::ptrdiff_t padded(std::ptrdiff_t d) { return (d + kLanes - 1) / kLanes * kLanes; }

/// out[i·dp + j] = float(x[i·ld + j] − c[j]) (one rounding) for rows i < rows and j < d;
/// out's padding (j ≥ d) is left as it is. x: rows of a row-major double matrix with
/// leading dimension ld. Returns true if any x[i·ld + j] is NaN (out is then incomplete).
bool convert(const double* x, std::ptrdiff_t rows, std::ptrdiff_t ld, std::ptrdiff_t d, const double* c, float* out,
             std::ptrdiff_t dp);
/// The same from float32 rows (a float32 block): out = float(double(x) − c), bit for bit
/// what the double overload gives for the rows widened to double. With neg_c32 =
/// negated_float() of c (every c_j a float), each value is centred by one float32 add
/// instead, with the same bits: the exact difference of two floats rounded through double
/// rounds as in float (53 ≥ 2·24 + 2 bits; S. A. Figueroa, "When is double rounding
/// innocuous?", SIGNUM Newsletter 30(3), 1995): four instructions per 16 values instead of
/// twelve (docs/PERFORMANCE.md: the k-means iteration it shortened on the AMD EPYC family 26).
bool convert(const float* x, std::ptrdiff_t rows, std::ptrdiff_t ld, std::ptrdiff_t d, const double* c, float* out,
             std::ptrdiff_t dp, const float* neg_c32 = nullptr);

/// −c as floats (d values) if every c_j is a float (float(c_j) == c_j, ±inf included), for
/// convert()'s neg_c32; else empty.
std::vector<float> negated_float(const double* c, std::ptrdiff_t d);

/// q[i·k + c] = Σ_j (x[i·dp + j] · s[c·dp + j] + t[c·dp + j])² for rows i < rows and
/// components c < k. x: rows × dp (row-major, float32, dp a multiple of kLanes), s and t:
/// k × dp. For a diagonal Gaussian s = σ⁻¹ and t = −μ σ⁻¹ (each rounded to float once), so
/// the term is the standardised difference squared, without the cancellation of the
/// expanded x² p − 2 x μ p + μ² p form. Padding must be zero in x, s and t. While it
/// runs, lines of `prefetch` are brought into L2 (the next tile's rows, so the next
/// convert() reads from cache), one per step.
void quadratic(const float* x, std::ptrdiff_t rows, std::ptrdiff_t dp, const float* s, const float* t, std::ptrdiff_t k,
               float* q, PrefetchRange& prefetch);

/// quadratic() with s all ones, bit for bit, without s: q[i·k + c] = Σ_j (x[i·dp + j] +
/// t[c·dp + j])² (k-means: t = −centre). x + t is fma(x, 1, t) rounded once the same way;
/// it runs on the adders, half the FMAs: on the AMD EPYC (family 26, separate add pipes)
/// 9.2 → 6.8 ms per 60000 × 784 rows × 10 centres. Not measured on Intel, where adds and
/// FMAs share ports (expect the time of quadratic()).
void quadratic_unit(const float* x, std::ptrdiff_t rows, std::ptrdiff_t dp, const float* t, std::ptrdiff_t k, float* q,
                    PrefetchRange& prefetch);

/// convert() of the rows, and q[i] = Σ_j (out[i·dp + j] + t[comps[i]·dp + j])² for i <
/// rows, computed four rows at a time while they are in L1: quadratic_unit()'s
/// q[i·k + comps[i]], bit for bit, for one chosen component per row (k-means: the centre a
/// row's bounds say may still be nearest). Returns true if any x is NaN (out and q are
/// then incomplete).
bool convert_pairs(const double* x, std::ptrdiff_t rows, std::ptrdiff_t ld, std::ptrdiff_t d, const double* c,
                   float* out, std::ptrdiff_t dp, const float* t, const std::int32_t* comps, float* q);
bool convert_pairs(const float* x, std::ptrdiff_t rows, std::ptrdiff_t ld, std::ptrdiff_t d, const double* c,
                   float* out, std::ptrdiff_t dp, const float* t, const std::int32_t* comps, float* q,
                   const float* neg_c32 = nullptr);

/// first[c·d + j] += Σ_i r[i·k + c] · x[i·dp + j] and second[c·d + j] += Σ_i r[i·k + c] · x[i·dp + j]²
/// for c < k and j < d (d ≤ dp; columns j ≥ d are not touched). x: rows × dp as in
/// quadratic(); r: rows × k (float32 responsibilities); first, second: k × d (double). The
/// sum over the tile's rows is a float32 FMA chain in row order (x² rounded to float
/// first), added to the doubles once per tile. Terms whose r is exactly zero add nothing to
/// such a chain, so a tile of ≤ 256 rows where fewer than half of r are non-zero (high
/// dimensions: 89 % of Fashion-MNIST's float32 responsibilities at K = 10 are zero) is
/// summed over each component's non-zero rows only, with the same bits (moments_sparse in gmm_diag_impl.hpp; 19.5 → about
/// 3 ms of the 60000 × 784, K = 10 iteration on the AMD EPYC family 25). Continues
/// `prefetch` as quadratic() does.
void moments(const float* x, std::ptrdiff_t rows, std::ptrdiff_t dp, std::ptrdiff_t d, const float* r, std::ptrdiff_t k,
             double* first, double* second, PrefetchRange& prefetch);

/// One variant's kernels (gmm_diag_avx2.cpp, gmm_diag_avx512.cpp); the functions above
/// call those of kernel::active().
struct Variant {
  bool (*convert_double)(const double*, std::ptrdiff_t, std::ptrdiff_t, std::ptrdiff_t, const double*, float*,
                         std::ptrdiff_t);
  bool (*convert_float)(const float*, std::ptrdiff_t, std::ptrdiff_t, std::ptrdiff_t, const double*, float*,
                        std::ptrdiff_t, const float*);
  bool (*convert_pairs_double)(const double*, std::ptrdiff_t, std::ptrdiff_t, std::ptrdiff_t, const double*, float*,
                               std::ptrdiff_t, const float*, const std::int32_t*, float*);
  bool (*convert_pairs_float)(const float*, std::ptrdiff_t, std::ptrdiff_t, std::ptrdiff_t, const double*, float*,
                              std::ptrdiff_t, const float*, const std::int32_t*, float*, const float*);
  void (*quadratic)(const float*, std::ptrdiff_t, std::ptrdiff_t, const float*, const float*, std::ptrdiff_t, float*,
                    PrefetchRange&);
  void (*quadratic_unit)(const float*, std::ptrdiff_t, std::ptrdiff_t, const float*, std::ptrdiff_t, float*,
                         PrefetchRange&);
  void (*moments)(const float*, std::ptrdiff_t, std::ptrdiff_t, std::ptrdiff_t, const float*, std::ptrdiff_t, double*,
                  double*, PrefetchRange&);
};
namespace avx2 {
const Variant& variant();
}  // namespace avx2
namespace avx512 {
const Variant& variant();
}  // namespace avx512

}  // namespace latent::models::gmm_kernel
