// `latent import counts`: bag-of-words corpora (UCI docword, LDA-C, svmlight/libsvm, Matrix
// Market, raw text) into a count dataset directory (include/latent/io/counts_dataset.hpp).
// Streaming: one document at a time is parsed and at most one shard is buffered by the
// writer; besides that, memory is vocabulary-sized (and, for text, the words seen in pass
// 1). Formats whose vocabulary size or document frequencies are not declared up front are
// read twice. Everything is written below a temporary directory beside the output that is
// renamed into place only when the whole import succeeded.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <regex>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "byte_stream.hpp"
#include "common.hpp"
#include "latent/core/error.hpp"
#include "latent/core/rng.hpp"
#include "latent/io/counts_dataset.hpp"

namespace latent::cli {
namespace {

namespace fs = std::filesystem;

// Word ids are int32 on disk and in memory; the largest id must leave room for V = id + 1.
constexpr std::int64_t kMaxWordId = std::numeric_limits<std::int32_t>::max() - 1;
// A header may not declare more documents than this (they would be written as empty rows).
constexpr std::int64_t kMaxDocuments = std::int64_t{1} << 40;

// scikit-learn's ENGLISH_STOP_WORDS (sklearn/feature_extraction/_stop_words.py, from the
// Glasgow Information Retrieval Group list), 318 words.
constexpr const char* kEnglishStopWords[] = {
    "a", "about", "above", "across", "after", "afterwards", "again", "against", "all", "almost", "alone",
    "along", "already", "also", "although", "always", "am", "among", "amongst", "amoungst", "amount", "an",
    "and", "another", "any", "anyhow", "anyone", "anything", "anyway", "anywhere", "are", "around", "as",
    "at", "back", "be", "became", "because", "become", "becomes", "becoming", "been", "before", "beforehand",
    "behind", "being", "below", "beside", "besides", "between", "beyond", "bill", "both", "bottom", "but", "by",
    "call", "can", "cannot", "cant", "co", "con", "could", "couldnt", "cry", "de", "describe", "detail", "do",
    "done", "down", "due", "during", "each", "eg", "eight", "either", "eleven", "else", "elsewhere", "empty",
    "enough", "etc", "even", "ever", "every", "everyone", "everything", "everywhere", "except", "few", "fifteen",
    "fifty", "fill", "find", "fire", "first", "five", "for", "former", "formerly", "forty", "found", "four",
    "from", "front", "full", "further", "get", "give", "go", "had", "has", "hasnt", "have", "he", "hence", "her",
    "here", "hereafter", "hereby", "herein", "hereupon", "hers", "herself", "him", "himself", "his", "how",
    "however", "hundred", "i", "ie", "if", "in", "inc", "indeed", "interest", "into", "is", "it", "its", "itself",
    "keep", "last", "latter", "latterly", "least", "less", "ltd", "made", "many", "may", "me", "meanwhile",
    "might", "mill", "mine", "more", "moreover", "most", "mostly", "move", "much", "must", "my", "myself", "name",
    "namely", "neither", "never", "nevertheless", "next", "nine", "no", "nobody", "none", "noone", "nor", "not",
    "nothing", "now", "nowhere", "of", "off", "often", "on", "once", "one", "only", "onto", "or", "other",
    "others", "otherwise", "our", "ours", "ourselves", "out", "over", "own", "part", "per", "perhaps", "please",
    "put", "rather", "re", "same", "see", "seem", "seemed", "seeming", "seems", "serious", "several", "she",
    "should", "show", "side", "since", "sincere", "six", "sixty", "so", "some", "somehow", "someone", "something",
    "sometime", "sometimes", "somewhere", "still", "such", "system", "take", "ten", "than", "that", "the",
    "their", "them", "themselves", "then", "thence", "there", "thereafter", "thereby", "therefore", "therein",
    "thereupon", "these", "they", "thick", "thin", "third", "this", "those", "though", "three", "through",
    "throughout", "thru", "thus", "to", "together", "too", "top", "toward", "towards", "twelve", "twenty", "two",
    "un", "under", "until", "up", "upon", "us", "very", "via", "was", "we", "well", "were", "what", "whatever",
    "when", "whence", "whenever", "where", "whereafter", "whereas", "whereby", "wherein", "whereupon",
    "wherever", "whether", "which", "while", "whither", "who", "whoever", "whole", "whom", "whose", "why", "will",
    "with", "within", "without", "would", "yet", "you", "your", "yours", "yourself", "yourselves",
};

struct Options {
  std::string format, input, output, vocab, zero_based, mm_layout, include, tag_separator, stop_words, min_df, max_df,
      labels;
  Index docs_per_shard = 65536;
  double holdout = 0;
  std::uint64_t seed = 0;
  bool lowercase = true;
  Index max_features = 0;  // 0: no limit
};

// ---------------------------------------------------------------------------------------
// Parsing helpers.

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

void split_fields(std::string_view s, std::vector<std::string_view>& out) {
  out.clear();
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_space(s[i])) ++i;
    const std::size_t b = i;
    while (i < s.size() && !is_space(s[i])) ++i;
    if (i > b) out.push_back(s.substr(b, i - b));
  }
}

