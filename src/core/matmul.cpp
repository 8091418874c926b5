#include "latent/core/matmul.hpp"

#include <immintrin.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "latent/core/error.hpp"
#include "latent/core/kernel.hpp"

namespace latent::matmul {
namespace {

constexpr Index kMr = Packed::kMr, kNr = Packed::kNr;

inline std::uint32_t word_of(float x) noexcept { return std::bit_cast<std::uint32_t>(x); }

// Where step s of row r of an AMX A operand is (Packed::amx_rows): panels of 32 rows, each
// a run of 16-step chunks, each chunk the 32 rows' 16 words row after row (2 KiB: the
// two 16 × 64-byte tiles one TDPBF16PS pair reads, contiguous).
constexpr Index amx_word(Index r, Index s, Index stride) noexcept {
  return (r / 32) * 32 * stride + (s / 16) * 512 + (r % 32) * 16 + s % 16;
}

inline std::uint32_t pair_of(float lo, float hi) noexcept {
  return static_cast<std::uint32_t>(to_bfloat16(lo)) | (static_cast<std::uint32_t>(to_bfloat16(hi)) << 16);
}

// Stores one row of a 32-column tile of C, ci[0..32) masked by m0 | m1 (adding the old
// entries first if accumulate), and with kMax takes the stored entries' magnitudes (bit
// patterns: unsigned order is magnitude order, NaN above +Inf) into mx.
template <bool kMax>
[[gnu::target("avx512f,avx512bw,avx512vl")]] inline void store_row(float* ci, __m512 v0, __m512 v1, bool accumulate,
                                                                    __mmask16 m0, __mmask16 m1, __m512i& mx) {
  if (accumulate) {
    v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, ci));
    v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, ci + 16));
  }
  _mm512_mask_storeu_ps(ci, m0, v0);
  _mm512_mask_storeu_ps(ci + 16, m1, v1);
  if constexpr (kMax) {
    const __m512i magnitude = _mm512_set1_epi32(0x7fffffff);
    mx = _mm512_mask_max_epu32(mx, m0, mx, _mm512_and_si512(_mm512_castps_si512(v0), magnitude));
    mx = _mm512_mask_max_epu32(mx, m1, mx, _mm512_and_si512(_mm512_castps_si512(v1), magnitude));
  }
}

// The 8 × 32 tile C[0..mv) × [0..nv) (+)= A-panel · B-panel over `steps` steps (kernel
// variants avx512 and avx512bf16). With kMax, each of the 16 words of abs_max becomes the
// largest of itself and the bit patterns of |C| stored in its lane (as unsigned integers
// these order like the magnitudes, and NaN above +Inf). Panels start on cache lines (the
// words' CacheLineAllocator), so no load of a B panel's 64-byte half spans two lines.
//
// A product may run along K in slices (tiles()): then `resume` holds the sums of the slices
// before (kMr × kNr floats, row after row; null for the first), and `pause`, if not null,
// receives the sums instead of C (every slice but the last). Each entry's chain of
// multiply-adds is the same sequence either way, so the same bits.
template <bool kBf16, bool kMax>
[[gnu::target("avx512f,avx512bw,avx512vl,avx512bf16")]] void tile(Index steps, const std::uint32_t* __restrict a,
                                                                   const std::uint32_t* __restrict b, float* c, Index ldc,
                                                                   bool accumulate, int mv, int nv,
                                                                   std::uint32_t* abs_max, const float* resume = nullptr,
                                                                   float* pause = nullptr) {
  __m512 c0[kMr], c1[kMr];
  if (resume != nullptr) {
#pragma GCC unroll 8
    for (int i = 0; i < kMr; ++i) {
      c0[i] = _mm512_loadu_ps(resume + i * kNr);
      c1[i] = _mm512_loadu_ps(resume + i * kNr + 16);
    }
  } else {
#pragma GCC unroll 8
    for (int i = 0; i < kMr; ++i) c0[i] = c1[i] = _mm512_setzero_ps();
  }
  for (Index s = 0; s < steps; ++s) {
    const __m512i b0 = _mm512_loadu_si512(b + s * kNr), b1 = _mm512_loadu_si512(b + s * kNr + 16);
#pragma GCC unroll 8
    for (int i = 0; i < kMr; ++i) {
      const __m512i ai = _mm512_set1_epi32(static_cast<int>(a[s * kMr + i]));
      if constexpr (kBf16) {
        c0[i] = _mm512_dpbf16_ps(c0[i], (__m512bh)ai, (__m512bh)b0);
        c1[i] = _mm512_dpbf16_ps(c1[i], (__m512bh)ai, (__m512bh)b1);
      } else {
        c0[i] = _mm512_fmadd_ps(_mm512_castsi512_ps(ai), _mm512_castsi512_ps(b0), c0[i]);
        c1[i] = _mm512_fmadd_ps(_mm512_castsi512_ps(ai), _mm512_castsi512_ps(b1), c1[i]);
      }
    }
  }
  if (pause != nullptr) {
#pragma GCC unroll 8
    for (int i = 0; i < kMr; ++i) {
      _mm512_storeu_ps(pause + i * kNr, c0[i]);
      _mm512_storeu_ps(pause + i * kNr + 16, c1[i]);
    }
    return;
  }
  const auto m0 = static_cast<__mmask16>(nv >= 16 ? 0xffffu : (1u << nv) - 1u);
  const auto m1 = static_cast<__mmask16>(nv <= 16 ? 0u : nv >= 32 ? 0xffffu : (1u << (nv - 16)) - 1u);
  __m512i mx = _mm512_setzero_si512();
  if constexpr (kMax) mx = _mm512_loadu_si512(abs_max);
#pragma GCC unroll 8
  for (int i = 0; i < kMr; ++i) {
    if (i >= mv) break;
    store_row<kMax>(c + i * ldc, c0[i], c1[i], accumulate, m0, m1, mx);
  }
  if constexpr (kMax) _mm512_storeu_si512(abs_max, mx);
}

