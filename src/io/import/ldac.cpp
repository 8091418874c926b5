#include "latent/io/import/ldac.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "fields.hpp"
#include "latent/io/import/byte_stream.hpp"
#include "latent/io/import/split.hpp"

namespace latent::io::importers {
namespace {

// Blei's LDA-C: one document per line, `M term:count ... term:count`, 0-based term ids.
class LdacReader final : public DocumentReader {
 public:
  /// vocab_size < 0: unknown (ids are only checked against the int32 limit).
  LdacReader(const std::string& path, ByteRange range, Index vocab_size)
      : s_(path, range), vocab_size_(vocab_size), line_no_(s_.lines_before()) {}
  bool next(Document& doc) override {
    doc.clear();
    if (!s_.getline(line_)) return false;
    ++line_no_;
    split_fields(line_, fields_);
    if (fields_.empty()) fail("empty line (an empty document is written as '0')");
    std::int64_t m = 0;
    if (!parse_int(fields_[0], m) || m < 0)
      fail("expected the number of term:count pairs first, found " + quote(fields_[0]));
    if (m != static_cast<std::int64_t>(fields_.size()) - 1)
      fail(fmt::format("declares {} term:count pairs but has {}", m, fields_.size() - 1));
    for (std::size_t k = 1; k < fields_.size(); ++k) {
      const auto f = fields_[k];
      const auto colon = f.find(':');
      std::int64_t id = 0, count = 0;
      if (colon == std::string_view::npos || !parse_int(f.substr(0, colon), id))
        fail("expected term:count, found " + quote(f));
      if (id < 0 || id > kMaxWordId) fail(fmt::format("term id {} is outside [0, {}]", id, kMaxWordId));
      if (vocab_size_ >= 0 && id >= vocab_size_)
        fail(fmt::format("term id {} is outside the vocabulary of {} words (--vocab)", id, vocab_size_));
      if (!parse_count(f.substr(colon + 1), count))
        fail(fmt::format("count {} is not a non-negative integer", quote(f.substr(colon + 1))));
      max_id_ = std::max(max_id_, id);
      if (count > 0) {
        doc.ids.push_back(static_cast<std::int32_t>(id));
        doc.counts.push_back(count);
      }
    }
    return true;
  }
  std::int64_t max_id() const { return max_id_; }

 private:
  [[noreturn]] void fail(const std::string& message) const { bad_line("input", s_.path(), line_no_, message); }
  ByteStream s_;
  Index vocab_size_;
  std::string line_;
  std::vector<std::string_view> fields_;
  Index line_no_ = 0;
  std::int64_t max_id_ = -1;
};


}  // namespace

Corpus open_ldac(const std::string& input, const std::string& vocab, const comm::Communicator* comm) {
  Corpus plan;
  ByteRange range;
  if (comm != nullptr) range = split_lines(*comm, input, false, true).range;
  std::int64_t local[2] = {0, -1};  // documents, largest term id
  comm::run_agreed(comm, [&] {
    if (!vocab.empty()) plan.vocabulary = read_word_list(vocab, "vocabulary", false);
    // Pass 1: the documents, the vocabulary size (the largest term id + 1 without --vocab)
    // and the whole part checked.
    LdacReader scan(input, range, vocab.empty() ? -1 : static_cast<Index>(plan.vocabulary.size()));
    Document doc;
    while (scan.next(doc)) ++local[0];
    local[1] = scan.max_id();
  });
  Index docs = local[0];
  std::int64_t max_id = local[1];
  if (comm != nullptr) {
    const auto all = comm->allgatherv(std::span<const std::int64_t>(local, 2));
    docs = 0;
    for (int r = 0; r < comm->size(); ++r) {
      docs += all[2 * static_cast<std::size_t>(r)];
      max_id = std::max(max_id, all[2 * static_cast<std::size_t>(r) + 1]);
    }
  }
  if (vocab.empty()) plan.vocabulary = id_words(max_id + 1);
  plan.total = docs;
  plan.local_documents = local[0];
  plan.reader = std::make_unique<LdacReader>(input, range, static_cast<Index>(plan.vocabulary.size()));
  return plan;
}

}  // namespace latent::io::importers