bool blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return is_space(c); });
}

// A field for an error message: at most 40 bytes, control bytes escaped.
std::string quote(std::string_view s) {
  std::string q = "'";
  for (std::size_t i = 0; i < s.size() && i < 40; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f)
      q += fmt::format("\\x{:02x}", c);
    else
      q += static_cast<char>(c);
  }
  return q + (s.size() > 40 ? "...'" : "'");
}

bool parse_int(std::string_view s, std::int64_t& v) {
  if (!s.empty() && s[0] == '+') {
    s.remove_prefix(1);
    if (!s.empty() && s[0] == '-') return false;
  }
  if (s.empty()) return false;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}

bool parse_double(std::string_view s, double& v) {
  if (!s.empty() && s[0] == '+') {
    s.remove_prefix(1);
    if (!s.empty() && s[0] == '-') return false;
  }
  if (s.empty()) return false;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size() && std::isfinite(v);
}

// A count: a non-negative integer, written as an integer or as a float with an integral value
// ("3", "3.0", "3e0"). Zero is valid here (callers skip explicit zeros).
bool parse_count(std::string_view s, std::int64_t& c) {
  if (parse_int(s, c)) return c >= 0;
  double d = 0;
  if (!parse_double(s, d) || d < 0 || d != std::floor(d) || d > 0x1p62) return false;
  c = static_cast<std::int64_t>(d);
  return true;
}

std::string ascii_lower(std::string_view s) {
  std::string r(s);
  for (char& c : r)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return r;
}

[[noreturn]] void bad_line(const std::string& what, const std::string& path, Index line, const std::string& message) {
  throw_input(fmt::format("{} {}, line {}: {}", what, path, line, message));
}

// One word per line (a vocabulary or stop-word file; .gz accepted). Blank lines are refused
// in a vocabulary (every line is a word id) and skipped elsewhere.
std::vector<std::string> read_word_list(const std::string& path, const std::string& what, bool allow_blank) {
  ByteStream s(path);
  std::vector<std::string> words;
  std::string line;
  Index line_no = 0;
  while (s.getline(line)) {
    ++line_no;
    if (allow_blank) {
      const auto b = line.find_first_not_of(" \t\v\f");
      if (b == std::string::npos) continue;
      line = line.substr(b, line.find_last_not_of(" \t\v\f") - b + 1);
    } else if (line.empty()) {
      bad_line(what, path, line_no, "empty line (one word per line; line v is the word with id v - 1)");
    }
    if (line.find('\t') != std::string::npos) bad_line(what, path, line_no, "contains a tab (one word per line)");
    if (line.find('\r') != std::string::npos) bad_line(what, path, line_no, "contains a carriage return");
    words.push_back(line);
  }
  return words;
}

std::vector<std::string> id_words(Index vocab_size) {
  std::vector<std::string> words(static_cast<std::size_t>(vocab_size));
  for (Index v = 0; v < vocab_size; ++v) words[static_cast<std::size_t>(v)] = std::to_string(v);
  return words;
}

// ---------------------------------------------------------------------------------------
// Document readers: each yields documents in input order, with word ids already checked
// against the vocabulary size (so that errors name the file and line) and counts >= 1.

struct Document {
  std::vector<std::int32_t> ids;
  std::vector<std::int64_t> counts;
  std::int64_t label = 0;
  void clear() {
    ids.clear();
    counts.clear();
    label = 0;
  }
};

class DocumentReader {
 public:
  virtual ~DocumentReader() = default;
  /// The next document; false at the end of the input.
  virtual bool next(Document& doc) = 0;
};

// UCI bag-of-words (docword) and Matrix Market coordinate files: (document, word, count)
// triples, 1-based, grouped by document in ascending order. Documents without entries are
// empty documents; the header fixes the number of documents and words.
class CoordinateReader final : public DocumentReader {
 public:
  enum class Kind { kUci, kMatrixMarket };
  CoordinateReader(const std::string& path, Kind kind, bool words_by_docs)
      : s_(path), kind_(kind), words_by_docs_(words_by_docs) {
    if (kind_ == Kind::kUci)
      read_uci_header();
    else
      read_mm_header();
  }
  Index num_documents() const { return docs_; }
  Index num_words() const { return words_; }

