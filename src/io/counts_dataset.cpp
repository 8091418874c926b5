#include "latent/io/counts_dataset.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include <fmt/format.h>

#include "h5_handle.hpp"
#include "latent/core/error.hpp"
#include "latent/io/shard_files.hpp"

namespace latent::io {
namespace {

using detail::Handle;
namespace fs = std::filesystem;

constexpr hsize_t kMaxRows = hsize_t{1} << 40;
constexpr hsize_t kMaxNonzeros = hsize_t{1} << 44;
constexpr Index kMaxVocab = Index{1} << 31;

std::string where_of(const std::string& path, const char* dataset) { return "file " + path + ", dataset /" + dataset; }

Index read_int_attr(hid_t file, const std::string& path, const char* name) {
  detail::Hdf5Lock lock(detail::hdf5_mutex());
  const std::string where = "file " + path + ", attribute " + name;
  if (H5Aexists(file, name) <= 0) throw_input(where + ": missing (not a count dataset? create one with `latent import counts`)");
  Handle a = detail::attr_handle(H5Aopen(file, name, H5P_DEFAULT));
  Handle type = detail::type_handle(H5Aget_type(a.get()));
  Handle space = detail::space_handle(H5Aget_space(a.get()));
  if (!a.valid() || H5Tget_class(type.get()) != H5T_INTEGER || H5Sget_simple_extent_npoints(space.get()) != 1)
    throw_input(where + ": expected one integer");
  std::int64_t v = 0;
  if (H5Aread(a.get(), H5T_NATIVE_INT64, &v) < 0) throw_input(where + ": unreadable");
  return v;
}

CountsShardInfo inspect_shard(const std::string& path, Index* vocab_size) {
  detail::Hdf5Lock lock(detail::hdf5_mutex());
  Handle f = detail::open_read_only(path);
  CountsShardInfo shard;
  shard.path = path;
  detail::check_shard_attributes(f.get(), path, kCountsFormatVersion, kCountsKind, "latent import counts");
  const Index v = read_int_attr(f.get(), path, "vocab_size");
  if (v < 1 || v > kMaxVocab)
    throw_input("file " + path + ", attribute vocab_size: " + std::to_string(v) + " is not in [1, 2^31]");
  if (*vocab_size >= 0 && v != *vocab_size)
    throw_input("file " + path + ", attribute vocab_size: " + std::to_string(v) + " but earlier shards have " +
                std::to_string(*vocab_size) + "; every shard must use the same vocabulary");
  *vocab_size = v;
  const auto indptr = detail::inspect_numeric_dataset(f.get(), path, kIndptrDataset, 1, true, false, kMaxRows + 1);
  const auto indices = detail::inspect_numeric_dataset(f.get(), path, kIndicesDataset, 1, true, false, kMaxNonzeros);
  const auto counts = detail::inspect_numeric_dataset(f.get(), path, kCountsDataset, 1, true, true, kMaxNonzeros);
  if (indptr.dims[0] < 1)
    throw_input(where_of(path, kIndptrDataset) + ": is empty; expected rows + 1 entries starting with 0");
  shard.num_rows = static_cast<Index>(indptr.dims[0]) - 1;
  shard.num_nonzeros = static_cast<Index>(indices.dims[0]);
  if (counts.dims[0] != indices.dims[0])
    throw_input(where_of(path, kCountsDataset) + ": has " + std::to_string(counts.dims[0]) + " entries but /indices has " +
                std::to_string(indices.dims[0]) + "; they must match");
  Handle d = detail::open_trusted_dataset(f.get(), path, kIndptrDataset);
  std::int64_t first = 0, last = 0;
  detail::read_1d(d.get(), 0, 1, &first, where_of(path, kIndptrDataset));
  detail::read_1d(d.get(), indptr.dims[0] - 1, 1, &last, where_of(path, kIndptrDataset));
  if (first != 0) throw_input(where_of(path, kIndptrDataset) + ", row 0: indptr[0] is " + std::to_string(first) + "; must be 0");
  if (last != shard.num_nonzeros)
    throw_input(where_of(path, kIndptrDataset) + ": the last entry is " + std::to_string(last) + " but /indices has " +
                std::to_string(shard.num_nonzeros) + " entries (wrong length or damaged indptr)");
  if (H5Lexists(f.get(), "labels", H5P_DEFAULT) > 0) {
    const auto labels = detail::inspect_numeric_dataset(f.get(), path, "labels", 1, true, false, kMaxRows);
    if (static_cast<Index>(labels.dims[0]) != shard.num_rows)
      throw_input(where_of(path, "labels") + ": expected one label per document (" + std::to_string(shard.num_rows) + ")");
    shard.has_labels = true;
  }
  return shard;
}

// Keeps the current shard open across consecutive reads of a pass.
class ShardReader {
 public:
  explicit ShardReader(const CountsDatasetInfo& info) : info_(info) {
    Index start = 0;
    for (const auto& s : info_.shards) {
      shard_start_.push_back(start);
      start += s.num_rows;
    }
  }

