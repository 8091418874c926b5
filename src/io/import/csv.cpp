#include "latent/io/import/csv.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "latent/core/error.hpp"

namespace latent::io::importers {

CsvReader::CsvReader(const std::string& path, char delimiter, CsvHeader header, double scale)
    : s_(path), delimiter_(delimiter), scale_(std::isnan(scale) ? 1.0 : scale) {
  std::string line;
  if (!s_.getline(line)) throw_input("input " + path + ": is empty");
  ++line_no_;
  std::vector<double> values;
  const bool numeric = parse(line, values, false);
  const bool is_header = header == CsvHeader::kYes || (header == CsvHeader::kAuto && !numeric);
  if (header == CsvHeader::kNo && !numeric) parse(line, values, true);  // throws with the position
  header_line_ = is_header;
  if (is_header) {
    d_ = static_cast<Index>(split_count(line));
  } else {
    d_ = static_cast<Index>(values.size());
    pending_ = values;
    has_pending_ = true;
  }
}

CsvReader::CsvReader(const std::string& path, char delimiter, Index d, bool header_line, double scale, ByteRange range)
    : s_(path, range), delimiter_(delimiter), scale_(std::isnan(scale) ? 1.0 : scale), d_(d), header_line_(header_line) {
  line_no_ = s_.lines_before();
  std::string line;
  if (header_line && range.begin == 0 && s_.getline(line)) ++line_no_;
}

Index CsvReader::read(RowMatrix& out, Index max) {
  out.resize(max, d_);
  Index n = 0;
  std::vector<double> values;
  std::string line;
  while (n < max) {
    if (has_pending_) {
      values = pending_;
      has_pending_ = false;
    } else {
      if (!s_.getline(line)) break;
      ++line_no_;
      if (line.empty()) continue;
      parse(line, values, true);
    }
    if (static_cast<Index>(values.size()) != d_)
      throw_input(fmt::format("input {}, line {}: expected {} fields, found {}", s_.path(), line_no_, d_, values.size()));
    for (Index j = 0; j < d_; ++j) out(n, j) = scale_ * values[static_cast<std::size_t>(j)];
    ++n;
  }
  return n;
}

std::size_t CsvReader::split_count(const std::string& line) const {
  return static_cast<std::size_t>(std::count(line.begin(), line.end(), delimiter_)) + 1;
}

bool CsvReader::parse(const std::string& line, std::vector<double>& values, bool strict) const {
  values.clear();
  std::size_t start = 0;
  int field = 0;
  while (true) {
    const std::size_t end = line.find(delimiter_, start);
    std::string tok = line.substr(start, end == std::string::npos ? std::string::npos : end - start);
    const auto b = tok.find_first_not_of(" \t\""), e = tok.find_last_not_of(" \t\"");
    tok = b == std::string::npos ? std::string() : tok.substr(b, e - b + 1);
    double v = std::nan("");
    if (!tok.empty() && tok != "NA" && tok != "nan" && tok != "NaN") {
      char* endp = nullptr;
      v = std::strtod(tok.c_str(), &endp);
      if (endp == tok.c_str() || *endp != '\0') {
        if (strict)
          throw_input(fmt::format("input {}, line {}, field {}: '{}' is not a number", s_.path(), line_no_, field, tok));
        return false;
      }
    }
    values.push_back(v);
    ++field;
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return true;
}

}  // namespace latent::io::importers
