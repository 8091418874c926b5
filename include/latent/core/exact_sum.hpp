#pragma once
/// \file Reproducible summation (docs/ARCHITECTURE.md §5.3), after the binned/pre-rounded schemes of
/// Demmel & Nguyen 2015 (ReproBLAS), simplified to integer bins.
///
/// Every double is split on one global grid of 32-bit bins (bin j holds bits
/// [32j, 32j+32) of the value scaled by 2^1074); a double's 53-bit significand touches at
/// most three consecutive bins. A cell keeps the integer sums of the three bins below and
/// including the highest bin seen. The result is the sum of every value's slices in those
/// three bins: a pure function of the multiset of values, whatever the order or grouping
/// of additions and merges. Relative precision is at least 2^-64 of the largest addend
/// (far below double rounding). Headroom: up to 2^30 additions per cell.
#include <cstdint>
#include <span>
#include <vector>

namespace latent {

/// One accumulator cell. `top` is the highest bin index (kEmptyTop when nothing was added);
/// limb[2] holds bin `top`, limb[1] bin `top-1`, limb[0] bin `top-2`.
struct ExactCell {
  std::int64_t top;
  std::int64_t limb[3];
};
inline constexpr std::int64_t kEmptyTop = -1;

/// Adds one double to a cell. NaN and Inf poison the cell (finalise gives NaN).
void exact_add(ExactCell& cell, double value) noexcept;
/// cell_inout += cell_in (associative and commutative).
void exact_merge(ExactCell& inout, const ExactCell& in) noexcept;
/// The double nearest to the cell's exact sum.
double exact_value(const ExactCell& cell) noexcept;

/// A vector of exact accumulators: the unit of reduction inside and across ranks.
class ExactSum {
 public:
  ExactSum() = default;
  explicit ExactSum(std::size_t n) : cells_(n, empty_cell()) {}

  std::size_t size() const noexcept { return cells_.size(); }
  /// this[i] += values[i] for every i. Requires values.size() == size().
  void add(std::span<const double> values) noexcept;
  /// this[i] += other[i]. Requires equal sizes.
  void merge(const ExactSum& other) noexcept;
  /// Rounded sums, one double per cell.
  std::vector<double> values() const;
  std::span<ExactCell> cells() noexcept { return cells_; }
  std::span<const ExactCell> cells() const noexcept { return cells_; }

  static constexpr ExactCell empty_cell() noexcept { return ExactCell{kEmptyTop, {0, 0, 0}}; }

 private:
  std::vector<ExactCell> cells_;
};

}  // namespace latent
