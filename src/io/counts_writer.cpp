// io::CountsWriter: appends documents in CSR form, cuts them into shards, and publishes the
// dataset directory atomically (temporary directory beside the target, renamed on commit).
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <utility>

#include "latent/core/error.hpp"
#include "latent/io/counts_dataset.hpp"
#include "h5_handle.hpp"
#include "latent/io/h5_file.hpp"

namespace latent::io {
namespace {

namespace fs = std::filesystem;

// Shard names must sort in document order; five digits stop sorting at 100000.
constexpr Index kMaxShards = 100000;

std::string parent_of(const std::string& path) {
  const fs::path p = fs::absolute(fs::path(path)).lexically_normal();
  // "out/" normalises to "out/" with an empty filename: take the parent of the directory itself.
  const fs::path dir = p.has_filename() ? p.parent_path() : p.parent_path().parent_path();
  return dir.empty() ? std::string(".") : dir.string();
}

}  // namespace

void write_counts_shard(const std::string& path, Index vocab_size, std::span<const std::int64_t> indptr,
                        std::span<const std::int32_t> indices, std::span<const std::int64_t> counts,
                        std::span<const std::int64_t> labels) {
  H5Writer w(path, false);
  w.attr("/", "format_version", static_cast<std::int64_t>(kCountsFormatVersion));
  w.attr("/", "kind", std::string(kCountsKind));
  w.attr("/", "vocab_size", static_cast<std::int64_t>(vocab_size));
  w.write(kIndptrDataset, indptr);
  // H5Writer writes integers as int64; the schema allows int64 indices.
  const std::vector<std::int64_t> wide(indices.begin(), indices.end());
  w.write(kIndicesDataset, std::span<const std::int64_t>(wide));
  w.write(kCountsDataset, counts);
  if (!labels.empty()) w.write(kLabelsDataset, labels);
  w.commit();
}

void write_vocabulary(const std::string& dir, const std::vector<std::string>& vocabulary) {
  for (std::size_t v = 0; v < vocabulary.size(); ++v) {
    const std::string& word = vocabulary[v];
    if (word.empty()) throw_input(fmt::format("output {}: vocabulary word {} is empty", dir, v));
    if (word.find_first_of("\n\r\t") != std::string::npos)
      throw_input(fmt::format("output {}: vocabulary word {} contains a tab or line break", dir, v));
  }
  const std::string vocab_path = dir + "/" + kVocabularyFile;
  std::FILE* f = std::fopen(vocab_path.c_str(), "wb");
  if (f == nullptr) throw_output("output " + dir + ": cannot create " + vocab_path);
  bool ok = true;
  for (const auto& word : vocabulary) {
    ok = ok && std::fwrite(word.data(), 1, word.size(), f) == word.size() && std::fputc('\n', f) != EOF;
  }
  ok = std::fflush(f) == 0 && ok;
  ok = ::fsync(::fileno(f)) == 0 && ok;
  ok = std::fclose(f) == 0 && ok;
  if (!ok) throw Error(ErrorKind::kIo, "output " + dir + ": cannot write " + vocab_path + " (disk full?)");
}

CountsWriter::CountsWriter(std::string dir, Index vocab_size, Index docs_per_shard, bool with_labels)
    : dir_(std::move(dir)), vocab_size_(vocab_size), docs_per_shard_(docs_per_shard), with_labels_(with_labels) {
  if (dir_.empty()) throw_usage("output directory name is empty");
  if (vocab_size_ < 0 || vocab_size_ > std::numeric_limits<std::int32_t>::max())
    throw_input(fmt::format("output {}: vocabulary size {} is out of range (at most {} words: ids are stored as int32)",
                            dir_, vocab_size_, std::numeric_limits<std::int32_t>::max()));
  if (docs_per_shard_ < 1) throw_usage("documents per shard must be at least 1");
  while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
  std::error_code ec;
  if (fs::exists(dir_, ec) || fs::is_symlink(dir_, ec))
    throw_output("output " + dir_ + ": already exists; choose another name");
  const std::string parent = parent_of(dir_);
  if (!fs::is_directory(parent, ec)) throw_output("output " + dir_ + ": directory " + parent + " does not exist");
  sweep_stale_temporaries(parent);
  tmp_dir_ = dir_ + temp_suffix();
  // A leftover of this pid can only come from a process that died (pids are reused).
  fs::remove_all(tmp_dir_, ec);
  if (!fs::create_directory(tmp_dir_, ec) || ec)
    throw_output("output " + dir_ + ": cannot create " + tmp_dir_ + " (is " + parent + " writable?" +
                 (ec ? " " + ec.message() : std::string()) + ")");
}

CountsWriter::~CountsWriter() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(tmp_dir_, ec);
}

