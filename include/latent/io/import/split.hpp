#pragma once
/// \file How a parallel import (`mpirun -n P latent import counts`) divides its input among
/// the ranks. A plain file is cut into P byte ranges of equal size (rank r: [r·S/P,
/// (r+1)·S/P)); a line belongs to the rank whose range holds its first byte (ByteRange).
/// A gzipped file cannot be entered in the middle: rank 0 reads it whole. A list of files
/// (a directory of documents) is cut into P contiguous runs of files. Either way the ranks'
/// parts, taken in rank order, are the input in order, so global document r·... indices
/// and everything derived from them do not depend on P.
#include <cstdint>
#include <string>

#include "latent/comm/communicator.hpp"
#include "latent/core/types.hpp"
#include "latent/io/import/byte_stream.hpp"

namespace latent::io::importers {

/// This rank's part of a line-oriented file.
struct LineSplit {
  ByteRange range;   ///< lines whose first byte is in range (lines_before set if counted)
  Index lines = -1;  ///< lines in the range when counted, else -1
  bool split = false;  ///< the file was divided by bytes (false: rank 0 reads it whole)
};

/// Divides `path` among the ranks of `comm` (see the file comment). With `count_lines`, or
/// with `line_numbers` when the file is cut, every rank counts the lines of its range (one
/// extra read of its part) and learns the lines before it (an allgather), so that errors
/// can name the line of the whole file; LineSplit::lines is then set.
/// Collective; errors (a missing or unreadable file) are agreed (comm::run_agreed): every
/// rank throws the lowest failing rank's Error(kNoInput or kInput).
LineSplit split_lines(const comm::Communicator& comm, const std::string& path, bool count_lines, bool line_numbers);

/// [begin, end) of `n` items for `rank` of `size` contiguous runs (sizes differ by at
/// most one, the first runs larger). Pure.
inline std::pair<Index, Index> contiguous_part(Index n, int rank, int size) {
  const Index base = n / size, extra = n % size;
  const Index begin = rank * base + std::min<Index>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

/// The sum of `local` over the ranks before this one; `total` gets the sum over all
/// ranks. Collective.
Index exclusive_prefix(const comm::Communicator& comm, Index local, Index* total);

}  // namespace latent::io::importers
