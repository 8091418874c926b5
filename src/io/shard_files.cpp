#include "latent/io/shard_files.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "latent/core/error.hpp"

namespace latent::io {
namespace {

namespace fs = std::filesystem;

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a regular file";
}

// Why `path` is not a regular file (following symbolic links), or "" if it is one. Uses
// stat/lstat only: nothing is opened.
std::string not_regular(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISREG(st.st_mode)) return "";
    struct stat lst {};
    const bool link = ::lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode);
    return std::string("is ") + (link ? "a symbolic link to " : "") + kind_of(st.st_mode) + ", not a regular file";
  }
  const int err = errno;
  struct stat lst {};
  const bool link = ::lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode);
  std::error_code ec;
  const std::string target = link ? fs::read_symlink(path, ec).string() : std::string();
  if (err == ELOOP) return "is a symbolic link loop (too many levels of symbolic links)";
  if (link && (err == ENOENT || err == ENOTDIR))
    return "is a dangling symbolic link (to " + target + ", which does not exist)";
  if (err == ENOENT) return "does not exist";
  return std::string("cannot be examined: ") + std::strerror(err);
}

bool has_shard_name(const std::string& name) {
  return name.size() > 3 && name.front() != '.' && name.compare(name.size() - 3, 3, ".h5") == 0;
}

}  // namespace

void require_regular_file(const std::string& path, const std::string& what) {
  const std::string why = not_regular(path);
  if (!why.empty()) throw Error(ErrorKind::kNoInput, what + " " + path + ": " + why);
}

std::vector<std::string> list_shard_files(const std::string& directory) {
  std::error_code ec;
  fs::directory_iterator it(directory, ec);
  if (ec) throw Error(ErrorKind::kNoInput, "data " + directory + ": cannot be listed (" + ec.message() + ")");
  std::vector<std::string> paths;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) break;
    const std::string name = it->path().filename().string();
    if (!has_shard_name(name)) continue;
    const std::string path = it->path().string();
    const std::string why = not_regular(path);
    if (!why.empty())
      throw Error(ErrorKind::kNoInput,
                  "data " + directory + ": entry " + name + " " + why +
                      "; every *.h5 entry of a data directory is read as a shard and must be a regular file or a "
                      "symbolic link to one (fix or remove " + path + ")");
    paths.push_back(path);
  }
  if (ec) throw Error(ErrorKind::kNoInput, "data " + directory + ": cannot be listed (" + ec.message() + ")");
  std::sort(paths.begin(), paths.end());
  return paths;
}

}  // namespace latent::io