  CsrBlock read(const BlockRef& ref, bool read_labels) {
    CsrBlock block;
    block.ref = ref;
    block.indptr.assign(1, 0);
    const Index end = ref.global_row_begin + ref.num_rows;
    if (ref.global_row_begin < 0 || end > info_.num_rows) throw_input("data " + info_.location + ": block out of range");
    auto s = static_cast<std::size_t>(std::upper_bound(shard_start_.begin(), shard_start_.end(), ref.global_row_begin) -
                                      shard_start_.begin() - 1);
    for (Index g = ref.global_row_begin; g < end; ++s) {
      const Index row = g - shard_start_[s];
      const Index rows = std::min(end - g, info_.shards[s].num_rows - row);
      if (rows > 0) append(block, s, row, rows, read_labels);
      g += rows;
    }
    return block;
  }

 private:
  void append(CsrBlock& block, std::size_t s, Index row, Index rows, bool read_labels) {
    if (info_.memory) {
      append_memory(block, row, rows, read_labels);
      return;
    }
    detail::Hdf5Lock lock(detail::hdf5_mutex());
    open(s);
    const std::string& path = info_.shards[s].path;
    indptr_.resize(static_cast<std::size_t>(rows) + 1);
    detail::read_1d(indptr_d_.get(), static_cast<hsize_t>(row), static_cast<hsize_t>(rows) + 1, indptr_.data(),
                    where_of(path, kIndptrDataset));
    const std::int64_t p0 = indptr_.front(), p1 = indptr_.back();
    const std::string where = "file " + path;
    if (p0 < 0 || p1 < p0 || p1 > info_.shards[s].num_nonzeros)
      throw_input(where + ", dataset /" + kIndptrDataset + ", rows " + std::to_string(row) + "-" +
                  std::to_string(row + rows) + ": offsets " + std::to_string(p0) + ".." + std::to_string(p1) +
                  " are outside [0, " + std::to_string(info_.shards[s].num_nonzeros) + "] or decreasing");
    const auto nnz = static_cast<std::size_t>(p1 - p0);
    indices_.resize(nnz);
    counts_.resize(nnz);
    detail::read_1d(indices_d_.get(), static_cast<hsize_t>(p0), nnz, indices_.data(), where_of(path, kIndicesDataset));
    detail::read_1d(counts_d_.get(), static_cast<hsize_t>(p0), nnz, counts_.data(), where_of(path, kCountsDataset));
    validate_csr(indptr_, indices_, counts_, p0, info_.vocab_size, where, row);
    const std::int64_t base = block.indptr.back() - p0;
    for (std::size_t i = 1; i < indptr_.size(); ++i) block.indptr.push_back(indptr_[i] + base);
    for (std::int64_t w : indices_) block.indices.push_back(static_cast<std::int32_t>(w));
    block.counts.insert(block.counts.end(), counts_.begin(), counts_.end());
    if (read_labels) {
      if (!labels_d_.valid()) throw_input(where_of(path, "labels") + ": missing (labels were requested)");
      const std::size_t at = block.labels.size();
      block.labels.resize(at + static_cast<std::size_t>(rows));
      detail::read_1d(labels_d_.get(), static_cast<hsize_t>(row), static_cast<hsize_t>(rows), block.labels.data() + at,
                      where_of(path, "labels"));
    }
  }

  // Documents in memory (CountsDatasetInfo::memory): validated and appended like a file's.
  void append_memory(CsrBlock& block, Index row, Index rows, bool read_labels) const {
    const MemoryCsr& m = *info_.memory;
    if (read_labels) throw_input("data " + info_.location + ": labels were requested but documents in memory have none");
    const std::span<const std::int64_t> indptr(m.indptr + row, static_cast<std::size_t>(rows) + 1);
    const std::int64_t p0 = indptr.front(), p1 = indptr.back();
    if (p0 < 0 || p1 < p0 || p1 > info_.num_nonzeros)
      throw_input("data " + info_.location + ", indptr, rows " + std::to_string(row) + "-" + std::to_string(row + rows) +
                  ": offsets " + std::to_string(p0) + ".." + std::to_string(p1) + " are outside [0, " +
                  std::to_string(info_.num_nonzeros) + "] or decreasing");
    const auto nnz = static_cast<std::size_t>(p1 - p0);
    const std::span<const std::int64_t> indices(m.indices + p0, nnz);
    const std::span<const double> counts(m.counts + p0, nnz);
    validate_csr(indptr, indices, counts, p0, info_.vocab_size, "data " + info_.location, row);
    const std::int64_t base = block.indptr.back() - p0;
    for (std::size_t i = 1; i < indptr.size(); ++i) block.indptr.push_back(indptr[i] + base);
    for (std::int64_t w : indices) block.indices.push_back(static_cast<std::int32_t>(w));
    block.counts.insert(block.counts.end(), counts.begin(), counts.end());
  }

