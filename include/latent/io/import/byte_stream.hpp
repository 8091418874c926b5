#pragma once
/// \file A gzip-or-plain input byte stream for the importers (zlib reads uncompressed files
/// transparently). Lines and binary reads share one buffer of 64 KiB; a damaged or truncated
/// gzip stream is an input error, never a silent end of file.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "latent/core/error.hpp"

struct gzFile_s;  // zlib's gzFile; zlib stays out of the public headers

namespace latent::io::importers {

class ByteStream {
 public:
  /// Throws Error(kNoInput) if `path` does not exist, Error(kInput) if it is a directory
  /// or cannot be opened.
  explicit ByteStream(const std::string& path);
  ~ByteStream();
  ByteStream(const ByteStream&) = delete;
  ByteStream& operator=(const ByteStream&) = delete;

  /// Reads exactly n bytes or throws Error(kInput) naming the file and `what`.
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
  // Throws Error(kInput) for a truncated or corrupt gzip stream.
  std::size_t fill();

  std::string path_;
  gzFile_s* f_ = nullptr;
  std::vector<char> buf_;
  std::size_t pos_ = 0, end_ = 0;
  bool eof_ = false;
};

}  // namespace latent::io::importers
