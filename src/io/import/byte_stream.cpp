#include "latent/io/import/byte_stream.hpp"

#include <zlib.h>

#include <filesystem>

#include "latent/core/error.hpp"

namespace latent::io::importers {

ByteStream::ByteStream(const std::string& path) : path_(path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw Error(ErrorKind::kNoInput, "input " + path + ": does not exist");
  if (std::filesystem::is_directory(path, ec)) throw_input("input " + path + ": is a directory, not a file");
  f_ = gzopen(path.c_str(), "rb");
  if (!f_) throw_input("input " + path + ": cannot be opened");
  gzbuffer(f_, 1 << 20);
}

ByteStream::~ByteStream() {
  if (f_) gzclose(f_);
}

std::size_t ByteStream::fill() {
  if (buf_.empty()) buf_.resize(1 << 16);
  pos_ = end_ = 0;
  if (eof_) return 0;
  const int got = gzread(f_, buf_.data(), static_cast<unsigned>(buf_.size()));
  int err = Z_OK;
  const char* message = gzerror(f_, &err);
  if (got < 0 || (err != Z_OK && err != Z_STREAM_END))
    throw_input("input " + path_ + ": truncated or corrupt (" + (message && *message ? message : "read error") + ")");
  if (got == 0) eof_ = true;
  end_ = static_cast<std::size_t>(got);
  return end_;
}

}  // namespace latent::io::importers
