#include "latent/io/shard_directory.hpp"

#include <fmt/format.h>

#include <filesystem>

#include "latent/core/error.hpp"
#include "latent/io/h5_file.hpp"

namespace latent::io {

namespace fs = std::filesystem;

ShardDirectory::ShardDirectory(const comm::Communicator& comm, std::string output, std::string truth)
    : comm_(comm), output_(std::move(output)), truth_(std::move(truth)) {
  while (output_.size() > 1 && output_.back() == '/') output_.pop_back();
  comm::run_agreed(comm, [&] {
    if (!comm.is_root()) return;
    std::error_code ec;
    if (fs::exists(output_, ec) || fs::is_symlink(output_, ec))
      throw_output("output " + output_ + ": already exists; choose another name");
    if (!truth_.empty() && (fs::exists(truth_, ec) || fs::is_symlink(truth_, ec)))
      throw_output("--true-model " + truth_ + ": already exists; choose another name (or --true-model none)");
    sweep_stale_temporaries(fs::absolute(output_).parent_path().string());
    tmp_ = output_ + temp_suffix();
    fs::remove_all(tmp_, ec);  // only a dead process of this pid can have left it
    if (!fs::create_directory(tmp_, ec) || ec)
      throw_output("output " + output_ + ": cannot create " + tmp_ + (ec ? " (" + ec.message() + ")" : std::string()));
    owner_ = true;
  });
  comm.broadcast(tmp_, 0);
}

ShardDirectory::~ShardDirectory() {
  if (!owner_ || published_) return;
  std::error_code ec;
  fs::remove_all(tmp_, ec);
  if (truth_written_) fs::remove(truth_, ec);
}

std::string ShardDirectory::shard_path(Index s) const { return fmt::format("{}/part-{:05d}.h5", tmp_, s); }

void ShardDirectory::publish() {
  comm::run_agreed(comm_, [&] {
    if (!comm_.is_root()) return;
    std::error_code ec;
    if (fs::exists(output_, ec)) throw_output("output " + output_ + ": was created by someone else meanwhile");
    fs::rename(tmp_, output_, ec);
    if (ec) throw_output("output " + output_ + ": cannot rename " + tmp_ + " into place: " + ec.message());
    published_ = true;
  });
}

}  // namespace latent::io
