#include "latent/io/h5_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <regex>
#include <vector>

#include "h5_handle.hpp"
#include "latent/core/error.hpp"

namespace latent::io {
namespace {

using detail::Handle;
namespace fs = std::filesystem;

hid_t mem_type(DType t) {
  switch (t) {
    case DType::kFloat32: return H5T_NATIVE_FLOAT;
    case DType::kFloat64: return H5T_NATIVE_DOUBLE;
    case DType::kInt64: return H5T_NATIVE_INT64;
  }
  return H5T_NATIVE_DOUBLE;
}
hid_t file_type(DType t) {
  switch (t) {
    case DType::kFloat32: return H5T_IEEE_F32LE;
    case DType::kFloat64: return H5T_IEEE_F64LE;
    case DType::kInt64: return H5T_STD_I64LE;
  }
  return H5T_IEEE_F64LE;
}

std::string parent_dir(const std::string& path) {
  fs::path p = fs::absolute(fs::path(path)).parent_path();
  return p.empty() ? std::string(".") : p.string();
}

}  // namespace

namespace {
std::atomic<std::size_t> g_max_chunk_bytes{std::size_t{64} << 20};
}  // namespace

std::size_t max_chunk_bytes() noexcept { return g_max_chunk_bytes.load(std::memory_order_relaxed); }
void set_max_chunk_bytes(std::size_t bytes) noexcept { g_max_chunk_bytes.store(bytes, std::memory_order_relaxed); }

std::string temp_suffix() {
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  return ".tmp-" + std::string(host) + "-" + std::to_string(::getpid());
}

std::vector<std::string> sweep_stale_temporaries(const std::string& dir) {
  std::vector<std::string> removed;
  char host_buf[256] = {0};
  ::gethostname(host_buf, sizeof host_buf - 1);
  const std::string host(host_buf);
  static const std::regex pattern(R"(.+\.tmp-(.+)-(\d{1,9}))");
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    const std::string name = e.path().filename().string();
    if (!std::regex_match(name, m, pattern) || m[1] != host) continue;
    const auto pid = static_cast<pid_t>(std::stol(m[2]));
    if (pid <= 0 || ::kill(pid, 0) == 0 || errno != ESRCH) continue;  // alive (or not ours to judge)
    std::error_code rm;
    if (fs::remove_all(e.path(), rm) > 0 && !rm) removed.push_back(e.path().string());
  }
  return removed;
}

void check_output_path(const std::string& path, bool overwrite) {
  std::error_code ec;
  if (path.empty()) throw_usage("output path is empty");
  if (fs::exists(path, ec) && !overwrite)
    throw_output("output " + path + ": already exists; choose another name or pass --overwrite");
  const std::string dir = parent_dir(path);
  if (!fs::is_directory(dir, ec)) throw_output("output " + path + ": directory " + dir + " does not exist");
  sweep_stale_temporaries(dir);
  const std::string probe = path + ".probe-" + std::to_string(::getpid());
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) throw_output("output " + path + ": directory " + dir + " is not writable");
  ::close(fd);
  ::unlink(probe.c_str());
}

