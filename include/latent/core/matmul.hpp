#pragma once
/// \file Packed single-thread matrix products for the neural-network layers (VAE): C = A B
/// with A (M × K) and B (K × N) read through arbitrary strides, packed once, and C (M × N)
/// row-major float32.
///
/// Two precisions, named as PyTorch's torch.set_float32_matmul_precision names them:
///  - kHighest: float32 products, float32 accumulation (fused multiply-adds: AVX-512F, or
///    AVX2 + FMA in kernel variant avx2, with the same order and so the same bits).
///  - kMedium: the operands rounded to bfloat16 (round to nearest even), products
///    accumulated in float32 (AVX512_BF16 VDPBF16PS: two products per lane per step; in
///    kernel variant amxbf16, AMX TDPBF16PS on 16 × 16 tiles, whose rounding inside an
///    instruction is the hardware's own, so the last bits differ from VDPBF16PS's).
///    Twice the arithmetic rate of float32 on CPUs that have it; the rounding of each
///    operand is 2^-9 relative (Kalamkar et al. 2019, "A study of BFLOAT16 for deep
///    learning training").
///
/// Every entry of C is summed over k in the same fixed order whatever M, N, the tiling or
/// the other rows are, so a row's result depends only on that row and B. The order (and
/// so the last bits) differs between the two precisions and from Eigen's products.
///
/// Layout: A is packed in panels of kMr = 8 rows, B in panels of kNr = 32 columns; within
/// a panel, for each step s along K, one 32-bit word per row (column): a float32 for
/// kHighest, or a pair of bfloat16 (k = 2s, 2s + 1; K padded with a zero) for kMedium.
/// Edge panels are padded with zeros. Packed sizes are ⌈M/8⌉·8·S and ⌈N/32⌉·32·S words,
/// S = K (kHighest) or ⌈K/2⌉ (kMedium): 4 bytes per float32 entry, 2 per bfloat16 entry.
/// In variant amxbf16 a kMedium A is packed in panels of 32 rows, by chunks of 16 steps
/// with each row's 16 words contiguous (AMX's A tile rows), and S is rounded up to a
/// multiple of 16 for A and B (zero pairs): ⌈M/32⌉·32·S' and ⌈N/32⌉·32·S' words (stride()).
#include <cstdint>
#include <string>
#include <vector>

#include "latent/core/types.hpp"

namespace latent::matmul {

enum class Precision { kHighest, kMedium };

/// "highest" or "medium"; throws Error(kUsage) otherwise.
Precision parse_precision(const std::string& s);
std::string to_string(Precision p);

/// True if the job's kernel variant (latent/core/kernel.hpp) runs the products of `p`:
/// kHighest always (an AVX2 + FMA tile in variant avx2, AVX-512F in the others, the same
/// bits), kMedium only in variants avx512bf16 and amxbf16. Local.
bool available(Precision p);
/// Throws Error(kUsage) if !available(p), naming the missing CPU feature, or the variant in
/// use when the CPU has AVX512_BF16 but the job runs a lower variant.
void require(Precision p);

/// One packed operand. `rows` is the panel direction (M for A, N for B), `depth` is K.
class Packed {
 public:
  static constexpr Index kMr = 8, kNr = 32;

  /// Packs the A operand of C = A B: A(i, k) = src[i * row_stride + k * depth_stride],
  /// i < m, k < depth. Reallocates only when the packed size grows.
  void pack_a(Precision p, const float* src, Index m, Index depth, Index row_stride, Index depth_stride);
  /// Packs the B operand: B(k, j) = src[k * depth_stride + j * col_stride], j < n.
  void pack_b(Precision p, const float* src, Index depth, Index n, Index depth_stride, Index col_stride);

