// Fuzzes the dense importers (the library's IDX, NPY and CSV readers,
// include/latent/io/import/): the first byte picks the format; the rest is the input file,
// read to its end in blocks of at most 64 rows and 16 MiB. The code under test must either
// succeed or throw latent::Error; a crash or a sanitizer report is the finding.
#include <algorithm>

#include "fuzz_common.hpp"
#include "latent/core/error.hpp"
#include "latent/io/import/reader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace imp = latent::io::importers;
  if (size < 1) return 0;
  static const imp::DenseFormat formats[] = {imp::DenseFormat::kIdx, imp::DenseFormat::kNpy, imp::DenseFormat::kCsv};
  static const char* names[] = {"idx", "npy", "csv"};
  const int f = data[0] % 3;
  const std::string input = latent::fuzz::write_input(data + 1, size - 1, std::string("input.") + names[f]);
  try {
    const auto reader = imp::open_dense_reader(formats[f], input, imp::DenseOptions{});
    // A header may declare up to 2^28 features; rows that wide are checked, not read.
    const latent::Index d = reader->num_features();
    if (d > (latent::Index{1} << 21)) return 0;
    const latent::Index rows = std::max<latent::Index>(1, std::min<latent::Index>(64, (latent::Index{16} << 20) / (8 * d)));
    latent::RowMatrix block;
    while (reader->read(block, rows) > 0) {
    }
  } catch (const latent::Error&) {
  }
  return 0;
}
