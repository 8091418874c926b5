#include "latent/io/block_source.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "h5_handle.hpp"
#include "latent/core/error.hpp"
#include "latent/core/huge_pages.hpp"

namespace latent::io {
namespace {

using detail::Handle;

// Keeps the current shard open across consecutive blocks of a pass.
class ShardReader {
 public:
  explicit ShardReader(const DenseDatasetInfo& info) : info_(info) {}

  ShardReader(const ShardReader&) = delete;
  ShardReader& operator=(const ShardReader&) = delete;
  ~ShardReader() { close_direct(); }

  // huge: the block stays in the cache; its rows get huge pages (huge_pages::advise).
  DenseBlock read(const BlockRef& ref, bool read_labels, bool allow_nan, bool keep_float32, bool huge) {
    if (info_.memory) return read_memory(ref, read_labels, allow_nan);
    const ShardInfo& shard = info_.shards.at(static_cast<std::size_t>(ref.shard));
    const Index d = info_.num_features;
    const std::string where = "file " + shard.path + ", dataset /" + kDataDataset;
    // Float32 rows kept as stored (xf), or double rows (x, float32 ones widened).
    const bool as_float32 = shard.dtype == DType::kFloat32 && keep_float32;
    DenseBlock block;
    block.ref = ref;
    block.x.resize(as_float32 ? 0 : ref.num_rows, d);
    if (as_float32) block.xf.resize(ref.num_rows, d);
    if (huge) {
      if (as_float32) huge_pages::advise(block.xf.data(), static_cast<std::size_t>(block.xf.size()) * sizeof(float));
      else huge_pages::advise(block.x.data(), static_cast<std::size_t>(block.x.size()) * sizeof(double));
    }
    // The rows land in the block as the file stores them (no conversion by libhdf5).
    const bool as_stored = as_float32 || shard.dtype == DType::kFloat64;
    if (as_stored && open_direct(ref.shard)) {
      if (as_float32) read_direct(block.xf.data(), shard, ref, where, allow_nan);
      else read_direct(block.x.data(), shard, ref, where, allow_nan);
      if (read_labels) {
        detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
        open(ref.shard);
        read_labels_into(block, shard);
      }
      return block;
    }
    detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
    open(ref.shard);
    Handle file_space = detail::space_handle(H5Dget_space(data_.get()));
    if (as_stored && contiguous_) {
      if (as_float32) read_checked(H5T_NATIVE_FLOAT, block.xf.data(), ref, file_space.get(), where, allow_nan);
      else read_checked(H5T_NATIVE_DOUBLE, block.x.data(), ref, file_space.get(), where, allow_nan);
    } else {
      // The whole block in one H5Dread (a chunked dataset, or float32 rows widened to
      // double), then checked.
      const auto read_whole = [&](hid_t type, void* dst) {
        const hsize_t start[2] = {static_cast<hsize_t>(ref.row_begin), 0};
        const hsize_t count[2] = {static_cast<hsize_t>(ref.num_rows), static_cast<hsize_t>(d)};
        H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr);
        Handle mem_space = detail::space_handle(H5Screate_simple(2, count, nullptr));
        if (H5Dread(data_.get(), type, mem_space.get(), file_space.get(), H5P_DEFAULT, dst) < 0)
          throw read_error(where, ref, 0, ref.num_rows, "file truncated or damaged?");
      };
      if (as_float32) {
        read_whole(H5T_NATIVE_FLOAT, block.xf.data());
      } else if (shard.dtype == DType::kFloat32) {
        buffer_.resize(static_cast<std::size_t>(ref.num_rows * d));
        read_whole(H5T_NATIVE_FLOAT, buffer_.data());
        block.x = Eigen::Map<const RowMatrixF>(buffer_.data(), ref.num_rows, d).cast<double>();
      } else {
        read_whole(H5T_NATIVE_DOUBLE, block.x.data());
      }
      check_finite(block, where, allow_nan);
    }
    if (read_labels) read_labels_into(block, shard);
    return block;
  }

 private:
  // Bytes of rows read and checked at a time from a contiguous dataset.
  static constexpr std::size_t kPieceBytes = std::size_t{256} << 10;

