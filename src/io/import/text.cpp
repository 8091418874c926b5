#include "latent/io/import/text.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <regex>
#include <unordered_map>
#include <unordered_set>

#include "fields.hpp"
#include "latent/core/error.hpp"
#include "latent/io/import/byte_stream.hpp"
#include "latent/io/import/tokenizer.hpp"

namespace latent::io::importers {
namespace {

namespace fs = std::filesystem;

// The documents of a text corpus: the lines of one file, or the files of a directory.
class TextSource {
 public:
  TextSource(std::string file, std::vector<std::string> files, Tokenizer& tokenizer)
      : file_(std::move(file)), files_(std::move(files)), tokenizer_(tokenizer) {}
  /// Calls emit(word) for every word of the next document; false at the end.
  template <class Emit>
  bool next(Emit&& emit) {
    if (files_.empty()) {
      if (!stream_) stream_ = std::make_unique<ByteStream>(file_);
      if (!stream_->getline(line_)) return false;
      tokenizer_.run(line_, emit);
      return true;
    }
    if (next_file_ == files_.size()) return false;
    ByteStream s(files_[next_file_++]);
    while (s.getline(line_)) tokenizer_.run(line_, emit);
    return true;
  }

 private:
  std::string file_;
  std::vector<std::string> files_;
  Tokenizer& tokenizer_;
  std::unique_ptr<ByteStream> stream_;
  std::size_t next_file_ = 0;
  std::string line_;
};

struct WordStats {
  Index df = 0;  // documents containing the word
  Index tf = 0;  // occurrences in the corpus
  Index last_doc = -1;
  std::int32_t id = -1;  // in the final vocabulary, -1 if pruned
};

class TextReader final : public DocumentReader {
 public:
  TextReader(std::unique_ptr<Tokenizer> tokenizer, const std::string& file, std::vector<std::string> files,
             std::unordered_map<std::string, WordStats> words, std::vector<std::int64_t> labels, Index expected_docs,
             std::string input)
      : tokenizer_(std::move(tokenizer)),
        source_(file, std::move(files), *tokenizer_),
        words_(std::move(words)),
        labels_(std::move(labels)),
        expected_docs_(expected_docs),
        input_(std::move(input)) {}
  bool next(Document& doc) override {
    doc.clear();
    const bool more = source_.next([&](const std::string& w) {
      const auto it = words_.find(w);
      if (it != words_.end() && it->second.id >= 0) {
        doc.ids.push_back(it->second.id);
        doc.counts.push_back(1);
      }
    });
    if (!more) {
      if (expected_docs_ >= 0 && docs_ != expected_docs_)
        throw_input(fmt::format("input {}: changed while being imported ({} documents in the first pass, {} in the second)",
                                input_, expected_docs_, docs_));
      return false;
    }
    if (expected_docs_ >= 0 && docs_ >= expected_docs_)
      throw_input(fmt::format("input {}: changed while being imported (more than the {} documents of the first pass)",
                              input_, expected_docs_));
    if (!labels_.empty()) doc.label = labels_[static_cast<std::size_t>(docs_)];
    ++docs_;
    return true;
  }