  bool next(Document& doc) override {
    doc.clear();
    if (next_doc_ > docs_) {
      if (!at_end_ && !has_pending_) read_entry();  // checks that nothing follows
      return false;
    }
    while (true) {
      if (!has_pending_ && !at_end_) read_entry();
      if (!has_pending_ || pending_doc_ != next_doc_) break;
      if (pending_count_ > 0) {
        doc.ids.push_back(pending_word_);
        doc.counts.push_back(pending_count_);
      }
      has_pending_ = false;
    }
    ++next_doc_;
    return true;
  }

 private:
  [[noreturn]] void fail(const std::string& message) const { bad_line("input", s_.path(), line_no_, message); }

  // The next line that is not blank (and, in Matrix Market, not a % comment).
  bool next_content_line() {
    while (s_.getline(line_)) {
      ++line_no_;
      if (blank(line_)) continue;
      if (kind_ == Kind::kMatrixMarket && line_[0] == '%') continue;
      return true;
    }
    return false;
  }

  std::int64_t header_number(const char* name, std::int64_t max) {
    if (!next_content_line()) throw_input(fmt::format("input {}: ends before the header line with {}", s_.path(), name));
    split_fields(line_, fields_);
    std::int64_t v = 0;
    if (fields_.size() != 1 || !parse_int(fields_[0], v) || v < 0)
      fail(fmt::format("expected the header line with {} (one non-negative integer), found {}", name, quote(line_)));
    if (v > max) fail(fmt::format("{} = {} is implausibly large (at most {})", name, v, max));
    return v;
  }

  void read_uci_header() {
    docs_ = header_number("D (the number of documents)", kMaxDocuments);
    words_ = header_number("W (the number of words in the vocabulary)", kMaxWordId + 1);
    nnz_ = header_number("NNZ (the number of docID wordID count lines)", std::numeric_limits<std::int64_t>::max());
  }

  void read_mm_header() {
    if (!s_.getline(line_)) throw_input("input " + s_.path() + ": is empty (expected a %%MatrixMarket banner)");
    line_no_ = 1;
    split_fields(line_, fields_);
    std::vector<std::string> f;
    for (const auto field : fields_) f.push_back(ascii_lower(field));
    if (f.empty() || f[0] != "%%matrixmarket")
      fail("expected the banner '%%MatrixMarket matrix coordinate integer general', found " + quote(line_));
    if (f.size() != 5 || f[1] != "matrix") fail("malformed banner " + quote(line_) + " (expected 5 fields)");
    if (f[2] != "coordinate") fail("only sparse 'coordinate' Matrix Market files hold counts (found " + quote(f[2]) + ")");
    if (f[3] == "pattern")
      pattern_ = true;
    else if (f[3] != "integer" && f[3] != "real" && f[3] != "double")
      fail("field must be integer, real or pattern (found " + quote(f[3]) + ")");
    if (f[4] != "general") fail("only 'general' matrices are supported (found " + quote(f[4]) + ")");
    if (!next_content_line()) throw_input("input " + s_.path() + ": ends before the size line 'rows columns entries'");
    split_fields(line_, fields_);
    std::int64_t rows = 0, cols = 0;
    if (fields_.size() != 3 || !parse_int(fields_[0], rows) || !parse_int(fields_[1], cols) ||
        !parse_int(fields_[2], nnz_) || rows < 0 || cols < 0 || nnz_ < 0)
      fail("expected the size line 'rows columns entries' (three non-negative integers), found " + quote(line_));
    docs_ = words_by_docs_ ? cols : rows;
    words_ = words_by_docs_ ? rows : cols;
    const char* doc_dim = words_by_docs_ ? "columns (documents)" : "rows (documents)";
    const char* word_dim = words_by_docs_ ? "rows (words)" : "columns (words)";
    if (docs_ > kMaxDocuments) fail(fmt::format("{} {} is implausibly large", docs_, doc_dim));
    if (words_ > kMaxWordId + 1) fail(fmt::format("{} {} exceed the int32 word ids (at most {})", words_, word_dim, kMaxWordId + 1));
  }

