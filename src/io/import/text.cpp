#include "latent/io/import/text.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <regex>
#include <unordered_map>
#include <unordered_set>

#include "fields.hpp"
#include "latent/core/error.hpp"
#include "latent/io/import/byte_stream.hpp"
#include "latent/io/import/split.hpp"
#include "latent/io/import/tokenizer.hpp"

namespace latent::io::importers {
namespace {

namespace fs = std::filesystem;

// The documents of a text corpus: the lines of one file, or the files of a directory.
class TextSource {
 public:
  /// `files` empty: the lines of `file` in `range` are the documents.
  TextSource(std::string file, ByteRange range, std::vector<std::string> files, Tokenizer& tokenizer)
      : file_(std::move(file)), range_(range), files_(std::move(files)), tokenizer_(tokenizer) {}
  /// Calls emit(word) for every word of the next document; false at the end.
  template <class Emit>
  bool next(Emit&& emit) {
    if (files_.empty()) {
      if (!stream_) stream_ = std::make_unique<ByteStream>(file_, range_);
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
  ByteRange range_;
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
  TextReader(std::unique_ptr<Tokenizer> tokenizer, const std::string& file, ByteRange range,
             std::vector<std::string> files, std::unordered_map<std::string, WordStats> words,
             std::vector<std::int64_t> labels, Index expected_docs, std::string input)
      : tokenizer_(std::move(tokenizer)),
        source_(file, range, std::move(files), *tokenizer_),
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

namespace {

// Runs fn on every rank and agrees on its errors (one process: just runs it).
template <class Fn>
void agreed(const comm::Communicator* comm, Fn&& fn) {
  if (comm == nullptr)
    fn();
  else
    comm::run_agreed(*comm, fn);
}

// Words with their document frequency and corpus count, for the merge on rank 0:
// [u32 length][bytes][i64 df][i64 tf] per word.
std::string serialize_words(const std::unordered_map<std::string, WordStats>& words) {
  std::string out;
  for (const auto& [w, st] : words) {
    const auto n = static_cast<std::uint32_t>(w.size());
    out.append(reinterpret_cast<const char*>(&n), sizeof n);
    out.append(w);
    out.append(reinterpret_cast<const char*>(&st.df), sizeof st.df);
    out.append(reinterpret_cast<const char*>(&st.tf), sizeof st.tf);
  }
  return out;
}

void merge_words(const std::string& bytes, std::unordered_map<std::string, WordStats>& into) {
  std::size_t at = 0;
  while (at < bytes.size()) {
    std::uint32_t n = 0;
    std::memcpy(&n, bytes.data() + at, sizeof n);
    at += sizeof n;
    WordStats& st = into[bytes.substr(at, n)];
    at += n;
    Index df = 0, tf = 0;
    std::memcpy(&df, bytes.data() + at, sizeof df);
    std::memcpy(&tf, bytes.data() + at + sizeof df, sizeof tf);
    at += sizeof df + sizeof tf;
    st.df += df;
    st.tf += tf;
  }
}

// The pruned, sorted vocabulary from every word's document frequency and corpus count.
std::vector<std::string> build_vocabulary(std::unordered_map<std::string, WordStats>& words, Index docs,
                                          const TextOptions& o, const std::string& input) {
  if (docs == 0) throw_input("input " + input + ": has no documents");
  if (words.empty())
    throw_input("input " + input + ": has no words (a word is a run of at least two letters, digits or '_')");
  const double max_docs = parse_doc_frequency(o.max_df, "--max-df").documents(docs);
  const double min_docs = parse_doc_frequency(o.min_df, "--min-df").documents(docs);
  if (max_docs < min_docs)
    throw_usage(fmt::format("--max-df corresponds to fewer documents ({}) than --min-df ({})", max_docs, min_docs));
  std::vector<std::pair<const std::string*, WordStats*>> kept;
  for (auto& [w, st] : words) {
    const auto df = static_cast<double>(st.df);
    if (df >= min_docs && df <= max_docs) kept.emplace_back(&w, &st);
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
  std::vector<std::string> vocabulary;
  vocabulary.reserve(kept.size());
  for (const auto& k : kept) vocabulary.push_back(*k.first);
  return vocabulary;
}

}  // namespace

Corpus open_text(const std::string& input, const TextOptions& o, const comm::Communicator* comm) {
  Corpus plan;
  plan.text = true;
  const int rank = comm != nullptr ? comm->rank() : 0, size = comm != nullptr ? comm->size() : 1;
  std::vector<std::string> files, names;
  std::vector<std::int64_t> labels;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unordered_map<std::string, WordStats> words;
  agreed(comm, [&] {
  std::error_code ec;
  if (!fs::exists(input, ec)) throw Error(ErrorKind::kNoInput, "input " + input + ": does not exist");
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
  tokenizer = std::make_unique<Tokenizer>(o.tag_separator, o.lowercase, std::move(stop_words));

  if (!o.vocab.empty()) {
    // A fixed vocabulary (scikit-learn's `vocabulary=`): its order, no pruning, one pass.
    plan.vocabulary = read_word_list(o.vocab, "vocabulary", false);
    for (std::size_t v = 0; v < plan.vocabulary.size(); ++v)
      if (!words.emplace(plan.vocabulary[v], WordStats{0, 0, -1, static_cast<std::int32_t>(v)}).second)
        bad_line("vocabulary", o.vocab, static_cast<Index>(v) + 1, "word " + quote(plan.vocabulary[v]) + " is repeated");
  }
  });

  // This rank's documents: a contiguous run of the files, or the lines of its byte range.
  ByteRange range;
  Index local_docs = -1;
  if (!files.empty()) {
    const auto [lo, hi] = contiguous_part(static_cast<Index>(files.size()), rank, size);
    files = std::vector<std::string>(files.begin() + lo, files.begin() + hi);
    if (!labels.empty()) labels = std::vector<std::int64_t>(labels.begin() + lo, labels.begin() + hi);
    local_docs = hi - lo;
    if (files.empty()) range = ByteRange{0, 0, 0};  // no files: no documents
  } else if (comm != nullptr) {
    const LineSplit split = split_lines(*comm, input, !o.vocab.empty(), false);
    range = split.range;
    local_docs = split.lines;
  }

  Index docs = -1;
  if (o.vocab.empty()) {
    // Pass 1: document frequencies and corpus counts of every word of this rank's part.
    Index local = 0;
    agreed(comm, [&] {
      TextSource source(input, range, files, *tokenizer);
      while (source.next([&](const std::string& w) {
        auto it = words.find(w);
        if (it == words.end()) it = words.emplace(w, WordStats{}).first;
        WordStats& st = it->second;
        if (st.last_doc != local) {
          st.last_doc = local;
          ++st.df;
        }
        ++st.tf;
      }))
        ++local;
    });
    local_docs = local;
    // The exact merge: document frequencies and counts summed over the ranks on rank 0,
    // which prunes and sorts; every rank gets the vocabulary.
    std::string joined;
    if (comm == nullptr || size == 1) {
      docs = local;
      plan.vocabulary = build_vocabulary(words, docs, o, input);
    } else {
      docs = 0;
      exclusive_prefix(*comm, local, &docs);
      std::vector<std::string> parts;
      parts = comm->gather(serialize_words(words), 0);
      comm::run_agreed(*comm, [&] {
        if (!comm->is_root()) return;
        std::unordered_map<std::string, WordStats> all;
        for (const auto& p : parts) merge_words(p, all);
        parts.clear();
        plan.vocabulary = build_vocabulary(all, docs, o, input);
        for (const auto& w : plan.vocabulary) (joined += w) += '\n';
      });
      comm->broadcast(joined, 0);
      if (!comm->is_root()) {
        std::size_t at = 0;
        while (at < joined.size()) {
          const std::size_t nl = joined.find('\n', at);
          plan.vocabulary.push_back(joined.substr(at, nl - at));
          at = nl + 1;
        }
      }
    }
    // Global ids of this rank's words; words pruned (or absent from the vocabulary) are not
    // needed in pass 2.
    for (std::size_t v = 0; v < plan.vocabulary.size(); ++v) {
      const auto it = words.find(plan.vocabulary[v]);
      if (it != words.end()) it->second.id = static_cast<std::int32_t>(v);
    }
    for (auto it = words.begin(); it != words.end();) it = it->second.id < 0 ? words.erase(it) : std::next(it);
    plan.total = docs;
  } else if (comm != nullptr) {
    exclusive_prefix(*comm, local_docs, &plan.total);
  }
  plan.local_documents = local_docs;
  plan.reader = std::make_unique<TextReader>(std::move(tokenizer), input, range, std::move(files), std::move(words),
                                             std::move(labels), local_docs, input);
  return plan;
}

}  // namespace latent::io::importers
