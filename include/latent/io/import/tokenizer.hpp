#pragma once
/// \file The tokenizer of `latent import counts --format text`: from a line of text to its
/// words, as scikit-learn's CountVectorizer with its default token_pattern.
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

namespace latent::io::importers {

/// Whitespace-separated tokens, optionally `word<SEP>tag` with the tag stripped (the part
/// before the last SEP is kept), optionally lowercased (ASCII), then the maximal runs of
/// word characters (ASCII letters, digits, '_' and every byte >= 0x80) of at least two
/// characters (UTF-8 continuation bytes do not count): scikit-learn CountVectorizer's
/// default token_pattern r"(?u)\b\w\w+\b". Words in the stop-word set are dropped. Any byte
/// is accepted; nothing throws.
class Tokenizer {
 public:
  Tokenizer(std::string tag_separator, bool lowercase, std::unordered_set<std::string> stop_words)
      : tag_separator_(std::move(tag_separator)), lowercase_(lowercase), stop_words_(std::move(stop_words)) {}

  /// Calls emit(const std::string& word) for every word of `line`, in order.
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
  static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }
  static bool word_char(char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c >= 0x80;
  }
  std::string tag_separator_;
  bool lowercase_;
  std::unordered_set<std::string> stop_words_;
  std::string token_, word_;
};

/// scikit-learn's ENGLISH_STOP_WORDS (sklearn/feature_extraction/_stop_words.py, from the
/// Glasgow Information Retrieval Group list), 318 words.
const std::vector<const char*>& english_stop_words();

}  // namespace latent::io::importers