  void read_entry() {
    if (!next_content_line()) {
      at_end_ = true;
      if (entries_ != nnz_)
        throw_input(fmt::format("input {}: the header declares {} entries but the file has {} (truncated?)", s_.path(),
                                nnz_, entries_));
      return;
    }
    if (++entries_ > nnz_) fail(fmt::format("more entries than the {} declared in the header", nnz_));
    split_fields(line_, fields_);
    const std::size_t expected = kind_ == Kind::kMatrixMarket && pattern_ ? 2 : 3;
    const char* layout = kind_ == Kind::kUci ? "docID wordID count"
                         : pattern_          ? (words_by_docs_ ? "word document" : "document word")
                                             : (words_by_docs_ ? "word document count" : "document word count");
    if (fields_.size() != expected)
      fail(fmt::format("expected {} fields '{}', found {}", expected, layout, quote(line_)));
    std::int64_t a = 0, b = 0;
    if (!parse_int(fields_[0], a) || !parse_int(fields_[1], b))
      fail(fmt::format("expected integer ids '{}', found {}", layout, quote(line_)));
    const std::int64_t doc = words_by_docs_ ? b : a, word = words_by_docs_ ? a : b;
    if (doc < 1 || doc > docs_) fail(fmt::format("document id {} is outside [1, {}] declared in the header", doc, docs_));
    if (word < 1 || word > words_) fail(fmt::format("word id {} is outside [1, {}] declared in the header", word, words_));
    std::int64_t count = 1;
    if (expected == 3 && !parse_count(fields_[2], count))
      fail(fmt::format("count {} is not a non-negative integer", quote(fields_[2])));
    if (doc < last_doc_) {
      if (kind_ == Kind::kUci)
        fail(fmt::format("document {} after document {}: entries must be grouped by document in ascending order", doc,
                         last_doc_));
      fail(fmt::format("document {} after document {}: entries must be sorted by document ({}); sort the entry lines "
                       "first, for example with `sort -s -n -k{},{}` on the lines after the size line",
                       doc, last_doc_, words_by_docs_ ? "column 2" : "column 1", words_by_docs_ ? 2 : 1,
                       words_by_docs_ ? 2 : 1));
    }
    last_doc_ = doc;
    pending_doc_ = doc;
    pending_word_ = static_cast<std::int32_t>(word - 1);
    pending_count_ = count;
    has_pending_ = true;
  }

  ByteStream s_;
  Kind kind_;
  bool words_by_docs_;
  bool pattern_ = false;
  std::string line_;
  std::vector<std::string_view> fields_;
  Index line_no_ = 0, docs_ = 0, words_ = 0, nnz_ = 0, entries_ = 0, next_doc_ = 1, last_doc_ = 0;
  bool has_pending_ = false, at_end_ = false;
  Index pending_doc_ = 0;
  std::int32_t pending_word_ = 0;
  std::int64_t pending_count_ = 0;
};

// Blei's LDA-C: one document per line, `M term:count ... term:count`, 0-based term ids.
class LdacReader final : public DocumentReader {
 public:
  /// vocab_size < 0: unknown (ids are only checked against the int32 limit).
  LdacReader(const std::string& path, Index vocab_size) : s_(path), vocab_size_(vocab_size) {}
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

// svmlight / libsvm: `label [qid:Q] index:value ...  # comment`. Blank and comment-only lines
// are skipped (as scikit-learn's load_svmlight_file does).
class LibsvmReader final : public DocumentReader {
 public:
  /// zero_based: -1 while scanning (pass 1), else 0 or 1. vocab_size < 0: unknown.
  LibsvmReader(const std::string& path, int zero_based, Index vocab_size, bool with_labels)
      : s_(path), zero_based_(zero_based), vocab_size_(vocab_size), with_labels_(with_labels) {}
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

// ---------------------------------------------------------------------------------------
// Raw text.

// Whitespace-separated tokens, optionally `word<SEP>tag` with the tag stripped, optionally
// lowercased (ASCII), then the maximal runs of word characters (ASCII letters, digits, '_'
// and every byte >= 0x80) of at least two characters (UTF-8 continuation bytes do not
// count): scikit-learn CountVectorizer's default token_pattern r"(?u)\b\w\w+\b".
class Tokenizer {
 public:
  Tokenizer(std::string tag_separator, bool lowercase, std::unordered_set<std::string> stop_words)
      : tag_separator_(std::move(tag_separator)), lowercase_(lowercase), stop_words_(std::move(stop_words)) {}

  template <class Emit>
  void run(std::string_view line, Emit&& emit) {
    std::size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && is_space(line[i])) ++i;
      const std::size_t b = i;
      while (i < line.size() && !is_space(line[i])) ++i;
      if (i == b) break;
      std::string_view token = line.substr(b, i - b);
      if (!tag_separator_.empty()) {
        const auto at = token.rfind(tag_separator_);
        if (at != std::string_view::npos) token = token.substr(0, at);
      }
      token_.assign(token);
      if (lowercase_)
        for (char& c : token_)
          if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      std::size_t j = 0;
      while (j < token_.size()) {
        if (!word_char(token_[j])) {
          ++j;
          continue;
        }
        std::size_t k = j;
        int chars = 0;
        for (; k < token_.size() && word_char(token_[k]); ++k)
          if ((static_cast<unsigned char>(token_[k]) & 0xC0) != 0x80) ++chars;
        if (chars >= 2) {
          word_.assign(token_, j, k - j);
          if (stop_words_.empty() || stop_words_.count(word_) == 0) emit(word_);
        }
        j = k;
      }
    }
  }

