#include "coordinate.hpp"

#include <fmt/format.h>

#include <limits>

#include "fields.hpp"
#include "latent/core/error.hpp"
#include "latent/io/import/split.hpp"

namespace latent::io::importers {

CoordinateReader::CoordinateReader(const std::string& path, Kind kind, bool words_by_docs)
    : s_(path), kind_(kind), words_by_docs_(words_by_docs) {
  if (kind_ == Kind::kUci)
    read_uci_header();
  else
    read_mm_header();
  header_end_ = s_.tell();
  header_lines_ = line_no_;
}

CoordinateReader::CoordinateReader(const std::string& path, const CoordinateReader& header, ByteRange range,
                                   Index doc_begin, Index doc_end, std::vector<std::int64_t> prepend)
    : s_(path, range),
      kind_(header.kind_),
      words_by_docs_(header.words_by_docs_),
      pattern_(header.pattern_),
      line_no_(s_.lines_before()),
      docs_(header.docs_),
      words_(header.words_),
      nnz_(header.nnz_),
      next_doc_(doc_begin),
      part_(true),
      doc_end_(doc_end),
      prepend_(std::move(prepend)) {}

CoordinateReader::PartScan CoordinateReader::scan() {
  PartScan r;
  while (true) {
    read_entry();
    if (!has_pending_) break;
    has_pending_ = false;
    if (r.entries++ == 0) r.first_doc = pending_doc_, r.first_line = line_no_;
    if (pending_doc_ != r.last_doc) r.trailing.clear();
    r.last_doc = pending_doc_;
    r.trailing.insert(r.trailing.end(), {pending_doc_, pending_word_, pending_count_});
  }
  return r;
}

std::string CoordinateReader::order_error(Index doc, Index last) const {
  if (kind_ == Kind::kUci)
    return fmt::format("document {} after document {}: entries must be grouped by document in ascending order", doc, last);
  return fmt::format("document {} after document {}: entries must be sorted by document ({}); sort the entry lines "
                     "first, for example with `sort -s -n -k{},{}` on the lines after the size line",
                     doc, last, words_by_docs_ ? "column 2" : "column 1", words_by_docs_ ? 2 : 1, words_by_docs_ ? 2 : 1);
}

bool CoordinateReader::next(Document& doc) {
  doc.clear();
  if (part_) {
    if (next_doc_ >= doc_end_) return false;
    for (std::size_t e = 0; e + 2 < prepend_.size(); e += 3)
      if (prepend_[e] == next_doc_ && prepend_[e + 2] > 0) {
        doc.ids.push_back(static_cast<std::int32_t>(prepend_[e + 1]));
        doc.counts.push_back(prepend_[e + 2]);
      }
  } else if (next_doc_ > docs_) {
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
    if (!part_ && entries_ != nnz_)
      throw_input(fmt::format("input {}: the header declares {} entries but the file has {} (truncated?)", s_.path(),
                              nnz_, entries_));
    return;
  }
  if (++entries_ > nnz_ && !part_) fail(fmt::format("more entries than the {} declared in the header", nnz_));
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
  if (doc < last_doc_) fail(order_error(doc, last_doc_));
  last_doc_ = doc;
  pending_doc_ = doc;
  pending_word_ = static_cast<std::int32_t>(word - 1);
  pending_count_ = count;
  has_pending_ = true;
}

}  // namespace latent::io::importers

namespace latent::io::importers {

std::unique_ptr<CoordinateReader> open_coordinate_part(const comm::Communicator& comm, const std::string& path,
                                                       CoordinateReader::Kind kind, bool words_by_docs,
                                                       Index& local_documents, Index& num_words) {
  std::unique_ptr<CoordinateReader> whole;
  std::uint64_t size = 0;
  bool split = false;
  comm::run_agreed(comm, [&] {
    whole = std::make_unique<CoordinateReader>(path, kind, words_by_docs);  // every rank reads the header
    split = comm.size() > 1 && splittable_file(path, size);
  });
  num_words = whole->num_words();
  const Index D = whole->num_documents();
  if (!split) {  // gzipped (or one rank): rank 0 reads it whole
    local_documents = comm.is_root() ? D : 0;
    if (!comm.is_root()) return nullptr;
    return whole;
  }
  // The entry lines after the header, cut into P byte ranges.
  const std::uint64_t h = whole->header_end(), n = size - h, p = static_cast<std::uint64_t>(comm.size()),
                      r = static_cast<std::uint64_t>(comm.rank());
  ByteRange range{h + n / p * r + n % p * r / p, h + n / p * (r + 1) + n % p * (r + 1) / p, 0};
  Index lines = 0;
  comm::run_agreed(comm, [&] {
    ByteStream in(path, range);
    std::string line;
    while (in.getline(line)) ++lines;
  });
  range.lines_before = whole->header_lines() + exclusive_prefix(comm, lines, nullptr);
  CoordinateReader::PartScan mine;
  comm::run_agreed(comm, [&] {
    CoordinateReader part(path, *whole, range, 1, 1, {});
    mine = part.scan();
  });
  const std::int64_t facts[4] = {mine.entries, mine.first_doc, mine.last_doc, mine.first_line};
  const auto all = comm.allgatherv(std::span<const std::int64_t>(facts, 4));
  const auto at = [&](int q, int k) { return all[4 * static_cast<std::size_t>(q) + static_cast<std::size_t>(k)]; };
  // Agreed checks over the parts: the entry count, the document order across cuts.
  comm::run_agreed(comm, [&] {
    Index entries = 0, last = 0;
    for (int q = 0; q < comm.size(); ++q) {
      entries += at(q, 0);
      if (at(q, 0) == 0) continue;
      if (at(q, 1) < last)
        throw_input(fmt::format("input {}, line {}: {}", path, at(q, 3), whole->order_error(at(q, 1), last)));
      last = at(q, 2);
    }
    if (entries != whole->num_nonzeros())
      throw_input(fmt::format("input {}: the header declares {} entries but the file has {}{}", path,
                              whole->num_nonzeros(), entries, entries < whole->num_nonzeros() ? " (truncated?)" : ""));
  });
  // Rank q yields documents [b_q, b_{q+1}): from the first document of its entries (rank 0
  // from 1); a document cut between ranks goes to the later one, which receives the
  // earlier ranks' entries of it.
  std::vector<Index> b(static_cast<std::size_t>(comm.size()) + 1, D + 1);
  for (int q = comm.size() - 1; q >= 0; --q)
    b[static_cast<std::size_t>(q)] = q == 0 ? 1 : at(q, 0) > 0 ? at(q, 1) : b[static_cast<std::size_t>(q) + 1];
  const Index begin = b[r], end = b[r + 1];
  const bool foreign = mine.entries > 0 && mine.last_doc >= end;
  const auto moved = comm.allgatherv(std::span<const std::int64_t>(
      foreign ? mine.trailing.data() : nullptr, foreign ? mine.trailing.size() : 0));
  std::vector<std::int64_t> prepend;
  for (std::size_t e = 0; e + 2 < moved.size(); e += 3)
    if (moved[e] >= begin && moved[e] < end) prepend.insert(prepend.end(), {moved[e], moved[e + 1], moved[e + 2]});
  local_documents = end - begin;
  return std::make_unique<CoordinateReader>(path, *whole, range, begin, end, std::move(prepend));
}

}  // namespace latent::io::importers
