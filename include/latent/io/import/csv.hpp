#pragma once
/// \file CSV (gzipped or plain): one row per line, fields separated by one delimiter
/// character, surrounding blanks and double quotes trimmed from each field. An empty field
/// and NA, nan or NaN are NaN (a missing value, which fitting rejects unless told
/// otherwise); any other field must parse as a number (strtod). Empty lines are skipped.
/// An optional header line (auto: the first line is a header iff it is not all numbers)
/// fixes D as its number of fields; otherwise the first row does.
#include <string>
#include <vector>

#include "latent/io/import/byte_stream.hpp"
#include "latent/io/import/reader.hpp"

namespace latent::io::importers {

/// The rows of a CSV file, multiplied by `scale` (NaN: 1). Throws Error(kInput) naming the
/// file for an empty file, "input PATH, line L, field F: 'X' is not a number", and "input
/// PATH, line L: expected D fields, found E".
class CsvReader final : public DenseReader {
 public:
  CsvReader(const std::string& path, char delimiter, CsvHeader header, double scale);
  /// The rows of the lines of `range` only (a parallel import, byte_stream.hpp), of a file
  /// whose D and header were found by the constructor above: `header_line` skips the
  /// file's first line if the range starts at byte 0. Errors name the line of the file.
  CsvReader(const std::string& path, char delimiter, Index d, bool header_line, double scale, ByteRange range);
  Index num_features() const override { return d_; }
  /// The first line of the file was a header (the first constructor).
  bool header_line() const { return header_line_; }
  Index read(RowMatrix& out, Index max) override;

 private:
  std::size_t split_count(const std::string& line) const;
  // Empty fields and NA/NaN become NaN. `strict`: throw for a field that is not a number;
  // otherwise return false.
  bool parse(const std::string& line, std::vector<double>& values, bool strict) const;
  ByteStream s_;
  char delimiter_;
  double scale_;
  Index d_ = 0, line_no_ = 0;
  std::vector<double> pending_;
  bool has_pending_ = false, header_line_ = false;
};

}  // namespace latent::io::importers