  /// Re-packs part of an operand packed before, from a source with the layout of that
  /// pack_a/pack_b call (after the source changed there): rows [row_begin, row_end) of the
  /// panel direction and [depth_begin, depth_end) along K. row_begin must start a panel of
  /// B (a multiple of 32) or a group of 16 rows of A, depth_begin must be even for kMedium;
  /// whole groups are repacked. Throws std::invalid_argument otherwise, and for an operand
  /// sized by shape() (it has no source layout). Distinct ranges touch distinct words, so
  /// they may be repacked concurrently.
  void repack(const float* src, Index row_begin, Index row_end, Index depth_begin, Index depth_end);

  /// Sizes the operand as pack_a (as_a) or pack_b would for `rows` panel-direction rows
  /// and `depth` along K, kHighest, without reading a source: the caller then writes every
  /// word of the rows through panel_words() (step s of row r of panel q at
  /// panel_words(q)[s · width + r % width], width kMr for A and kNr for B). The padding of
  /// the last panel is zeroed here. For producers that compute an operand row by row and
  /// can store it packed at once (no copy of a staging buffer). Such an operand has no
  /// source: repack() on it throws std::invalid_argument.
  void shape(Index rows, Index depth, bool as_a);
  std::uint32_t* panel_words(Index q) noexcept { return data() + q * width_ * stride_; }

  /// Words the packed operand occupies (what place() needs).
  std::size_t words() const noexcept { return size_; }
  /// Moves the packed words to `storage` (words() of them, 64-byte aligned, owned by the
  /// caller and alive until own() or the next pack), copying them there if `copy`; repack()
  /// then writes there. For packs that ranks on one node share (comm::NodeSharedMemory):
  /// every rank places its pack at the same words and one copies. A copy of a placed
  /// operand owns its words; the next pack_a/pack_b/shape() returns to owned storage.
  void place(std::uint32_t* storage, bool copy);
  /// Copies placed words back into owned storage (nothing if not placed).
  void own();

  Packed() = default;
  Packed(const Packed& other);
  Packed& operator=(const Packed& other);
  Packed(Packed&&) = default;
  Packed& operator=(Packed&&) = default;
  ~Packed() = default;

  Precision precision() const noexcept { return precision_; }
  Index rows() const noexcept { return rows_; }
  Index depth() const noexcept { return depth_; }
  /// Steps along K: depth for kHighest, ⌈depth / 2⌉ for kMedium.
  Index steps() const noexcept { return steps_; }
  /// Steps stored per panel row: steps(), or steps() rounded up to a multiple of 16 (zero
  /// words past steps()) for bfloat16 operands packed in kernel variant amxbf16.
  Index stride() const noexcept { return stride_; }
  /// True for an A operand packed for AMX tiles (kMedium in variant amxbf16): panels of
  /// kAmxRows rows, each a run of chunks of 16 steps, each chunk the panel's rows one after
  /// another with their 16 words (pairs of bfloat16 along K) contiguous: the two A tiles
  /// of a chunk are 2 KiB in a row. Not one word per row for each step as for AVX.
  bool amx_rows() const noexcept { return amx_rows_; }
  static constexpr Index kAmxRows = 32;
  const std::uint32_t* panel(Index q) const noexcept { return data() + q * width_ * stride_; }

 private:
  void pack(Precision p, const float* src, Index rows, Index depth, Index row_stride, Index depth_stride, Index width);
  void fill(const float* src, Index r_begin, Index r_end, Index k_begin, Index k_end);

  Precision precision_ = Precision::kHighest;
  Index rows_ = 0, depth_ = 0, steps_ = 0, stride_ = 0, width_ = 0, row_stride_ = 0, depth_stride_ = 0;
  bool shaped_ = false;     // sized by shape(): no source to repack from
  bool amx_rows_ = false;   // an A operand in the AMX row layout (amx_rows())
  void fill_amx_rows(const float* src, Index r_begin, Index r_end, Index s_begin, Index s_end);
  std::uint32_t* data() noexcept { return placed_ != nullptr ? placed_ : words_.data(); }
  const std::uint32_t* data() const noexcept { return placed_ != nullptr ? placed_ : words_.data(); }
  // Sizes the owned words for a new pack (leaving any placed storage).
  void reserve(std::size_t size);