// The same float32 tile with AVX2 + FMA (kernel variant avx2): 4 rows × 16 columns per
// pass (8 accumulators of 8 lanes), each entry summed over the steps in the same order with
// the same fused multiply-adds as tile<false, kMax>, then the same single addition of the
// old C: the bits are those of the AVX-512 tile. abs_max is updated per lane j mod 16; the
// caller takes the maximum over the lanes, which does not depend on the lane.
template <bool kMax>
[[gnu::target("avx2,fma")]] void tile_avx2(Index steps, const std::uint32_t* __restrict a, const std::uint32_t* __restrict b,
                                           float* c, Index ldc, bool accumulate, int mv, int nv,
                                           std::uint32_t* abs_max) {
  alignas(32) float t[kMr][kNr];
  for (int i0 = 0; i0 < mv; i0 += 4) {
    for (int j0 = 0; j0 < nv; j0 += 16) {
      __m256 acc[4][2];
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
      for (Index s = 0; s < steps; ++s) {
        const float* bs = reinterpret_cast<const float*>(b + s * kNr + j0);
        const __m256 b0 = _mm256_loadu_ps(bs), b1 = _mm256_loadu_ps(bs + 8);
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) {
          const __m256 ai = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(a[s * kMr + i0 + i])));
          acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
          acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
        }
      }
      if (i0 + 4 <= mv && j0 + 16 <= nv) {  // a whole sub-tile: straight from the registers
        [[maybe_unused]] __m256i mx0, mx1;
        if constexpr (kMax) {
          mx0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(abs_max));
          mx1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(abs_max + 8));
        }
        const __m256i magnitude = _mm256_set1_epi32(0x7fffffff);
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) {
          float* ci = c + (i0 + i) * ldc + j0;
          __m256 v0 = acc[i][0], v1 = acc[i][1];
          if (accumulate) {
            v0 = _mm256_add_ps(v0, _mm256_loadu_ps(ci));
            v1 = _mm256_add_ps(v1, _mm256_loadu_ps(ci + 8));
          }
          _mm256_storeu_ps(ci, v0);
          _mm256_storeu_ps(ci + 8, v1);
          if constexpr (kMax) {
            mx0 = _mm256_max_epu32(mx0, _mm256_and_si256(_mm256_castps_si256(v0), magnitude));
            mx1 = _mm256_max_epu32(mx1, _mm256_and_si256(_mm256_castps_si256(v1), magnitude));
          }
        }
        if constexpr (kMax) {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(abs_max), mx0);
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(abs_max + 8), mx1);
        }
        continue;
      }
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) {
        _mm256_store_ps(&t[i0 + i][j0], acc[i][0]);
        _mm256_store_ps(&t[i0 + i][j0 + 8], acc[i][1]);
      }
      for (int i = i0; i < std::min(i0 + 4, mv); ++i) {  // an edge: through t, the valid entries only
        float* ci = c + i * ldc;
        for (int j = j0; j < std::min(j0 + 16, nv); ++j) {
          const float v = accumulate ? t[i][j] + ci[j] : t[i][j];
          ci[j] = v;
          if constexpr (kMax) abs_max[j % 16] = std::max(abs_max[j % 16], word_of(v) & 0x7fffffffu);
        }
      }
    }
  }
}

// o[r] = the bfloat16 pair (x0[r], x1[r]) for r < n (x1 null: zeros).
[[gnu::target("avx512f,avx512bw,avx512vl,avx512bf16")]] void pairs_of_rows(const float* x0, const float* x1, Index n,
                                                                            std::uint32_t* o) {
  alignas(64) static constexpr std::uint16_t kIdx[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                                          8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i idx = _mm512_load_si512(kIdx);
  for (Index r = 0; r < n; r += 16) {
    const auto rem = static_cast<unsigned>(std::min<Index>(16, n - r));
    const auto m = static_cast<__mmask16>(rem == 16 ? 0xffffu : (1u << rem) - 1u);
    const __m512 lo = _mm512_maskz_loadu_ps(m, x0 + r);
    const __m512 hi = x1 != nullptr ? _mm512_maskz_loadu_ps(m, x1 + r) : _mm512_setzero_ps();
    _mm512_mask_storeu_epi32(o + r, m, _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(hi, lo)));
  }
}

