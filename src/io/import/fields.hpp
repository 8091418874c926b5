#pragma once
// Field parsing shared by the count formats (uci, mtx, ldac, libsvm, text): whitespace
// fields, strict integers and counts, quoting for messages, word lists. Private to
// src/io/import.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "latent/core/types.hpp"

namespace latent::io::importers {

inline bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

/// The whitespace-separated fields of `s` (views into it).
void split_fields(std::string_view s, std::vector<std::string_view>& out);
/// Only whitespace (or nothing).
bool blank(std::string_view s);
/// A field for an error message: at most 40 bytes, control bytes escaped, in quotes.
std::string quote(std::string_view s);
/// A whole decimal integer (an optional '+'); false otherwise.
bool parse_int(std::string_view s, std::int64_t& v);
/// A whole finite number (an optional '+'); false otherwise.
bool parse_double(std::string_view s, double& v);
/// A count: a non-negative integer, written as an integer or as a float with an integral
/// value ("3", "3.0", "3e0"). Zero is valid here (callers skip explicit zeros).
bool parse_count(std::string_view s, std::int64_t& c);
std::string ascii_lower(std::string_view s);
/// Throws Error(kInput) "WHAT PATH, line L: MESSAGE".
[[noreturn]] void bad_line(const std::string& what, const std::string& path, Index line, const std::string& message);
/// One word per line (a vocabulary or stop-word file; .gz accepted). Blank lines are
/// refused in a vocabulary (every line is a word id) and skipped (and words trimmed) with
/// `allow_blank`. Tabs and carriage returns inside a word are refused.
std::vector<std::string> read_word_list(const std::string& path, const std::string& what, bool allow_blank);
/// The words "0", "1", ..., of a vocabulary known only by its size.
std::vector<std::string> id_words(Index vocab_size);

}  // namespace latent::io::importers