  std::vector<std::uint32_t, CacheLineAllocator<std::uint32_t>> words_;  // on cache lines: AMX tile rows and zmm loads
  std::uint32_t* placed_ = nullptr;  // place()d storage, else null
  std::size_t size_ = 0;             // words in use
};

/// C (M × N, row-major, leading dimension ldc ≥ N) = A B, or C += A B if accumulate.
/// a from pack_a, b from pack_b, same precision and depth (else std::invalid_argument).
/// Single-threaded; callers parallelise over independent products. If abs_max is non-null,
/// *abs_max becomes max(|*abs_max|, max |C entry| stored): +Inf if an entry is ±Inf, NaN if
/// one is NaN (so one check of the result finds non-finite entries), at no extra pass.
void multiply(const Packed& a, const Packed& b, float* c, Index ldc, bool accumulate = false, float* abs_max = nullptr);

/// C (M × N, ldc) = A B for an upper-triangular B (B(k, j) = 0 for k > j): each panel of
/// 32 columns stops after step (q + 1)·32, past which its terms are products with exact
/// zeros. For finite A the result has the bits of multiply() but for the sign of a zero
/// (a trailing +0 term turns a −0 sum into +0); about ½ to ¾ of its arithmetic (¾ for
/// d = 64). Single-threaded. The full GMM uses its shifted form, multiply_upper_minus();
/// this one is the reference that form is tested against (tests/unit/matmul_test.cpp).
void multiply_upper(const Packed& a, const Packed& b, float* c, Index ldc);

/// multiply_upper() of (A − 1 shiftᵀ) and B (shift: depth floats), A packed (as A) from
/// the unshifted rows: the same bits as packing the float32 differences A(i, k) − shift[k]
/// and multiply_upper, with each 8-row panel's shifted words formed just before its
/// products (in L1) instead of a second packing. kHighest only (else
/// std::invalid_argument). Single-threaded (a thread-local scratch of 8 × depth words).
void multiply_upper_minus(const Packed& a, const float* shift, const Packed& b, float* c, Index ldc);

/// Feature block of multiply_lower_tn(): a multiple of both panel widths.
inline constexpr Index kLowerBlock = 32;

/// The blocks of C = Uᵀ V on and below the diagonal (kLowerBlock × kLowerBlock; so every
/// entry c_ij with j ≤ i, and some above): U and V are n × d row-major with leading
/// dimension ld (n the product's depth), C is d × d row-major. Entries above the diagonal
/// blocks are not written. Each entry is summed over the n rows in multiply()'s fixed
/// order, so it has the bits of the whole product's entry, at about half its arithmetic
/// for large d (a symmetric product Xᵀ X, or one weighted on one side). pa, pb: scratch
/// kept across calls. Single-threaded.
void multiply_lower_tn(Precision p, const float* u, const float* v, Index n, Index d, Index ld, float* c,
                       std::vector<Packed>& pa, std::vector<Packed>& pb);

/// The block products of multiply_lower_tn() from operands already packed: pa[q] = the
/// block q of Uᵀ (pack_a layout, rows: the block's ≤ kLowerBlock features, depth n),
/// pb[q] = the block q of V (pack_b layout); c as multiply_lower_tn's (d × d, row-major).
/// Same bits as multiply_lower_tn for the same words.
void multiply_lower_packed(const std::vector<Packed>& pa, const std::vector<Packed>& pb, Index d, float* c);

/// Rounds a float32 to the nearest bfloat16 (ties to even; NaN stays NaN, subnormals become
/// ±0), as the packer and VCVTNE2PS2BF16 do.
std::uint16_t to_bfloat16(float x) noexcept;
float from_bfloat16(std::uint16_t h) noexcept;

}  // namespace latent::matmul