  // The block's labels (the libhdf5 lock held, the shard open).
  void read_labels_into(DenseBlock& block, const ShardInfo& shard) {
    const BlockRef& ref = block.ref;
    const std::string lwhere = "file " + shard.path + ", dataset /" + kLabelsDataset;
    if (!labels_.valid()) throw_input(lwhere + ": missing (labels were requested)");
    block.labels.resize(static_cast<std::size_t>(ref.num_rows));
    Handle lspace = detail::space_handle(H5Dget_space(labels_.get()));
    const hsize_t lstart[1] = {static_cast<hsize_t>(ref.row_begin)};
    const hsize_t lcount[1] = {static_cast<hsize_t>(ref.num_rows)};
    H5Sselect_hyperslab(lspace.get(), H5S_SELECT_SET, lstart, nullptr, lcount, nullptr);
    Handle lmem = detail::space_handle(H5Screate_simple(1, lcount, nullptr));
    if (H5Dread(labels_.get(), H5T_NATIVE_INT64, lmem.get(), lspace.get(), H5P_DEFAULT, block.labels.data()) < 0)
      throw Error(ErrorKind::kIo, lwhere + ": read failed");
  }

  // Opens `shard` for direct reads (ShardInfo::data_offset): false if its rows must go
  // through libhdf5 (not contiguous native values, or the file's size is no longer the
  // scan's: then libhdf5 reads whatever the file now holds, as it would have).
  bool open_direct(Index shard) {
    if (shard == direct_shard_) return true;
    if (shard == libhdf5_shard_) return false;
    close_direct();
    const ShardInfo& info = info_.shards.at(static_cast<std::size_t>(shard));
    if (info.data_offset < 0) return false;
    const int fd = ::open(info.path.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (fd < 0 || ::fstat(fd, &st) != 0 || static_cast<std::int64_t>(st.st_size) != info.file_bytes) {
      if (fd >= 0) ::close(fd);
      libhdf5_shard_ = shard;  // not opened again for each of its blocks; libhdf5's open names any error
      return false;
    }
    direct_fd_ = fd;
    direct_shard_ = shard;
    return true;
  }

  void close_direct() {
    if (direct_fd_ >= 0) ::close(direct_fd_);
    direct_fd_ = -1;
    direct_shard_ = -1;
    libhdf5_shard_ = -1;
  }

  // The block's rows read into dst in pieces of about kPieceBytes, each checked for
  // non-finite values while it is in cache: checking the whole block after the read read it
  // from memory a second time, on the I/O thread that a streaming fit waits for
  // (docs/PERFORMANCE.md, "Packed operands on cache lines"). `read_piece(out, r, n)` reads
  // the block's rows r .. r + n − 1 into out, or throws. The first error is thrown (a
  // read's, or the input's naming the row).
  template <class T, class ReadPiece>
  void read_in_pieces(T* dst, const BlockRef& ref, const std::string& where, bool allow_nan, ReadPiece&& read_piece) {
    const Index d = info_.num_features;
    const Index piece = std::max<Index>(1, static_cast<Index>(kPieceBytes / (sizeof(T) * static_cast<std::size_t>(d))));
    for (Index r = 0; r < ref.num_rows; r += piece) {
      const Index n = std::min(piece, ref.num_rows - r);
      read_piece(dst + r * d, r, n);
      BlockRef part = ref;
      part.row_begin += r;
      part.global_row_begin += r;
      part.num_rows = n;
      check_finite_values(dst + r * d, n * d, d, part, where, allow_nan);
    }
  }

  // Error(kIo) for the block's rows r .. r + n − 1.
  static Error read_error(const std::string& where, const BlockRef& ref, Index r, Index n, const std::string& why) {
    return Error(ErrorKind::kIo, where + ", rows " + std::to_string(ref.row_begin + r) + "-" +
                                     std::to_string(ref.row_begin + r + n - 1) + ": read failed: " + why);
  }

  // The block's rows straight from the file (pread at the shard's data_offset), without
  // libhdf5 or its global lock, so that threads read blocks concurrently
  // (BlockStream::read_claimed). A short read (the file truncated since the scan) or an
  // I/O error throws Error(kIo) naming the file and rows: never a signal, as a mapping of
  // the file would give.
  template <class T>
  void read_direct(T* dst, const ShardInfo& shard, const BlockRef& ref, const std::string& where, bool allow_nan) {
    const auto row_bytes = static_cast<std::size_t>(info_.num_features) * sizeof(T);
    read_in_pieces(dst, ref, where, allow_nan, [&](T* out_rows, Index r, Index n) {
      auto* out = reinterpret_cast<char*>(out_rows);
      const std::size_t want = static_cast<std::size_t>(n) * row_bytes;
      const auto at = static_cast<off_t>(shard.data_offset) + static_cast<off_t>(ref.row_begin + r) * static_cast<off_t>(row_bytes);
      for (std::size_t done = 0; done < want;) {
        const ssize_t got = ::pread(direct_fd_, out + done, want - done, at + static_cast<off_t>(done));
        if (got > 0) {
          done += static_cast<std::size_t>(got);
        } else if (got < 0 && errno == EINTR) {
          continue;
        } else {
          throw read_error(where, ref, r, n, got == 0 ? "the file ended early (truncated since the data were scanned?)" : std::strerror(errno));
        }
      }
    });
  }

  // The same through libhdf5 (the lock held, the shard open), for contiguous datasets only:
  // a piece smaller than a compressed chunk would decompress that chunk again for every piece.
  template <class T>
  void read_checked(hid_t type, T* dst, const BlockRef& ref, hid_t file_space, const std::string& where, bool allow_nan) {
    const auto d = static_cast<hsize_t>(info_.num_features);
    read_in_pieces(dst, ref, where, allow_nan, [&](T* out, Index r, Index n) {
      const hsize_t start[2] = {static_cast<hsize_t>(ref.row_begin + r), 0};
      const hsize_t count[2] = {static_cast<hsize_t>(n), d};
      H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start, nullptr, count, nullptr);
      Handle mem_space = detail::space_handle(H5Screate_simple(2, count, nullptr));
      if (H5Dread(data_.get(), type, mem_space.get(), file_space, H5P_DEFAULT, out) < 0)
        throw read_error(where, ref, r, n, "file truncated or damaged?");
    });
  }

