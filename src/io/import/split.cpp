#include "latent/io/import/split.hpp"

#include <vector>

#include "latent/core/error.hpp"

namespace latent::io::importers {

Index exclusive_prefix(const comm::Communicator& comm, Index local, Index* total) {
  const std::int64_t mine = local;
  const auto all = comm.allgatherv(std::span<const std::int64_t>(&mine, 1));
  Index before = 0, sum = 0;
  for (int r = 0; r < comm.size(); ++r) {
    if (r < comm.rank()) before += all[static_cast<std::size_t>(r)];
    sum += all[static_cast<std::size_t>(r)];
  }
  if (total != nullptr) *total = sum;
  return before;
}

LineSplit split_lines(const comm::Communicator& comm, const std::string& path, bool count_lines, bool line_numbers) {
  LineSplit s;
  std::uint64_t size = 0;
  comm::run_agreed(comm, [&] {
    {
      ByteStream probe(path);  // the errors of a missing file or a directory
    }
    s.split = comm.size() > 1 && splittable_file(path, size);
  });
  const auto p = static_cast<std::uint64_t>(comm.size()), r = static_cast<std::uint64_t>(comm.rank());
  if (s.split) {
    // r·S/P without overflow for any S below 2^64 / P.
    s.range.begin = size / p * r + size % p * r / p;
    s.range.end = size / p * (r + 1) + size % p * (r + 1) / p;
  } else if (!comm.is_root()) {
    s.range.begin = s.range.end = 0;
  }
  // Lines before each range (for error messages) are needed only when the file is cut;
  // the lines themselves when asked for.
  if (!count_lines && !(line_numbers && s.split)) return s;
  Index lines = 0;
  comm::run_agreed(comm, [&] {
    ByteStream in(path, s.range);
    std::string line;
    while (in.getline(line)) ++lines;
  });
  s.lines = lines;
  s.range.lines_before = exclusive_prefix(comm, lines, nullptr);
  return s;
}

}  // namespace latent::io::importers
