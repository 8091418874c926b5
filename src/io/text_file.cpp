#include "latent/io/text_file.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "h5_handle.hpp"
#include "latent/core/error.hpp"
#include "latent/io/h5_file.hpp"

namespace latent::io {
namespace fs = std::filesystem;

TextWriter::TextWriter(std::string path, bool overwrite) : path_(std::move(path)) {
  check_output_path(path_, overwrite);
  tmp_path_ = path_ + temp_suffix();
  errno = 0;
  file_ = std::fopen(tmp_path_.c_str(), "wbx");
  if (file_ == nullptr) {
    const int error = errno;
    std::remove(tmp_path_.c_str());
    if (error == ENOSPC || error == EDQUOT)
      throw Error(ErrorKind::kIo, "output " + path_ + ": cannot create " + tmp_path_ + ": No space left on device");
    throw_output("output " + path_ + ": cannot create " + tmp_path_ + ": " + std::strerror(error));
  }
}

TextWriter::~TextWriter() {
  if (file_ != nullptr) std::fclose(file_);
  if (!committed_) std::remove(tmp_path_.c_str());
}

void TextWriter::fail(const std::string& what) {
  const int error = errno;
  if (file_ != nullptr) std::fclose(file_);
  file_ = nullptr;
  std::remove(tmp_path_.c_str());
  throw Error(ErrorKind::kIo, "output " + path_ + ": cannot " + what + " " + tmp_path_ + " (" +
                                  (error != 0 ? std::strerror(error) : "disk full?") + "); nothing was written to " +
                                  path_);
}

void TextWriter::write(std::string_view text) {
  if (file_ == nullptr) throw Error(ErrorKind::kInternal, "TextWriter::write after a failure or commit");
  errno = 0;
  if (!text.empty() && std::fwrite(text.data(), 1, text.size(), file_) != text.size()) fail("write");
}

void TextWriter::commit() {
  if (file_ == nullptr) throw Error(ErrorKind::kInternal, "TextWriter::commit after a failure or commit");
  errno = 0;
  if (std::fflush(file_) != 0 || ::fsync(::fileno(file_)) != 0) fail("write");
  const int closed = std::fclose(file_);
  file_ = nullptr;
  if (closed != 0) fail("close");
  std::error_code ec;
  fs::rename(tmp_path_, path_, ec);
  if (ec) {
    std::remove(tmp_path_.c_str());
    throw Error(ErrorKind::kIo, "output " + path_ + ": rename from " + tmp_path_ + " failed: " + ec.message());
  }
  committed_ = true;
  fs::path parent = fs::absolute(fs::path(path_)).parent_path();
  detail::fsync_path(parent.empty() ? std::string(".") : parent.string(), true);
}

}  // namespace latent::io
