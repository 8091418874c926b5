#include "latent/core/exact_sum.hpp"

#include <immintrin.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <limits>

namespace latent {
namespace {

__extension__ typedef __int128 Int128;
__extension__ typedef unsigned __int128 UInt128;

constexpr std::int64_t kPoisonTop = std::numeric_limits<std::int64_t>::max();
constexpr std::uint64_t kMask32 = 0xffffffffULL;

struct Slices {
  std::int64_t top;     // bin of the most significant slice
  std::int64_t s[3];    // s[2] in bin top, s[1] in top-1, s[0] in top-2 (signed)
};

// Splits |value| = m * 2^(p - 1074) (m < 2^53, p >= 0) on the 32-bit bin grid.
inline Slices slice(double value) noexcept {
  const auto bits = std::bit_cast<std::uint64_t>(value);
  const bool negative = (bits >> 63) != 0;
  const auto biased = static_cast<std::int64_t>((bits >> 52) & 0x7ff);
  std::uint64_t m = bits & ((1ULL << 52) - 1);
  std::int64_t p = 0;  // exponent of the least significant significand bit, offset by 1074
  if (biased == 0) {
    p = 0;  // subnormal: value = m * 2^-1074
  } else {
    m |= 1ULL << 52;
    p = biased - 1;  // value = m * 2^(biased - 1075) = m * 2^(p - 1074)
  }
  const std::int64_t high_bit = p + 63 - std::countl_zero(m);  // m != 0 here
  std::int64_t top = high_bit / 32;
  if (top < 2) top = 2;
  const std::int64_t shift = p - 32 * (top - 2);  // in [0, 64)
  const UInt128 v = static_cast<UInt128>(m) << shift;
  Slices out{top, {static_cast<std::int64_t>(static_cast<std::uint64_t>(v) & kMask32),
                   static_cast<std::int64_t>(static_cast<std::uint64_t>(v >> 32) & kMask32),
                   static_cast<std::int64_t>(static_cast<std::uint64_t>(v >> 64) & kMask32)}};
  if (negative)
    for (auto& s : out.s) s = -s;
  return out;
}

// Moves a cell's bins up so that its top becomes new_top (>= top); lower bins drop out.
inline void raise(ExactCell& c, std::int64_t new_top) noexcept {
  const std::int64_t d = new_top - c.top;
  if (d <= 0) return;
  std::int64_t next[3] = {0, 0, 0};
  for (int j = 0; j < 3; ++j)
    if (j + d <= 2) next[j] = c.limb[j + d];
  c.limb[0] = next[0];
  c.limb[1] = next[1];
  c.limb[2] = next[2];
  c.top = new_top;
}

inline void add_aligned(ExactCell& c, std::int64_t top, const std::int64_t* s) noexcept {
  // s[j] lives in bin top-2+j; the cell holds bins c.top-2 .. c.top with c.top >= top.
  const std::int64_t offset = c.top - top;
  for (int j = 0; j < 3; ++j) {
    const std::int64_t k = j - offset;
    if (k >= 0) c.limb[k] += s[j];
  }
}

}  // namespace

void exact_add(ExactCell& cell, double value) noexcept {
  if (value == 0.0 || cell.top == kPoisonTop) return;
  if (!std::isfinite(value)) {
    cell.top = kPoisonTop;
    return;
  }
  const Slices s = slice(value);
  if (cell.top == kEmptyTop) {
    cell.top = s.top;
    cell.limb[0] = s.s[0];
    cell.limb[1] = s.s[1];
    cell.limb[2] = s.s[2];
    return;
  }
  raise(cell, s.top);
  add_aligned(cell, s.top, s.s);
}

void exact_merge(ExactCell& inout, const ExactCell& in) noexcept {
  if (in.top == kEmptyTop || inout.top == kPoisonTop) return;
  if (in.top == kPoisonTop || inout.top == kEmptyTop) {
    inout = in;
    return;
  }
  ExactCell other = in;
  raise(other, inout.top);
  raise(inout, other.top);
  for (int j = 0; j < 3; ++j) inout.limb[j] += other.limb[j];
}

double exact_value(const ExactCell& cell) noexcept {
  if (cell.top == kEmptyTop) return 0.0;
  if (cell.top == kPoisonTop) return std::numeric_limits<double>::quiet_NaN();
  // |limb| < 2^62 (<= 2^30 additions of < 2^32), so the combination fits in 127 bits.
  const Int128 total = (static_cast<Int128>(cell.limb[2]) << 64) +
                         (static_cast<Int128>(cell.limb[1]) << 32) +
                         static_cast<Int128>(cell.limb[0]);
  const auto scale = static_cast<int>(32 * (cell.top - 2) - 1074);
  // Convert through two exact halves to control rounding: hi carries all but 64 low bits.
  const Int128 hi = total >> 64 << 64;
  const Int128 lo = total - hi;  // in [0, 2^64)
  const long double v = static_cast<long double>(hi) + static_cast<long double>(lo);
  return static_cast<double>(std::ldexp(v, scale));
}

namespace {

// The common case of ExactSum::add inline: a normal (finite, nonzero, not subnormal) value
// whose highest bin is the cell's. Its slices are those slice() forms (the significand has
// bit 52 set, so its highest bit is p + 52), added without raise(); everything else (zero,
// NaN/Inf, subnormals, an empty or poisoned cell, another top) takes exact_add(). The same
// sums.
inline void add_one(ExactCell& cell, double value) noexcept {
  const auto bits = std::bit_cast<std::uint64_t>(value);
  const auto biased = static_cast<std::int64_t>((bits >> 52) & 0x7ff);
  if (biased >= 1 && biased <= 0x7fe) {
    const std::int64_t p = biased - 1;
    const std::int64_t top = std::max<std::int64_t>((p + 52) / 32, 2);
    if (top == cell.top) {
      const std::uint64_t m = (bits & ((1ULL << 52) - 1)) | (1ULL << 52);
      const std::int64_t shift = p - 32 * (top - 2);  // in [0, 64)
      const std::uint64_t lo = m << shift;
      const std::uint64_t hi = (m >> 1) >> (63 - shift);  // bits 64.. of m · 2^shift (0 when shift = 0)
      const std::int64_t sign = -static_cast<std::int64_t>(bits >> 63);  // 0 or −1
      const auto s0 = static_cast<std::int64_t>(lo & kMask32), s1 = static_cast<std::int64_t>(lo >> 32),
                 s2 = static_cast<std::int64_t>(hi & kMask32);
      cell.limb[0] += (s0 ^ sign) - sign;
      cell.limb[1] += (s1 ^ sign) - sign;
      cell.limb[2] += (s2 ^ sign) - sign;
      return;
    }
  }
  exact_add(cell, value);
}

// add_one() for values[0, n) into cells[0, n), four at a time in AVX2: where all four take
// the inline case their slices are formed in the lanes as add_one() forms them and added to
// the four cells as one 256-bit {0, s0, s1, s2} each (ExactCell is {top, limb[3]}: 32
// bytes); else the four take add_one(). Integer sums: the same cells either way.
[[gnu::target("avx2")]] void add_span(ExactCell* cells, const double* values, std::size_t n) noexcept {
  static_assert(sizeof(ExactCell) == 32 && offsetof(ExactCell, limb) == 8);
  const __m256i exponent = _mm256_set1_epi64x(0x7ff), mantissa = _mm256_set1_epi64x((1LL << 52) - 1),
                implicit = _mm256_set1_epi64x(1LL << 52), mask32 = _mm256_set1_epi64x(static_cast<long long>(kMask32)),
                one = _mm256_set1_epi64x(1), two = _mm256_set1_epi64x(2), max_normal = _mm256_set1_epi64x(0x7fe),
                c52 = _mm256_set1_epi64x(52), c63 = _mm256_set1_epi64x(63), zero = _mm256_setzero_si256();
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    ExactCell* c = cells + i;
    const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(values + i));
    const __m256i biased = _mm256_and_si256(_mm256_srli_epi64(bits, 52), exponent);
    const __m256i p = _mm256_sub_epi64(biased, one);  // in [−1, 0x7fe]
    // normal: 0 ≤ p ≤ 0x7fd, i.e. p > −1 and p < 0x7fe
    const __m256i normal = _mm256_andnot_si256(_mm256_cmpgt_epi64(p, _mm256_sub_epi64(max_normal, one)),
                                               _mm256_cmpgt_epi64(p, _mm256_set1_epi64x(-1)));
    __m256i top = _mm256_srli_epi64(_mm256_add_epi64(p, c52), 5);  // p + 52 ≥ 51 > 0 where normal
    top = _mm256_blendv_epi8(top, two, _mm256_cmpgt_epi64(two, top));
    const __m256i tops = _mm256_set_epi64x(c[3].top, c[2].top, c[1].top, c[0].top);
    const __m256i ok = _mm256_and_si256(normal, _mm256_cmpeq_epi64(top, tops));
    if (_mm256_movemask_pd(_mm256_castsi256_pd(ok)) != 0xf) {
      for (std::size_t l = 0; l < 4; ++l) add_one(c[l], values[i + l]);
      continue;
    }
    const __m256i m = _mm256_or_si256(_mm256_and_si256(bits, mantissa), implicit);
    const __m256i shift = _mm256_sub_epi64(p, _mm256_slli_epi64(_mm256_sub_epi64(top, two), 5));  // in [0, 64)
    const __m256i lo = _mm256_sllv_epi64(m, shift);
    const __m256i hi = _mm256_srlv_epi64(_mm256_srli_epi64(m, 1), _mm256_sub_epi64(c63, shift));
    const __m256i sign = _mm256_cmpgt_epi64(zero, bits);  // −1 where negative
    const auto signed_of = [&](__m256i v) { return _mm256_sub_epi64(_mm256_xor_si256(v, sign), sign); };
    const __m256i s0 = signed_of(_mm256_and_si256(lo, mask32));
    const __m256i s1 = signed_of(_mm256_srli_epi64(lo, 32));
    const __m256i s2 = signed_of(_mm256_and_si256(hi, mask32));
    // Rows {0, s0, s1, s2} of lanes 0..3.
    const __m256i t0 = _mm256_unpacklo_epi64(zero, s0), t1 = _mm256_unpackhi_epi64(zero, s0);
    const __m256i t2 = _mm256_unpacklo_epi64(s1, s2), t3 = _mm256_unpackhi_epi64(s1, s2);
    const __m256i add[4] = {_mm256_permute2x128_si256(t0, t2, 0x20), _mm256_permute2x128_si256(t1, t3, 0x20),
                            _mm256_permute2x128_si256(t0, t2, 0x31), _mm256_permute2x128_si256(t1, t3, 0x31)};
    for (int l = 0; l < 4; ++l) {
      auto* cell = reinterpret_cast<__m256i*>(c + l);
      _mm256_storeu_si256(cell, _mm256_add_epi64(_mm256_loadu_si256(cell), add[l]));
    }
  }
  for (; i < n; ++i) add_one(cells[i], values[i]);
}

}  // namespace

void ExactSum::add(std::span<const double> values) noexcept { add_span(cells_.data(), values.data(), values.size()); }

void ExactSum::merge(const ExactSum& other) noexcept {
  for (std::size_t i = 0; i < cells_.size(); ++i) exact_merge(cells_[i], other.cells_[i]);
}

std::vector<double> ExactSum::values() const {
  std::vector<double> out(cells_.size());
  for (std::size_t i = 0; i < cells_.size(); ++i) out[i] = exact_value(cells_[i]);
  return out;
}

}  // namespace latent
