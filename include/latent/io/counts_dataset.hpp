#pragma once
/// \file Count (bag-of-words) datasets: a directory of HDF5 shards in CSR form plus the
/// vocabulary, stored once (schema in docs/FORMATS.md). Symbols: N documents,
/// V vocabulary size, nnz stored (document, word) pairs.
///
/// Directory layout:
///   DIR/vocabulary.txt     V lines, line v is word v (UTF-8; no tabs or newlines in words)
///   DIR/part-00000.h5 ...  shards, taken in lexicographic order of file name (which
///                          entries are shards: list_shard_files, io/shard_files.hpp)
/// Each shard holds
///   /indptr   int64, rows + 1, indptr[0] == 0, non-decreasing, indptr[rows] == nnz
///   /indices  int32 (or int64), nnz, word ids in [0, V), strictly increasing in a row
///   /data     counts, nnz, integer (any width) or float with integral values, >= 1
///   /labels   optional int64, rows (for example the genre of a document)
/// and root attributes format_version (1), kind ("counts") and vocab_size (V).
/// Documents with no words are allowed (indptr[i] == indptr[i+1]).
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "latent/comm/communicator.hpp"
#include "latent/core/types.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/io/block_stream.hpp"

namespace latent::io {

inline constexpr int kCountsFormatVersion = 1;
inline constexpr const char* kIndptrDataset = "indptr";
inline constexpr const char* kIndicesDataset = "indices";
inline constexpr const char* kCountsDataset = "data";
inline constexpr const char* kVocabularyFile = "vocabulary.txt";
inline constexpr const char* kCountsKind = "counts";

struct CountsShardInfo {
  std::string path;
  Index num_rows = 0;      ///< documents in the shard
  Index num_nonzeros = 0;  ///< nnz
  bool has_labels = false;
};

/// Documents held in memory in place of shard files (the Python module's fit on a SciPy
/// sparse matrix, docs/PYTHON.md): CSR arrays kept alive by `owner`. `indptr` has N + 1
/// entries from 0, `indices` and `counts` nnz entries (validated as a shard's are).
struct MemoryCsr {
  const std::int64_t* indptr = nullptr;
  const std::int64_t* indices = nullptr;
  const double* counts = nullptr;
  std::shared_ptr<const void> owner;
};

struct CountsDatasetInfo {
  std::string location;  ///< the directory as given by the user
  std::vector<CountsShardInfo> shards;
  Index num_rows = 0;       ///< N, over all shards
  Index vocab_size = 0;     ///< V
  Index num_nonzeros = 0;   ///< over all shards
  bool has_labels = false;  ///< every shard has /labels
  /// Set: the documents are in memory (one shard whose path is `location`, no file and no
  /// vocabulary file); CountsSource reads and validates them as a file's documents.
  std::shared_ptr<const MemoryCsr> memory;
  /// Rows per shard, in shard order (for make_block_plan).
  std::vector<Index> shard_rows() const;
};

/// Lists the shards (list_shard_files), reads the metadata of every shard and checks the
/// schema: root attributes format_version = 1 and kind = "counts", datasets present with the
/// right rank and integer/float types, indptr of length rows + 1 whose first entry is 0
/// and last is nnz, the same vocab_size in every shard, and a vocabulary file with exactly
/// vocab_size lines. Does not read the CSR contents (read_csr_block validates them).
/// Local. Throws Error(kNoInput) for a missing path or a directory entry named like a shard
/// that is not one (dangling link, FIFO, ...), Error(kInput) naming the file and dataset
/// or attribute for anything else.
CountsDatasetInfo open_counts_dataset(const std::string& location);

/// A dataset over `num_rows` documents in memory with vocabulary size `vocab_size`: what
/// open_counts_dataset gives for one shard without labels, named `location` in messages.
/// Local. Throws Error(kInput) for no documents, V < 1 or indptr not ending at its nnz.
CountsDatasetInfo memory_counts_dataset(std::shared_ptr<const MemoryCsr> csr, Index num_rows, Index vocab_size,
                                        std::string location);

/// The V words of the dataset's vocabulary file. Local. Throws Error(kInput).
std::vector<std::string> read_vocabulary(const CountsDatasetInfo& info);

/// One block of documents in CSR form, with offsets relative to the block.
struct CsrBlock {
  BlockRef ref;
  std::vector<std::int64_t> indptr;   ///< num_rows + 1, indptr[0] == 0
  std::vector<std::int32_t> indices;  ///< word ids, strictly increasing within a document
  std::vector<double> counts;         ///< integral, >= 1
  std::vector<std::int64_t> labels;   ///< num_rows when labels were requested
  Index num_rows() const noexcept { return static_cast<Index>(indptr.size()) - 1; }
  /// Sum of counts (tokens) in the block.
  double num_tokens() const noexcept;
};

/// Checks one CSR slice: `indptr` has rows + 1 non-decreasing entries with
/// indptr[0] == first_offset and indptr[rows] - first_offset == indices.size() ==
/// counts.size(); every index in [0, vocab_size) and strictly increasing within a
/// document; every count finite, integral and >= 1. Throws Error(kInput) whose message
/// starts with `where` and names the dataset and shard row (first_row + i) at fault.
/// Pure; used by read_csr_block and by the CSR fuzz target.
void validate_csr(std::span<const std::int64_t> indptr, std::span<const std::int64_t> indices,
                  std::span<const double> counts, std::int64_t first_offset, Index vocab_size,
                  const std::string& where, Index first_row);

/// Reads and validates the documents of one block (rows ref.row_begin .. + ref.num_rows of
/// shard ref.shard). Local. Throws Error(kInput) naming file, dataset and row on damaged
/// CSR, Error(kIo) if the read fails.
CsrBlock read_csr_block(const CountsDatasetInfo& info, const BlockRef& ref, bool read_labels);

struct CountsSourceOptions {
  int prefetch_blocks = 4;      ///< blocks read ahead of compute
  std::size_t cache_bytes = 0;  ///< keep the local documents in memory if they fit (0: stream)
  bool read_labels = false;     ///< also read /labels
};

/// Streams a rank's blocks of documents (BlockStream: one I/O thread, bounded prefetch,
/// optional cache). A BlockRef is read by its global rows [global_row_begin,
/// global_row_begin + num_rows), which may span shards (minibatch slices do).
class CountsSource {
 public:
  /// `blocks` are this rank's blocks, in order. Local.
  CountsSource(CountsDatasetInfo info, std::vector<BlockRef> blocks, CountsSourceOptions options);
  void start_pass(ReadMode mode = ReadMode::kIoThread) { stream_.start_pass(mode); }
  /// Next block or null at the end of the pass; rethrows read/validation errors.
  std::shared_ptr<const CsrBlock> next() { return stream_.next(); }
  void cancel_pass() { stream_.cancel_pass(); }
  const CountsDatasetInfo& info() const noexcept { return info_; }
  std::span<const BlockRef> blocks() const noexcept { return stream_.blocks(); }
  Index num_local_rows() const noexcept { return num_local_rows_; }
  bool cached() const noexcept { return stream_.cached(); }

