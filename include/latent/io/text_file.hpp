#pragma once
/// \file Text outputs (JSON exports) written as the HDF5 outputs are (h5_file.hpp): into a
/// temporary beside the target, renamed into place on commit() after flush and fsync
/// (docs/ARCHITECTURE.md §6 rule 3); an uncommitted writer removes its temporary, so a
/// failure leaves no partial output. Local: use on one rank.
#include <cstdio>
#include <string>
#include <string_view>

namespace latent::io {

class TextWriter {
 public:
  /// Creates `<path>` + temp_suffix() after check_output_path(path, overwrite). Throws
  /// Error(kOutput) if the output may not be written, Error(kIo) on a full disk.
  TextWriter(std::string path, bool overwrite);
  ~TextWriter();
  TextWriter(const TextWriter&) = delete;
  TextWriter& operator=(const TextWriter&) = delete;

  /// Appends `text`. Throws Error(kIo) naming the output if the write fails (disk full).
  void write(std::string_view text);
  /// Flush, fsync, close, rename over the target, fsync the directory. Throws Error(kIo).
  void commit();
  const std::string& path() const noexcept { return path_; }
  const std::string& temporary_path() const noexcept { return tmp_path_; }

 private:
  [[noreturn]] void fail(const std::string& what);
  std::string path_, tmp_path_;
  std::FILE* file_ = nullptr;
  bool committed_ = false;
};

}  // namespace latent::io
