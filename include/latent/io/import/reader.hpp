#pragma once
/// \file The importers' two reader interfaces (docs/COMMANDS.md, "latent import").
///
/// Dense formats (idx.hpp, csv.hpp, npy.hpp, hdf5.hpp) are DenseReaders: they yield blocks
/// of rows of doubles (N x D, row-major, one sample per row) in file order. Count formats
/// (uci.hpp, mtx.hpp, ldac.hpp, libsvm.hpp, text.hpp) open a Corpus: its vocabulary and a
/// DocumentReader that yields one bag of words (word id, count) per document in file order.
/// Every reader streams: memory is one block of rows or one document, besides what a
/// format documents (a vocabulary, the words of a text corpus).
///
/// Errors are latent::Error: kNoInput for an input that does not exist, kInput for a
/// malformed one; the message names the file, and the line (text formats) or the rows
/// (binary formats) where the problem is. Inputs may be gzipped (byte_stream.hpp), except
/// HDF5.
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "latent/core/types.hpp"

namespace latent::io::importers {

// ---------------------------------------------------------------------------------------
// Dense rows.

/// Rows of one input file. num_features() (D) is known after construction, which reads
/// and checks the header.
class DenseReader {
 public:
  virtual ~DenseReader() = default;
  /// D, the values per row (the product of an IDX/NPY/HDF5 shape's trailing dimensions).
  virtual Index num_features() const = 0;
  /// Fills up to `max` rows into `out` (resized to max x D; rows past the returned count
  /// are unspecified) and returns how many were read, 0 at the end of the input. Values
  /// are multiplied by the reader's scale. Throws Error(kInput) naming the file and the
  /// line or rows for malformed or truncated input.
  virtual Index read(RowMatrix& out, Index max) = 0;
  /// Total rows if a header declares them, else -1 (CSV).
  virtual Index num_rows() const { return -1; }
  /// Restricts the reader to rows [begin, end) of a format whose header declares its rows
  /// (a parallel import: each rank its rows), before the first read. Binary rows are
  /// skipped by seeking (gzipped input: by decompressing them), HDF5 rows by offset.
  /// Throws Error(kInternal) for a format without declared rows, Error(kInput) if the
  /// skipped bytes are missing.
  virtual void select_rows(Index begin, Index end);
  /// The labels of the rows the last read returned (its first n entries), for a format
  /// that reads labels from the input itself (CSV --label-column), else nullptr.
  virtual const std::vector<std::int64_t>* row_labels() const { return nullptr; }
};

/// The dense formats of `latent import dense --format`.
enum class DenseFormat { kIdx, kCsv, kNpy, kHdf5 };
/// CSV: whether the first line is a header (auto: iff it is not all numbers).
enum class CsvHeader { kAuto, kYes, kNo };

/// What the dense readers take besides the path. Formats ignore what they do not read.
struct DenseOptions {
  std::string dataset;               ///< HDF5: the dataset inside the file (required)
  char delimiter = ',';              ///< CSV field delimiter
  CsvHeader header = CsvHeader::kAuto;
  double scale = std::numeric_limits<double>::quiet_NaN();  ///< NaN: the format's default (IDX
                                                            ///< unsigned bytes 1/255, else 1)
  /// CSV columns (csv.hpp), each a header name or a 0-based position: the columns kept
  /// (empty: all), a column of row names dropped, and the column of integer labels
  /// (empty: none).
  std::vector<std::string> usecols;
  std::string index_col, label_column;
};

/// The reader of `format` for `path`. Throws as the format's reader does.
std::unique_ptr<DenseReader> open_dense_reader(DenseFormat format, const std::string& path, const DenseOptions& options);

// ---------------------------------------------------------------------------------------
// Documents (bags of words).

/// One document: word ids in [0, V) (unsorted; an id may repeat, CountsWriter merges them)
/// with counts >= 1, and its label (0 when the corpus has none).
struct Document {
  std::vector<std::int32_t> ids;
  std::vector<std::int64_t> counts;
  std::int64_t label = 0;
  void clear() {
    ids.clear();
    counts.clear();
    label = 0;
  }
};

/// Yields documents in input order, with word ids already checked against the vocabulary
/// size (so that errors name the file and line) and counts >= 1 (explicit zeros dropped).
class DocumentReader {
 public:
  virtual ~DocumentReader() = default;
  /// The next document; false at the end of the input. Throws Error(kInput) naming the
  /// file and line of a malformed entry.
  virtual bool next(Document& doc) = 0;
};

/// A corpus opened for its writing pass. Formats that must scan the input first (to size
/// the vocabulary, find the index base or build a text vocabulary) have done so when it is
/// returned, so `vocabulary` is final: vocabulary[v] is the word with id v.
struct Corpus {
  std::vector<std::string> vocabulary;
  std::unique_ptr<DocumentReader> reader;
  bool with_labels = false;              ///< documents carry labels
  std::vector<std::string> label_names;  ///< label id -> name (text --labels), else empty
  Index total = -1;                      ///< documents, when known (progress), else -1
  /// Documents this rank's reader yields, when known (else -1). A parallel open (one
  /// given a communicator) always knows it; its ranks' documents, in rank order, are the
  /// corpus in input order, and `total` is then the sum over the ranks.
  Index local_documents = -1;
  bool text = false;                     ///< tokenised text: a document may be empty after pruning
};

/// Word ids are int32 on disk and in memory; the largest id must leave room for V = id + 1.
inline constexpr std::int64_t kMaxWordId = std::numeric_limits<std::int32_t>::max() - 1;
/// A header may not declare more documents than this (they would be written as empty rows).
inline constexpr std::int64_t kMaxDocuments = std::int64_t{1} << 40;

}  // namespace latent::io::importers