 private:
  CountsDatasetInfo info_;
  Index num_local_rows_ = 0;
  BlockStream<CsrBlock> stream_;
};

/// Writes one CSR shard (`indptr` documents + 1 entries from 0, `indices` and `counts`
/// nnz entries, `labels` one per document or empty) with the root attributes of the count
/// format, atomically (H5Writer). No validation: callers pass sorted, valid CSR. Local.
void write_counts_shard(const std::string& path, Index vocab_size, std::span<const std::int64_t> indptr,
                        std::span<const std::int32_t> indices, std::span<const std::int64_t> counts,
                        std::span<const std::int64_t> labels);
/// Writes `dir`/vocabulary.txt (one word per line) and fsyncs it. Throws Error(kInput) for
/// an empty word or one with a tab or line break, Error(kIo) if the write fails. Local.
void write_vocabulary(const std::string& dir, const std::vector<std::string>& vocabulary);

/// Writes a count dataset directory: documents are appended in order and cut into shards
/// of `docs_per_shard`; everything goes to a temporary directory beside `dir` that is
/// renamed to `dir` by commit() (a directory that exists is refused up front; an
/// uncommitted writer removes its temporary directory). Local (one rank).
class CountsWriter {
 public:
  /// Throws Error(kOutput) if `dir` exists or its parent is not writable.
  CountsWriter(std::string dir, Index vocab_size, Index docs_per_shard, bool with_labels);
  ~CountsWriter();
  CountsWriter(const CountsWriter&) = delete;
  CountsWriter& operator=(const CountsWriter&) = delete;

