#include "latent/io/import/binary_rows.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "latent/core/error.hpp"

namespace latent::io::importers {

void check_dimensions(const std::string& path, Index rows, Index features) {
  if (features == 0 && rows >= 0)
    throw_input(fmt::format("input {}: has 0 columns ({} rows x 0 features in the header); every sample needs at least "
                            "one feature", path, rows));
  if (rows < 0 || features < 1 || features > kMaxFeatures)
    throw_input(fmt::format("input {}: implausible dimensions in the header ({} rows x {} features; at most {} features)",
                            path, rows, features, kMaxFeatures));
}

void BinaryRowReader::select_rows(Index begin, Index end) {
  if (done_ != 0 || begin < 0 || begin > end || end > rows_)
    throw Error(ErrorKind::kInternal, fmt::format("select_rows({}, {}) of {} rows after {} read", begin, end, rows_, done_));
  s_.skip(static_cast<std::uint64_t>(begin) * static_cast<std::uint64_t>(d_) * size_,
          fmt::format("rows 0-{}", begin - 1));
  done_ = begin;
  rows_ = end;
}

Index BinaryRowReader::read(RowMatrix& out, Index max) {
  const Index n = std::min(max, rows_ - done_);
  if (n <= 0) return 0;
  buf_.resize(static_cast<std::size_t>(n * d_) * size_);
  s_.read(buf_.data(), buf_.size(), fmt::format("rows {}-{}", done_, done_ + n - 1));
  out.resize(max, d_);
  for (Index i = 0; i < n * d_; ++i) out.data()[i] = scale_ * value(buf_.data() + static_cast<std::size_t>(i) * size_);
  done_ += n;
  return n;
}

}  // namespace latent::io::importers
