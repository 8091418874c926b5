#pragma once
// UCI bag-of-words (docword) and Matrix Market coordinate files: (document, word, count)
// triples, 1-based, grouped by document in ascending order. Documents without entries are
// empty documents; the header fixes the number of documents and words. The reader behind
// uci.cpp and mtx.cpp; private to src/io/import.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "latent/io/import/byte_stream.hpp"
#include "latent/io/import/reader.hpp"

namespace latent::io::importers {

class CoordinateReader final : public DocumentReader {
 public:
  enum class Kind { kUci, kMatrixMarket };
  /// Reads and checks the header (UCI: D, W, NNZ lines; Matrix Market: the banner and the
  /// size line). `words_by_docs`: Matrix Market rows are words, columns documents.
  CoordinateReader(const std::string& path, Kind kind, bool words_by_docs);
  Index num_documents() const { return docs_; }
  Index num_words() const { return words_; }
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
  Index pending_doc_ = 0;
  std::int32_t pending_word_ = 0;
  std::int64_t pending_count_ = 0;
};

}  // namespace latent::io::importers