  /// Appends one document. `word_ids` need not be sorted and may repeat (they are merged);
  /// counts must be >= 1. Throws Error(kInput) for an id outside [0, V).
  void add_document(std::span<const std::int32_t> word_ids, std::span<const std::int64_t> counts,
                    std::int64_t label = 0);
  /// Writes the vocabulary (exactly V words) and renames the directory into place.
  void commit(const std::vector<std::string>& vocabulary);

  Index num_documents() const noexcept { return num_docs_; }
  Index num_tokens() const noexcept { return num_tokens_; }
  Index num_empty_documents() const noexcept { return num_empty_; }

 private:
  void flush_shard();
  std::string dir_, tmp_dir_;
  Index vocab_size_, docs_per_shard_;
  bool with_labels_;
  bool committed_ = false;
  Index num_docs_ = 0, num_tokens_ = 0, num_empty_ = 0, num_shards_ = 0;
  std::vector<std::int64_t> indptr_{0};
  std::vector<std::int32_t> indices_;
  std::vector<std::int64_t> counts_, labels_;
};

/// One rank's part of a count dataset that all ranks write together (a parallel
/// `latent import counts`). The dataset has N documents (the sum of every rank's
/// `local_documents`), taken in rank order, cut into shards by global document index:
/// shard s holds documents [s·docs_per_shard, (s+1)·docs_per_shard). A shard that lies
/// entirely in this rank's documents is written directly (DIR/part-%05d.h5); this rank's
/// rows of a shard shared with other ranks go to a piece file (DIR/.piece-S-R), and
/// finish() has the rank holding the shard's first document join the pieces, in rank
/// order, into the shard. So the files are the same bytes (and the same as a CountsWriter's)
/// for any number of ranks. Memory: one shard per rank (two while joining). Writes into an
/// existing directory on a filesystem every rank sees; it neither creates nor publishes
/// it, nor writes the vocabulary (io::ShardDirectory, write_vocabulary).
class CountsPartWriter {
 public:
  /// Collective (an allgather of the document counts). Throws Error(kUsage) (on every
  /// rank alike) for more shards than part-%05d names can sort.
  CountsPartWriter(const comm::Communicator& comm, std::string dir, Index vocab_size, Index docs_per_shard,
                   bool with_labels, Index local_documents);
  /// Appends this rank's next document (as CountsWriter::add_document). Local. Throws
  /// Error(kInput) for a bad id or count, Error(kInternal) past local_documents, and the
  /// write errors of the shards.
  void add_document(std::span<const std::int32_t> word_ids, std::span<const std::int64_t> counts,
                    std::int64_t label = 0);
  /// Writes what is left, then joins the shared shards. Collective; errors are agreed
  /// (comm::run_agreed). An empty dataset gets one empty shard (rank 0), as CountsWriter.
  void finish();

  Index first_document() const noexcept { return first_; }
  Index total_documents() const noexcept { return total_; }
  Index num_shards() const noexcept { return total_ == 0 ? 1 : (total_ + docs_per_shard_ - 1) / docs_per_shard_; }
  /// This rank's documents, tokens and empty documents so far (local).
  Index num_documents() const noexcept { return added_; }
  Index num_tokens() const noexcept { return num_tokens_; }
  Index num_empty_documents() const noexcept { return num_empty_; }

 private:
  void flush();
  const comm::Communicator& comm_;
  std::string dir_;
  Index vocab_size_, docs_per_shard_;
  bool with_labels_;
  std::vector<std::int64_t> firsts_, counts_per_rank_;
  Index first_ = 0, local_ = 0, total_ = 0, added_ = 0, num_tokens_ = 0, num_empty_ = 0;
  Index shard_ = -1;  // the shard being buffered
  std::vector<std::int64_t> indptr_{0};
  std::vector<std::int32_t> indices_;
  std::vector<std::int64_t> counts_, labels_;
};

}  // namespace latent::io
