#pragma once
// Test fixtures made by the tests themselves: temporary directories and shard writers.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "latent/core/types.hpp"
#include "latent/io/dense_dataset.hpp"
#include "latent/io/h5_file.hpp"

namespace latent::testing {

/// A fresh directory under the system temp dir, removed at destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "t") {
    path_ = (std::filesystem::temp_directory_path() /
             ("latent-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++)))
                .string();
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  static int& counter() {
    static int c = 0;
    return c;
  }
  std::string path_;
};

/// Writes `content` to `path` as it is.
inline void write_file(const std::string& path, const std::string& content) {
  std::ofstream f(path, std::ios::binary);
  f << content;
}

/// Writes `content` to `path` gzipped.
inline void write_gz(const std::string& path, const std::string& content) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, content.data(), static_cast<unsigned>(content.size())), static_cast<int>(content.size()));
  gzclose(f);
}

/// Writes rows as one shard file (float64 unless float32 is asked) with optional labels.
inline void write_shard(const std::string& path, const RowMatrix& x, const std::vector<std::int64_t>& labels = {},
                        io::DType dtype = io::DType::kFloat64) {
  io::H5Writer w(path, true);
  w.attr("/", "format_version", static_cast<std::int64_t>(io::kDataFormatVersion));
  w.attr("/", "kind", std::string(io::kDenseKind));
  w.create(io::kDataDataset, dtype, x.rows(), x.cols());
  w.write_rows(io::kDataDataset, 0, x);
  if (!labels.empty()) {
    w.create(io::kLabelsDataset, io::DType::kInt64, static_cast<Index>(labels.size()), 0);
    w.write_rows(io::kLabelsDataset, 0, labels);
  }
  w.commit();
}

/// Splits x into shards of the given sizes (in order) under dir.
inline void write_shards(const std::string& dir, const RowMatrix& x, const std::vector<Index>& sizes,
                         const std::vector<std::int64_t>& labels = {}) {
  std::filesystem::create_directories(dir);
  Index at = 0;
  for (std::size_t s = 0; s < sizes.size(); ++s) {
    std::vector<std::int64_t> l;
    if (!labels.empty()) l.assign(labels.begin() + at, labels.begin() + at + sizes[s]);
    char name[32];
    std::snprintf(name, sizeof name, "/part-%05zu.h5", s);
    write_shard(dir + name, x.middleRows(at, sizes[s]), l);
    at += sizes[s];
  }
}

/// n points from K well-separated spherical Gaussians in D dimensions (labels = component).
inline RowMatrix blobs(Index n, Index d, Index k, std::uint64_t seed, std::vector<std::int64_t>* labels = nullptr,
                       double spread = 10.0, double sigma = 1.0, RowMatrix* centers_out = nullptr) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  RowMatrix centers(k, d);
  for (Index i = 0; i < k; ++i)
    for (Index j = 0; j < d; ++j) centers(i, j) = spread * normal(gen);
  RowMatrix x(n, d);
  if (labels) labels->resize(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) {
    const Index c = i % k;
    for (Index j = 0; j < d; ++j) x(i, j) = centers(c, j) + sigma * normal(gen);
    if (labels) (*labels)[static_cast<std::size_t>(i)] = c;
  }
  if (centers_out) *centers_out = centers;
  return x;
}

}  // namespace latent::testing