 private:
  static bool word_char(char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c >= 0x80;
  }
  std::string tag_separator_;
  bool lowercase_;
  std::unordered_set<std::string> stop_words_;
  std::string token_, word_;
};

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

// --min-df / --max-df as scikit-learn: an integer is a document count, a float a proportion.
struct DocFrequency {
  bool proportion = false;
  double value = 1;
  double documents(Index num_docs) const { return proportion ? value * static_cast<double>(num_docs) : value; }
};

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

// ---------------------------------------------------------------------------------------
// Per-format preparation: the vocabulary, labels and the reader of the writing pass.

struct Plan {
  std::vector<std::string> vocabulary;
  std::unique_ptr<DocumentReader> reader;
  bool with_labels = false;
  std::vector<std::string> label_names;  // written as labels.txt (text --labels)
  Index total = -1;                      // documents, when known (progress bar)
  bool text = false;
};

std::vector<std::string> vocabulary_of(const Options& o, Index vocab_size) {
  return o.vocab.empty() ? id_words(vocab_size) : read_word_list(o.vocab, "vocabulary", false);
}

Plan prepare_uci(const Options& o) {
  Plan plan;
  std::string vocab = o.vocab;
  std::error_code ec;
  if (!fs::exists(o.input, ec)) throw Error(ErrorKind::kNoInput, "input " + o.input + ": does not exist");
  if (vocab.empty()) {
    const fs::path in(o.input);
    std::smatch m;
    const std::string name = in.filename().string();
    if (!std::regex_match(name, m, std::regex(R"(docword\.(.+)\.txt(\.gz)?)")))
      throw_usage("--format uci: cannot find the vocabulary of " + o.input +
                  " (expected a file named docword.NAME.txt[.gz] beside vocab.NAME.txt); pass --vocab FILE");
    const fs::path plain = in.parent_path() / ("vocab." + m[1].str() + ".txt");
    fs::path gz = plain;
    gz += ".gz";
    vocab = fs::exists(plain, ec) || !fs::exists(gz, ec) ? plain.string() : gz.string();
    if (!fs::exists(vocab, ec))
      throw Error(ErrorKind::kNoInput,
                  "vocabulary " + plain.string() + " (beside the input) does not exist; pass --vocab FILE");
  }
  auto reader = std::make_unique<CoordinateReader>(o.input, CoordinateReader::Kind::kUci, false);
  plan.vocabulary = read_word_list(vocab, "vocabulary", false);
  if (static_cast<Index>(plan.vocabulary.size()) != reader->num_words())
    throw_input(fmt::format("vocabulary {} has {} words but the header of {} declares W = {}", vocab,
                            plan.vocabulary.size(), o.input, reader->num_words()));
  plan.total = reader->num_documents();
  plan.reader = std::move(reader);
  return plan;
}

Plan prepare_mm(const Options& o) {
  Plan plan;
  auto reader = std::make_unique<CoordinateReader>(o.input, CoordinateReader::Kind::kMatrixMarket,
                                                   o.mm_layout == "words-by-docs");
  plan.vocabulary = vocabulary_of(o, reader->num_words());
  if (static_cast<Index>(plan.vocabulary.size()) != reader->num_words())
    throw_input(fmt::format("vocabulary {} has {} words but {} has {} words ({})", o.vocab, plan.vocabulary.size(), o.input,
                            reader->num_words(), o.mm_layout == "words-by-docs" ? "rows" : "columns"));
  plan.total = reader->num_documents();
  plan.reader = std::move(reader);
  return plan;
}

Plan prepare_ldac(const Options& o) {
  Plan plan;
  if (!o.vocab.empty()) {
    plan.vocabulary = read_word_list(o.vocab, "vocabulary", false);
    plan.reader = std::make_unique<LdacReader>(o.input, static_cast<Index>(plan.vocabulary.size()));
    return plan;
  }
  // Pass 1: the vocabulary size is the largest term id + 1 (and the whole file is checked).
  LdacReader scan(o.input, -1);
  Document doc;
  Index docs = 0;
  while (scan.next(doc)) ++docs;
  plan.vocabulary = id_words(scan.max_id() + 1);
  plan.total = docs;
  plan.reader = std::make_unique<LdacReader>(o.input, scan.max_id() + 1);
  return plan;
}