  // Rows in memory (DenseDatasetInfo::memory): copied and validated like a file's.
  DenseBlock read_memory(const BlockRef& ref, bool read_labels, bool allow_nan) const {
    const Index d = info_.num_features;
    if (read_labels) throw_input("data " + info_.location + ": labels were requested but rows in memory have none");
    if (ref.shard != 0 || ref.row_begin < 0 || ref.row_begin + ref.num_rows > info_.num_rows)
      throw Error(ErrorKind::kInternal, "data " + info_.location + ": block outside the rows in memory");
    DenseBlock block;
    block.ref = ref;
    block.x = Eigen::Map<const RowMatrix>(info_.memory->data + ref.row_begin * d, ref.num_rows, d);
    check_finite(block, "data " + info_.location, allow_nan);
    return block;
  }

  void open(Index shard) {
    if (shard == open_shard_) return;
    labels_.reset();
    data_.reset();
    file_.reset();
    const std::string& path = info_.shards.at(static_cast<std::size_t>(shard)).path;
    file_ = detail::open_read_only(path);
    data_ = detail::open_trusted_dataset(file_.get(), path, kDataDataset);
    {
      Handle dcpl = detail::plist_handle(H5Dget_create_plist(data_.get()));
      contiguous_ = dcpl.valid() && H5Pget_layout(dcpl.get()) == H5D_CONTIGUOUS;
    }
    if (info_.shards[static_cast<std::size_t>(shard)].has_labels)
      labels_ = detail::open_trusted_dataset(file_.get(), path, kLabelsDataset);
    open_shard_ = shard;
  }

  static void check_finite(const DenseBlock& block, const std::string& where, bool allow_nan) {
    if (block.is_float32())
      check_finite_values(block.xf.data(), block.xf.size(), block.xf.cols(), block.ref, where, allow_nan);
    else
      check_finite_values(block.x.data(), block.x.size(), block.x.cols(), block.ref, where, allow_nan);
  }

  template <class T>
  static void check_finite_values(const T* p, Index n, Index cols, const BlockRef& ref, const std::string& where,
                                  bool allow_nan) {
    // The exponent bits all set means Inf or NaN; as integers the loop vectorises (the
    // I/O thread checks every value it reads, std::isfinite's loop ran at one value per
    // cycle and was a quarter of a streaming GMM iteration).
    using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    constexpr Bits kExponent = static_cast<Bits>(sizeof(T) == 4 ? 0x7f800000ull : 0x7ff0000000000000ull);
    Bits bad = 0;
    for (Index i = 0; i < n; ++i) {
      Bits u;
      std::memcpy(&u, p + i, sizeof u);
      bad |= static_cast<Bits>((u & kExponent) == kExponent);
    }
    if (bad == 0) return;
    for (Index i = 0; i < n; ++i) {
      if (std::isfinite(p[i]) || (allow_nan && std::isnan(p[i]))) continue;
      const Index row = ref.row_begin + i / cols;
      const Index col = i % cols;
      throw_input(where + ", row " + std::to_string(row) + ", column " + std::to_string(col) + ": value is " +
                  (std::isnan(p[i]) ? "NaN" : "infinite") + " (dataset row " +
                  std::to_string(ref.global_row_begin + i / cols) + "); clean the data or drop the row");
    }
  }

