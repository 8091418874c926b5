#include "latent/io/import/npy.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <regex>
#include <stdexcept>

#include "latent/core/error.hpp"

namespace latent::io::importers {

NpyReader::NpyReader(const std::string& path, double scale) : BinaryRowReader(path, std::isnan(scale) ? 1.0 : scale) {
  char magic[8];
  s_.read(magic, 8, "the NPY magic");
  if (std::memcmp(magic, "\x93NUMPY", 6) != 0) throw_input("input " + path + ": not an NPY file (bad magic)");
  std::size_t header_len = 0;
  if (magic[6] == 1) {
    unsigned char b[2];
    s_.read(b, 2, "the NPY header length");
    header_len = b[0] | (b[1] << 8);
  } else {
    unsigned char b[4];
    s_.read(b, 4, "the NPY header length");
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<std::size_t>(b[3]) << 24);
  }
  if (header_len > (1u << 20)) throw_input("input " + path + ": NPY header of " + std::to_string(header_len) + " bytes is implausible");
  std::string header(header_len, '\0');
  s_.read(header.data(), header_len, "the NPY header");
  std::smatch m;
  if (!std::regex_search(header, m, std::regex("'descr':\\s*'([<>|=])([fiub])(\\d+)'")))
    throw_input("input " + path + ": NPY dtype not supported (need a numeric dtype; found header " + header + ")");
  const std::string order = m[1];
  kind_ = m[2].str()[0];
  // The item size has at most a few digits; a longer one is no dtype this reader knows
  // (and would overflow the conversion).
  if (m[3].length() > 2) throw_input("input " + path + ": NPY dtype " + m[2].str() + m[3].str() + " not supported");
  size_ = static_cast<std::size_t>(std::stoi(m[3]));
  if (order == ">" && size_ > 1) throw_input("input " + path + ": big-endian NPY is not supported");
  if (std::regex_search(header, std::regex("'fortran_order':\\s*True")))
    throw_input("input " + path + ": Fortran-ordered NPY is not supported; save with np.ascontiguousarray");
  if (!std::regex_search(header, m, std::regex("'shape':\\s*\\((\\d+),\\s*(\\d*)\\s*\\)")))
    throw_input("input " + path + ": NPY array must be 1-D or 2-D");
  try {
    rows_ = std::stoll(m[1]);
    d_ = m[2].str().empty() ? 1 : std::stoll(m[2]);
  } catch (const std::out_of_range&) {
    throw_input("input " + path + ": NPY shape out of range");
  }
  check_dimensions(path, rows_, d_);
  if (!((kind_ == 'f' && (size_ == 4 || size_ == 8)) || ((kind_ == 'i' || kind_ == 'u') && size_ <= 8) || kind_ == 'b'))
    throw_input("input " + path + ": NPY dtype " + kind_ + std::to_string(size_) + " not supported");
}

double NpyReader::value(const unsigned char* p) const {
  if (kind_ == 'f') {
    if (size_ == 4) { float f; std::memcpy(&f, p, 4); return f; }
    double d; std::memcpy(&d, p, 8); return d;
  }
  std::uint64_t u = 0;
  std::memcpy(&u, p, size_);
  if (kind_ == 'i' && size_ < 8 && (u >> (8 * size_ - 1)) != 0) u |= ~std::uint64_t{0} << (8 * size_);
  return kind_ == 'i' ? static_cast<double>(static_cast<std::int64_t>(u)) : static_cast<double>(u);
}

}  // namespace latent::io::importers
