#include "h5_handle.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>

#include "latent/io/h5_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <type_traits>

#include "latent/core/error.hpp"
#include "latent/io/shard_files.hpp"

namespace latent::io::detail {

std::recursive_mutex& hdf5_mutex() {
  static std::recursive_mutex m;
  return m;
}

void silence_hdf5() {
  Hdf5Lock lock(hdf5_mutex());
  static const bool once = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)once;
}

Handle open_read_only(const std::string& path) {
  silence_hdf5();
  Hdf5Lock lock(hdf5_mutex());
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    throw Error(ErrorKind::kNoInput, "file " + path + ": does not exist");
  require_regular_file(path, "file");  // before libhdf5 opens it: a FIFO would block
  if (H5Fis_hdf5(path.c_str()) <= 0)
    throw_input("file " + path + ": not an HDF5 file (or truncated / damaged)");
  Handle fapl = plist_handle(H5Pcreate(H5P_FILE_ACCESS));
  errno = 0;
  Handle f = file_handle(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()));
  // libhdf5 locks every file it opens (flock): on a filesystem without locking (some
  // NFS and Lustre mounts) that fails with ENOSYS or ENOLCK (docs/CLUSTER.md).
  if (!f.valid() && (errno == ENOSYS || errno == ENOLCK))
    throw_input("file " + path + ": cannot be locked (" + std::strerror(errno) +
                "): this filesystem has no file locking; set HDF5_USE_FILE_LOCKING=FALSE");
  if (!f.valid())
    throw_input("file " + path +
                ": cannot be opened as HDF5 (truncated or damaged? if another process is "
                "writing it, set HDF5_USE_FILE_LOCKING=FALSE)");
  return f;
}

