#pragma once
/// \file Writing and reading the HDF5 files latent produces (models, predictions, shards).
/// Writers create a temporary file beside the target and rename it into place on
/// commit(), after flush and fsync (docs/ARCHITECTURE.md §6 rule 3); an uncommitted writer
/// removes its temporary file. All calls are local; use them on one rank.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "latent/core/types.hpp"
#include "latent/io/dense_dataset.hpp"

namespace latent::io {

/// Throws Error(kOutput) if `path` exists (and !overwrite) or its directory is not
/// writable (checked by creating and removing a probe file). Local.
void check_output_path(const std::string& path, bool overwrite);

/// The largest HDF5 chunk a dataset read may have, in bytes (default 64 MiB; `--max-chunk-mb`
/// sets it): a chunk is decompressed whole, so one of 1 GiB costs 1 GiB of memory and its
/// decompression for every block read from it. Datasets with larger chunks are refused
/// (Error(kInput)). Process-wide, thread-safe.
std::size_t max_chunk_bytes() noexcept;
void set_max_chunk_bytes(std::size_t bytes) noexcept;

/// The suffix of this process's temporary files and directories: ".tmp-<host>-<pid>". A
/// temporary is renamed into place when complete and removed on every failure path.
std::string temp_suffix();
/// The HDF5 library's version ("1.10.8") and whether it was built for MPI. Local.
std::string hdf5_version();

/// Removes from `dir` the temporaries (files or directories named `*.tmp-<host>-<pid>`)
/// that processes of this host left when they were killed (SIGKILL, SIGINT, a crash): the
/// host is this one and no process <pid> exists. Temporaries of other hosts (a shared
/// filesystem) and of live processes are left alone, as is everything else. Returns the
/// paths removed. Local; errors are ignored (a concurrent sweep may remove a file first).
/// check_output_path calls it on the output's directory.
std::vector<std::string> sweep_stale_temporaries(const std::string& dir);

/// An advisory lock on `<path>.lock` (or `lock_path`) (fcntl, so the kernel releases it if the process
/// dies, also on NFS): two jobs writing the same output cannot both hold it. Throws
/// Error(kOutput) naming the holder if another process has it ("<what> <path>: another job
/// is using it (lock ... held by pid P on HOST)"). On a filesystem without locking (fcntl
/// fails with ENOSYS, ENOLCK or EOPNOTSUPP) it throws Error(kOutput) asking for
/// HDF5_USE_FILE_LOCKING=FALSE, and with that variable set it proceeds without the lock
/// (docs/CLUSTER.md). Local; removes the lock file on destruction.
class OutputLock {
 public:
  explicit OutputLock(const std::string& path, const std::string& what = "output", const std::string& lock_path = "");
  ~OutputLock();
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;

 private:
  std::string path_;
  int fd_ = -1;
};

class H5Writer {
 public:
  /// Creates `<path>` + temp_suffix() and checks the output as check_output_path does.
  H5Writer(std::string path, bool overwrite);
  ~H5Writer();
  H5Writer(const H5Writer&) = delete;
  H5Writer& operator=(const H5Writer&) = delete;

  /// Whole datasets. `name` may contain groups ("history/lower_bound"), created as needed.
  void write(const std::string& name, const RowMatrix& m);
  void write(const std::string& name, std::span<const double> v);
  void write(const std::string& name, std::span<const std::int64_t> v);
  void write(const std::string& name, std::span<const double> data, const std::vector<Index>& shape);
  /// A 1-D dataset of variable-length UTF-8 strings (h5py reads it as an array of str).
  void write_strings(const std::string& name, const std::vector<std::string>& values);

  /// Datasets filled in row slabs: create, then write_rows in any order.
  void create(const std::string& name, DType file_type, Index rows, Index cols);
  void write_rows(const std::string& name, Index row_begin, const RowMatrix& rows);
  void write_rows(const std::string& name, Index row_begin, std::span<const std::int64_t> rows);
  /// `rows` rows of a 2-D float64 dataset from `data` (rows × cols, row-major, contiguous):
  /// a slab of a larger matrix without copying it out.
  void write_rows(const std::string& name, Index row_begin, const double* data, Index rows, Index cols);
  /// A block of a 2-D float64 dataset made by create: rows [row_begin, + block.rows()) x
  /// columns [col_begin, + block.cols()).
  void write_block(const std::string& name, Index row_begin, Index col_begin, const RowMatrix& block);

  /// Attributes on the root group ("/") or on an existing dataset or group.
  void attr(const std::string& object, const std::string& name, const std::string& value);
  void attr(const std::string& object, const std::string& name, double value);
  void attr(const std::string& object, const std::string& name, std::int64_t value);

  /// Flush, fsync, close, rename over the target, fsync the directory.
  void commit();
  const std::string& path() const noexcept { return path_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string path_;
  std::string tmp_path_;
  bool committed_ = false;
};

class H5Reader {
 public:
  /// Opens read-only. Throws Error(kNoInput) if missing, Error(kInput) if not HDF5.
  explicit H5Reader(const std::string& path);
  ~H5Reader();
  H5Reader(const H5Reader&) = delete;
  H5Reader& operator=(const H5Reader&) = delete;

  bool has(const std::string& name) const;
  std::vector<Index> shape(const std::string& name) const;
  /// Any 1-D or 2-D numeric dataset as a row-major double matrix (1-D: one column).
  RowMatrix read_matrix(const std::string& name) const;
  std::vector<double> read_doubles(const std::string& name) const;
  /// Rows [begin, begin+count) of a 1-D or 2-D numeric dataset, as doubles.
  RowMatrix read_rows(const std::string& name, Index begin, Index count) const;
  std::vector<std::int64_t> read_int64(const std::string& name) const;
  /// A 1-D dataset of variable-length strings. Throws Error(kInput) for another type.
  std::vector<std::string> read_strings(const std::string& name) const;
  bool has_attr(const std::string& object, const std::string& name) const;
  std::string attr_string(const std::string& object, const std::string& name) const;
  double attr_double(const std::string& object, const std::string& name) const;
  std::int64_t attr_int(const std::string& object, const std::string& name) const;
  /// Names of the datasets and groups directly under `group`.
  std::vector<std::string> list(const std::string& group) const;
  const std::string& path() const noexcept { return path_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string path_;
};

}  // namespace latent::io
