#include "latent/io/import/idx.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "latent/core/error.hpp"

namespace latent::io::importers {
namespace {

std::uint32_t big_endian32(const unsigned char* b) {
  return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) | b[3];
}

}  // namespace

IdxHeader read_idx_header(ByteStream& s) {
  unsigned char magic[4];
  s.read(magic, 4, "the IDX header");
  if (magic[0] != 0 || magic[1] != 0 || magic[3] < 1)
    throw_input("input " + s.path() + ": not an IDX file (bad magic number)");
  IdxHeader h;
  h.type = magic[2];
  for (int i = 0; i < magic[3]; ++i) {
    unsigned char b[4];
    s.read(b, 4, "the IDX dimensions");
    h.dims.push_back(static_cast<Index>(big_endian32(b)));
  }
  return h;
}

std::size_t idx_type_size(int type, const std::string& path) {
  switch (type) {
    case 0x08: case 0x09: return 1;
    case 0x0B: return 2;
    case 0x0C: case 0x0D: return 4;
    case 0x0E: return 8;
    default: throw_input(fmt::format("input {}: unknown IDX element type 0x{:02x}", path, type));
  }
}

double idx_value(int type, const unsigned char* p) {
  switch (type) {
    case 0x08: return p[0];
    case 0x09: return static_cast<signed char>(p[0]);
    case 0x0B: return static_cast<std::int16_t>((p[0] << 8) | p[1]);
    case 0x0C: return static_cast<std::int32_t>(big_endian32(p));
    case 0x0D: { const std::uint32_t u = big_endian32(p); float f; std::memcpy(&f, &u, 4); return f; }
    default: {
      std::uint64_t u = 0;
      for (int i = 0; i < 8; ++i) u = (u << 8) | p[i];
      double d; std::memcpy(&d, &u, 8); return d;
    }
  }
}

IdxReader::IdxReader(const std::string& path, double scale) : BinaryRowReader(path, scale) {
  h_ = read_idx_header(s_);
  rows_ = h_.dims[0];
  d_ = 1;
  for (std::size_t i = 1; i < h_.dims.size(); ++i) {
    if (h_.dims[i] < 1) check_dimensions(path, rows_, 0);  // a zero extent: no columns
    if (d_ > kMaxFeatures / h_.dims[i]) check_dimensions(path, rows_, kMaxFeatures + 1);
    d_ *= h_.dims[i];
  }
  check_dimensions(path, rows_, d_);
  size_ = idx_type_size(h_.type, path);
  if (std::isnan(scale_)) scale_ = h_.type == 0x08 ? 1.0 / 255.0 : 1.0;
}

}  // namespace latent::io::importers