constexpr __mmask16 mask16(Index n) noexcept {
  return static_cast<__mmask16>(n >= 16 ? 0xffffu : n <= 0 ? 0u : (1u << n) - 1u);
}

// In-register transpose of 16 × 16 32-bit words: a[i] holds row i, afterwards a[j] holds
// column j.
[[gnu::target("avx512f")]] inline void transpose16(__m512i a[16]) {
  __m512i t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(a[2 * i], a[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(a[2 * i], a[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {  // u[4i + c], 128-bit lane L: rows 4i..4i+3 of column 4L + c
    u[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int c = 0; c < 4; ++c) {
    const __m512i p0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x44), p1 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x44);
    const __m512i p2 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xEE), p3 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xEE);
    a[c] = _mm512_shuffle_i32x4(p0, p1, 0x88);
    a[4 + c] = _mm512_shuffle_i32x4(p0, p1, 0xDD);
    a[8 + c] = _mm512_shuffle_i32x4(p2, p3, 0x88);
    a[12 + c] = _mm512_shuffle_i32x4(p2, p3, 0xDD);
  }
}

// The packing of a source whose rows run contiguously along K (row_stride apart), by
// 16 × 16 blocks of words transposed in registers: full 64-byte stores instead of one
// strided 4-byte store per word. Packs rows [r_begin, r_end) (r_begin a multiple of 16;
// whole groups of 16, and the zero padding of the last panel if r_end reaches it) and
// steps [s_begin, s_end).
template <bool kBf16>
[[gnu::target("avx512f,avx512bw,avx512vl,avx512bf16")]] void pack_transposed(const float* src, Index rows, Index depth,
                                                                              Index row_stride, Index width, Index steps,
                                                                              std::uint32_t* words, Index r_begin,
                                                                              Index r_end, Index s_begin, Index s_end) {
  const Index panels = (rows + width - 1) / width;
  const Index r_stop = r_end >= rows ? panels * width : r_end;
  for (Index r0 = r_begin; r0 < r_stop; r0 += 16) {
    for (Index s0 = s_begin; s0 < s_end; s0 += 16) {
      __m512i v[16];
      for (Index i = 0; i < 16; ++i) {
        if (r0 + i >= rows) {
          v[i] = _mm512_setzero_si512();
          continue;
        }
        const float* x = src + (r0 + i) * row_stride;
        if constexpr (kBf16) {
          const Index k0 = 2 * s0;
          const __m512 lo = _mm512_maskz_loadu_ps(mask16(depth - k0), x + k0);
          const __m512 hi = _mm512_maskz_loadu_ps(mask16(depth - k0 - 16), x + k0 + 16);
          v[i] = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
        } else {
          v[i] = _mm512_castps_si512(_mm512_maskz_loadu_ps(mask16(depth - s0), x + s0));
        }
      }
      transpose16(v);
      const Index ns = std::min<Index>(16, s_end - s0);
      if (width == 32) {
        std::uint32_t* out = words + (r0 / 32) * 32 * steps + r0 % 32;
        for (Index j = 0; j < ns; ++j) _mm512_storeu_si512(out + (s0 + j) * 32, v[j]);
      } else {  // width 8: the group spans panels q and q + 1
        const Index q = r0 / 8;
        std::uint32_t* out0 = words + q * 8 * steps;
        for (Index j = 0; j < ns; ++j) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out0 + (s0 + j) * 8), _mm512_castsi512_si256(v[j]));
        if (q + 1 < panels) {
          std::uint32_t* out1 = out0 + 8 * steps;
          for (Index j = 0; j < ns; ++j)
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(out1 + (s0 + j) * 8), _mm512_extracti64x4_epi64(v[j], 1));
        }
      }
    }
  }
}

// The kernels of the job's variant (latent/core/kernel.hpp), not of this CPU: every rank
// of a job runs the same ones.
bool use_avx512() { return kernel::active() >= kernel::Variant::kAvx512; }
bool use_avx512bf16() { return kernel::active() >= kernel::Variant::kAvx512Bf16; }
bool use_amx() { return kernel::active() == kernel::Variant::kAmxBf16; }

}  // namespace

std::uint16_t to_bfloat16(float x) noexcept {
  const std::uint32_t u = word_of(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);  // quiet NaN
  if ((u & 0x7f800000u) == 0) return static_cast<std::uint16_t>((u >> 16) & 0x8000u);          // subnormal: ±0
  return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

float from_bfloat16(std::uint16_t h) noexcept { return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16); }

Precision parse_precision(const std::string& s) {
  if (s == "highest") return Precision::kHighest;
  if (s == "medium") return Precision::kMedium;
  throw_usage("--matmul-precision must be highest (float32) or medium (bfloat16 products, float32 sums); got '" + s + "'");
}

std::string to_string(Precision p) { return p == Precision::kHighest ? "highest" : "medium"; }

bool available(Precision p) { return p == Precision::kHighest || use_avx512bf16(); }