  const DenseDatasetInfo& info_;
  Index open_shard_ = -1;
  Index direct_shard_ = -1;   // the shard direct_fd_ reads
  Index libhdf5_shard_ = -1;  // a shard of the scan's direct kind whose file changed: read through libhdf5
  int direct_fd_ = -1;
  Handle file_, data_, labels_;
  bool contiguous_ = false;  // the open shard's /data has contiguous storage (read_checked)
  std::vector<float> buffer_;
};

}  // namespace

DenseBlock read_block(const DenseDatasetInfo& info, const BlockRef& ref, bool read_labels, bool allow_nan) {
  ShardReader reader(info);
  return reader.read(ref, read_labels, allow_nan, false, false);
}

DenseDatasetInfo memory_dense_dataset(std::shared_ptr<const MemoryRows> rows, Index num_rows, Index num_features,
                                      std::string location) {
  if (num_rows < 1 || num_features < 1)
    throw_input("data " + location + ": has " + std::to_string(num_rows) + " rows x " + std::to_string(num_features) +
                " features; at least one of each is needed");
  DenseDatasetInfo info;
  info.location = location;
  info.shards.push_back(ShardInfo{std::move(location), num_rows, DType::kFloat64, false, -1, 0});
  info.num_rows = num_rows;
  info.num_features = num_features;
  info.memory = std::move(rows);
  return info;
}

namespace {
bool keeps_float32(const DenseDatasetInfo& info, const BlockSourceOptions& o, const BlockRef& b) {
  return o.float32 && o.nan_fill.empty() && !info.memory &&
         info.shards.at(static_cast<std::size_t>(b.shard)).dtype == DType::kFloat32;
}

std::size_t dense_bytes(const DenseDatasetInfo& info, const BlockSourceOptions& o, const std::vector<BlockRef>& blocks) {
  std::size_t bytes = 0;
  for (const auto& b : blocks)
    bytes += static_cast<std::size_t>(b.num_rows * info.num_features) * (keeps_float32(info, o, b) ? sizeof(float) : sizeof(double));
  return bytes;
}

// The local blocks are kept in memory after the first pass.
bool caches(const DenseDatasetInfo& info, const BlockSourceOptions& o, const std::vector<BlockRef>& blocks) {
  return o.cache_bytes > 0 && dense_bytes(info, o, blocks) <= o.cache_bytes;
}
}  // namespace

std::shared_ptr<const DenseBlock> BlockSource::next() { return handed_out(stream_.next()); }

std::shared_ptr<const DenseBlock> BlockSource::read_claimed(std::size_t i) { return handed_out(stream_.read_claimed(i)); }

std::shared_ptr<const DenseBlock> BlockSource::handed_out(std::shared_ptr<const DenseBlock> b) const {
  if (!b || accept_float32_ || !b->is_float32()) return b;
  auto wide = std::make_shared<DenseBlock>();
  wide->ref = b->ref;
  wide->x = b->xf.cast<double>();
  wide->labels = b->labels;
  return wide;
}

BlockSource::BlockSource(DenseDatasetInfo info, std::vector<BlockRef> blocks, BlockSourceOptions options)
    : options_(options), info_(std::move(info)),
      stream_(blocks,
              [this, options, cached = caches(info_, options, blocks)]() -> BlockStream<DenseBlock>::Reader {
                auto reader = std::make_shared<ShardReader>(info_);
                return [this, reader, options, cached](const BlockRef& ref) {
                  DenseBlock b = reader->read(ref, options.read_labels, options.allow_nan,
                                              keeps_float32(info_, options, ref), cached);
                  if (!options.nan_fill.empty() && b.x.hasNaN())
                    for (Index i = 0; i < b.x.rows(); ++i)
                      for (Index j = 0; j < b.x.cols(); ++j)
                        if (std::isnan(b.x(i, j))) b.x(i, j) = options.nan_fill[static_cast<std::size_t>(j)];
                  return b;
                };
              },
              options.prefetch_blocks, caches(info_, options, blocks)) {
  for (const auto& b : blocks) num_local_rows_ += b.num_rows;
  local_bytes_ = dense_bytes(info_, options, blocks);
}

std::unique_ptr<BlockSource> BlockSource::with_nan_fill(std::vector<double> fill) const {
  BlockSourceOptions o = options_;
  o.nan_fill = std::move(fill);
  const auto b = blocks();
  return std::make_unique<BlockSource>(info_, std::vector<BlockRef>(b.begin(), b.end()), std::move(o));
}

}  // namespace latent::io