OutputLock::OutputLock(const std::string& path, const std::string& what, const std::string& lock_path)
    : path_(lock_path.empty() ? path + ".lock" : lock_path) {
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT, 0644);
  if (fd_ < 0) throw_output(what + " " + path + ": cannot create lock file " + path_);
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (::fcntl(fd_, F_SETLK, &fl) != 0) {
    const int error = errno;
    if (error == ENOSYS || error == ENOLCK || error == EOPNOTSUPP) {
      // The filesystem has no locking (some NFS and Lustre mounts; docs/CLUSTER.md).
      // HDF5_USE_FILE_LOCKING=FALSE declares that: carry on without this guard.
      const char* env = std::getenv("HDF5_USE_FILE_LOCKING");
      if (env != nullptr && (std::string(env) == "FALSE" || std::string(env) == "0")) return;
      ::close(fd_);
      fd_ = -1;
      ::unlink(path_.c_str());
      throw_output(what + " " + path + ": cannot lock " + path_ + " (" + std::strerror(error) +
                   "): this filesystem has no file locking; set HDF5_USE_FILE_LOCKING=FALSE (docs/CLUSTER.md)");
    }
    char holder[256] = {0};
    const ssize_t n = ::pread(fd_, holder, sizeof holder - 1, 0);
    ::close(fd_);
    fd_ = -1;
    throw_output(what + " " + path + ": another job is " + (what == "output" ? "writing" : "using") + " it (lock " + path_ + " held by " +
                 (n > 0 ? std::string(holder, static_cast<std::size_t>(n)) : std::string("another process")) + ")");
  }
  char host[128] = {0};
  ::gethostname(host, sizeof host - 1);
  const std::string me = "pid " + std::to_string(::getpid()) + " on " + host;
  if (::ftruncate(fd_, 0) == 0 && ::pwrite(fd_, me.data(), me.size(), 0) < 0) {
    // The lock itself is what matters; the holder text is only for the message.
  }
}

OutputLock::~OutputLock() {
  if (fd_ < 0) return;
  ::unlink(path_.c_str());
  ::close(fd_);
}

struct H5Writer::Impl {
  Handle file;
  std::string path;  // the temporary, for messages

