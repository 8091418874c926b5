#include "latent/io/dense_dataset.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <filesystem>
#include <vector>

#include "h5_handle.hpp"
#include "latent/core/error.hpp"
#include "latent/io/shard_files.hpp"

namespace latent::io {
namespace {

using detail::Handle;

std::string describe_type(hid_t type) {
  switch (H5Tget_class(type)) {
    case H5T_INTEGER: return std::to_string(8 * H5Tget_size(type)) + "-bit integer";
    case H5T_FLOAT: return std::to_string(8 * H5Tget_size(type)) + "-bit float";
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    default: return "unsupported type class";
  }
}

// True if the bytes at `offset` of the file are /data's first values as libhdf5 reads
// them (up to 4096 of row 0, of the native type `native`; `cols` in the row): the check
// that a direct read (pread at ShardInfo::data_offset) gives the rows libhdf5 would.
// Caller holds the libhdf5 lock.
bool first_row_at(const std::string& path, hid_t dataset, hid_t native, hsize_t cols, haddr_t offset) {
  const hsize_t m = std::min<hsize_t>(cols, 4096);
  const std::size_t bytes = static_cast<std::size_t>(m) * H5Tget_size(native);
  std::vector<unsigned char> via_hdf5(bytes), direct(bytes);
  Handle file_space = detail::space_handle(H5Dget_space(dataset));
  const hsize_t start[2] = {0, 0};
  const hsize_t count[2] = {1, m};
  H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr);
  Handle mem_space = detail::space_handle(H5Screate_simple(2, count, nullptr));
  if (H5Dread(dataset, native, mem_space.get(), file_space.get(), H5P_DEFAULT, via_hdf5.data()) < 0) return false;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const ssize_t got = ::pread(fd, direct.data(), bytes, static_cast<off_t>(offset));
  ::close(fd);
  return got == static_cast<ssize_t>(bytes) && via_hdf5 == direct;
}

ShardInfo inspect_shard(const std::string& path, Index* num_features, bool* labels) {
  detail::Hdf5Lock hdf5_lock(detail::hdf5_mutex());
  Handle f = detail::open_read_only(path);
  ShardInfo shard;
  shard.path = path;
  detail::check_shard_attributes(f.get(), path, kDataFormatVersion, kDenseKind, "latent import dense");
  const std::string where = "file " + path + ", dataset /" + kDataDataset;
  Handle d = detail::open_trusted_dataset(f.get(), path, kDataDataset);
  Handle type = detail::type_handle(H5Dget_type(d.get()));
  const bool is_float = H5Tget_class(type.get()) == H5T_FLOAT;
  const std::size_t bytes = H5Tget_size(type.get());
  if (!is_float || (bytes != 4 && bytes != 8))
    throw_input(where + ": has dtype " + describe_type(type.get()) +
                "; supported: float32, float64 (import with `latent import dense`)");
  shard.dtype = bytes == 4 ? DType::kFloat32 : DType::kFloat64;
  Handle space = detail::space_handle(H5Dget_space(d.get()));
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank != 2) throw_input(where + ": has " + std::to_string(rank) + " dimensions; expected 2 (rows, features)");
  hsize_t dims[2] = {0, 0};
  H5Sget_simple_extent_dims(space.get(), dims, nullptr);
  // Untrusted sizes: bound each dimension so that rows, row offsets and rows × features
  // stay far from overflow everywhere downstream.
  constexpr hsize_t kMaxRows = hsize_t{1} << 40, kMaxFeatures = hsize_t{1} << 24;
  if (dims[0] > kMaxRows || dims[1] > kMaxFeatures)
    throw_input(where + ": implausible shape " + std::to_string(dims[0]) + " x " + std::to_string(dims[1]) +
                " (at most 2^40 rows and 2^24 features per shard)");
  shard.num_rows = static_cast<Index>(dims[0]);
  // Before the storage check: a dataset with no columns stores no bytes, which is no damage.
  if (dims[1] < 1)
    throw_input(where + ": has 0 columns (shape " + std::to_string(dims[0]) +
                " x 0); every sample needs at least one feature");
  // A contiguous dataset's bytes must be stored, match the shape and lie inside the file
  // (a truncated or crafted file fails here, by name, instead of inside libhdf5).
  Handle dcpl = detail::plist_handle(H5Dget_create_plist(d.get()));
  if (H5Pget_layout(dcpl.get()) == H5D_CONTIGUOUS && dims[0] > 0) {
    std::error_code ec;
    const auto file_bytes = static_cast<hsize_t>(std::filesystem::file_size(path, ec));
    const hsize_t expected = dims[0] * dims[1] * bytes;
    const haddr_t offset = H5Dget_offset(d.get());
    if (H5Dget_storage_size(d.get()) != expected || offset == HADDR_UNDEF || offset > file_bytes ||
        expected > file_bytes - offset)
      throw_input(where + ": the stored data does not match its shape " + std::to_string(dims[0]) + " x " +
                  std::to_string(dims[1]) + " (truncated or damaged file)");
    const hid_t native = bytes == 4 ? H5T_NATIVE_FLOAT : H5T_NATIVE_DOUBLE;
    if (std::endian::native == std::endian::little && H5Tequal(type.get(), native) > 0 &&
        first_row_at(path, d.get(), native, dims[1], offset)) {
      shard.data_offset = static_cast<std::int64_t>(offset);
      shard.file_bytes = static_cast<std::int64_t>(file_bytes);
    }
  }
  const auto d_features = static_cast<Index>(dims[1]);
  if (*num_features >= 0 && d_features != *num_features)
    throw_input(where + ": has " + std::to_string(d_features) + " features but earlier shards have " +
                std::to_string(*num_features) + "; every shard must have the same number of features");
  *num_features = d_features;
  if (H5Lexists(f.get(), kLabelsDataset, H5P_DEFAULT) > 0) {
    const std::string lwhere = "file " + path + ", dataset /" + kLabelsDataset;
    Handle l = detail::open_trusted_dataset(f.get(), path, kLabelsDataset);
    Handle ltype = detail::type_handle(H5Dget_type(l.get()));
    if (H5Tget_class(ltype.get()) != H5T_INTEGER)
      throw_input(lwhere + ": has dtype " + describe_type(ltype.get()) + "; expected integer");
    Handle lspace = detail::space_handle(H5Dget_space(l.get()));
    hsize_t ldims[2] = {0, 0};
    const int lrank = H5Sget_simple_extent_ndims(lspace.get());
    H5Sget_simple_extent_dims(lspace.get(), ldims, nullptr);
    if (lrank != 1 || static_cast<Index>(ldims[0]) != shard.num_rows)
      throw_input(lwhere + ": expected one label per row (" + std::to_string(shard.num_rows) + ")");
    shard.has_labels = true;
  }
  *labels = *labels && shard.has_labels;
  return shard;
}

}  // namespace

DenseDatasetInfo open_dense_dataset(const std::string& location) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(location, ec))) throw Error(ErrorKind::kNoInput, "data " + location + ": does not exist");
  std::vector<std::string> paths;
  if (fs::is_directory(location, ec)) {
    paths = list_shard_files(location);
    if (paths.empty())
      throw_input("data " + location + ": directory has no .h5 shards (create them with `latent import dense`)");
  } else {
    require_regular_file(location, "data");
    paths.push_back(location);
  }
  DenseDatasetInfo info;
  info.location = location;
  info.num_features = -1;
  info.has_labels = true;
  for (const auto& p : paths) {
    info.shards.push_back(inspect_shard(p, &info.num_features, &info.has_labels));
    info.num_rows += info.shards.back().num_rows;
    if (info.num_rows > (Index{1} << 48)) throw_input("data " + location + ": more than 2^48 rows in total");
  }
  if (info.num_rows == 0) throw_input("data " + location + ": has no rows");
  return info;
}

}  // namespace latent::io