Plan prepare_libsvm(const Options& o, const Logger& log) {
  Plan plan;
  // Pass 1: index base, largest index, whether labels are integers (and the syntax).
  LibsvmReader scan(o.input, -1, -1, false);
  Document doc;
  Index docs = 0;
  while (scan.next(doc)) ++docs;
  const bool zero_based = o.zero_based == "true" || (o.zero_based == "auto" && scan.any_zero_index());
  if (o.zero_based == "auto")
    log.info(fmt::format("libsvm: feature indices are {}-based ({})", zero_based ? 0 : 1,
                         zero_based ? "index 0 occurs" : "index 0 does not occur"));
  Index vocab_size = 0;
  if (!o.vocab.empty()) {
    plan.vocabulary = read_word_list(o.vocab, "vocabulary", false);
    vocab_size = static_cast<Index>(plan.vocabulary.size());
  } else {
    vocab_size = scan.max_index() < 0 ? 0 : scan.max_index() + (zero_based ? 1 : 0);
    plan.vocabulary = id_words(vocab_size);
  }
  plan.with_labels = scan.integral_labels();
  if (!plan.with_labels && docs > 0) log.warn("libsvm: the labels are not all integers; /labels is not written");
  plan.total = docs;
  plan.reader = std::make_unique<LibsvmReader>(o.input, zero_based ? 1 : 0, vocab_size, plan.with_labels);
  return plan;
}

Plan prepare_text(const Options& o) {
  Plan plan;
  plan.text = true;
  std::error_code ec;
  if (!fs::exists(o.input, ec)) throw Error(ErrorKind::kNoInput, "input " + o.input + ": does not exist");
  std::vector<std::string> files, names;
  if (fs::is_directory(o.input, ec)) {
    const std::regex include(o.include.empty() ? std::string(".*") : o.include);
    fs::directory_iterator it(o.input, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
      std::error_code entry_ec;
      const std::string name = it->path().filename().string();
      if (it->is_regular_file(entry_ec) && std::regex_match(name, include)) names.push_back(name);
    }
    if (ec) throw_input("input " + o.input + ": cannot list the directory: " + ec.message());
    std::sort(names.begin(), names.end());
    if (names.empty())
      throw_input("input " + o.input + ": has no regular files" +
                  (o.include.empty() ? std::string() : " whose name matches --include " + o.include));
    for (const auto& n : names) files.push_back((fs::path(o.input) / n).string());
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
    stop_words.insert(std::begin(kEnglishStopWords), std::end(kEnglishStopWords));
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
    TextSource source(o.input, files, *tokenizer);
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
    if (docs == 0) throw_input("input " + o.input + ": has no documents");
    if (words.empty())
      throw_input("input " + o.input + ": has no words (a word is a run of at least two letters, digits or '_')");
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
                              o.input, words.size()));
    if (static_cast<Index>(kept.size()) > kMaxWordId + 1)
      throw_input(fmt::format("input {}: {} words exceed the int32 word ids; use --max-features", o.input, kept.size()));
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
  plan.reader = std::make_unique<TextReader>(std::move(tokenizer), o.input, std::move(files), std::move(words),
                                             std::move(labels), docs, o.input);
  return plan;
}

// ---------------------------------------------------------------------------------------
// Output.

void write_lines(const std::string& path, const std::vector<std::string>& lines) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) throw_output("output " + path + ": cannot create");
  bool ok = true;
  for (const auto& l : lines) ok = ok && std::fwrite(l.data(), 1, l.size(), f) == l.size() && std::fputc('\n', f) != EOF;
  ok = std::fflush(f) == 0 && ok;
  ok = ::fsync(::fileno(f)) == 0 && ok;
  ok = std::fclose(f) == 0 && ok;
  if (!ok) throw Error(ErrorKind::kIo, "output " + path + ": write failed (disk full?)");
}

struct Summary {
  Index documents = 0, tokens = 0, empty = 0, shards = 0;
};

Summary summary_of(const io::CountsWriter& w, Index docs_per_shard) {
  Summary s;
  s.documents = w.num_documents();
  s.tokens = w.num_tokens();
  s.empty = w.num_empty_documents();
  s.shards = std::max<Index>(1, (s.documents + docs_per_shard - 1) / docs_per_shard);
  return s;
}

