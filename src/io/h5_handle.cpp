#include "h5_handle.hpp"

#include <filesystem>

#include "latent/core/error.hpp"

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
  if (H5Fis_hdf5(path.c_str()) <= 0)
    throw_input("file " + path + ": not an HDF5 file (or truncated / damaged)");
  Handle fapl = plist_handle(H5Pcreate(H5P_FILE_ACCESS));
  Handle f = file_handle(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()));
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
  return d;
}

}  // namespace latent::io::detail
