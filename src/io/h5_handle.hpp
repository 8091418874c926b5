#pragma once
// Private RAII wrappers over HDF5 identifiers (the only place <hdf5.h> is seen, with src/io).
#include <hdf5.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>
#include <utility>

namespace latent::io::detail {

std::recursive_mutex& hdf5_mutex();

class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  ~Handle() { reset(); }
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)), closer_(o.closer_) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
      closer_ = o.closer_;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const noexcept { return id_; }
  /// Gives up ownership without closing.
  hid_t release() noexcept { return std::exchange(id_, H5I_INVALID_HID); }
  bool valid() const noexcept { return id_ >= 0; }
  void reset() noexcept {
    if (id_ >= 0 && closer_ != nullptr) {
      std::lock_guard<std::recursive_mutex> lock(hdf5_mutex());
      closer_(id_);
    }
    id_ = H5I_INVALID_HID;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

inline Handle file_handle(hid_t id) { return Handle(id, &H5Fclose); }
inline Handle dataset_handle(hid_t id) { return Handle(id, &H5Dclose); }
inline Handle space_handle(hid_t id) { return Handle(id, &H5Sclose); }
inline Handle type_handle(hid_t id) { return Handle(id, &H5Tclose); }
inline Handle plist_handle(hid_t id) { return Handle(id, &H5Pclose); }
inline Handle group_handle(hid_t id) { return Handle(id, &H5Gclose); }
inline Handle attr_handle(hid_t id) { return Handle(id, &H5Aclose); }

/// Debian's libhdf5 is built without thread safety: every HDF5 call in the process takes
/// this lock (recursive, since io functions nest). The I/O thread holds it per block only.
std::recursive_mutex& hdf5_mutex();
using Hdf5Lock = std::lock_guard<std::recursive_mutex>;

/// Turns off HDF5's own error printing (we report errors ourselves). Idempotent.
void silence_hdf5();

/// Opens a file read-only with the default (sec2) driver; throws Error naming the file:
/// Error(kNoInput) if it does not exist or is not a regular file (a FIFO, a directory, a
/// dangling symbolic link: checked before anything opens it), Error(kInput) if not HDF5.
Handle open_read_only(const std::string& path);

/// Checks the root attributes every data shard carries (docs/FORMATS.md):
/// `format_version`, one integer equal to `version`, and `kind`, one string equal to
/// `kind`. `make` names the command that writes valid shards ("latent import dense").
/// Throws Error(kInput) naming the file and the attribute.
void check_shard_attributes(hid_t file, const std::string& path, std::int64_t version, const std::string& kind,
                            const std::string& make);

/// Opens `name` as a dataset after checking it is a hard link to a dataset with neither
/// external storage nor a virtual layout (docs/ARCHITECTURE.md §6 rule 6), and, if it is
/// chunked, whose chunks are at most io::max_chunk_bytes() (it then gets a chunk cache that
/// holds one chunk). Throws Error(kInput).
Handle open_trusted_dataset(hid_t file, const std::string& file_path, const std::string& name);

/// fsync of a file or directory (best effort: errors are ignored), for atomic writes.
void fsync_path(const std::string& path, bool directory);

/// Shape and element type of a numeric dataset, checked before anything is read.
struct NumericDatasetInfo {
  std::vector<hsize_t> dims;
  bool is_float = false;
  std::size_t element_bytes = 0;
};
/// Opens `name` (open_trusted_dataset) and checks it has `rank` dimensions and an integer
/// (if allow_integer) or float (if allow_float) type of at most 8 bytes, each dimension at
/// most max_extent, and, if contiguous, stored bytes that match the shape and lie inside
/// the file. Throws Error(kInput) naming file, dataset and the problem.
NumericDatasetInfo inspect_numeric_dataset(hid_t file, const std::string& file_path, const std::string& name,
                                           int rank, bool allow_integer, bool allow_float, hsize_t max_extent);

/// Reads elements [begin, begin + count) of a 1-D dataset converted to T (int64 or
/// double). Throws Error(kIo) naming `where` if the read fails.
template <class T>
void read_1d(hid_t dataset, hsize_t begin, hsize_t count, T* out, const std::string& where);

}  // namespace latent::io::detail