  // Datasets get their storage when created (and no fill value is written), so that the
  // file's end of allocation covers every byte a later write or flush puts there.
  // Objects carry no modification times, so that the same contents are the same bytes
  // whenever they are written (a parallel import is byte-identical for any rank count).
  static Handle early_allocation() {
    Handle dcpl = detail::plist_handle(H5Pcreate(H5P_DATASET_CREATE));
    H5Pset_obj_track_times(dcpl.get(), false);
    H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_EARLY);
    H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER);
    return dcpl;
  }

  // Reserves the file's blocks up to its end of allocation plus `extra` bytes before
  // libhdf5 writes there: a write or flush that fails for want of space leaves libhdf5 1.10
  // unable to close the file (it crashes in its shutdown at MPI_Finalize), so the full
  // disk must be met here, where nothing has failed yet. Throws Error(kIo) on ENOSPC.
  //
  // A slack of kSlack bytes beyond that is reserved too (libhdf5 truncates the file to its
  // end of allocation when it closes it, so the slack costs nothing in the end): on a
  // failure path the temporary is truncated to zero before it is closed, which gives back
  // at least the slack for the metadata libhdf5 flushes when closing.
  static constexpr hsize_t kSlack = 64 * 1024;
  void reserve(hsize_t extra = 0) {
    void* handle = nullptr;
    hsize_t size = 0;
    if (H5Fget_vfd_handle(file.get(), H5P_DEFAULT, &handle) < 0 || handle == nullptr || H5Fget_filesize(file.get(), &size) < 0)
      return;
    const int rc = ::posix_fallocate(*static_cast<int*>(handle), 0, static_cast<off_t>(size + extra + kSlack));
    if (rc == ENOSPC || rc == EDQUOT || rc == EFBIG)
      throw Error(ErrorKind::kIo, "output " + path + ": No space left on device (disk full?)");
  }

  hid_t ensure_parent(const std::string& name) {
    // Creates intermediate groups of "a/b/c".
    std::size_t pos = 0;
    while ((pos = name.find('/', pos + 1)) != std::string::npos) {
      const std::string group = name.substr(0, pos);
      if (H5Lexists(file.get(), group.c_str(), H5P_DEFAULT) <= 0) {
        Handle gcpl = detail::plist_handle(H5Pcreate(H5P_GROUP_CREATE));
        H5Pset_obj_track_times(gcpl.get(), false);
        Handle g = detail::group_handle(H5Gcreate2(file.get(), group.c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT));
        if (!g.valid()) throw_output("cannot create group " + group);
      }
    }
    return file.get();
  }

  void write_raw(const std::string& name, DType type, const void* data, const std::vector<Index>& shape) {
    ensure_parent(name);
    std::vector<hsize_t> dims(shape.begin(), shape.end());
    Handle space = detail::space_handle(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
    Handle d = detail::dataset_handle(
        H5Dcreate2(file.get(), name.c_str(), file_type(type), space.get(), H5P_DEFAULT, early_allocation().get(), H5P_DEFAULT));
    if (!d.valid()) throw_output("cannot create dataset " + name);
    reserve(4096);  // and a page for the metadata the dataset adds
    Index total = 1;
    for (Index s : shape) total *= s;
    if (total > 0 && H5Dwrite(d.get(), mem_type(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
      throw Error(ErrorKind::kIo, "cannot write dataset " + name + " (disk full?)");
  }

  void write_slab(const std::string& name, DType type, Index row_begin, Index rows, Index cols, const void* data,
                  Index col_begin = 0) {
    Handle d = detail::dataset_handle(H5Dopen2(file.get(), name.c_str(), H5P_DEFAULT));
    if (!d.valid()) throw Error(ErrorKind::kInternal, "write_rows: no dataset " + name);
    Handle space = detail::space_handle(H5Dget_space(d.get()));
    const int rank = H5Sget_simple_extent_ndims(space.get());
    const hsize_t start[2] = {static_cast<hsize_t>(row_begin), static_cast<hsize_t>(col_begin)};
    const hsize_t count[2] = {static_cast<hsize_t>(rows), static_cast<hsize_t>(cols)};
    H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr);
    Handle mem = detail::space_handle(H5Screate_simple(rank, count, nullptr));
    if (rows > 0 && H5Dwrite(d.get(), mem_type(type), mem.get(), space.get(), H5P_DEFAULT, data) < 0)
      throw Error(ErrorKind::kIo, "cannot write rows of dataset " + name + " (disk full?)");
  }

  template <class Writer>
  void with_attr(const std::string& object, const std::string& attr_name, hid_t type, Writer&& write) {
    Handle space = detail::space_handle(H5Screate(H5S_SCALAR));
    Handle a = detail::attr_handle(H5Acreate_by_name(file.get(), object.c_str(), attr_name.c_str(), type,
                                                     space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    if (!a.valid()) throw_output("cannot create attribute " + attr_name + " on " + object);
    if (write(a.get()) < 0) throw Error(ErrorKind::kIo, "cannot write attribute " + attr_name);
  }
};

namespace {

// The failure path of a writer: the temporary is about to be deleted, so its bytes may go
// first (and the space with them). Truncating it to zero gives back the space libhdf5 needs to flush its metadata
// when the file is closed: a close whose flush fails leaves libhdf5 1.10 with a half-closed
// file that it closes again in its shutdown (from MPI_Finalize) and crashes on (SIGSEGV).
// For the same reason commit() reserves the file's blocks before libhdf5 flushes: a flush
// that has failed once cannot be closed cleanly even after the space is freed (measured on
// a full tmpfs: docs/FAULTS.md "Checkpoints, preemption and faults").
void discard_and_close(Handle& file) {
  if (!file.valid()) return;
  void* handle = nullptr;
  if (H5Fget_vfd_handle(file.get(), H5P_DEFAULT, &handle) >= 0 && handle != nullptr) {
    if (::ftruncate(*static_cast<int*>(handle), 0) != 0) {
      // Nothing more to free; the close below is still attempted.
    }
  }
  // Not closed: the close would flush libhdf5's metadata, and on a full filesystem shared
  // with other writers (the other ranks) the space just freed may be gone again; a close
  // that fails leaves a half-destroyed file that libhdf5's shutdown (in MPI_Finalize)
  // crashes on (SIGSEGV, seen 1 run in 12 with 2 ranks on a full tmpfs). Left open, the
  // file (already removed by the caller) is closed by that shutdown, which survives a
  // failed flush. A failure path leaks one file id: the process is about to exit.
  file.release();
}

}  // namespace

H5Writer::H5Writer(std::string path, bool overwrite) : impl_(std::make_unique<Impl>()), path_(std::move(path)) {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  detail::silence_hdf5();
  check_output_path(path_, overwrite);
  tmp_path_ = path_ + temp_suffix();
  errno = 0;
  impl_->file = detail::file_handle(H5Fcreate(tmp_path_.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT));
  impl_->path = tmp_path_;
  if (!impl_->file.valid()) {
    const int error = errno;
    std::remove(tmp_path_.c_str());  // a partly created file (a full disk) is not left behind
    if (error == ENOSPC || error == EDQUOT)
      throw Error(ErrorKind::kIo, "output " + path_ + ": cannot create " + tmp_path_ + ": No space left on device");
    if (error == ENOSYS || error == ENOLCK)  // libhdf5's flock on a filesystem without locking
      throw_output("output " + path_ + ": cannot lock " + tmp_path_ + " (" + std::strerror(error) +
                   "): this filesystem has no file locking; set HDF5_USE_FILE_LOCKING=FALSE (docs/CLUSTER.md)");
    throw_output("output " + path_ + ": cannot create " + tmp_path_);
  }
  try {
    impl_->reserve();  // the slack, from the start
  } catch (...) {
    discard_and_close(impl_->file);
    std::remove(tmp_path_.c_str());
    throw;
  }
}


H5Writer::~H5Writer() {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  if (!committed_) {
    discard_and_close(impl_->file);
    std::remove(tmp_path_.c_str());
  }
}

void H5Writer::write(const std::string& name, const RowMatrix& m) {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  impl_->write_raw(name, DType::kFloat64, m.data(), {m.rows(), m.cols()});
}
void H5Writer::write(const std::string& name, std::span<const double> v) {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  impl_->write_raw(name, DType::kFloat64, v.data(), {static_cast<Index>(v.size())});
}
void H5Writer::write(const std::string& name, std::span<const std::int64_t> v) {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  impl_->write_raw(name, DType::kInt64, v.data(), {static_cast<Index>(v.size())});
}
void H5Writer::write(const std::string& name, std::span<const double> data, const std::vector<Index>& shape) {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  impl_->write_raw(name, DType::kFloat64, data.data(), shape);
}

void H5Writer::write_strings(const std::string& name, const std::vector<std::string>& values) {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  impl_->ensure_parent(name);
  Handle type = detail::type_handle(H5Tcopy(H5T_C_S1));
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  const hsize_t n = values.size();
  Handle space = detail::space_handle(H5Screate_simple(1, &n, nullptr));
  Handle dcpl = detail::plist_handle(H5Pcreate(H5P_DATASET_CREATE));
  H5Pset_obj_track_times(dcpl.get(), false);
  Handle d = detail::dataset_handle(
      H5Dcreate2(impl_->file.get(), name.c_str(), type.get(), space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
  if (!d.valid()) throw_output("cannot create dataset " + name);
  hsize_t bytes = 4096;  // the strings go to a global heap allocated as they are written
  for (const auto& v : values) bytes += v.size() + 32;
  impl_->reserve(bytes);
  std::vector<const char*> ptrs;
  ptrs.reserve(values.size());
  for (const auto& v : values) ptrs.push_back(v.c_str());
  if (n > 0 && H5Dwrite(d.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()) < 0)
    throw Error(ErrorKind::kIo, "cannot write dataset " + name + " (disk full?)");
}

void H5Writer::create(const std::string& name, DType type, Index rows, Index cols) {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  impl_->ensure_parent(name);
  std::vector<hsize_t> dims{static_cast<hsize_t>(rows)};
  if (cols > 0) dims.push_back(static_cast<hsize_t>(cols));
  Handle space = detail::space_handle(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
  Handle d = detail::dataset_handle(
      H5Dcreate2(impl_->file.get(), name.c_str(), file_type(type), space.get(), H5P_DEFAULT,
                 Impl::early_allocation().get(), H5P_DEFAULT));
  if (!d.valid()) throw_output("cannot create dataset " + name);
  impl_->reserve(4096);
}

void H5Writer::write_rows(const std::string& name, Index row_begin, const RowMatrix& rows) {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  impl_->write_slab(name, DType::kFloat64, row_begin, rows.rows(), rows.cols(), rows.data());
}
void H5Writer::write_rows(const std::string& name, Index row_begin, const double* data, Index rows, Index cols) {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  impl_->write_slab(name, DType::kFloat64, row_begin, rows, cols, data);
}
void H5Writer::write_block(const std::string& name, Index row_begin, Index col_begin, const RowMatrix& block) {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  impl_->write_slab(name, DType::kFloat64, row_begin, block.rows(), block.cols(), block.data(), col_begin);
}
void H5Writer::write_rows(const std::string& name, Index row_begin, std::span<const std::int64_t> rows) {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  impl_->write_slab(name, DType::kInt64, row_begin, static_cast<Index>(rows.size()), 1, rows.data());
}

void H5Writer::attr(const std::string& object, const std::string& name, const std::string& value) {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  // Variable-length UTF-8, as h5py writes strings (it reads them back as str).
  Handle type = detail::type_handle(H5Tcopy(H5T_C_S1));
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  const char* text = value.c_str();
  impl_->with_attr(object, name, type.get(), [&](hid_t a) { return H5Awrite(a, type.get(), &text); });
}
void H5Writer::attr(const std::string& object, const std::string& name, double value) {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  impl_->with_attr(object, name, H5T_IEEE_F64LE, [&](hid_t a) { return H5Awrite(a, H5T_NATIVE_DOUBLE, &value); });
}
void H5Writer::attr(const std::string& object, const std::string& name, std::int64_t value) {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  impl_->with_attr(object, name, H5T_STD_I64LE, [&](hid_t a) { return H5Awrite(a, H5T_NATIVE_INT64, &value); });
}

void H5Writer::commit() {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  // The blocks up to the end of allocation, before libhdf5 flushes (see Impl::reserve).
  bool reserved = true;
  try {
    impl_->reserve();
  } catch (const Error&) {
    reserved = false;
  }
  if (!reserved || H5Fflush(impl_->file.get(), H5F_SCOPE_GLOBAL) < 0) {
    discard_and_close(impl_->file);
    std::remove(tmp_path_.c_str());
    throw Error(ErrorKind::kIo, "output " + path_ + ": cannot write " + tmp_path_ + " (disk full?); nothing was written to " + path_);
  }
  // The reserved slack goes: libhdf5 truncates to its end of allocation only when the end
  // of file it tracked differs, and the blocks reserved past it are not in its count.
  hsize_t size = 0;
  const bool sized = H5Fget_filesize(impl_->file.get(), &size) >= 0 && size > 0;
  impl_->file.reset();
  if (sized && ::truncate(tmp_path_.c_str(), static_cast<off_t>(size)) != 0)
    throw Error(ErrorKind::kIo, "output " + path_ + ": cannot truncate " + tmp_path_);
  detail::fsync_path(tmp_path_, false);
  std::error_code ec;
  fs::rename(tmp_path_, path_, ec);
  if (ec) throw Error(ErrorKind::kIo, "output " + path_ + ": rename from " + tmp_path_ + " failed: " + ec.message());
  committed_ = true;
  detail::fsync_path(parent_dir(path_), true);
}

struct H5Reader::Impl {
  Handle file;
  // Opens an attribute that must hold exactly one element (untrusted files may hold arrays).
  Handle open_scalar_attr(const std::string& path, const std::string& object, const std::string& name) const {
    Handle a = detail::attr_handle(H5Aopen_by_name(file.get(), object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT));
    if (!a.valid()) throw_input("file " + path + ": attribute " + name + " missing on " + object);
    Handle space = detail::space_handle(H5Aget_space(a.get()));
    if (!space.valid() || H5Sget_simple_extent_npoints(space.get()) != 1)
      throw_input("file " + path + ": attribute " + name + " on " + object + " is not a single value");
    return a;
  }
  // Every dataset we read is numeric: an integer or float of at most 8 bytes per element
  // (a crafted element size would size libhdf5's conversion buffers).
  Handle open_dataset(const std::string& path, const std::string& name) const {
    Handle d = detail::open_trusted_dataset(file.get(), path, name);
    Handle type = detail::type_handle(H5Dget_type(d.get()));
    const auto cls = H5Tget_class(type.get());
    if ((cls != H5T_FLOAT && cls != H5T_INTEGER) || H5Tget_size(type.get()) > 8)
      throw_input("file " + path + ", dataset /" + name + ": is not a numeric dataset of at most 8 bytes per element");
    return d;
  }
  // Untrusted declared sizes: a dataset may claim more elements than the file could hold
  // (unallocated datasets read as fill values). Refuse before allocating unless the
  // logical size is within a generous factor of the file's size.
  void check_allocation(const std::string& path, const std::string& name, Index elements) const {
    std::error_code ec;
    const auto file_bytes = static_cast<double>(std::filesystem::file_size(path, ec));
    const double want = 8.0 * static_cast<double>(elements);
    if (elements < 0 || want > std::max(16.0 * file_bytes, 64.0 * 1024 * 1024))
      throw_input("file " + path + ", dataset /" + name + ": declares " + std::to_string(elements) +
                  " elements, implausible for a file of " + std::to_string(static_cast<long long>(file_bytes)) + " bytes");
  }
};

H5Reader::H5Reader(const std::string& path) : impl_(std::make_unique<Impl>()), path_(path) {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  impl_->file = detail::open_read_only(path);
}
H5Reader::~H5Reader() {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  impl_.reset();
}

bool H5Reader::has(const std::string& name) const {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  // Checks each path component, since H5Lexists fails on a missing intermediate group.
  std::size_t pos = 0;
  while (true) {
    pos = name.find('/', pos + 1);
    const std::string part = name.substr(0, pos);
    if (H5Lexists(impl_->file.get(), part.c_str(), H5P_DEFAULT) <= 0) return false;
    if (pos == std::string::npos) return true;
  }
}

std::vector<Index> H5Reader::shape(const std::string& name) const {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  Handle d = impl_->open_dataset(path_, name);
  Handle space = detail::space_handle(H5Dget_space(d.get()));
  const int rank = H5Sget_simple_extent_ndims(space.get());
  std::vector<hsize_t> dims(static_cast<std::size_t>(std::max(rank, 0)));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return std::vector<Index>(dims.begin(), dims.end());
}

RowMatrix H5Reader::read_matrix(const std::string& name) const {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  const auto dims = shape(name);
  if (dims.size() > 2) throw_input("file " + path_ + ", dataset /" + name + ": expected 1 or 2 dimensions");
  const Index rows = dims.empty() ? 1 : dims[0];
  const Index cols = dims.size() == 2 ? dims[1] : 1;
  if (cols > 0 && rows > (Index{1} << 40) / cols) throw_input("file " + path_ + ", dataset /" + name + ": implausible shape");
  impl_->check_allocation(path_, name, rows * cols);
  RowMatrix m(rows, cols);
  Handle d = impl_->open_dataset(path_, name);
  if (m.size() > 0 && H5Dread(d.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, m.data()) < 0)
    throw_input("file " + path_ + ", dataset /" + name + ": read failed (truncated or not numeric)");
  return m;
}

RowMatrix H5Reader::read_rows(const std::string& name, Index begin, Index count) const {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  const auto dims = shape(name);
  if (dims.empty() || dims.size() > 2) throw_input("file " + path_ + ", dataset /" + name + ": expected 1 or 2 dimensions");
  if (begin < 0 || count < 0 || begin + count > dims[0]) throw Error(ErrorKind::kInternal, "read_rows out of range");
  const Index cols = dims.size() == 2 ? dims[1] : 1;
  RowMatrix m(count, cols);
  Handle d = impl_->open_dataset(path_, name);
  Handle type = detail::type_handle(H5Dget_type(d.get()));
  const auto cls = H5Tget_class(type.get());
  if (cls != H5T_FLOAT && cls != H5T_INTEGER)
    throw_input("file " + path_ + ", dataset /" + name + ": is not numeric (found a string, compound or other type)");
  Handle space = detail::space_handle(H5Dget_space(d.get()));
  const hsize_t start[2] = {static_cast<hsize_t>(begin), 0};
  const hsize_t cnt[2] = {static_cast<hsize_t>(count), static_cast<hsize_t>(cols)};
  H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, start, nullptr, cnt, nullptr);
  Handle mem = detail::space_handle(H5Screate_simple(static_cast<int>(dims.size()), cnt, nullptr));
  if (count > 0 && H5Dread(d.get(), H5T_NATIVE_DOUBLE, mem.get(), space.get(), H5P_DEFAULT, m.data()) < 0)
    throw Error(ErrorKind::kIo, "file " + path_ + ", dataset /" + name + ", rows " + std::to_string(begin) + "-" +
                                    std::to_string(begin + count - 1) + ": read failed (truncated or damaged?)");
  return m;
}

std::vector<double> H5Reader::read_doubles(const std::string& name) const {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  Index total = 1;
  for (Index s : shape(name)) {
    if (s > 0 && total > (Index{1} << 40) / s) throw_input("file " + path_ + ", dataset /" + name + ": implausible shape");
    total *= s;
  }
  impl_->check_allocation(path_, name, total);
  std::vector<double> v(static_cast<std::size_t>(total));
  Handle d = impl_->open_dataset(path_, name);
  if (total > 0 && H5Dread(d.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) < 0)
    throw_input("file " + path_ + ", dataset /" + name + ": read failed (truncated or not numeric)");
  return v;
}

std::vector<std::string> H5Reader::read_strings(const std::string& name) const {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  const std::string where = "file " + path_ + ", dataset /" + name;
  Handle d = detail::open_trusted_dataset(impl_->file.get(), path_, name);
  Handle ftype = detail::type_handle(H5Dget_type(d.get()));
  if (H5Tget_class(ftype.get()) != H5T_STRING || H5Tis_variable_str(ftype.get()) <= 0)
    throw_input(where + ": expected variable-length strings");
  Handle space = detail::space_handle(H5Dget_space(d.get()));
  if (H5Sget_simple_extent_ndims(space.get()) != 1) throw_input(where + ": expected 1 dimension");
  hsize_t n = 0;
  H5Sget_simple_extent_dims(space.get(), &n, nullptr);
  impl_->check_allocation(path_, name, static_cast<Index>(n));
  Handle mtype = detail::type_handle(H5Tcopy(H5T_C_S1));
  H5Tset_size(mtype.get(), H5T_VARIABLE);
  H5Tset_cset(mtype.get(), H5Tget_cset(ftype.get()));
  std::vector<char*> ptrs(static_cast<std::size_t>(n), nullptr);
  if (n > 0 && H5Dread(d.get(), mtype.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()) < 0)
    throw_input(where + ": read failed");
  std::vector<std::string> out;
  out.reserve(ptrs.size());
  for (char* p : ptrs) out.emplace_back(p != nullptr ? p : "");
  if (n > 0) H5Dvlen_reclaim(mtype.get(), space.get(), H5P_DEFAULT, ptrs.data());
  return out;
}

std::vector<std::int64_t> H5Reader::read_int64(const std::string& name) const {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  const auto dims = shape(name);
  Index total = 1;
  for (Index s : dims) {
    if (s > 0 && total > (Index{1} << 40) / s) throw_input("file " + path_ + ", dataset /" + name + ": implausible shape");
    total *= s;
  }
  impl_->check_allocation(path_, name, total);
  std::vector<std::int64_t> v(static_cast<std::size_t>(total));
  Handle d = impl_->open_dataset(path_, name);
  if (total > 0 && H5Dread(d.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) < 0)
    throw_input("file " + path_ + ", dataset /" + name + ": read failed");
  return v;
}

bool H5Reader::has_attr(const std::string& object, const std::string& name) const {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  return H5Aexists_by_name(impl_->file.get(), object.c_str(), name.c_str(), H5P_DEFAULT) > 0;
}

std::string H5Reader::attr_string(const std::string& object, const std::string& name) const {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  Handle a = impl_->open_scalar_attr(path_, object, name);
  Handle type = detail::type_handle(H5Aget_type(a.get()));
  if (H5Tget_class(type.get()) != H5T_STRING) throw_input("file " + path_ + ": attribute " + name + " is not a string");
  if (H5Tis_variable_str(type.get()) > 0) {
    char* s = nullptr;
    Handle mt = detail::type_handle(H5Tcopy(H5T_C_S1));
    H5Tset_size(mt.get(), H5T_VARIABLE);
    H5Tset_cset(mt.get(), H5Tget_cset(type.get()));  // h5py writes UTF-8; HDF5 will not convert
    if (H5Aread(a.get(), mt.get(), &s) < 0 || s == nullptr) throw_input("file " + path_ + ": attribute " + name + " unreadable");
    std::string out(s);
    H5free_memory(s);
    return out;
  }
  const std::size_t n = H5Tget_size(type.get());
  if (n == 0 || n > (std::size_t{1} << 24)) throw_input("file " + path_ + ": attribute " + name + " has an implausible size");
  std::string out(n, '\0');
  if (H5Aread(a.get(), type.get(), out.data()) < 0) throw_input("file " + path_ + ": attribute " + name + " unreadable");
  out.resize(out.find('\0') == std::string::npos ? n : out.find('\0'));
  return out;
}

double H5Reader::attr_double(const std::string& object, const std::string& name) const {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  Handle a = impl_->open_scalar_attr(path_, object, name);
  double v = 0;
  if (H5Aread(a.get(), H5T_NATIVE_DOUBLE, &v) < 0)
    throw_input("file " + path_ + ": numeric attribute " + name + " missing on " + object);
  return v;
}

std::int64_t H5Reader::attr_int(const std::string& object, const std::string& name) const {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  Handle a = impl_->open_scalar_attr(path_, object, name);
  std::int64_t v = 0;
  if (H5Aread(a.get(), H5T_NATIVE_INT64, &v) < 0)
    throw_input("file " + path_ + ": integer attribute " + name + " missing on " + object);
  return v;
}

std::vector<std::string> H5Reader::list(const std::string& group) const {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  std::vector<std::string> names;
  Handle g = detail::group_handle(H5Gopen2(impl_->file.get(), group.c_str(), H5P_DEFAULT));
  if (!g.valid()) return names;
  H5Literate(g.get(), H5_INDEX_NAME, H5_ITER_INC, nullptr,
              [](hid_t, const char* name, const H5L_info_t*, void* out) -> herr_t {
                static_cast<std::vector<std::string>*>(out)->emplace_back(name);
                return 0;
              },
              &names);
  return names;
}

std::string hdf5_version() {
  unsigned major = 0, minor = 0, release = 0;
  H5get_libversion(&major, &minor, &release);
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(release);
}

}  // namespace latent::io
