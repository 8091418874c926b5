#pragma once
/// \file Streaming of a rank's dense blocks over BlockStream (block_stream.hpp): one I/O
/// thread per pass (or reads in next(), ReadMode::kCaller), bounded prefetch, optional
/// cache within a byte budget. A pass's HDF5 calls happen on its I/O thread, or in next().
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "latent/core/types.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/io/block_stream.hpp"
#include "latent/io/dense_dataset.hpp"

namespace latent::io {

/// One block of rows: x is B × D row-major, widened to double; labels (B) when requested.
/// A source with BlockSourceOptions::float32 keeps the rows of float32 shards as they are
/// stored, in xf (B × D, x then empty), for the passes that accept them
/// (BlockSource::Float32Scope); every other pass gets them widened into x.
struct DenseBlock {
  BlockRef ref;
  RowMatrix x;
  RowMatrixF xf;
  std::vector<std::int64_t> labels;
  /// True if the rows are in xf (float32) rather than x.
  bool is_float32() const noexcept { return x.rows() == 0 && xf.rows() > 0; }
  /// B, wherever the rows are.
  Index rows() const noexcept { return is_float32() ? xf.rows() : x.rows(); }
  /// The rows in float32 (B × D): xf itself for a float32 block, else x narrowed into
  /// `scratch` (the same floats either way). Local.
  const RowMatrixF& as_float32(RowMatrixF& scratch) const {
    if (is_float32()) return xf;
    scratch = x.cast<float>();
    return scratch;
  }
};

struct BlockSourceOptions {
  int prefetch_blocks = 4;        ///< blocks read ahead of compute
  std::size_t cache_bytes = 0;    ///< keep the local data in memory if it fits (0: stream)
  bool read_labels = false;       ///< also read /labels (requires every shard to have it)
  bool allow_nan = false;         ///< accept NaN (missing values); Inf is always an error
  /// If not empty (D values): NaN entries are replaced by these (for example the feature
  /// means) after validation, so NaN-unaware passes (k-means initialisation) can run.
  std::vector<double> nan_fill;
  /// Keep float32 shards' rows as float32 (DenseBlock::xf) in the stream and the cache: half
  /// the bytes read and held. Passes outside a Float32Scope still see double rows (each
  /// block widened when it is handed out). Ignored with nan_fill. float64 shards are
  /// always read as double.
  bool float32 = false;
  /// Passes may read ahead on their own I/O thread (ReadMode::kIoThread), which overlaps
  /// reading with compute on a core the rank does not compute on. False where the rank has
  /// no such core (its threads already take every core it has, as with one rank per core
  /// and one thread each): every pass then reads in next() (ReadMode::kCaller), the same
  /// blocks in the same order, so the same bits. An I/O thread there took CPU from the
  /// other ranks' compute: docs/PERFORMANCE.md, twelfth AMD session.
  bool io_thread = true;
};

class BlockSource {
 public:
  /// `blocks` are this rank's blocks, in order. Local.
  BlockSource(DenseDatasetInfo info, std::vector<BlockRef> blocks, BlockSourceOptions options);

  /// Starts a pass over the local blocks (stops any unfinished pass), read on an I/O thread
  /// or in next() (ReadMode, block_stream.hpp; always in next() without
  /// BlockSourceOptions::io_thread). Local.
  void start_pass(ReadMode mode = ReadMode::kIoThread) { stream_.start_pass(options_.io_thread ? mode : ReadMode::kCaller); }
  /// The next block of the pass, or null at its end. Rethrows the reader's error
  /// (Error(kInput/kIo) naming file, dataset and row). Call from one thread at a time.
  /// Inside a Float32Scope a block may hold its rows in xf; otherwise they are in x.
  std::shared_ptr<const DenseBlock> next();
  /// In a ReadMode::kCaller pass not served by the cache, next() split in two, so that
  /// several threads read blocks at once (BlockStream::claim, read_claimed): claim() takes
  /// the next block's index (-1 at the end; one call at a time, in order) and
  /// read_claimed(i) reads it on the calling thread, concurrently with other reads (rows
  /// of contiguous native shards are read without libhdf5's global lock,
  /// ShardInfo::data_offset), handing it out as next() would. Errors as next(). Local.
  std::ptrdiff_t claim() { return stream_.claim(); }
  std::shared_ptr<const DenseBlock> read_claimed(std::size_t i);
  /// While alive, next() hands float32 blocks out as they are stored (the pass's kernels
  /// read DenseBlock::xf when is_float32()). Local; not thread-safe against a running pass.
  class Float32Scope {
   public:
    Float32Scope(BlockSource& source, bool on) : source_(source), previous_(source.accept_float32_) {
      source.accept_float32_ = on;
    }
    ~Float32Scope() { source_.accept_float32_ = previous_; }
    Float32Scope(const Float32Scope&) = delete;
    Float32Scope& operator=(const Float32Scope&) = delete;

   private:
    BlockSource& source_;
    bool previous_;
  };
  /// Bytes of this rank's rows as the source holds them (4 per value for float32 shards
  /// read with BlockSourceOptions::float32, else 8): what the cache takes. Local.
  std::size_t local_bytes() const noexcept { return local_bytes_; }
  /// Stops the current pass early and joins the I/O thread.
  void cancel_pass() { stream_.cancel_pass(); }

  const DenseDatasetInfo& info() const noexcept { return info_; }
  std::span<const BlockRef> blocks() const noexcept { return stream_.blocks(); }
  Index num_local_rows() const noexcept { return num_local_rows_; }
  /// True once the local data is held in memory (cache_bytes large enough).
  bool cached() const noexcept { return stream_.cached(); }
  /// The same blocks with NaN entries replaced by `fill` (D values). Local.
  std::unique_ptr<BlockSource> with_nan_fill(std::vector<double> fill) const;

 private:
  BlockSourceOptions options_;
  DenseDatasetInfo info_;
  Index num_local_rows_ = 0;
  std::size_t local_bytes_ = 0;
  bool accept_float32_ = false;
  BlockStream<DenseBlock> stream_;
  // The block as handed out: widened to double outside a Float32Scope.
  std::shared_ptr<const DenseBlock> handed_out(std::shared_ptr<const DenseBlock> b) const;
};

/// Reads one block synchronously (used by the I/O thread and by tests). Local.
DenseBlock read_block(const DenseDatasetInfo& info, const BlockRef& ref, bool read_labels, bool allow_nan);

}  // namespace latent::io