void require(Precision p) {
  if (available(p)) return;
  const kernel::Variant v = kernel::active();
  throw_usage(kernel::supported(kernel::Variant::kAvx512Bf16)
                  ? "--matmul-precision medium needs the kernel variant avx512bf16; this run uses " + kernel::to_string(v) +
                        " (LATENT_KERNEL, or the ranks' agreement on the best variant every rank's CPU runs): use "
                        "--matmul-precision highest"
                  : std::string("--matmul-precision medium needs a CPU with AVX512_BF16 (Intel Cooper Lake or Sapphire "
                                "Rapids and later, AMD Zen 4 and later); this one lacks it: use --matmul-precision highest"));
}

void Packed::pack_a(Precision p, const float* src, Index m, Index depth, Index row_stride, Index depth_stride) {
  pack(p, src, m, depth, row_stride, depth_stride, kMr);
}

void Packed::pack_b(Precision p, const float* src, Index depth, Index n, Index depth_stride, Index col_stride) {
  pack(p, src, n, depth, col_stride, depth_stride, kNr);
}

void Packed::pack(Precision p, const float* src, Index rows, Index depth, Index row_stride, Index depth_stride,
                  Index width) {
  precision_ = p;
  rows_ = rows;
  depth_ = depth;
  width_ = width;
  row_stride_ = row_stride;
  depth_stride_ = depth_stride;
  shaped_ = false;
  steps_ = p == Precision::kMedium ? (depth + 1) / 2 : depth;
  const bool amx = p == Precision::kMedium && use_amx();
  amx_rows_ = amx && width == kMr;
  if (amx_rows_) width_ = width = kAmxRows;
  stride_ = amx ? (steps_ + 15) / 16 * 16 : steps_;
  const Index panels = (rows + width - 1) / width;
  reserve(static_cast<std::size_t>(panels * width * stride_));
  if (amx && (stride_ > steps_ || rows % width != 0)) {  // the zero words AMX tiles read past K and past the rows
    if (amx_rows_) {
      for (Index r = 0; r < panels * width; ++r)
        for (Index st = r < rows ? steps_ : 0; st < stride_; ++st) data()[amx_word(r, st, stride_)] = 0u;
    } else {
      for (Index q = 0; q < panels; ++q)
        std::fill(data() + (q * stride_ + steps_) * width, data() + (q + 1) * stride_ * width, 0u);
    }
  }
  fill(src, 0, rows, 0, depth);
}

void Packed::reserve(std::size_t size) {
  placed_ = nullptr;
  if (words_.size() < size) words_.resize(size);
  size_ = size;
}

void Packed::place(std::uint32_t* storage, bool copy) {
  if (copy) std::copy(data(), data() + size_, storage);
  placed_ = storage;
  words_ = {};
}

void Packed::own() {
  if (placed_ == nullptr) return;
  words_.assign(placed_, placed_ + size_);
  placed_ = nullptr;
}

Packed::Packed(const Packed& other)
    : precision_(other.precision_), rows_(other.rows_), depth_(other.depth_), steps_(other.steps_),
      stride_(other.stride_), width_(other.width_), row_stride_(other.row_stride_), depth_stride_(other.depth_stride_),
      shaped_(other.shaped_), amx_rows_(other.amx_rows_),
      words_(other.data(), other.data() + other.size_), size_(other.size_) {}

Packed& Packed::operator=(const Packed& other) {
  if (this != &other) *this = Packed(other);
  return *this;
}

void Packed::shape(Index rows, Index depth, bool as_a) {
  precision_ = Precision::kHighest;
  rows_ = rows;
  depth_ = depth;
  steps_ = stride_ = depth;
  amx_rows_ = false;
  width_ = as_a ? kMr : kNr;
  row_stride_ = depth_stride_ = 0;
  shaped_ = true;
  const Index panels = (rows + width_ - 1) / width_;
  reserve(static_cast<std::size_t>(panels * width_ * steps_));
  const Index rn = rows - (panels - 1) * width_;
  if (panels > 0 && rn < width_) {
    std::uint32_t* out = data() + (panels - 1) * width_ * steps_;
    for (Index s = 0; s < steps_; ++s) std::fill(out + s * width_ + rn, out + (s + 1) * width_, 0u);
  }
}

namespace {

// out = in − shift[s] on the kMr (8) words of every step s of one A panel.
[[gnu::target("avx2")]] void minus_steps(const std::uint32_t* in, std::uint32_t* out, Index steps, const float* shift) {
  static_assert(kMr == 8, "one __m256 per step");
  for (Index st = 0; st < steps; ++st) {
    const __m256 v = _mm256_loadu_ps(reinterpret_cast<const float*>(in + st * kMr));
    _mm256_storeu_ps(reinterpret_cast<float*>(out + st * kMr), _mm256_sub_ps(v, _mm256_set1_ps(shift[st])));
  }
}

}  // namespace

void Packed::repack(const float* src, Index row_begin, Index row_end, Index depth_begin, Index depth_end) {
  if (shaped_)
    throw std::invalid_argument("matmul::Packed::repack: the operand was shaped (Packed::shape), not packed from a source");
  if (row_begin < 0 || row_end > rows_ || row_begin > row_end || depth_begin < 0 || depth_end > depth_ ||
      depth_begin > depth_end || row_begin % (width_ == kNr && !amx_rows_ ? kNr : 16) != 0 ||
      (precision_ == Precision::kMedium && depth_begin % 2 != 0))
    throw std::invalid_argument("matmul::Packed::repack: the range is outside the operand or not on a panel/step boundary");
  if (row_begin < row_end && depth_begin < depth_end) fill(src, row_begin, row_end, depth_begin, depth_end);
}

