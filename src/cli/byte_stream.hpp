#pragma once
// A gzip-or-plain input byte stream for the importers (zlib reads uncompressed files
// transparently). Lines and binary reads share one buffer; a damaged or truncated gzip
// stream is an input error, never a silent end of file.
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "latent/core/error.hpp"

namespace latent::cli {

class ByteStream {
 public:
  explicit ByteStream(const std::string& path) : path_(path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) throw Error(ErrorKind::kNoInput, "input " + path + ": does not exist");
    if (std::filesystem::is_directory(path, ec)) throw_input("input " + path + ": is a directory, not a file");
    f_ = gzopen(path.c_str(), "rb");
    if (!f_) throw_input("input " + path + ": cannot be opened");
    gzbuffer(f_, 1 << 20);
  }
  ~ByteStream() {
    if (f_) gzclose(f_);
  }
  ByteStream(const ByteStream&) = delete;
  ByteStream& operator=(const ByteStream&) = delete;

  /// Reads exactly n bytes or throws naming `what`.
  void read(void* out, std::size_t n, const std::string& what) {
    auto* p = static_cast<char*>(out);
    while (n > 0) {
      if (pos_ == end_ && fill() == 0)
        throw_input("input " + path_ + ": truncated or unreadable while reading " + what);
      const std::size_t take = std::min(n, end_ - pos_);
      std::memcpy(p, buf_.data() + pos_, take);
      pos_ += take;
      p += take;
      n -= take;
    }
  }

  /// The next line without its "\n" (or "\r\n"); false at the end of the input. A last
  /// line without a newline is returned. Lines may contain any byte, including NUL.
  bool getline(std::string& line) {
    line.clear();
    bool any = false;
    while (true) {
      if (pos_ == end_ && fill() == 0) break;
      any = true;
      const char* begin = buf_.data() + pos_;
      const auto* nl = static_cast<const char*>(std::memchr(begin, '\n', end_ - pos_));
      if (nl != nullptr) {
        line.append(begin, nl);
        pos_ += static_cast<std::size_t>(nl - begin) + 1;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        return true;
      }
      line.append(begin, end_ - pos_);
      pos_ = end_;
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return any;
  }

  const std::string& path() const { return path_; }

 private:
  // Refills the buffer; returns the bytes now available (0 at the end of the input).
  std::size_t fill() {
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

  std::string path_;
  gzFile f_ = nullptr;
  std::vector<char> buf_;
  std::size_t pos_ = 0, end_ = 0;
  bool eof_ = false;
};

}  // namespace latent::cli
