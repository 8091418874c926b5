#pragma once
/// \file Dense datasets: a directory of HDF5 shards (schema in docs/FORMATS.md).
/// Each shard holds `/data` (rows × D, float32 or float64, row-major), optionally
/// `/labels` (rows, int64), and the root attributes format_version (1) and kind ("dense").
/// Which directory entries are shards: list_shard_files (io/shard_files.hpp); they are
/// taken in lexicographic order of file name. A single .h5 file is also accepted as a
/// one-shard dataset.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "latent/core/types.hpp"

namespace latent::io {

inline constexpr int kDataFormatVersion = 1;
inline constexpr const char* kDenseKind = "dense";  ///< the `kind` attribute of a dense shard
inline constexpr const char* kDataDataset = "data";
inline constexpr const char* kLabelsDataset = "labels";

enum class DType { kFloat32, kFloat64, kInt64 };

struct ShardInfo {
  std::string path;
  Index num_rows = 0;
  DType dtype = DType::kFloat64;
  bool has_labels = false;
  /// Where /data's rows start in the file (bytes) when they can be read there directly
  /// (pread, outside libhdf5 and its global lock): contiguous storage of native
  /// little-endian IEEE values, checked at the scan by reading the first row both ways;
  /// -1 otherwise (the rows are read through libhdf5).
  std::int64_t data_offset = -1;
  std::int64_t file_bytes = 0;  ///< the file's size at the scan (a direct read of a file since resized goes through libhdf5)
};

/// Rows held in memory in place of shard files (the Python module's fit on a NumPy array,
/// docs/PYTHON.md): `data` points at N × D doubles, row-major, kept alive by `owner`.
struct MemoryRows {
  const double* data = nullptr;
  std::shared_ptr<const void> owner;
};

struct DenseDatasetInfo {
  std::string location;  ///< directory or file as given by the user
  std::vector<ShardInfo> shards;
  Index num_rows = 0;      ///< N, over all shards
  Index num_features = 0;  ///< D
  bool has_labels = false; ///< every shard has /labels
  /// Set: the rows are in memory (one float64 shard whose path is `location`, no file);
  /// BlockSource reads and validates them as a file's rows (the same blocks, the same checks).
  std::shared_ptr<const MemoryRows> memory;
};

/// A dataset over `num_rows` × `num_features` rows in memory: what open_dense_dataset gives
/// for one float64 shard without labels, named `location` in messages. Local. Throws
/// Error(kInput) for no rows or no features.
DenseDatasetInfo memory_dense_dataset(std::shared_ptr<const MemoryRows> rows, Index num_rows, Index num_features,
                                      std::string location);

/// Lists the shards (list_shard_files), reads the metadata of every shard and checks the
/// schema: root attributes format_version = 1 and kind = "dense", /data 2-D
/// float32/float64 with at least one column, the same D in every shard, /labels (if any)
/// 1-D integer with one entry per row; no external links, external storage or virtual
/// datasets. Local (every rank may call it). Throws Error(kNoInput) for a missing path, a
/// location that is neither a directory nor a regular file, or a directory entry named
/// like a shard that is not one (dangling link, FIFO, ...); Error(kInput) naming file and
/// dataset or attribute for anything else.
DenseDatasetInfo open_dense_dataset(const std::string& location);

}  // namespace latent::io