void Packed::fill(const float* src, Index r_begin, Index r_end, Index k_begin, Index k_end) {
  const Index width = width_, rows = rows_, depth = depth_, row_stride = row_stride_, depth_stride = depth_stride_;
  const bool bf16 = precision_ == Precision::kMedium;
  const bool vector = bf16 && use_avx512bf16();
  const Index s_begin = bf16 ? k_begin / 2 : k_begin, s_end = bf16 ? (k_end + 1) / 2 : k_end;
  const Index panels = (rows + width - 1) / width;
  if (amx_rows_) {
    fill_amx_rows(src, r_begin, r_end, s_begin, s_end);
    return;
  }
  if (row_stride != 1 && depth_stride == 1 && (width == 8 || width == 32) && (bf16 ? use_avx512bf16() : use_avx512())) {
    if (bf16) pack_transposed<true>(src, rows, depth, row_stride, width, stride_, data(), r_begin, r_end, s_begin, s_end);
    else pack_transposed<false>(src, rows, depth, row_stride, width, stride_, data(), r_begin, r_end, s_begin, s_end);
    return;
  }
  for (Index q = r_begin / width; q < panels && q * width < r_end; ++q) {
    std::uint32_t* out = data() + q * width * stride_;
    const Index r0 = q * width, rn = std::min(width, rows - r0);
    const float* base = src + r0 * row_stride;
    if (rn < width)  // zero padding of the edge panel
      for (Index s = s_begin; s < s_end; ++s) std::fill(out + s * width + rn, out + (s + 1) * width, 0u);
    if (row_stride == 1) {
      // Rows contiguous: consecutive k are rows of the source (a row-interleave).
      for (Index s = s_begin; s < s_end; ++s) {
        std::uint32_t* o = out + s * width;
        if (!bf16) {
          const float* x = base + s * depth_stride;
          for (Index r = 0; r < rn; ++r) o[r] = word_of(x[r]);
        } else {
          const float* x0 = base + 2 * s * depth_stride;
          if (vector) {
            pairs_of_rows(x0, 2 * s + 1 < depth ? x0 + depth_stride : nullptr, rn, o);
          } else if (2 * s + 1 < depth) {
            const float* x1 = x0 + depth_stride;
            for (Index r = 0; r < rn; ++r) o[r] = pair_of(x0[r], x1[r]);
          } else {
            for (Index r = 0; r < rn; ++r) o[r] = pair_of(x0[r], 0.0f);
          }
        }
      }
    } else {
      // Each row's k run is strided by depth_stride (contiguous when 1): a transpose.
      for (Index r = 0; r < rn; ++r) {
        const float* x = base + r * row_stride;
        if (!bf16) {
          for (Index s = s_begin; s < s_end; ++s) out[s * width + r] = word_of(x[s * depth_stride]);
        } else {
          const Index full = std::min(s_end, depth / 2);
          for (Index s = s_begin; s < full; ++s) out[s * width + r] = pair_of(x[2 * s * depth_stride], x[(2 * s + 1) * depth_stride]);
          if (full < s_end) out[full * width + r] = pair_of(x[2 * full * depth_stride], 0.0f);
        }
      }
    }
  }
}