void CountsWriter::add_document(std::span<const std::int32_t> word_ids, std::span<const std::int64_t> counts,
                                std::int64_t label) {
  if (committed_) throw Error(ErrorKind::kInternal, "CountsWriter::add_document after commit");
  if (word_ids.size() != counts.size())
    throw Error(ErrorKind::kInternal, fmt::format("CountsWriter::add_document: {} word ids but {} counts", word_ids.size(),
                                                  counts.size()));
  const Index doc = num_docs_;
  for (std::size_t j = 0; j < word_ids.size(); ++j) {
    if (word_ids[j] < 0 || word_ids[j] >= vocab_size_)
      throw_input(fmt::format("document {}: word id {} is outside the vocabulary [0, {})", doc, word_ids[j], vocab_size_));
    if (counts[j] < 1) throw_input(fmt::format("document {}: word id {} has count {} (counts must be >= 1)", doc, word_ids[j], counts[j]));
  }
  const std::size_t begin = indices_.size();
  Index tokens = 0;
  const auto add_tokens = [&](std::int64_t c) {
    if (__builtin_add_overflow(tokens, c, &tokens)) throw_input(fmt::format("document {}: token count overflows int64", doc));
  };
  const bool sorted = std::adjacent_find(word_ids.begin(), word_ids.end(),
                                         [](std::int32_t a, std::int32_t b) { return a >= b; }) == word_ids.end();
  if (sorted) {
    indices_.insert(indices_.end(), word_ids.begin(), word_ids.end());
    counts_.insert(counts_.end(), counts.begin(), counts.end());
    for (const std::int64_t c : counts) add_tokens(c);
  } else {
    std::vector<std::pair<std::int32_t, std::int64_t>> pairs(word_ids.size());
    for (std::size_t j = 0; j < word_ids.size(); ++j) pairs[j] = {word_ids[j], counts[j]};
    std::sort(pairs.begin(), pairs.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [id, c] : pairs) {
      add_tokens(c);
      if (indices_.size() > begin && indices_.back() == id) {
        if (__builtin_add_overflow(counts_.back(), c, &counts_.back()))
          throw_input(fmt::format("document {}: count of word id {} overflows int64", doc, id));
      } else {
        indices_.push_back(id);
        counts_.push_back(c);
      }
    }
  }
  if (__builtin_add_overflow(num_tokens_, tokens, &num_tokens_)) throw_input("total token count overflows int64");
  indptr_.push_back(static_cast<std::int64_t>(indices_.size()));
  if (with_labels_) labels_.push_back(label);
  if (indices_.size() == begin) ++num_empty_;
  ++num_docs_;
  if (static_cast<Index>(indptr_.size()) - 1 >= docs_per_shard_) flush_shard();
}

void CountsWriter::flush_shard() {
  const Index rows = static_cast<Index>(indptr_.size()) - 1;
  // An empty dataset still gets one (empty) shard, so that it can be opened.
  if (rows == 0 && num_shards_ > 0) return;
  if (num_shards_ >= kMaxShards)
    throw_usage(fmt::format("output {}: more than {} shards; use more documents per shard (--docs-per-shard)", dir_,
                            kMaxShards - 1));
  write_counts_shard(fmt::format("{}/part-{:05d}.h5", tmp_dir_, num_shards_), vocab_size_, indptr_, indices_, counts_,
                     with_labels_ ? std::span<const std::int64_t>(labels_) : std::span<const std::int64_t>());
  ++num_shards_;
  indptr_.assign(1, 0);
  indices_.clear();
  counts_.clear();
  labels_.clear();
}

void CountsWriter::commit(const std::vector<std::string>& vocabulary) {
  if (committed_) throw Error(ErrorKind::kInternal, "CountsWriter::commit called twice");
  if (static_cast<Index>(vocabulary.size()) != vocab_size_)
    throw_input(fmt::format("output {}: vocabulary has {} words but the vocabulary size is {}", dir_, vocabulary.size(),
                            vocab_size_));
  flush_shard();
  write_vocabulary(tmp_dir_, vocabulary);
  detail::fsync_path(tmp_dir_, true);
  std::error_code ec;
  // rename(2) would silently replace an empty directory created meanwhile.
  if (fs::exists(dir_, ec) || fs::is_symlink(dir_, ec))
    throw_output("output " + dir_ + ": was created by someone else during the import");
  fs::rename(tmp_dir_, dir_, ec);
  if (ec) throw_output("output " + dir_ + ": cannot rename " + tmp_dir_ + " into place: " + ec.message());
  committed_ = true;
  detail::fsync_path(parent_of(dir_), true);
}

}  // namespace latent::io
