#pragma once
/// \file A gzip-or-plain input byte stream for the importers (zlib reads uncompressed files
/// transparently). Lines and binary reads share one buffer of 64 KiB; a damaged or truncated
/// gzip stream is an input error, never a silent end of file.
///
/// A plain (not gzipped) regular file can also be read in a byte range for a parallel
/// import (ByteRange): the lines whose first byte lies in [begin, end). The range is
/// entered by seeking to begin - 1 and skipping to the byte after the next "\n", so every
/// line of the file belongs to exactly one of a set of ranges that tile [0, size).
#include <algorithm>
#include <cstdint>
#include <limits>
#include <cstring>
#include <string>
#include <vector>

#include "latent/core/error.hpp"

struct gzFile_s;  // zlib's gzFile; zlib stays out of the public headers

namespace latent::io::importers {

/// A part of a file for a parallel import: the lines whose first byte is at an offset in
/// [begin, end) (bytes). lines_before is the number of lines before the first such line
/// (so that error messages name the line of the whole file). The whole file by default.
struct ByteRange {
  std::uint64_t begin = 0;
  std::uint64_t end = std::numeric_limits<std::uint64_t>::max();
  std::int64_t lines_before = 0;
  bool whole() const { return begin == 0 && end == std::numeric_limits<std::uint64_t>::max(); }
};

/// True if `path` is a regular file that is not gzipped (it can be read in byte ranges);
/// its size in bytes then goes to `size`. Local; never throws.
bool splittable_file(const std::string& path, std::uint64_t& size);

class ByteStream {
 public:
  /// Throws Error(kNoInput) if `path` does not exist, Error(kInput) if it is a directory
  /// or cannot be opened. The path "-" is standard input (read to its end once).
  explicit ByteStream(const std::string& path);
  /// The lines of `range` only (see ByteRange). A range other than the whole file needs a
  /// splittable_file; a gzipped file may be given the empty range {0, 0}. Throws as above.
  ByteStream(const std::string& path, ByteRange range);
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

  /// Skips n bytes (a plain file by seeking, a gzipped one by decompressing) or throws
  /// Error(kInput) naming the file and `what` if fewer remain.
  void skip(std::uint64_t n, const std::string& what);

  /// The next line without its "\n" (or "\r\n"); false at the end of the input. A last
  /// line without a newline is returned. Lines may contain any byte, including NUL.
  bool getline(std::string& line) {
    line.clear();
    bool any = false;
    if (pos_ == end_ && fill() == 0) return false;
    if (offset_ + pos_ >= range_end_) return false;
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
  /// The (uncompressed) offset of the next byte getline or read would return.
  std::uint64_t tell() const { return offset_ + pos_; }
  /// Lines of the file before this stream's first line (ByteRange::lines_before).
  std::int64_t lines_before() const { return lines_before_; }

 private:
  // Refills the buffer; returns the bytes now available (0 at the end of the input).
  // Throws Error(kInput) for a truncated or corrupt gzip stream.
  std::size_t fill();

  std::string path_;
  gzFile_s* f_ = nullptr;
  int fd_ = -1;  // a byte range of a plain file is read with read(2)
  std::vector<char> buf_;
  std::size_t pos_ = 0, end_ = 0;
  std::uint64_t offset_ = 0;  // file offset of buf_[0] (uncompressed)
  std::uint64_t range_end_ = std::numeric_limits<std::uint64_t>::max();
  std::int64_t lines_before_ = 0;
  bool eof_ = false;
};

}  // namespace latent::io::importers
