// Fuzzes the dense importers (the library's IDX, NPY and CSV readers,
// include/latent/io/import/): the first byte picks the format; the rest is the input file,
// read to its end in blocks of at most 64 rows and 16 MiB (CSV a second time with a tab
// delimiter, an index column and a label column). The code under test must either
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
  // CSV is read twice: as is, and with a tab delimiter, a label column and an index
  // column (the column layouts of csv.hpp).
  imp::DenseOptions columns;
  columns.delimiter = '\t';
  columns.index_col = "1";
  columns.label_column = "0";
  for (int pass = 0; pass < (formats[f] == imp::DenseFormat::kCsv ? 2 : 1); ++pass) {
    try {
      const auto reader = imp::open_dense_reader(formats[f], input, pass == 0 ? imp::DenseOptions{} : columns);
      // A header may declare up to 2^28 features; rows that wide are checked, not read.
      const latent::Index d = reader->num_features();
      if (d > (latent::Index{1} << 21)) return 0;
      const latent::Index rows =
          std::max<latent::Index>(1, std::min<latent::Index>(64, (latent::Index{16} << 20) / (8 * std::max<latent::Index>(d, 1))));
      latent::RowMatrix block;
      while (reader->read(block, rows) > 0) {
      }
    } catch (const latent::Error&) {
    }
  }
  return 0;
}