void check_options(const Options& o, const po::variables_map& vm) {
  static const std::vector<std::string> formats{"uci", "ldac", "libsvm", "mm", "text"};
  if (std::find(formats.begin(), formats.end(), o.format) == formats.end())
    throw_usage("unknown --format '" + o.format + "' (choose uci, ldac, libsvm, mm or text)");
  if (o.docs_per_shard < 1) throw_usage("--docs-per-shard must be at least 1");
  if (!(o.holdout >= 0 && o.holdout < 1)) throw_usage("--holdout-fraction must be in [0, 1)");
  if (o.zero_based != "auto" && o.zero_based != "true" && o.zero_based != "false")
    throw_usage("--zero-based must be auto, true or false");
  if (o.mm_layout != "docs-by-words" && o.mm_layout != "words-by-docs")
    throw_usage("--mm-layout must be docs-by-words or words-by-docs");
  if (vm.count("max-features") && o.max_features < 1) throw_usage("--max-features must be at least 1");
  parse_doc_frequency(o.min_df, "--min-df");
  parse_doc_frequency(o.max_df, "--max-df");
  if (!o.include.empty()) {
    try {
      std::regex check(o.include);
    } catch (const std::regex_error& e) {
      throw_usage("--include '" + o.include + "' is not a valid regular expression: " + e.what());
    }
  }
  // Options that only one format reads are refused elsewhere rather than silently ignored.
  const auto only = [&](const char* option, std::initializer_list<const char*> allowed) {
    if (vm.count(option) == 0 || vm[option].defaulted()) return;
    for (const char* f : allowed)
      if (o.format == f) return;
    std::string list;
    for (const char* f : allowed) list += (list.empty() ? "" : " or ") + std::string(f);
    throw_usage(fmt::format("--{} applies to --format {} only", option, list));
  };
  only("zero-based", {"libsvm"});
  only("mm-layout", {"mm"});
  for (const char* text_option : {"include", "tag-separator", "lowercase", "stop-words", "min-df", "max-df",
                                  "max-features", "labels"})
    only(text_option, {"text"});
  if (o.format == "text" && !o.vocab.empty())
    for (const char* pruning : {"min-df", "max-df", "max-features"})
      if (vm.count(pruning) && !vm[pruning].defaulted())
        throw_usage(fmt::format("--{} prunes a vocabulary built from the corpus; it cannot be combined with --vocab", pruning));
  if (o.tag_separator.find_first_of(" \t\n\r\v\f") != std::string::npos)
    throw_usage("--tag-separator must not contain whitespace");
}

}  // namespace