namespace {

// Rows [r0, r0 + nr) of an AMX A operand from a source whose rows run contiguously along K:
// each row's pairs are its own floats rounded in order (one VCVTNE2PS2BF16 per 32 of K),
// stored a 16-step chunk at a time (amx_word).
[[gnu::target("avx512f,avx512bw,avx512vl,avx512bf16")]] void amx_rows_contiguous(const float* src, Index row_stride, Index depth,
                                                                                   Index r0, Index nr, Index stride,
                                                                                   std::uint32_t* words, Index s_begin,
                                                                                   Index s_end) {
  for (Index r = r0; r < r0 + nr; ++r) {
    const float* x = src + r * row_stride;
    for (Index s0 = s_begin, next = 0; s0 < s_end; s0 = next) {
      next = std::min(s_end, (s0 / 16 + 1) * 16);
      const Index k0 = 2 * s0;
      const __m512 lo = _mm512_maskz_loadu_ps(mask16(depth - k0), x + k0);
      const __m512 hi = _mm512_maskz_loadu_ps(mask16(depth - k0 - 16), x + k0 + 16);
      _mm512_mask_storeu_epi32(words + amx_word(r, s0, stride), mask16(next - s0), (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    }
  }
}

// The same from a source whose rows are contiguous and K strided (a transposed operand):
// the pairs of 16 rows for 16 steps, then a 16 × 16 transpose in registers.
[[gnu::target("avx512f,avx512bw,avx512vl,avx512bf16")]] void amx_rows_transposed(const float* src, Index rows, Index depth,
                                                                                   Index depth_stride, Index r_begin,
                                                                                   Index r_end, Index stride,
                                                                                   std::uint32_t* words, Index s_begin,
                                                                                   Index s_end) {
  alignas(64) static constexpr std::uint16_t kIdx[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                                          8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i idx = _mm512_load_si512(kIdx);
  for (Index r0 = r_begin; r0 < std::min(r_end, rows); r0 += 16) {
    const __mmask16 m = mask16(rows - r0);
    for (Index s0 = s_begin, next = 0; s0 < s_end; s0 = next) {
      next = std::min(s_end, (s0 / 16 + 1) * 16);
      __m512i v[16];
      for (Index j = 0; j < 16; ++j) {
        const Index k = 2 * (s0 + j);
        if (s0 + j >= next) {
          v[j] = _mm512_setzero_si512();
          continue;
        }
        const __m512 lo = _mm512_maskz_loadu_ps(m, src + k * depth_stride + r0);
        const __m512 hi = k + 1 < depth ? _mm512_maskz_loadu_ps(m, src + (k + 1) * depth_stride + r0) : _mm512_setzero_ps();
        v[j] = _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
      }
      transpose16(v);
      const __mmask16 ms = mask16(next - s0);
      for (Index i = 0; i < std::min<Index>(16, rows - r0); ++i)
        _mm512_mask_storeu_epi32(words + amx_word(r0 + i, s0, stride), ms, v[i]);
    }
  }
}

}  // namespace

void Packed::fill_amx_rows(const float* src, Index r_begin, Index r_end, Index s_begin, Index s_end) {
  r_end = std::min(r_end, rows_);
  if (depth_stride_ == 1) {
    amx_rows_contiguous(src, row_stride_, depth_, r_begin, r_end - r_begin, stride_, data(), s_begin, s_end);
  } else if (row_stride_ == 1) {
    amx_rows_transposed(src, rows_, depth_, depth_stride_, r_begin, r_end, stride_, data(), s_begin, s_end);
  } else {
    for (Index r = r_begin; r < r_end; ++r) {
      const float* x = src + r * row_stride_;
      for (Index s = s_begin; s < s_end; ++s)
        data()[amx_word(r, s, stride_)] = pair_of(x[2 * s * depth_stride_], 2 * s + 1 < depth_ ? x[(2 * s + 1) * depth_stride_] : 0.0f);
    }
  }
}

namespace {

// AMX: C = A B for an A in the AMX row layout and a B panel of 32 columns (two tiles of 16
// columns, its steps' words loaded with a 128-byte stride: B panels are already pairs
// along K per column, AMX's layout for B). Per 32 × 32 block of C: four accumulator tiles
// over K in chunks of 16 steps, from step 0 up, so each entry is a function of its row of
// A and column of B only. TDPBF16PS's rounding inside a chunk is the hardware's (not
// VDPBF16PS's two roundings per pair), so these bits are the variant's own.
struct TileConfig {
  std::uint8_t palette_id = 1;
  std::uint8_t start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t colsb[16] = {};
  std::uint8_t rows[16] = {};
};

template <bool kMax>
[[gnu::target("avx512f,avx512bw,avx512vl,avx512bf16,amx-tile,amx-bf16")]] void amx_tiles(const Packed& a, const Packed& b,
                                                                                         float* c, Index ldc,
                                                                                         bool accumulate,
                                                                                         std::uint32_t* abs_max) {
  TileConfig config;
  for (int t = 0; t < 8; ++t) {
    config.colsb[t] = 64;
    config.rows[t] = 16;
  }
  _tile_loadconfig(&config);
  const Index m = a.rows(), n = b.rows(), stride = a.stride(), chunks = stride / 16;
  const Index mp = (m + Packed::kAmxRows - 1) / Packed::kAmxRows, np = (n + kNr - 1) / kNr;
  alignas(64) float t[32 * 32];
  [[maybe_unused]] const __m512i magnitude = _mm512_set1_epi32(0x7fffffff);
  __m512i mx = _mm512_setzero_si512();
  if constexpr (kMax) mx = _mm512_loadu_si512(abs_max);
  for (Index qn = 0; qn < np; ++qn) {
    const std::uint32_t* bp = b.panel(qn);
    const int nv = static_cast<int>(std::min(kNr, n - qn * kNr));
    const auto m0 = static_cast<__mmask16>(nv >= 16 ? 0xffffu : (1u << nv) - 1u);
    const auto m1 = static_cast<__mmask16>(nv <= 16 ? 0u : nv >= 32 ? 0xffffu : (1u << (nv - 16)) - 1u);
    for (Index qm = 0; qm < mp; ++qm) {
      const std::uint32_t* ap = a.panel(qm);
      const int mv = static_cast<int>(std::min(Packed::kAmxRows, m - qm * Packed::kAmxRows));
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (Index kc = 0; kc < chunks; ++kc) {
        _tile_loadd(4, ap + kc * 512, 64);
        _tile_loadd(5, ap + kc * 512 + 256, 64);
        _tile_loadd(6, bp + kc * 16 * kNr, kNr * 4);
        _tile_loadd(7, bp + kc * 16 * kNr + 16, kNr * 4);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
      float* cq = c + qm * Packed::kAmxRows * ldc + qn * kNr;
      if (!accumulate && mv == 32 && nv == 32) {  // a whole block: straight into C
        const long c_bytes = static_cast<long>(ldc * 4);
        _tile_stored(0, cq, c_bytes);
        _tile_stored(1, cq + 16, c_bytes);
        _tile_stored(2, cq + 16 * ldc, c_bytes);
        _tile_stored(3, cq + 16 * ldc + 16, c_bytes);
        if constexpr (kMax) {
          for (int i = 0; i < 32; ++i) {
            const __m512i v0 = _mm512_loadu_si512(cq + i * ldc), v1 = _mm512_loadu_si512(cq + i * ldc + 16);
            mx = _mm512_max_epu32(mx, _mm512_and_si512(v0, magnitude));
            mx = _mm512_max_epu32(mx, _mm512_and_si512(v1, magnitude));
          }
        }
        continue;
      }
      _tile_stored(0, t, 128);
      _tile_stored(1, t + 16, 128);
      _tile_stored(2, t + 16 * 32, 128);
      _tile_stored(3, t + 16 * 32 + 16, 128);
      for (int i = 0; i < mv; ++i)
        store_row<kMax>(cq + i * ldc, _mm512_load_ps(t + i * 32), _mm512_load_ps(t + i * 32 + 16), accumulate, m0, m1, mx);
    }
  }
  if constexpr (kMax) _mm512_storeu_si512(abs_max, mx);
  _tile_release();
}

// The steps panel qn of an upper-triangular B needs: its columns j < (qn + 1)·32 have no
// entry below row j, so its steps past k = (qn + 1)·32 (a pair of k per step for bfloat16)
// add only zeros.
constexpr Index upper_steps(Index qn, Index steps, bool bf16) { return std::min(steps, (qn + 1) * kNr / (bf16 ? 2 : 1)); }

// Steps of a slice along K (tiles()): 128 steps of a B panel are 16 KiB.
constexpr Index kSliceSteps = 128;

// Every tile of C = A B, in the one tile kernel chosen for the product (kAvx2: the AVX2
// float32 tile).
template <bool kBf16, bool kMax, bool kAvx2 = false>
void tiles(const Packed& a, const Packed& b, float* c, Index ldc, bool accumulate, std::uint32_t* lanes,
           bool upper_b = false) {
  static_assert(!(kBf16 && kAvx2), "bfloat16 products need AVX512_BF16");
  const Index m = a.rows(), n = b.rows();
  const Index mp = (m + kMr - 1) / kMr, np = (n + kNr - 1) / kNr;
  thread_local std::vector<float> sums;  // the tiles' sums between slices along K
  for (Index qn = 0; qn < np; ++qn) {
    const Index steps = upper_b ? upper_steps(qn, a.steps(), kBf16) : a.steps();
    const std::uint32_t* bp = b.panel(qn);
    const int nv = static_cast<int>(std::min(kNr, n - qn * kNr));
    if (!kAvx2 && mp > 1 && steps > kSliceSteps) {
      // Slices of kSliceSteps steps: the slice of the B panel (16 KiB) stays in L1 for
      // every panel of A instead of coming from L2 for each.
      if (sums.size() < static_cast<std::size_t>(mp * kMr * kNr)) sums.resize(static_cast<std::size_t>(mp * kMr * kNr));
      for (Index s0 = 0; s0 < steps; s0 += kSliceSteps) {
        const Index len = std::min(kSliceSteps, steps - s0);
        for (Index qm = 0; qm < mp; ++qm) {
          const int mv = static_cast<int>(std::min(kMr, m - qm * kMr));
          float* t = sums.data() + qm * kMr * kNr;
          tile<kBf16, kMax>(len, a.panel(qm) + s0 * kMr, bp + s0 * kNr, c + qm * kMr * ldc + qn * kNr, ldc, accumulate, mv,
                            nv, lanes, s0 > 0 ? t : nullptr, s0 + len < steps ? t : nullptr);
        }
      }
      continue;
    }
    for (Index qm = 0; qm < mp; ++qm) {
      const int mv = static_cast<int>(std::min(kMr, m - qm * kMr));
      if constexpr (kAvx2) tile_avx2<kMax>(steps, a.panel(qm), bp, c + qm * kMr * ldc + qn * kNr, ldc, accumulate, mv, nv, lanes);
      else tile<kBf16, kMax>(steps, a.panel(qm), bp, c + qm * kMr * ldc + qn * kNr, ldc, accumulate, mv, nv, lanes);
    }
  }
}

}  // namespace

void multiply(const Packed& a, const Packed& b, float* c, Index ldc, bool accumulate, float* abs_max) {
  if (a.precision() != b.precision() || a.depth() != b.depth())
    throw std::invalid_argument("matmul::multiply: operands packed with different precisions or depths");
  const bool bf16 = a.precision() == Precision::kMedium;
  const bool avx2 = !use_avx512();
  if (a.amx_rows() && b.stride() % 16 != 0)
    throw std::invalid_argument("matmul::multiply: an AMX A operand with a B packed outside kernel variant amxbf16");
  if (a.amx_rows()) {
    if (abs_max == nullptr) {
      amx_tiles<false>(a, b, c, ldc, accumulate, nullptr);
      return;
    }
    std::uint32_t lanes[16] = {};
    lanes[0] = word_of(std::fabs(*abs_max));
    amx_tiles<true>(a, b, c, ldc, accumulate, lanes);
    *abs_max = std::bit_cast<float>(*std::max_element(lanes, lanes + 16));
    return;
  }
  if (abs_max == nullptr) {
    if (bf16) tiles<true, false>(a, b, c, ldc, accumulate, nullptr);
    else if (avx2) tiles<false, false, true>(a, b, c, ldc, accumulate, nullptr);
    else tiles<false, false>(a, b, c, ldc, accumulate, nullptr);
    return;
  }
  std::uint32_t lanes[16] = {};
  lanes[0] = word_of(std::fabs(*abs_max));
  if (bf16) tiles<true, true>(a, b, c, ldc, accumulate, lanes);
  else if (avx2) tiles<false, true, true>(a, b, c, ldc, accumulate, lanes);
  else tiles<false, true>(a, b, c, ldc, accumulate, lanes);
  *abs_max = std::bit_cast<float>(*std::max_element(lanes, lanes + 16));
}

void multiply_upper(const Packed& a, const Packed& b, float* c, Index ldc) {
  if (a.precision() != b.precision() || a.depth() != b.depth())
    throw std::invalid_argument("matmul::multiply_upper: operands packed with different precisions or depths");
  if (a.amx_rows()) multiply(a, b, c, ldc);  // the whole product: AMX tiles skip no steps
  else if (a.precision() == Precision::kMedium) tiles<true, false>(a, b, c, ldc, false, nullptr, true);
  else if (!use_avx512()) tiles<false, false, true>(a, b, c, ldc, false, nullptr, true);
  else tiles<false, false>(a, b, c, ldc, false, nullptr, true);
}

void multiply_upper_minus(const Packed& a, const float* shift, const Packed& b, float* c, Index ldc) {
  if (a.precision() != Precision::kHighest || b.precision() != Precision::kHighest || a.depth() != b.depth())
    throw std::invalid_argument("matmul::multiply_upper_minus: float32 (kHighest) operands of one depth only");
  const Index m = a.rows(), n = b.rows(), steps = a.steps();
  const Index mp = (m + kMr - 1) / kMr, np = (n + kNr - 1) / kNr;
  thread_local std::vector<std::uint32_t> shifted;
  if (static_cast<Index>(shifted.size()) < kMr * steps) shifted.resize(static_cast<std::size_t>(kMr * steps));
  const bool avx2 = !use_avx512();
  // Panel by panel of A: its shifted words stay in L1 for every panel of B.
  for (Index qm = 0; qm < mp; ++qm) {
    minus_steps(a.panel(qm), shifted.data(), steps, shift);
    const int mv = static_cast<int>(std::min(kMr, m - qm * kMr));
    for (Index qn = 0; qn < np; ++qn) {
      const Index sq = upper_steps(qn, steps, false);
      const int nv = static_cast<int>(std::min(kNr, n - qn * kNr));
      float* cq = c + qm * kMr * ldc + qn * kNr;
      if (avx2) tile_avx2<false>(sq, shifted.data(), b.panel(qn), cq, ldc, false, mv, nv, nullptr);
      else tile<false, false>(sq, shifted.data(), b.panel(qn), cq, ldc, false, mv, nv, nullptr);
    }
  }
}

void multiply_lower_tn(Precision p, const float* u, const float* v, Index n, Index d, Index ld, float* c,
                       std::vector<Packed>& pa, std::vector<Packed>& pb) {
  const Index blocks = (d + kLowerBlock - 1) / kLowerBlock;
  pa.resize(static_cast<std::size_t>(blocks));
  pb.resize(static_cast<std::size_t>(blocks));
  for (Index q = 0; q < blocks; ++q) {
    const Index f0 = q * kLowerBlock, w = std::min(kLowerBlock, d - f0);
    pa[static_cast<std::size_t>(q)].pack_a(p, u + f0, w, n, 1, ld);
    pb[static_cast<std::size_t>(q)].pack_b(p, v + f0, n, w, ld, 1);
  }
  multiply_lower_packed(pa, pb, d, c);
}

void multiply_lower_packed(const std::vector<Packed>& pa, const std::vector<Packed>& pb, Index d, float* c) {
  const Index blocks = (d + kLowerBlock - 1) / kLowerBlock;
  if (static_cast<Index>(pa.size()) < blocks || static_cast<Index>(pb.size()) < blocks)
    throw std::invalid_argument("matmul::multiply_lower_packed: fewer packed blocks than the features need");
  for (Index r = 0; r < blocks; ++r)
    for (Index q = 0; q <= r; ++q)
      multiply(pa[static_cast<std::size_t>(r)], pb[static_cast<std::size_t>(q)], c + r * kLowerBlock * d + q * kLowerBlock, d);
}

}  // namespace latent::matmul