  void open(std::size_t s) {
    if (static_cast<Index>(s) == open_shard_) return;
    labels_d_.reset();
    counts_d_.reset();
    indices_d_.reset();
    indptr_d_.reset();
    file_.reset();
    const std::string& path = info_.shards[s].path;
    file_ = detail::open_read_only(path);
    indptr_d_ = detail::open_trusted_dataset(file_.get(), path, kIndptrDataset);
    indices_d_ = detail::open_trusted_dataset(file_.get(), path, kIndicesDataset);
    counts_d_ = detail::open_trusted_dataset(file_.get(), path, kCountsDataset);
    if (info_.shards[s].has_labels) labels_d_ = detail::open_trusted_dataset(file_.get(), path, "labels");
    open_shard_ = static_cast<Index>(s);
  }

  const CountsDatasetInfo& info_;
  std::vector<Index> shard_start_;
  Index open_shard_ = -1;
  Handle file_, indptr_d_, indices_d_, counts_d_, labels_d_;
  std::vector<std::int64_t> indptr_, indices_;
  std::vector<double> counts_;
};

std::size_t estimated_bytes(const CountsDatasetInfo& info, const std::vector<BlockRef>& blocks) {
  Index rows = 0;
  for (const auto& b : blocks) rows += b.num_rows;
  const double nnz = info.num_rows > 0 ? static_cast<double>(info.num_nonzeros) * static_cast<double>(rows) /
                                             static_cast<double>(info.num_rows)
                                       : 0.0;
  return static_cast<std::size_t>(nnz * 12.0 + static_cast<double>(rows) * 16.0);
}

}  // namespace

std::vector<Index> CountsDatasetInfo::shard_rows() const {
  std::vector<Index> rows;
  for (const auto& s : shards) rows.push_back(s.num_rows);
  return rows;
}

double CsrBlock::num_tokens() const noexcept {
  double t = 0;
  for (double c : counts) t += c;
  return t;
}

CountsDatasetInfo open_counts_dataset(const std::string& location) {
  std::error_code ec;
  if (!fs::exists(location, ec)) throw Error(ErrorKind::kNoInput, "data " + location + ": does not exist");
  if (!fs::is_directory(location, ec))
    throw_input("data " + location + ": is not a directory (a count dataset is a directory made by `latent import counts`)");
  const std::vector<std::string> paths = list_shard_files(location);
  if (paths.empty()) throw_input("data " + location + ": directory has no .h5 shards (create them with `latent import counts`)");
  CountsDatasetInfo info;
  info.location = location;
  info.vocab_size = -1;
  info.has_labels = true;
  for (const auto& p : paths) {
    info.shards.push_back(inspect_shard(p, &info.vocab_size));
    info.num_rows += info.shards.back().num_rows;
    info.num_nonzeros += info.shards.back().num_nonzeros;
    info.has_labels = info.has_labels && info.shards.back().has_labels;
    if (info.num_rows > (Index{1} << 48)) throw_input("data " + location + ": more than 2^48 documents in total");
  }
  if (info.num_rows == 0) throw_input("data " + location + ": has no documents (an empty corpus)");
  const std::string vocab = (fs::path(location) / kVocabularyFile).string();
  if (!fs::exists(vocab, ec))
    throw_input("data " + location + ": " + kVocabularyFile + " is missing (the vocabulary is stored with the dataset)");
  std::ifstream in(vocab);
  Index lines = 0;
  std::string line;
  while (std::getline(in, line)) ++lines;
  if (lines != info.vocab_size)
    throw_input("file " + vocab + ": has " + std::to_string(lines) + " words but the shards have vocab_size " +
                std::to_string(info.vocab_size) + "; the vocabulary does not match the shards");
  return info;
}

CountsDatasetInfo memory_counts_dataset(std::shared_ptr<const MemoryCsr> csr, Index num_rows, Index vocab_size,
                                        std::string location) {
  if (num_rows < 1) throw_input("data " + location + ": has no documents (an empty corpus)");
  if (vocab_size < 1 || vocab_size > std::numeric_limits<std::int32_t>::max())
    throw_input("data " + location + ": vocabulary size " + std::to_string(vocab_size) + " is outside [1, 2^31)");
  if (csr->indptr[0] != 0) throw_input("data " + location + ", indptr, row 0: indptr[0] is " + std::to_string(csr->indptr[0]) + "; must be 0");
  CountsDatasetInfo info;
  info.location = location;
  info.num_rows = num_rows;
  info.vocab_size = vocab_size;
  info.num_nonzeros = csr->indptr[num_rows];
  info.shards.push_back(CountsShardInfo{std::move(location), num_rows, info.num_nonzeros, false});
  info.memory = std::move(csr);
  return info;
}

std::vector<std::string> read_vocabulary(const CountsDatasetInfo& info) {
  const std::string path = (fs::path(info.location) / kVocabularyFile).string();
  std::ifstream in(path);
  if (!in) throw_input("file " + path + ": cannot be read");
  std::vector<std::string> words;
  std::string line;
  while (std::getline(in, line)) words.push_back(line);
  if (static_cast<Index>(words.size()) != info.vocab_size)
    throw_input("file " + path + ": has " + std::to_string(words.size()) + " words, expected " +
                std::to_string(info.vocab_size));
  return words;
}

void validate_csr(std::span<const std::int64_t> indptr, std::span<const std::int64_t> indices,
                  std::span<const double> counts, std::int64_t first_offset, Index vocab_size,
                  const std::string& where, Index first_row) {
  if (indptr.empty()) throw_input(where + ", dataset /" + kIndptrDataset + ": empty");
  if (indptr.front() != first_offset)
    throw_input(where + ", dataset /" + kIndptrDataset + ", row " + std::to_string(first_row) + ": offset " +
                std::to_string(indptr.front()) + ", expected " + std::to_string(first_offset));
  const auto nnz = static_cast<std::int64_t>(indices.size());
  if (counts.size() != indices.size())
    throw_input(where + ": /indices and /data have different lengths");
  for (std::size_t i = 0; i + 1 < indptr.size(); ++i) {
    const Index row = first_row + static_cast<Index>(i);
    const std::int64_t b = indptr[i] - first_offset, e = indptr[i + 1] - first_offset;
    if (e < b || e > nnz)
      throw_input(where + ", dataset /" + kIndptrDataset + ", row " + std::to_string(row) +
                  ": indptr is not monotone or runs past the end (" + std::to_string(indptr[i]) + " -> " +
                  std::to_string(indptr[i + 1]) + ")");
    std::int64_t previous = -1;
    for (std::int64_t j = b; j < e; ++j) {
      const std::int64_t w = indices[static_cast<std::size_t>(j)];
      if (w < 0 || w >= vocab_size)
        throw_input(where + ", dataset /" + kIndicesDataset + ", row " + std::to_string(row) + ": word id " +
                    std::to_string(w) + " is outside the vocabulary [0, " + std::to_string(vocab_size) + ")");
      if (w <= previous)
        throw_input(where + ", dataset /" + kIndicesDataset + ", row " + std::to_string(row) + ": word ids are not " +
                    "strictly increasing (" + std::to_string(previous) + " then " + std::to_string(w) +
                    "); sort and merge each document's entries");
      previous = w;
      const double c = counts[static_cast<std::size_t>(j)];
      if (!(c >= 1) || !std::isfinite(c) || c != std::floor(c) || c > 9.0e15)
        throw_input(where + ", dataset /" + kCountsDataset + ", row " + std::to_string(row) + ": count " +
                    fmt::format("{:g}", c) + " for word " + std::to_string(w) +
                    " is not a positive integer (negative, zero, fractional or non-finite counts are refused)");
    }
  }
  if (indptr.back() - first_offset != nnz)
    throw_input(where + ", dataset /" + kIndptrDataset + ": the offsets end at " + std::to_string(indptr.back()) +
                " but " + std::to_string(nnz) + " entries were read");
}

CsrBlock read_csr_block(const CountsDatasetInfo& info, const BlockRef& ref, bool read_labels) {
  ShardReader reader(info);
  return reader.read(ref, read_labels);
}

CountsSource::CountsSource(CountsDatasetInfo info, std::vector<BlockRef> blocks, CountsSourceOptions options)
    : info_(std::move(info)),
      stream_(blocks,
              [this, options]() -> BlockStream<CsrBlock>::Reader {
                auto reader = std::make_shared<ShardReader>(info_);
                return [reader, options](const BlockRef& ref) { return reader->read(ref, options.read_labels); };
              },
              options.prefetch_blocks,
              options.cache_bytes > 0 && estimated_bytes(info_, blocks) <= options.cache_bytes) {
  for (const auto& b : blocks) num_local_rows_ += b.num_rows;
}

}  // namespace latent::io