Handle open_trusted_dataset(hid_t file, const std::string& file_path, const std::string& name) {
  Hdf5Lock lock(hdf5_mutex());
  const std::string where = "file " + file_path + ", dataset /" + name;
  if (H5Lexists(file, name.c_str(), H5P_DEFAULT) <= 0) throw_input(where + ": missing");
  H5L_info_t link{};
  if (H5Lget_info(file, name.c_str(), &link, H5P_DEFAULT) < 0) throw_input(where + ": unreadable link");
  if (link.type != H5L_TYPE_HARD)
    throw_input(where + ": is a soft or external link; refused (only plain datasets are read)");
  H5O_info_t info{};
  if (H5Oget_info_by_name2(file, name.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0 ||
      info.type != H5O_TYPE_DATASET)
    throw_input(where + ": is not a dataset");
  Handle d = dataset_handle(H5Dopen2(file, name.c_str(), H5P_DEFAULT));
  if (!d.valid()) throw_input(where + ": cannot be opened");
  Handle dcpl = plist_handle(H5Dget_create_plist(d.get()));
  if (H5Pget_layout(dcpl.get()) == H5D_VIRTUAL)
    throw_input(where + ": is a virtual dataset; refused");
  if (H5Pget_external_count(dcpl.get()) > 0)
    throw_input(where + ": uses external storage; refused");
  if (H5Pget_layout(dcpl.get()) == H5D_CHUNKED) {
    // A chunk is read (and decompressed) whole: bound it, and give the dataset a chunk
    // cache that holds one, so that consecutive blocks within a chunk decompress it once.
    hsize_t dims[H5S_MAX_RANK] = {0};
    const int rank = H5Pget_chunk(dcpl.get(), H5S_MAX_RANK, dims);
    Handle type = type_handle(H5Dget_type(d.get()));
    double bytes = type.valid() ? static_cast<double>(H5Tget_size(type.get())) : 8.0;
    for (int i = 0; i < rank; ++i) bytes *= static_cast<double>(dims[i]);
    if (bytes > static_cast<double>(max_chunk_bytes()))
      throw_input(fmt::format("{}: its HDF5 chunks are {:.0f} MiB, more than the limit of {} MiB (reading one would "
                              "decompress all of it; re-import the data with `latent import dense --format hdf5`, or "
                              "raise the limit with --max-chunk-mb)",
                              where, bytes / 1048576.0, max_chunk_bytes() >> 20));
    d.reset();
    Handle dapl = plist_handle(H5Pcreate(H5P_DATASET_ACCESS));
    H5Pset_chunk_cache(dapl.get(), 521, std::max<std::size_t>(std::size_t{1} << 20, static_cast<std::size_t>(bytes)), 1.0);
    d = dataset_handle(H5Dopen2(file, name.c_str(), dapl.get()));
    if (!d.valid()) throw_input(where + ": cannot be opened");
  }
  return d;
}



namespace {

// One attribute of `file`'s root group that must hold a single value of class `cls`
// (untrusted files may hold arrays or another type); invalid if absent.
Handle open_single_attr(hid_t file, const char* name, H5T_class_t cls, const std::string& where,
                        const std::string& expected) {
  if (H5Aexists(file, name) <= 0) return Handle();
  Handle a = attr_handle(H5Aopen(file, name, H5P_DEFAULT));
  if (!a.valid()) throw_input(where + ": cannot be opened");
  Handle type = type_handle(H5Aget_type(a.get()));
  Handle space = space_handle(H5Aget_space(a.get()));
  if (!type.valid() || !space.valid() || H5Tget_class(type.get()) != cls ||
      H5Sget_simple_extent_npoints(space.get()) != 1)
    throw_input(where + ": is not " + expected);
  return a;
}

std::string read_string_attr(hid_t attr, const std::string& where) {
  Handle type = type_handle(H5Aget_type(attr));
  if (H5Tis_variable_str(type.get()) > 0) {
    char* s = nullptr;
    Handle mt = type_handle(H5Tcopy(H5T_C_S1));
    H5Tset_size(mt.get(), H5T_VARIABLE);
    H5Tset_cset(mt.get(), H5Tget_cset(type.get()));  // h5py writes UTF-8; HDF5 will not convert
    if (H5Aread(attr, mt.get(), &s) < 0 || s == nullptr) throw_input(where + ": unreadable");
    std::string out(s);
    H5free_memory(s);
    return out;
  }
  const std::size_t n = H5Tget_size(type.get());
  if (n == 0 || n > 4096) throw_input(where + ": has an implausible size");
  std::string out(n, '\0');
  if (H5Aread(attr, type.get(), out.data()) < 0) throw_input(where + ": unreadable");
  out.resize(out.find('\0') == std::string::npos ? n : out.find('\0'));
  return out;
}

}  // namespace

void check_shard_attributes(hid_t file, const std::string& path, std::int64_t version, const std::string& kind,
                            const std::string& make) {
  Hdf5Lock lock(hdf5_mutex());
  const std::string required = "; a " + kind + " shard has the root attributes format_version = " +
                               std::to_string(version) + " (integer) and kind = \"" + kind + "\" (string), as `" +
                               make + "` writes them";
  const std::string vwhere = "file " + path + ", attribute format_version";
  Handle v = open_single_attr(file, "format_version", H5T_INTEGER, vwhere, "one integer" + required);
  if (!v.valid()) throw_input(vwhere + ": missing (not a latent data shard?)" + required);
  std::int64_t found = 0;
  if (H5Aread(v.get(), H5T_NATIVE_INT64, &found) < 0) throw_input(vwhere + ": unreadable");
  if (found != version)
    throw_input(vwhere + ": " + std::to_string(found) + " is not supported (this version of latent reads format_version " +
                std::to_string(version) + "; written by a newer version?)");
  const std::string kwhere = "file " + path + ", attribute kind";
  Handle k = open_single_attr(file, "kind", H5T_STRING, kwhere, "one string" + required);
  if (!k.valid()) throw_input(kwhere + ": missing (not a latent data shard?)" + required);
  const std::string found_kind = read_string_attr(k.get(), kwhere);
  if (found_kind != kind)
    throw_input(kwhere + ": is \"" + found_kind + "\" but a " + kind + " dataset is read here (every shard of a " + kind +
                " data directory has kind = \"" + kind + "\"; create them with `" + make + "`)");
}

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

NumericDatasetInfo inspect_numeric_dataset(hid_t file, const std::string& file_path, const std::string& name,
                                           int rank, bool allow_integer, bool allow_float, hsize_t max_extent) {
  Hdf5Lock lock(hdf5_mutex());
  const std::string where = "file " + file_path + ", dataset /" + name;
  Handle d = open_trusted_dataset(file, file_path, name);
  Handle type = type_handle(H5Dget_type(d.get()));
  const H5T_class_t cls = H5Tget_class(type.get());
  NumericDatasetInfo out;
  out.is_float = cls == H5T_FLOAT;
  out.element_bytes = H5Tget_size(type.get());
  const bool ok_class = (cls == H5T_INTEGER && allow_integer) || (cls == H5T_FLOAT && allow_float);
  if (!ok_class || out.element_bytes == 0 || out.element_bytes > 8 || (out.is_float && out.element_bytes < 4))
    throw_input(where + ": has an unsupported element type (class " + std::to_string(static_cast<int>(cls)) + ", " +
                std::to_string(out.element_bytes) + " bytes); expected " +
                (allow_integer && allow_float ? "integer or float" : allow_integer ? "integer" : "float") +
                " of at most 8 bytes");
  Handle space = space_handle(H5Dget_space(d.get()));
  const int got_rank = H5Sget_simple_extent_ndims(space.get());
  if (got_rank != rank)
    throw_input(where + ": has " + std::to_string(got_rank) + " dimensions; expected " + std::to_string(rank));
  out.dims.assign(static_cast<std::size_t>(rank), 0);
  H5Sget_simple_extent_dims(space.get(), out.dims.data(), nullptr);
  hsize_t elements = 1;
  for (hsize_t e : out.dims) {
    if (e > max_extent)
      throw_input(where + ": implausible extent " + std::to_string(e) + " (at most " + std::to_string(max_extent) + ")");
    elements *= e;
  }
  Handle dcpl = plist_handle(H5Dget_create_plist(d.get()));
  if (H5Pget_layout(dcpl.get()) == H5D_CONTIGUOUS && elements > 0) {
    std::error_code ec;
    const auto file_bytes = static_cast<hsize_t>(std::filesystem::file_size(file_path, ec));
    const hsize_t expected = elements * out.element_bytes;
    const haddr_t offset = H5Dget_offset(d.get());
    if (H5Dget_storage_size(d.get()) != expected || offset == HADDR_UNDEF || offset > file_bytes ||
        expected > file_bytes - offset)
      throw_input(where + ": the stored data does not match its shape (truncated or damaged file)");
  }
  return out;
}

template <class T>
void read_1d(hid_t dataset, hsize_t begin, hsize_t count, T* out, const std::string& where) {
  static_assert(std::is_same_v<T, std::int64_t> || std::is_same_v<T, double>);
  if (count == 0) return;
  Hdf5Lock lock(hdf5_mutex());
  Handle file_space = space_handle(H5Dget_space(dataset));
  H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, &begin, nullptr, &count, nullptr);
  Handle mem_space = space_handle(H5Screate_simple(1, &count, nullptr));
  const hid_t mem_type = std::is_same_v<T, double> ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT64;
  if (H5Dread(dataset, mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT, out) < 0)
    throw Error(ErrorKind::kIo, where + ", elements " + std::to_string(begin) + "-" + std::to_string(begin + count - 1) +
                                    ": read failed (file truncated or damaged?)");
}
template void read_1d<std::int64_t>(hid_t, hsize_t, hsize_t, std::int64_t*, const std::string&);
template void read_1d<double>(hid_t, hsize_t, hsize_t, double*, const std::string&);

}  // namespace latent::io::detail