 private:
  std::unique_ptr<Tokenizer> tokenizer_;
  TextSource source_;
  std::unordered_map<std::string, WordStats> words_;
  std::vector<std::int64_t> labels_;
  Index expected_docs_;
  std::string input_;
  Index docs_ = 0;
};

}  // namespace

DocFrequency parse_doc_frequency(const std::string& text, const char* option) {
  DocFrequency f;
  std::int64_t n = 0;
  if (text.find_first_of(".eE") == std::string::npos) {
    if (!parse_int(text, n) || n < 1)
      throw_usage(fmt::format("{} must be an integer >= 1 (a document count) or a float in (0, 1] (a proportion), not '{}'",
                              option, text));
    f.value = static_cast<double>(n);
    return f;
  }
  if (!parse_double(text, f.value) || f.value <= 0 || f.value > 1)
    throw_usage(fmt::format("{} must be an integer >= 1 (a document count) or a float in (0, 1] (a proportion), not '{}'",
                            option, text));
  f.proportion = true;
  return f;
}

Corpus open_text(const std::string& input, const TextOptions& o) {
  Corpus plan;
  plan.text = true;
  std::error_code ec;
  if (!fs::exists(input, ec)) throw Error(ErrorKind::kNoInput, "input " + input + ": does not exist");
  std::vector<std::string> files, names;
  if (fs::is_directory(input, ec)) {
    const std::regex include(o.include.empty() ? std::string(".*") : o.include);
    fs::directory_iterator it(input, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
      std::error_code entry_ec;
      const std::string name = it->path().filename().string();
      if (it->is_regular_file(entry_ec) && std::regex_match(name, include)) names.push_back(name);
    }
    if (ec) throw_input("input " + input + ": cannot list the directory: " + ec.message());
    std::sort(names.begin(), names.end());
    if (names.empty())
      throw_input("input " + input + ": has no regular files" +
                  (o.include.empty() ? std::string() : " whose name matches --include " + o.include));
    for (const auto& n : names) files.push_back((fs::path(input) / n).string());
  } else {
    if (!o.labels.empty()) throw_usage("--labels maps file names to labels: it needs a directory as --input");
    if (!o.include.empty()) throw_usage("--include selects files: it needs a directory as --input");
  }

  // Labels: `name label` lines; label ids in alphabetical order of the labels that occur.
  std::vector<std::int64_t> labels;
  if (!o.labels.empty()) {
    ByteStream s(o.labels);
    std::unordered_map<std::string, std::string> by_name;
    std::string line;
    std::vector<std::string_view> fields;
    Index line_no = 0;
    while (s.getline(line)) {
      ++line_no;
      split_fields(line, fields);
      if (fields.empty()) continue;
      if (fields.size() != 2)
        bad_line("labels", o.labels, line_no, "expected 'name label' (two fields), found " + quote(line));
      if (!by_name.emplace(std::string(fields[0]), std::string(fields[1])).second)
        bad_line("labels", o.labels, line_no, "document " + quote(fields[0]) + " is listed twice");
    }
    std::map<std::string, std::int64_t> ids;
    for (const auto& n : names) {
      const auto it = by_name.find(n);
      if (it == by_name.end()) throw_input("labels " + o.labels + ": has no label for document " + n);
      ids.emplace(it->second, 0);
    }
    for (auto& [name, id] : ids) {
      id = static_cast<std::int64_t>(plan.label_names.size());
      plan.label_names.push_back(name);
    }
    for (const auto& n : names) labels.push_back(ids.at(by_name.at(n)));
    plan.with_labels = true;
  }

  std::unordered_set<std::string> stop_words;
  if (o.stop_words == "english")
    stop_words.insert(english_stop_words().begin(), english_stop_words().end());
  else if (!o.stop_words.empty())
    for (auto& w : read_word_list(o.stop_words, "stop words", true)) stop_words.insert(std::move(w));
  auto tokenizer = std::make_unique<Tokenizer>(o.tag_separator, o.lowercase, std::move(stop_words));

  std::unordered_map<std::string, WordStats> words;
  Index docs = -1;
  if (!o.vocab.empty()) {
    // A fixed vocabulary (scikit-learn's `vocabulary=`): its order, no pruning, one pass.
    plan.vocabulary = read_word_list(o.vocab, "vocabulary", false);
    for (std::size_t v = 0; v < plan.vocabulary.size(); ++v)
      if (!words.emplace(plan.vocabulary[v], WordStats{0, 0, -1, static_cast<std::int32_t>(v)}).second)
        bad_line("vocabulary", o.vocab, static_cast<Index>(v) + 1, "word " + quote(plan.vocabulary[v]) + " is repeated");
  } else {
    // Pass 1: document frequencies and corpus counts of every word.
    TextSource source(input, files, *tokenizer);
    docs = 0;
    while (source.next([&](const std::string& w) {
      auto it = words.find(w);
      if (it == words.end()) it = words.emplace(w, WordStats{}).first;
      WordStats& s = it->second;
      if (s.last_doc != docs) {
        s.last_doc = docs;
        ++s.df;
      }
      ++s.tf;
    }))
      ++docs;
    if (docs == 0) throw_input("input " + input + ": has no documents");
    if (words.empty())
      throw_input("input " + input + ": has no words (a word is a run of at least two letters, digits or '_')");
    const double max_docs = parse_doc_frequency(o.max_df, "--max-df").documents(docs);
    const double min_docs = parse_doc_frequency(o.min_df, "--min-df").documents(docs);
    if (max_docs < min_docs)
      throw_usage(fmt::format("--max-df corresponds to fewer documents ({}) than --min-df ({})", max_docs, min_docs));
    std::vector<std::pair<const std::string*, WordStats*>> kept;
    for (auto& [w, s] : words) {
      const auto df = static_cast<double>(s.df);
      if (df >= min_docs && df <= max_docs) kept.emplace_back(&w, &s);
    }
    if (o.max_features > 0 && static_cast<Index>(kept.size()) > o.max_features) {
      std::sort(kept.begin(), kept.end(), [](const auto& a, const auto& b) {
        return a.second->tf != b.second->tf ? a.second->tf > b.second->tf : *a.first < *b.first;
      });
      kept.resize(static_cast<std::size_t>(o.max_features));
    }
    if (kept.empty())
      throw_usage(fmt::format("input {}: after pruning, no words remain ({} distinct words before); lower --min-df or "
                              "raise --max-df",
                              input, words.size()));
    if (static_cast<Index>(kept.size()) > kMaxWordId + 1)
      throw_input(fmt::format("input {}: {} words exceed the int32 word ids; use --max-features", input, kept.size()));
    std::sort(kept.begin(), kept.end(), [](const auto& a, const auto& b) { return *a.first < *b.first; });
    plan.vocabulary.reserve(kept.size());
    for (std::size_t v = 0; v < kept.size(); ++v) {
      kept[v].second->id = static_cast<std::int32_t>(v);
      plan.vocabulary.push_back(*kept[v].first);
    }
    // Pruned words are not needed in pass 2.
    for (auto it = words.begin(); it != words.end();) it = it->second.id < 0 ? words.erase(it) : std::next(it);
    plan.total = docs;
  }
  plan.reader = std::make_unique<TextReader>(std::move(tokenizer), input, std::move(files), std::move(words),
                                             std::move(labels), docs, input);
  return plan;
}

}  // namespace latent::io::importers
