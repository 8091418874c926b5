#pragma once
/// \file IDX (the MNIST format, http://yann.lecun.com/exdb/mnist/), gzipped or plain: a
/// magic number (0, 0, element type, number of dimensions), big-endian uint32 dimensions,
/// then the elements in C order, big-endian. Element types: 0x08 unsigned byte, 0x09
/// signed byte, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64. The first dimension is
/// the rows; the others multiply to D (an IDX1 file has D = 1).
#include <cstddef>
#include <string>
#include <vector>

#include "latent/io/import/binary_rows.hpp"

namespace latent::io::importers {

struct IdxHeader {
  int type = 0;            ///< element type code (0x08 ... 0x0E)
  std::vector<Index> dims; ///< at least one
};

/// Reads the magic number and dimensions. Throws Error(kInput) "input PATH: not an IDX file
/// (bad magic number)" or for a truncated header.
IdxHeader read_idx_header(ByteStream& s);
/// Bytes per element; throws Error(kInput) naming `path` for an unknown type code.
std::size_t idx_type_size(int type, const std::string& path);
/// The big-endian element of `type` at `p` as a double.
double idx_value(int type, const unsigned char* p);

/// The rows of an IDX file. `scale` NaN: 1/255 for unsigned bytes (pixels to [0, 1]), else
/// 1. Throws Error(kInput) for a bad magic number, an unknown type, implausible dimensions
/// (D above 2^28) or a truncated file (naming the rows).
class IdxReader final : public BinaryRowReader {
 public:
  IdxReader(const std::string& path, double scale);

 private:
  double value(const unsigned char* p) const override { return idx_value(h_.type, p); }
  IdxHeader h_;
};

}  // namespace latent::io::importers
