#pragma once
/// \file NPY (NumPy's .npy, format versions 1-3), gzipped or plain: a 1-D (N) or 2-D
/// (N x D) C-ordered array of a numeric dtype: little-endian (or byte-sized) float32,
/// float64, signed or unsigned integers of 1-8 bytes, or bool.
#include <string>

#include "latent/io/import/binary_rows.hpp"

namespace latent::io::importers {

/// The rows of an NPY file, multiplied by `scale` (NaN: 1). Throws Error(kInput) naming
/// the file for a bad magic number, an implausible header, an unsupported dtype
/// (big-endian, non-numeric), Fortran order, an array that is not 1-D or 2-D, implausible
/// dimensions, or a truncated file (naming the rows).
class NpyReader final : public BinaryRowReader {
 public:
  NpyReader(const std::string& path, double scale);

 private:
  double value(const unsigned char* p) const override;
  char kind_ = 'f';
};

}  // namespace latent::io::importers
