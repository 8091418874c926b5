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

namespace {

// Appends one document to CSR arrays (sorted, repeated ids merged); returns its tokens.
Index append_document(Index doc, Index vocab_size, std::span<const std::int32_t> word_ids,
                      std::span<const std::int64_t> counts, std::vector<std::int32_t>& indices_,
                      std::vector<std::int64_t>& counts_) {
  if (word_ids.size() != counts.size())
    throw Error(ErrorKind::kInternal, fmt::format("CountsWriter::add_document: {} word ids but {} counts", word_ids.size(),
                                                  counts.size()));
  for (std::size_t j = 0; j < word_ids.size(); ++j) {
    if (word_ids[j] < 0 || word_ids[j] >= vocab_size)
      throw_input(fmt::format("document {}: word id {} is outside the vocabulary [0, {})", doc, word_ids[j], vocab_size));
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
  return tokens;
}

}  // namespace

void CountsWriter::add_document(std::span<const std::int32_t> word_ids, std::span<const std::int64_t> counts,
                                std::int64_t label) {
  if (committed_) throw Error(ErrorKind::kInternal, "CountsWriter::add_document after commit");
  const Index doc = num_docs_;
  const std::size_t begin = indices_.size();
  const Index tokens = append_document(doc, vocab_size_, word_ids, counts, indices_, counts_);
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

// ---------------------------------------------------------------------------------------
// CountsPartWriter.

namespace {

std::string piece_path(const std::string& dir, Index shard, int rank) {
  return fmt::format("{}/.piece-{:05d}-{:05d}", dir, shard, rank);
}

// A piece: [rows, nnz, has_labels] then indptr (rows + 1), indices (int32), counts, labels.
void write_piece(const std::string& path, std::span<const std::int64_t> indptr, std::span<const std::int32_t> indices,
                 std::span<const std::int64_t> counts, std::span<const std::int64_t> labels) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) throw_output("output " + path + ": cannot create");
  const std::int64_t head[3] = {static_cast<std::int64_t>(indptr.size()) - 1, static_cast<std::int64_t>(indices.size()),
                                labels.empty() ? 0 : 1};
  bool ok = std::fwrite(head, sizeof head, 1, f) == 1;
  const auto put = [&](const void* p, std::size_t bytes) { ok = ok && (bytes == 0 || std::fwrite(p, bytes, 1, f) == 1); };
  put(indptr.data(), indptr.size_bytes());
  put(indices.data(), indices.size_bytes());
  put(counts.data(), counts.size_bytes());
  put(labels.data(), labels.size_bytes());
  ok = std::fclose(f) == 0 && ok;
  if (!ok) throw Error(ErrorKind::kIo, "output " + path + ": write failed (disk full?)");
}

// Appends a piece to CSR arrays (indptr continues from its last entry).
void read_piece(const std::string& path, std::vector<std::int64_t>& indptr, std::vector<std::int32_t>& indices,
                std::vector<std::int64_t>& counts, std::vector<std::int64_t>& labels) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) throw Error(ErrorKind::kIo, "output " + path + ": a piece of a shard is missing");
  std::int64_t head[3] = {0, 0, 0};
  bool ok = std::fread(head, sizeof head, 1, f) == 1;
  const auto rows = static_cast<std::size_t>(head[0]), nnz = static_cast<std::size_t>(head[1]);
  std::vector<std::int64_t> ptr(ok ? rows + 1 : 0);
  const auto get = [&](void* p, std::size_t bytes) { ok = ok && (bytes == 0 || std::fread(p, bytes, 1, f) == 1); };
  get(ptr.data(), ptr.size() * sizeof(std::int64_t));
  const std::size_t at = indices.size();
  indices.resize(at + nnz);
  counts.resize(at + nnz);
  get(indices.data() + at, nnz * sizeof(std::int32_t));
  get(counts.data() + at, nnz * sizeof(std::int64_t));
  if (ok && head[2] != 0) {
    const std::size_t l = labels.size();
    labels.resize(l + rows);
    get(labels.data() + l, rows * sizeof(std::int64_t));
  }
  std::fclose(f);
  if (!ok) throw Error(ErrorKind::kIo, "output " + path + ": cannot read a piece of a shard");
  const std::int64_t base = indptr.back();
  for (std::size_t i = 1; i < ptr.size(); ++i) indptr.push_back(base + ptr[i]);
}

}  // namespace

