#include "latent/core/exact_sum.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
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

void ExactSum::add(std::span<const double> values) noexcept {
  // The common case inline: a normal (finite, nonzero, not subnormal) value whose highest
  // bin is the cell's. Its slices are those slice() forms (the significand has bit 52 set,
  // so its highest bit is p + 52), added without raise(); everything else (zero, NaN/Inf,
  // subnormals, an empty or poisoned cell, another top) takes exact_add(). The same sums.
  ExactCell* cells = cells_.data();
  for (std::size_t i = 0; i < values.size(); ++i) {
    const auto bits = std::bit_cast<std::uint64_t>(values[i]);
    const auto biased = static_cast<std::int64_t>((bits >> 52) & 0x7ff);
    ExactCell& cell = cells[i];
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
        continue;
      }
    }
    exact_add(cell, values[i]);
  }
}

void ExactSum::merge(const ExactSum& other) noexcept {
  for (std::size_t i = 0; i < cells_.size(); ++i) exact_merge(cells_[i], other.cells_[i]);
}

std::vector<double> ExactSum::values() const {
  std::vector<double> out(cells_.size());
  for (std::size_t i = 0; i < cells_.size(); ++i) out[i] = exact_value(cells_[i]);
  return out;
}

}  // namespace latent
