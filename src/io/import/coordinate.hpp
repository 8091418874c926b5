#pragma once
// UCI bag-of-words (docword) and Matrix Market coordinate files: (document, word, count)
// triples, 1-based, grouped by document in ascending order. Documents without entries are
// empty documents; the header fixes the number of documents and words. The reader behind
// uci.cpp and mtx.cpp; private to src/io/import.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "latent/comm/communicator.hpp"
#include "latent/io/import/byte_stream.hpp"
#include "latent/io/import/reader.hpp"

namespace latent::io::importers {

class CoordinateReader final : public DocumentReader {
 public:
  enum class Kind { kUci, kMatrixMarket };
  /// Reads and checks the header (UCI: D, W, NNZ lines; Matrix Market: the banner and the
  /// size line). `words_by_docs`: Matrix Market rows are words, columns documents.
  CoordinateReader(const std::string& path, Kind kind, bool words_by_docs);
  /// A part of the file for a parallel import: the entry lines of `range` (after the
  /// header, which `header` has read), yielding documents [doc_begin, doc_end) (1-based
  /// ids); `prepend` (document, 0-based word, count) are entries of document doc_begin
  /// read by earlier ranks. The NNZ total and the order across parts are checked by the
  /// caller (open_coordinate_part).
  CoordinateReader(const std::string& path, const CoordinateReader& header, ByteRange range, Index doc_begin,
                   Index doc_end, std::vector<std::int64_t> prepend);
  /// What a scan of a part found (pass 1 of a parallel import).
  struct PartScan {
    Index entries = 0, first_doc = 0, last_doc = 0, first_line = 0;
    std::vector<std::int64_t> trailing;  ///< (document, 0-based word, count) of last_doc
  };
  /// Reads every entry of the part (checking each line). Only for a part reader.
  PartScan scan();
  /// The offset after the header and the header's lines (the reader of the whole file).
  std::uint64_t header_end() const { return header_end_; }
  Index header_lines() const { return header_lines_; }
  /// The message of entries out of document order (`doc` after `last`).
  std::string order_error(Index doc, Index last) const;
  Index num_documents() const { return docs_; }
  Index num_words() const { return words_; }
  Index num_nonzeros() const { return nnz_; }
  bool next(Document& doc) override;

 private:
  [[noreturn]] void fail(const std::string& message) const;
  // The next line that is not blank (and, in Matrix Market, not a % comment).
  bool next_content_line();
  std::int64_t header_number(const char* name, std::int64_t max);
  void read_uci_header();
  void read_mm_header();
  void read_entry();

  ByteStream s_;
  Kind kind_;
  bool words_by_docs_;
  bool pattern_ = false;
  std::string line_;
  std::vector<std::string_view> fields_;
  Index line_no_ = 0, docs_ = 0, words_ = 0, nnz_ = 0, entries_ = 0, next_doc_ = 1, last_doc_ = 0;
  bool has_pending_ = false, at_end_ = false;
  bool part_ = false;  // a part of a parallel import
  Index doc_end_ = 0;
  std::uint64_t header_end_ = 0;
  Index header_lines_ = 0;
  std::vector<std::int64_t> prepend_;
  Index pending_doc_ = 0;
  std::int32_t pending_word_ = 0;
  std::int64_t pending_count_ = 0;
};

/// This rank's part of a UCI / Matrix Market file for a parallel import (collective, errors
/// agreed): every rank reads the header; the entry lines after it are cut into P byte
/// ranges (split.hpp); each rank scans its part, the entry count and the document order
/// across the cuts are checked, and a document whose entries straddle a cut goes to the
/// later rank. A gzipped file (or one rank): rank 0 reads it whole, the others get null.
/// `local_documents` gets this rank's documents, `num_words` W from the header.
std::unique_ptr<CoordinateReader> open_coordinate_part(const comm::Communicator& comm, const std::string& path,
                                                       CoordinateReader::Kind kind, bool words_by_docs,
                                                       Index& local_documents, Index& num_words);

}  // namespace latent::io::importers
