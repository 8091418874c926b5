#pragma once
/// \file Labels of dense rows (`latent import dense --labels`): an IDX file (IDX1, gzipped
/// or plain), an NPY file (name ending .npy or .npy.gz; a 1-D integer array), or text with
/// one integer per line (blank lines skipped). The kind is told by the name (.npy) and
/// otherwise by the first bytes (an IDX1 magic number).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "latent/io/import/byte_stream.hpp"
#include "latent/io/import/idx.hpp"
#include "latent/io/import/npy.hpp"

namespace latent::io::importers {

class LabelReader {
 public:
  /// Opens `path` and reads its header; throws as ByteStream, IdxReader or NpyReader do.
  explicit LabelReader(const std::string& path);
  /// The label of data row `row` (rows are asked for in order, from 0). Throws
  /// Error(kInput) "labels PATH: has fewer labels than data rows (no label for row R)",
  /// or naming the row of a text label that is not an integer.
  std::int64_t next(Index row);

 private:
  [[noreturn]] void short_by(Index row) const;
  std::string path_;
  std::unique_ptr<NpyReader> npy_;
  std::unique_ptr<ByteStream> stream_;
  IdxHeader idx_;
  std::size_t idx_size_ = 1;
  bool text_ = false;
};

}  // namespace latent::io::importers
