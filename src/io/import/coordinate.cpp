#include "coordinate.hpp"

#include <fmt/format.h>

#include <limits>

#include "fields.hpp"
#include "latent/core/error.hpp"

namespace latent::io::importers {

CoordinateReader::CoordinateReader(const std::string& path, Kind kind, bool words_by_docs)
    : s_(path), kind_(kind), words_by_docs_(words_by_docs) {
  if (kind_ == Kind::kUci)
    read_uci_header();
  else
    read_mm_header();
}

bool CoordinateReader::next(Document& doc) {
  doc.clear();
  if (next_doc_ > docs_) {
    if (!at_end_ && !has_pending_) read_entry();  // checks that nothing follows
    return false;
  }
  while (true) {
    if (!has_pending_ && !at_end_) read_entry();
    if (!has_pending_ || pending_doc_ != next_doc_) break;
    if (pending_count_ > 0) {
      doc.ids.push_back(pending_word_);
      doc.counts.push_back(pending_count_);
    }
    has_pending_ = false;
  }
  ++next_doc_;
  return true;
}

void CoordinateReader::fail(const std::string& message) const { bad_line("input", s_.path(), line_no_, message); }

bool CoordinateReader::next_content_line() {
  while (s_.getline(line_)) {
    ++line_no_;
    if (blank(line_)) continue;
    if (kind_ == Kind::kMatrixMarket && line_[0] == '%') continue;
    return true;
  }
  return false;
}

std::int64_t CoordinateReader::header_number(const char* name, std::int64_t max) {
  if (!next_content_line()) throw_input(fmt::format("input {}: ends before the header line with {}", s_.path(), name));
  split_fields(line_, fields_);
  std::int64_t v = 0;
  if (fields_.size() != 1 || !parse_int(fields_[0], v) || v < 0)
    fail(fmt::format("expected the header line with {} (one non-negative integer), found {}", name, quote(line_)));
  if (v > max) fail(fmt::format("{} = {} is implausibly large (at most {})", name, v, max));
  return v;
}

void CoordinateReader::read_uci_header() {
  docs_ = header_number("D (the number of documents)", kMaxDocuments);
  words_ = header_number("W (the number of words in the vocabulary)", kMaxWordId + 1);
  nnz_ = header_number("NNZ (the number of docID wordID count lines)", std::numeric_limits<std::int64_t>::max());
}

void CoordinateReader::read_mm_header() {
  if (!s_.getline(line_)) throw_input("input " + s_.path() + ": is empty (expected a %%MatrixMarket banner)");
  line_no_ = 1;
  split_fields(line_, fields_);
  std::vector<std::string> f;
  for (const auto field : fields_) f.push_back(ascii_lower(field));
  if (f.empty() || f[0] != "%%matrixmarket")
    fail("expected the banner '%%MatrixMarket matrix coordinate integer general', found " + quote(line_));
  if (f.size() != 5 || f[1] != "matrix") fail("malformed banner " + quote(line_) + " (expected 5 fields)");
  if (f[2] != "coordinate") fail("only sparse 'coordinate' Matrix Market files hold counts (found " + quote(f[2]) + ")");
  if (f[3] == "pattern")
    pattern_ = true;
  else if (f[3] != "integer" && f[3] != "real" && f[3] != "double")
    fail("field must be integer, real or pattern (found " + quote(f[3]) + ")");
  if (f[4] != "general") fail("only 'general' matrices are supported (found " + quote(f[4]) + ")");
  if (!next_content_line()) throw_input("input " + s_.path() + ": ends before the size line 'rows columns entries'");
  split_fields(line_, fields_);
  std::int64_t rows = 0, cols = 0;
  if (fields_.size() != 3 || !parse_int(fields_[0], rows) || !parse_int(fields_[1], cols) ||
      !parse_int(fields_[2], nnz_) || rows < 0 || cols < 0 || nnz_ < 0)
    fail("expected the size line 'rows columns entries' (three non-negative integers), found " + quote(line_));
  docs_ = words_by_docs_ ? cols : rows;
  words_ = words_by_docs_ ? rows : cols;
  const char* doc_dim = words_by_docs_ ? "columns (documents)" : "rows (documents)";
  const char* word_dim = words_by_docs_ ? "rows (words)" : "columns (words)";
  if (docs_ > kMaxDocuments) fail(fmt::format("{} {} is implausibly large", docs_, doc_dim));
  if (words_ > kMaxWordId + 1) fail(fmt::format("{} {} exceed the int32 word ids (at most {})", words_, word_dim, kMaxWordId + 1));
}

void CoordinateReader::read_entry() {
  if (!next_content_line()) {
    at_end_ = true;
    if (entries_ != nnz_)
      throw_input(fmt::format("input {}: the header declares {} entries but the file has {} (truncated?)", s_.path(),
                              nnz_, entries_));
    return;
  }
  if (++entries_ > nnz_) fail(fmt::format("more entries than the {} declared in the header", nnz_));
  split_fields(line_, fields_);
  const std::size_t expected = kind_ == Kind::kMatrixMarket && pattern_ ? 2 : 3;
  const char* layout = kind_ == Kind::kUci ? "docID wordID count"
                       : pattern_          ? (words_by_docs_ ? "word document" : "document word")
                                           : (words_by_docs_ ? "word document count" : "document word count");
  if (fields_.size() != expected)
    fail(fmt::format("expected {} fields '{}', found {}", expected, layout, quote(line_)));
  std::int64_t a = 0, b = 0;
  if (!parse_int(fields_[0], a) || !parse_int(fields_[1], b))
    fail(fmt::format("expected integer ids '{}', found {}", layout, quote(line_)));
  const std::int64_t doc = words_by_docs_ ? b : a, word = words_by_docs_ ? a : b;
  if (doc < 1 || doc > docs_) fail(fmt::format("document id {} is outside [1, {}] declared in the header", doc, docs_));
  if (word < 1 || word > words_) fail(fmt::format("word id {} is outside [1, {}] declared in the header", word, words_));
  std::int64_t count = 1;
  if (expected == 3 && !parse_count(fields_[2], count))
    fail(fmt::format("count {} is not a non-negative integer", quote(fields_[2])));
  if (doc < last_doc_) {
    if (kind_ == Kind::kUci)
      fail(fmt::format("document {} after document {}: entries must be grouped by document in ascending order", doc,
                       last_doc_));
    fail(fmt::format("document {} after document {}: entries must be sorted by document ({}); sort the entry lines "
                     "first, for example with `sort -s -n -k{},{}` on the lines after the size line",
                     doc, last_doc_, words_by_docs_ ? "column 2" : "column 1", words_by_docs_ ? 2 : 1,
                     words_by_docs_ ? 2 : 1));
  }
  last_doc_ = doc;
  pending_doc_ = doc;
  pending_word_ = static_cast<std::int32_t>(word - 1);
  pending_count_ = count;
  has_pending_ = true;
}

}  // namespace latent::io::importers
