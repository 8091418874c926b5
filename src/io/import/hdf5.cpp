#include "latent/io/import/hdf5.hpp"

#include <algorithm>
#include <cmath>

#include "latent/core/error.hpp"

namespace latent::io::importers {

Hdf5Reader::Hdf5Reader(const std::string& path, const std::string& dataset, double scale)
    : r_(path), name_(dataset), scale_(std::isnan(scale) ? 1.0 : scale) {
  if (dataset.empty()) throw_usage("--format hdf5 needs --dataset NAME");
  if (!r_.has(dataset)) throw_input("input " + path + ": dataset /" + dataset + " is missing (found: " + list() + ")");
  const auto shape = r_.shape(dataset);
  if (shape.empty() || shape.size() > 2) throw_input("input " + path + ", dataset /" + dataset + ": must be 1-D or 2-D");
  rows_ = shape[0];
  d_ = shape.size() == 2 ? shape[1] : 1;
  if (d_ < 1)
    throw_input("input " + path + ", dataset /" + dataset + ": has 0 columns (shape " + std::to_string(rows_) +
                " x 0); every sample needs at least one feature");
}

Index Hdf5Reader::read(RowMatrix& out, Index max) {
  const Index n = std::min(max, rows_ - done_);
  if (n <= 0) return 0;
  out.resize(max, d_);
  out.topRows(n) = scale_ * r_.read_rows(name_, done_, n);
  done_ += n;
  return n;
}

std::string Hdf5Reader::list() const {
  std::string s;
  for (const auto& n : r_.list("/")) s += (s.empty() ? "" : ", ") + n;
  return s.empty() ? "nothing" : s;
}

}  // namespace latent::io::importers
