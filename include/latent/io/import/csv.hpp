#pragma once
/// \file CSV (gzipped or plain, or standard input "-") as people write it (docs/FORMATS.md,
/// "CSV"): RFC 4180 parsed by libcsv (Debian libcsv-dev), so fields may be quoted and a
/// quoted field may hold the delimiter, doubled quotes ("") and newlines; CRLF or LF line
/// ends; a UTF-8 byte order mark before the first field is dropped; any one-byte delimiter
/// (a tab too). Blanks around an unquoted field are trimmed. Empty lines are skipped.
///
/// Columns (pandas' read_csv conventions): `usecols` keeps some columns of the file,
/// `index_col` drops a column of row names, `label_column` makes a column the rows' labels
/// (an integer per row). A column is named by its header name or by its 0-based position
/// in the file (a token made of digits only is a position). Only the feature and label
/// columns are parsed: other columns may hold any text. A feature field that is empty, NA,
/// nan or NaN is NaN (a missing value, which fitting rejects unless told otherwise); any
/// other must be a number (strtod's syntax).
///
/// A header (auto: the first record is a header iff one of its feature or label fields is
/// not a number; always when a column is named) gives the column names. Every record must
/// have as many fields as the first one.
///
/// Errors name the file, the line and the field, both 1-based; the line is the physical
/// line of the file where the record starts.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "latent/io/import/byte_stream.hpp"
#include "latent/io/import/reader.hpp"

namespace latent::io::importers {

/// The columns of a CSV file, found by the first constructor of CsvReader from its first
/// record and the options: what each field of a record is.
struct CsvLayout {
  static constexpr int kSkip = -1;   ///< a field not read (not in usecols, or index_col)
  static constexpr int kLabel = -2;  ///< the label column
  std::vector<int> role;             ///< per field of a record: a feature index, kSkip or kLabel
  std::vector<std::string> names;    ///< the header's fields (empty without a header)
  Index features = 0;                ///< D
  bool header = false;               ///< the first record is a header
  bool labels = false;               ///< a label column is read
};

/// The rows of a CSV file, multiplied by `scale` (options.scale; NaN: 1). Throws
/// Error(kInput) naming the file for an empty file, "input PATH, line L, field F: 'X' is
/// not a number", "input PATH, line L: expected N fields, found M", a malformed quoted
/// field, and a column that does not exist; Error(kUsage) for a column named without a
/// header (--header no).
class CsvReader final : public DenseReader {
 public:
  /// Reads the first record (the header or the first row) and finds the layout.
  CsvReader(const std::string& path, const DenseOptions& options);
  /// The rows of the records of `range` only (a parallel import, byte_stream.hpp), of a
  /// file whose layout the constructor above found: the range must start and end at
  /// record starts (csv_record_starts); with layout.header the range starting at byte 0
  /// skips the file's first record. Errors name the line of the file.
  CsvReader(const std::string& path, const DenseOptions& options, const CsvLayout& layout, ByteRange range);
  ~CsvReader() override;
  CsvReader(const CsvReader&) = delete;
  CsvReader& operator=(const CsvReader&) = delete;

  Index num_features() const override { return layout_.features; }
  const CsvLayout& layout() const { return layout_; }
  /// The first record of the file was a header (the first constructor).
  bool header_line() const { return layout_.header; }
  Index read(RowMatrix& out, Index max) override;
  const std::vector<std::int64_t>* row_labels() const override { return layout_.labels ? &out_labels_ : nullptr; }

  struct State;  // libcsv's parser and the record being read (csv.cpp)

 private:
  // Feeds lines to libcsv until a record is complete (true) or the input ends (false).
  bool next_record();
  // Throws the error the callbacks recorded, if any.
  void check() const;
  ByteStream s_;
  DenseOptions options_;
  CsvLayout layout_;
  double scale_;
  std::unique_ptr<State> st_;
  std::vector<std::int64_t> out_labels_;
  bool pending_first_ = false;  // the first record is a row, parsed but not yet returned
};

/// Counts the lines of [range) of `path` into `lines` and tells whether any of them holds
/// an odd number of quotes ("). If none does, no quoted field holds a newline, so every
/// line start is a record start and byte ranges cut at line starts cut no record; else
/// see csv_record_starts. Reads the range once. Throws as ByteStream does.
bool csv_odd_quote_lines(const std::string& path, ByteRange range, std::int64_t& lines);

/// For each offset in `cuts` (ascending), the first record start at or after it: 0, or
/// the byte after a newline outside quotes (a quote toggles the state, as RFC 4180's
/// quoted fields and doubled quotes do), or the file's size if none. Reads the file once
/// up to the last cut (rank 0 of a parallel import whose file has quoted newlines).
/// Throws as ByteStream does.
std::vector<std::uint64_t> csv_record_starts(const std::string& path, const std::vector<std::uint64_t>& cuts);

}  // namespace latent::io::importers
