#include "latent/io/import/reader.hpp"

#include "latent/core/error.hpp"

#include "latent/io/import/csv.hpp"
#include "latent/io/import/hdf5.hpp"
#include "latent/io/import/idx.hpp"
#include "latent/io/import/npy.hpp"

namespace latent::io::importers {

void DenseReader::select_rows(Index, Index) {
  throw Error(ErrorKind::kInternal, "select_rows: this format does not declare its rows");
}

std::unique_ptr<DenseReader> open_dense_reader(DenseFormat format, const std::string& path, const DenseOptions& o) {
  switch (format) {
    case DenseFormat::kIdx: return std::make_unique<IdxReader>(path, o.scale);
    case DenseFormat::kCsv: return std::make_unique<CsvReader>(path, o);
    case DenseFormat::kNpy: return std::make_unique<NpyReader>(path, o.scale);
    case DenseFormat::kHdf5: break;
  }
  return std::make_unique<Hdf5Reader>(path, o.dataset, o.scale);
}

}  // namespace latent::io::importers