int cmd_import_counts(const std::vector<std::string>& args, const Context& ctx) {
  Options o;
  po::options_description desc("latent import counts options");
  desc.add_options()
      ("format", po::value(&o.format)->required(),
       "uci (UCI bag-of-words docword.NAME.txt[.gz]) | ldac (Blei's LDA-C) | libsvm (svmlight) | "
       "mm (Matrix Market coordinate) | text (raw text)")
      ("input", po::value(&o.input)->required(),
       "input file (gzipped or plain); for --format text also a directory with one file per document")
      ("output", po::value(&o.output)->required(), "count dataset directory to create (must not exist)")
      ("vocab", po::value(&o.vocab)->default_value(""),
       "vocabulary file, one word per line (line v+1 is word id v). uci: default vocab.NAME.txt beside the input; "
       "ldac/libsvm/mm: default the ids \"0\", \"1\", ...; text: a fixed vocabulary in this order (no pruning)")
      ("docs-per-shard", po::value(&o.docs_per_shard)->default_value(65536), "documents per shard file")
      ("holdout-fraction", po::value(&o.holdout)->default_value(0.0),
       "if > 0: write OUTPUT/train and OUTPUT/test; document i goes to test with this probability "
       "(a counter-based draw from --seed and i, so the split is reproducible)")
      ("seed", po::value(&o.seed)->default_value(0), "random seed of the holdout split")
      ("zero-based", po::value(&o.zero_based)->default_value("auto"),
       "libsvm: feature indices start at 0 (true) or 1 (false); auto: 0-based iff some index is 0 "
       "(as scikit-learn's load_svmlight_file)")
      ("mm-layout", po::value(&o.mm_layout)->default_value("docs-by-words"),
       "mm: docs-by-words (rows are documents, as gensim's MmCorpus writes) | words-by-docs (the transpose)")
      ("include", po::value(&o.include)->default_value(""),
       "text, directory input: only files whose whole name matches this regular expression (ECMAScript)")
      ("tag-separator", po::value(&o.tag_separator)->default_value(""),
       "text: tokens are word<SEP>tag; the part before the last SEP is kept (the Brown corpus: /)")
      ("lowercase", po::value(&o.lowercase)->default_value(true, "true"), "text: lowercase (ASCII) before tokenising: true|false")
      ("stop-words", po::value(&o.stop_words)->default_value(""),
       "text: 'english' (scikit-learn's list) or a file with one stop word per line")
      ("min-df", po::value(&o.min_df)->default_value("1"),
       "text: ignore words in fewer documents than this (integer: a count; float in (0, 1]: a proportion)")
      ("max-df", po::value(&o.max_df)->default_value("1.0"),
       "text: ignore words in more documents than this (integer: a count; float in (0, 1]: a proportion)")
      ("max-features", po::value(&o.max_features),
       "text: keep only the N most frequent words (by corpus count; ties by word)")
      ("labels", po::value(&o.labels)->default_value(""),
       "text, directory input: file of 'name label' lines (as the Brown corpus' cats.txt); writes /labels "
       "(label ids in alphabetical order of the label names) and labels.txt");
  po::variables_map vm;
  if (!parse(args, desc, vm, ctx, "latent import counts --format FMT --input PATH --output DIR [options]")) return 0;
  check_options(o, vm);
  while (o.output.size() > 1 && o.output.back() == '/') o.output.pop_back();
  const bool holdout = o.holdout > 0;

  Summary all, train, test;
  Index vocab_size = 0;
  comm::run_agreed(ctx.comm, [&] {
    if (!ctx.comm.is_root()) return;
    std::error_code ec;
    if (fs::exists(o.output, ec) || fs::is_symlink(o.output, ec))
      throw_output("output " + o.output + ": already exists; choose another name");
    const fs::path parent = fs::absolute(fs::path(o.output)).parent_path();
    if (!fs::is_directory(parent, ec)) throw_output("output " + o.output + ": directory " + parent.string() + " does not exist");

    Plan plan = o.format == "uci"      ? prepare_uci(o)
                : o.format == "mm"     ? prepare_mm(o)
                : o.format == "ldac"   ? prepare_ldac(o)
                : o.format == "libsvm" ? prepare_libsvm(o, ctx.log)
                                       : prepare_text(o);
    vocab_size = static_cast<Index>(plan.vocabulary.size());
    if (plan.total == 0) throw_input("input " + o.input + ": has no documents");
    if (vocab_size == 0) throw_input("input " + o.input + ": the vocabulary is empty (no word ids occur)");

    const std::string tmp = o.output + ".tmp-" + std::to_string(::getpid());
    fs::remove_all(tmp, ec);  // only a dead process with our pid can have left it
    if (!fs::create_directory(tmp, ec) || ec) throw_output("output " + o.output + ": cannot create " + tmp);
    struct Cleanup {
      std::string path;
      ~Cleanup() {
        std::error_code ignored;
        fs::remove_all(path, ignored);
      }
    } cleanup{tmp};

    std::vector<std::string> dirs = holdout ? std::vector<std::string>{tmp + "/train", tmp + "/test"}
                                            : std::vector<std::string>{tmp + "/data"};
    std::vector<std::unique_ptr<io::CountsWriter>> writers;
    for (const auto& d : dirs)
      writers.push_back(std::make_unique<io::CountsWriter>(d, vocab_size, o.docs_per_shard, plan.with_labels));

    Progress progress(ctx.err, ctx.comm.is_root() && stderr_is_tty(), "import", plan.total);
    Document doc;
    Index i = 0;
    while (plan.reader->next(doc)) {
      const bool to_test =
          holdout && CounterRng(o.seed, RngPurpose::kHoldout, 0, static_cast<std::uint64_t>(i)).next_uniform() < o.holdout;
      writers[to_test ? 1 : 0]->add_document(doc.ids, doc.counts, doc.label);
      ++i;
      if ((i & 1023) == 0) progress.update(i);
    }
    progress.finish();
    if (i == 0) throw_input("input " + o.input + ": has no documents");

    for (std::size_t w = 0; w < writers.size(); ++w) {
      writers[w]->commit(plan.vocabulary);
      if (!plan.label_names.empty()) write_lines(dirs[w] + "/labels.txt", plan.label_names);
    }
    if (fs::exists(o.output, ec) || fs::is_symlink(o.output, ec))
      throw_output("output " + o.output + ": was created by someone else during the import");
    fs::rename(holdout ? tmp : dirs[0], o.output, ec);
    if (ec) throw_output("output " + o.output + ": cannot rename the finished import into place: " + ec.message());
    if (!holdout) fs::remove_all(tmp, ec);

    train = summary_of(*writers[0], o.docs_per_shard);
    all = train;
    if (holdout) {
      test = summary_of(*writers[1], o.docs_per_shard);
      all.documents += test.documents;
      all.tokens += test.tokens;
      all.empty += test.empty;
      all.shards += test.shards;
    }
    if (plan.text && all.empty > 0)
      ctx.log.warn(fmt::format("{} of {} documents are empty after tokenisation and pruning (kept as empty rows)",
                               all.empty, all.documents));
  });
  ctx.log.info(fmt::format("imported {} documents, vocabulary of {} words, {} tokens, {} empty documents, {} shard(s) "
                           "into {}",
                           all.documents, vocab_size, all.tokens, all.empty, all.shards, o.output));
  if (holdout) {
    ctx.log.info(fmt::format("holdout (fraction {}, seed {}): train {} documents ({} tokens) in {}/train, test {} "
                             "documents ({} tokens) in {}/test",
                             o.holdout, o.seed, train.documents, train.tokens, o.output, test.documents, test.tokens,
                             o.output));
    if (train.documents == 0 || test.documents == 0)
      ctx.log.warn(fmt::format("the {} set is empty", train.documents == 0 ? "training" : "test"));
  }
  return 0;
}

}  // namespace latent::cli
