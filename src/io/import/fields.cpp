#include "fields.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>

#include "latent/core/error.hpp"
#include "latent/io/import/byte_stream.hpp"

namespace latent::io::importers {

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

void bad_line(const std::string& what, const std::string& path, Index line, const std::string& message) {
  throw_input(fmt::format("{} {}, line {}: {}", what, path, line, message));
}

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

}  // namespace latent::io::importers
