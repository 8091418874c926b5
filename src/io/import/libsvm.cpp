#include "latent/io/import/libsvm.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "fields.hpp"
#include "latent/io/import/byte_stream.hpp"
#include "latent/io/import/split.hpp"

namespace latent::io::importers {
namespace {

// svmlight / libsvm: `label [qid:Q] index:value ...  # comment`. Blank and comment-only lines
// are skipped (as scikit-learn's load_svmlight_file does).
class LibsvmReader final : public DocumentReader {
 public:
  /// zero_based: -1 while scanning (pass 1), else 0 or 1. vocab_size < 0: unknown.
  LibsvmReader(const std::string& path, ByteRange range, int zero_based, Index vocab_size, bool with_labels)
      : s_(path, range),
        zero_based_(zero_based),
        vocab_size_(vocab_size),
        with_labels_(with_labels),
        line_no_(s_.lines_before()) {}
  bool next(Document& doc) override {
    doc.clear();
    while (s_.getline(line_)) {
      ++line_no_;
      std::string_view content(line_);
      content = content.substr(0, content.find('#'));
      split_fields(content, fields_);
      if (fields_.empty()) continue;
      parse_document(doc);
      return true;
    }
    return false;
  }
  bool any_zero_index() const { return any_zero_index_; }
  std::int64_t max_index() const { return max_index_; }
  bool integral_labels() const { return integral_labels_; }

 private:
  [[noreturn]] void fail(const std::string& message) const { bad_line("input", s_.path(), line_no_, message); }

  void parse_document(Document& doc) {
    double label = 0;
    if (!parse_double(fields_[0], label))
      fail("label " + quote(fields_[0]) + " is not a finite number (multi-label files are not supported)");
    const bool integral = label == std::trunc(label) && std::abs(label) <= 0x1p53;
    integral_labels_ = integral_labels_ && integral;
    if (with_labels_) {
      if (!integral) fail("label " + quote(fields_[0]) + " is not an integer (the file changed after the first pass?)");
      doc.label = static_cast<std::int64_t>(label);
    }
    for (std::size_t k = 1; k < fields_.size(); ++k) {
      const auto f = fields_[k];
      if (f.substr(0, 4) == "qid:") continue;
      const auto colon = f.find(':');
      std::int64_t index = 0, count = 0;
      if (colon == std::string_view::npos || !parse_int(f.substr(0, colon), index))
        fail("expected index:value, found " + quote(f));
      if (index < 0 || index > kMaxWordId) fail(fmt::format("feature index {} is outside [0, {}]", index, kMaxWordId));
      if (!parse_count(f.substr(colon + 1), count))
        fail(fmt::format("value {} of feature {} is not a count (a non-negative integer)", quote(f.substr(colon + 1)),
                         index));
      any_zero_index_ = any_zero_index_ || index == 0;
      max_index_ = std::max(max_index_, index);
      if (zero_based_ < 0) continue;  // pass 1 only scans
      if (zero_based_ == 0 && index == 0)
        fail("feature index 0 in a file read as 1-based (pass --zero-based true or auto)");
      const std::int64_t id = zero_based_ == 1 ? index : index - 1;
      if (id >= vocab_size_)
        fail(fmt::format("feature index {} is outside the vocabulary of {} words (--vocab)", index, vocab_size_));
      if (count > 0) {
        doc.ids.push_back(static_cast<std::int32_t>(id));
        doc.counts.push_back(count);
      }
    }
  }

  ByteStream s_;
  int zero_based_;
  Index vocab_size_;
  bool with_labels_;
  std::string line_;
  std::vector<std::string_view> fields_;
  Index line_no_ = 0;
  bool any_zero_index_ = false, integral_labels_ = true;
  std::int64_t max_index_ = -1;
};

}  // namespace

Corpus open_libsvm(const std::string& input, const std::string& vocab, IndexBase base, const Logger& log,
                   const comm::Communicator* comm) {
  Corpus plan;
  ByteRange range;
  if (comm != nullptr) range = split_lines(*comm, input, false, true).range;
  // Pass 1: index base, largest index, whether labels are integers (and the syntax).
  std::int64_t local[4] = {0, 0, -1, 0};  // documents, an index 0 seen, largest index, a label not integral
  comm::run_agreed(comm, [&] {
    LibsvmReader scan(input, range, -1, -1, false);
    Document doc;
    while (scan.next(doc)) ++local[0];
    local[1] = scan.any_zero_index() ? 1 : 0;
    local[2] = scan.max_index();
    local[3] = scan.integral_labels() ? 0 : 1;
  });
  std::int64_t global[4] = {local[0], local[1], local[2], local[3]};
  if (comm != nullptr) {
    const auto all = comm->allgatherv(std::span<const std::int64_t>(local, 4));
    global[0] = global[1] = global[3] = 0;
    global[2] = -1;
    for (int r = 0; r < comm->size(); ++r) {
      const std::int64_t* g = all.data() + 4 * static_cast<std::size_t>(r);
      global[0] += g[0];
      global[1] = std::max(global[1], g[1]);
      global[2] = std::max(global[2], g[2]);
      global[3] = std::max(global[3], g[3]);
    }
  }
  const Index docs = global[0];
  const bool zero_based = base == IndexBase::kZero || (base == IndexBase::kAuto && global[1] != 0);
  if (base == IndexBase::kAuto)
    log.info(fmt::format("libsvm: feature indices are {}-based ({})", zero_based ? 0 : 1,
                         zero_based ? "index 0 occurs" : "index 0 does not occur"));
  Index vocab_size = 0;
  comm::run_agreed(comm, [&] {
    if (!vocab.empty()) {
      plan.vocabulary = read_word_list(vocab, "vocabulary", false);
      vocab_size = static_cast<Index>(plan.vocabulary.size());
    } else {
      vocab_size = global[2] < 0 ? 0 : global[2] + (zero_based ? 1 : 0);
      plan.vocabulary = id_words(vocab_size);
    }
  });
  plan.with_labels = global[3] == 0;
  if (!plan.with_labels && docs > 0) log.warn("libsvm: the labels are not all integers; /labels is not written");
  plan.total = docs;
  plan.local_documents = local[0];
  plan.reader = std::make_unique<LibsvmReader>(input, range, zero_based ? 1 : 0, vocab_size, plan.with_labels);
  return plan;
}

}  // namespace latent::io::importers
