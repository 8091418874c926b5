#pragma once
/// \file A data directory written by every rank and published whole (`latent generate`):
/// rank 0 creates OUTPUT.tmp-<host>-<pid>, every rank writes its shards into it (a
/// filesystem all ranks share), and publish() renames it into place. Until then a failure
/// removes the temporary directory and the truth file (rank 0), so nothing partial is left
/// (docs/FORMATS.md "Predictions").
#include <string>

#include "latent/comm/communicator.hpp"
#include "latent/core/types.hpp"

namespace latent::io {

class ShardDirectory {
 public:
  /// Refuses (Error kOutput, exit 73) an existing `output` or `truth` (`truth` may be
  /// empty: none), sweeps stale temporaries of dead processes beside it, creates the
  /// temporary directory on rank 0 and tells every rank its name. Collective.
  ShardDirectory(const comm::Communicator& comm, std::string output, std::string truth);
  /// Rank 0: removes the temporary directory and a written truth file unless published.
  ~ShardDirectory();
  ShardDirectory(const ShardDirectory&) = delete;
  ShardDirectory& operator=(const ShardDirectory&) = delete;

  /// Shard s: TMP/part-%05d.h5 (sorted in row order below 10^5 shards).
  std::string shard_path(Index s) const;
  const std::string& tmp() const { return tmp_; }
  const std::string& output() const { return output_; }
  /// Rank 0 wrote the truth file (removed again on failure).
  void truth_written() { truth_written_ = true; }
  /// Renames the directory into place once every rank's shards are written. Collective.
  void publish();

 private:
  const comm::Communicator& comm_;
  std::string output_, truth_, tmp_;
  bool owner_ = false, published_ = false, truth_written_ = false;
};

}  // namespace latent::io
