#pragma once
/// \file Rows of fixed-size binary elements after a header (IDX, NPY): the shared part of
/// their readers. Headers are untrusted: dimensions are checked before anything is
/// allocated from them.
#include <cstddef>
#include <string>
#include <vector>

#include "latent/io/import/byte_stream.hpp"
#include "latent/io/import/reader.hpp"

namespace latent::io::importers {

/// The most features (values per row) a binary header may declare: 2^28.
inline constexpr Index kMaxFeatures = Index{1} << 28;

/// Throws Error(kInput) naming `path` unless rows >= 0 and 1 <= features <= kMaxFeatures.
void check_dimensions(const std::string& path, Index rows, Index features);

/// A DenseReader over `rows_` x `d_` elements of `size_` bytes each; subclasses read the
/// header (setting rows_, d_, size_ and scale_) and decode one element.
class BinaryRowReader : public DenseReader {
 public:
  Index num_features() const override { return d_; }
  Index num_rows() const override { return rows_; }
  /// Throws Error(kInput) "input PATH: truncated or unreadable while reading rows A-B".
  Index read(RowMatrix& out, Index max) override;
  void select_rows(Index begin, Index end) override;

 protected:
  BinaryRowReader(const std::string& path, double scale) : s_(path), scale_(scale) {}
  /// The element at `p` (size_ bytes) as a double.
  virtual double value(const unsigned char* p) const = 0;
  ByteStream s_;
  double scale_;
  Index rows_ = 0, d_ = 0, done_ = 0;
  std::size_t size_ = 1;

 private:
  std::vector<unsigned char> buf_;
};

}  // namespace latent::io::importers
