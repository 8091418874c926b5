#include "latent/io/import/byte_stream.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "latent/core/error.hpp"

namespace latent::io::importers {

bool splittable_file(const std::string& path, std::uint64_t& size) {
  if (path == "-") return false;  // standard input
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  unsigned char magic[2] = {0, 0};
  const ssize_t got = ::pread(fd, magic, 2, 0);
  ::close(fd);
  if (got == 2 && magic[0] == 0x1f && magic[1] == 0x8b) return false;
  size = static_cast<std::uint64_t>(st.st_size);
  return true;
}

namespace {

// "-": standard input (a duplicate of descriptor 0, so that closing the stream leaves it).
gzFile_s* open_stdin() {
  const int fd = ::dup(STDIN_FILENO);
  if (fd < 0) throw_input(std::string("input - (standard input): cannot be read (") + std::strerror(errno) + ")");
  gzFile_s* f = gzdopen(fd, "rb");
  if (!f) {
    ::close(fd);
    throw_input("input - (standard input): cannot be read");
  }
  gzbuffer(f, 1 << 20);
  return f;
}

}  // namespace

ByteStream::ByteStream(const std::string& path) : path_(path) {
  if (path == "-") {
    f_ = open_stdin();
    return;
  }
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw Error(ErrorKind::kNoInput, "input " + path + ": does not exist");
  if (std::filesystem::is_directory(path, ec)) throw_input("input " + path + ": is a directory, not a file");
  f_ = gzopen(path.c_str(), "rb");
  if (!f_) throw_input("input " + path + ": cannot be opened");
  gzbuffer(f_, 1 << 20);
}

ByteStream::ByteStream(const std::string& path, ByteRange range) : path_(path) {
  range_end_ = range.end;
  lines_before_ = range.lines_before;
  if (range.end <= range.begin) {  // nothing of the file: it is not even opened
    range_end_ = 0;
    eof_ = true;
    return;
  }
  if (path == "-" && range.whole()) {
    f_ = open_stdin();
    return;
  }
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw Error(ErrorKind::kNoInput, "input " + path + ": does not exist");
  if (std::filesystem::is_directory(path, ec)) throw_input("input " + path + ": is a directory, not a file");
  if (range.whole()) {
    f_ = gzopen(path.c_str(), "rb");
    if (!f_) throw_input("input " + path + ": cannot be opened");
    gzbuffer(f_, 1 << 20);
    return;
  }
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw_input("input " + path + ": cannot be opened (" + std::strerror(errno) + ")");
  if (range.begin == 0) return;
  // Enter the range: the first line starting at or after `begin` follows the first "\n"
  // at or after begin - 1.
  offset_ = range.begin - 1;
  if (::lseek(fd_, static_cast<off_t>(offset_), SEEK_SET) < 0)
    throw_input("input " + path + ": cannot seek (" + std::strerror(errno) + ")");
  while (true) {
    if (pos_ == end_ && fill() == 0) return;
    const char* begin = buf_.data() + pos_;
    const auto* nl = static_cast<const char*>(std::memchr(begin, '\n', end_ - pos_));
    if (nl != nullptr) {
      pos_ += static_cast<std::size_t>(nl - begin) + 1;
      return;
    }
    pos_ = end_;
  }
}

void ByteStream::skip(std::uint64_t n, const std::string& what) {
  const std::uint64_t buffered = std::min<std::uint64_t>(n, end_ - pos_);
  pos_ += static_cast<std::size_t>(buffered);
  n -= buffered;
  if (n == 0) return;
  if (f_ != nullptr) {
    const z_off_t at = gzseek(f_, static_cast<z_off_t>(n), SEEK_CUR);
    if (at < 0) throw_input("input " + path_ + ": truncated or unreadable while skipping " + what);
  } else if (fd_ >= 0) {
    if (::lseek(fd_, static_cast<off_t>(n), SEEK_CUR) < 0)
      throw_input("input " + path_ + ": cannot seek while skipping " + what);
  }
  offset_ += end_ + n;
  pos_ = end_ = 0;
  // A seek past the end is only noticed by the next read (which then finds nothing).
}

ByteStream::~ByteStream() {
  if (f_) gzclose(f_);
  if (fd_ >= 0) ::close(fd_);
}

std::size_t ByteStream::fill() {
  if (buf_.empty()) buf_.resize(1 << 16);
  offset_ += end_;
  pos_ = end_ = 0;
  if (eof_) return 0;
  if (fd_ >= 0) {
    ssize_t got = 0;
    do got = ::read(fd_, buf_.data(), buf_.size());
    while (got < 0 && errno == EINTR);
    if (got < 0) throw_input("input " + path_ + ": read error (" + std::strerror(errno) + ")");
    if (got == 0) eof_ = true;
    end_ = static_cast<std::size_t>(got);
    return end_;
  }
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