CountsPartWriter::CountsPartWriter(const comm::Communicator& comm, std::string dir, Index vocab_size,
                                   Index docs_per_shard, bool with_labels, Index local_documents)
    : comm_(comm), dir_(std::move(dir)), vocab_size_(vocab_size), docs_per_shard_(docs_per_shard),
      with_labels_(with_labels), local_(local_documents) {
  const std::int64_t mine = local_documents;
  counts_per_rank_ = comm.allgatherv(std::span<const std::int64_t>(&mine, 1));
  for (int r = 0; r < comm.size(); ++r) {
    firsts_.push_back(total_);
    total_ += counts_per_rank_[static_cast<std::size_t>(r)];
  }
  first_ = firsts_[static_cast<std::size_t>(comm.rank())];
  if (docs_per_shard_ < 1) throw_usage("documents per shard must be at least 1");
  if (num_shards() > kMaxShards)
    throw_usage(fmt::format("output {}: more than {} shards; use more documents per shard (--docs-per-shard)", dir_,
                            kMaxShards - 1));
}

void CountsPartWriter::add_document(std::span<const std::int32_t> word_ids, std::span<const std::int64_t> counts,
                                    std::int64_t label) {
  if (added_ >= local_)
    throw Error(ErrorKind::kInternal, fmt::format("CountsPartWriter: more than the {} documents announced", local_));
  const Index doc = first_ + added_;
  if (doc / docs_per_shard_ != shard_) {
    flush();
    shard_ = doc / docs_per_shard_;
  }
  const std::size_t begin = indices_.size();
  const Index tokens = append_document(doc, vocab_size_, word_ids, counts, indices_, counts_);
  if (__builtin_add_overflow(num_tokens_, tokens, &num_tokens_)) throw_input("total token count overflows int64");
  indptr_.push_back(static_cast<std::int64_t>(indices_.size()));
  if (with_labels_) labels_.push_back(label);
  if (indices_.size() == begin) ++num_empty_;
  ++added_;
}

void CountsPartWriter::flush() {
  if (indptr_.size() <= 1) return;
  const Index begin = shard_ * docs_per_shard_, end = std::min(total_, begin + docs_per_shard_);
  const std::span<const std::int64_t> labels =
      with_labels_ ? std::span<const std::int64_t>(labels_) : std::span<const std::int64_t>();
  if (begin >= first_ && end <= first_ + local_)
    write_counts_shard(fmt::format("{}/part-{:05d}.h5", dir_, shard_), vocab_size_, indptr_, indices_, counts_, labels);
  else
    write_piece(piece_path(dir_, shard_, comm_.rank()), indptr_, indices_, counts_, labels);
  indptr_.assign(1, 0);
  indices_.clear();
  counts_.clear();
  labels_.clear();
}

void CountsPartWriter::finish() {
  comm::run_agreed(comm_, [&] {
    if (added_ != local_)
      throw Error(ErrorKind::kInternal,
                  fmt::format("CountsPartWriter: {} documents added but {} announced", added_, local_));
    flush();
    if (total_ == 0 && comm_.is_root())
      write_counts_shard(fmt::format("{}/part-{:05d}.h5", dir_, 0), vocab_size_, indptr_, indices_, counts_, {});
  });
  comm::run_agreed(comm_, [&] {
    if (local_ == 0) return;
    // The one shard this rank may have to join: its last, if it starts here and ends on
    // another rank.
    const Index s = (first_ + local_ - 1) / docs_per_shard_;
    const Index begin = s * docs_per_shard_, end = std::min(total_, begin + docs_per_shard_);
    if (begin < first_ || end <= first_ + local_) return;
    std::vector<std::int64_t> indptr{0}, counts, labels;
    std::vector<std::int32_t> indices;
    std::vector<std::string> pieces;
    for (int r = comm_.rank(); r < comm_.size(); ++r) {
      const Index f = firsts_[static_cast<std::size_t>(r)], n = counts_per_rank_[static_cast<std::size_t>(r)];
      if (n == 0 || f + n <= begin) continue;
      if (f >= end) break;
      pieces.push_back(piece_path(dir_, s, r));
      read_piece(pieces.back(), indptr, indices, counts, labels);
    }
    if (static_cast<Index>(indptr.size()) - 1 != end - begin)
      throw Error(ErrorKind::kInternal, fmt::format("output {}: shard {} joined from pieces has {} documents, not {}",
                                                    dir_, s, indptr.size() - 1, end - begin));
    write_counts_shard(fmt::format("{}/part-{:05d}.h5", dir_, s), vocab_size_, indptr, indices, counts,
                       with_labels_ ? std::span<const std::int64_t>(labels) : std::span<const std::int64_t>());
    for (const auto& p : pieces) std::filesystem::remove(p);
  });
}

}  // namespace latent::io
