#pragma once
/// \file One 1-D (N) or 2-D (N x D) numeric dataset of an HDF5 file, read in row blocks
/// through io::H5Reader (which refuses external links, external storage and virtual
/// datasets).
#include <string>

#include "latent/io/h5_file.hpp"
#include "latent/io/import/reader.hpp"

namespace latent::io::importers {

/// The rows of /`dataset` in `path`, multiplied by `scale` (NaN: 1). Throws as
/// io::H5Reader for a missing or unreadable file, Error(kUsage) "--format hdf5 needs
/// --dataset NAME" for an empty `dataset`, and Error(kInput) naming file and dataset for a
/// missing dataset (listing the root's members) or one that is not 1-D or 2-D.
class Hdf5Reader final : public DenseReader {
 public:
  Hdf5Reader(const std::string& path, const std::string& dataset, double scale);
  Index num_features() const override { return d_; }
  Index num_rows() const override { return rows_; }
  void select_rows(Index begin, Index end) override {
    done_ = begin;
    rows_ = end;
  }
  Index read(RowMatrix& out, Index max) override;

 private:
  std::string list() const;
  io::H5Reader r_;
  std::string name_;
  double scale_;
  Index rows_ = 0, d_ = 0, done_ = 0;
};

}  // namespace latent::io::importers
