// CSV through libcsv (Debian libcsv-dev; RFC 4180). libcsv is fed one physical line at a
// time (ByteStream::getline, the "\n" put back), so that the line where a record starts is
// known; its callbacks cannot throw through C, so they record the first error, thrown
// after csv_parse returns.
#include "latent/io/import/csv.hpp"

#include <csv.h>
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>

#include "latent/core/error.hpp"

namespace latent::io::importers {

namespace {

constexpr unsigned char kQuote = '"';

bool only_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The field without surrounding blanks (libcsv trims unquoted fields; a quoted one keeps
// them, and a number may be written " 1.5 ").
std::string_view trimmed(const char* s, std::size_t len) {
  std::size_t b = 0, e = len;
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) --e;
  return {s + b, e - b};
}

// A feature value: empty, NA, nan and NaN are NaN; otherwise strtod's syntax (from_chars
// first, which is faster and takes most of it). False if not a number.
bool parse_number(std::string_view t, double& v) {
  if (t.empty() || t == "NA" || t == "nan" || t == "NaN") {
    v = std::nan("");
    return true;
  }
  const auto r = std::from_chars(t.data(), t.data() + t.size(), v);
  if (r.ec == std::errc() && r.ptr == t.data() + t.size()) return true;
  const std::string copy(t);
  char* end = nullptr;
  v = std::strtod(copy.c_str(), &end);
  return end != copy.c_str() && *end == '\0';
}

bool parse_integer(std::string_view t, std::int64_t& v) {
  if (!t.empty() && t.front() == '+') t.remove_prefix(1);
  const auto r = std::from_chars(t.data(), t.data() + t.size(), v);
  return !t.empty() && r.ec == std::errc() && r.ptr == t.data() + t.size();
}

int space_only(unsigned char c) { return c == ' ' ? 1 : 0; }
int tab_only(unsigned char c) { return c == '\t' ? 1 : 0; }
int newline_only(unsigned char c) { return c == '\n' ? 1 : 0; }

}  // namespace

struct CsvReader::State {
  State() = default;
  State(const State&) = delete;
  State& operator=(const State&) = delete;
  // Here, not in ~CsvReader: a constructor that throws destroys its members only.
  ~State() { csv_free(&parser); }

  csv_parser parser{};  // zeroed: csv_free is safe even if csv_init failed
  const std::string* path = nullptr;
  const CsvLayout* layout = nullptr;
  double scale = 1;
  std::int64_t line = 0;         // physical lines fed so far (of the whole file)
  std::int64_t record_line = 0;  // the line where the current record starts
  bool inside = false;           // the last line ended inside a quoted field
  bool first_line = true;        // a BOM may start the line fed next
  Index field = 0;               // fields of the current record so far
  enum class Mode { kCapture, kRows, kSkip } mode = Mode::kRows;
  std::vector<std::string> texts;  // kCapture: the fields of the first record
  std::vector<double> row;         // kRows: the features of the current record
  std::int64_t label = 0;
  bool complete = false;  // a record ended in the last line fed
  Index fields = 0;       // ... with this many fields
  std::string error;      // the first error

  void fail(std::string message) {
    if (error.empty()) error = std::move(message);
  }

  // Field k (0-based) of the current record, in kRows mode. False (and an error) if it is
  // a feature that is not a number or a label that is not an integer.
  bool take(Index k, const char* s, std::size_t len) {
    const auto& role = layout->role;
    if (k >= static_cast<Index>(role.size())) return true;  // a ragged record: reported at its end
    const int r = role[static_cast<std::size_t>(k)];
    if (r == CsvLayout::kSkip) return true;
    const std::string_view t = trimmed(s, len);
    if (r == CsvLayout::kLabel) {
      if (parse_integer(t, label)) return true;
      fail(fmt::format("input {}, line {}, field {}: '{}' is not an integer (the label column)", *path, record_line, k + 1, t));
      return false;
    }
    double v = 0;
    if (!parse_number(t, v)) {
      fail(fmt::format("input {}, line {}, field {}: '{}' is not a number", *path, record_line, k + 1, t));
      return false;
    }
    row[static_cast<std::size_t>(r)] = scale * v;
    return true;
  }

  static void on_field(void* s, std::size_t len, void* data) {
    auto& st = *static_cast<State*>(data);
    const Index k = st.field++;
    if (!st.error.empty() || st.mode == Mode::kSkip) return;
    const char* text = s != nullptr ? static_cast<const char*>(s) : "";
    if (st.mode == Mode::kCapture) {
      st.texts.emplace_back(text, len);
      return;
    }
    st.take(k, text, len);
  }

  static void on_record(int, void* data) {
    auto& st = *static_cast<State*>(data);
    st.complete = true;
    st.fields = st.field;
    st.field = 0;
    if (st.mode == Mode::kRows && st.error.empty() && st.fields != static_cast<Index>(st.layout->role.size()))
      st.fail(fmt::format("input {}, line {}: expected {} fields, found {}", *st.path, st.record_line, st.layout->role.size(),
                          st.fields));
  }
};

CsvReader::~CsvReader() = default;

namespace {

std::unique_ptr<CsvReader::State> make_state(const DenseOptions& o) {
  auto st = std::make_unique<CsvReader::State>();
  if (csv_init(&st->parser, CSV_STRICT | CSV_STRICT_FINI) != 0) throw Error(ErrorKind::kInternal, "libcsv: cannot initialise");
  csv_set_delim(&st->parser, static_cast<unsigned char>(o.delimiter));
  csv_set_quote(&st->parser, kQuote);
  // Blanks around unquoted fields are trimmed, but a delimiter is no blank; records end
  // at "\n" only (ByteStream drops the "\r" of "\r\n").
  if (o.delimiter == '\t') csv_set_space_func(&st->parser, space_only);
  if (o.delimiter == ' ') csv_set_space_func(&st->parser, tab_only);
  csv_set_term_func(&st->parser, newline_only);
  return st;
}

}  // namespace

bool CsvReader::next_record() {
  State& st = *st_;
  std::string line;
  while (true) {
    if (!s_.getline(line)) {
      csv_fini(&st.parser, State::on_field, State::on_record, &st);
      check();
      if (st.inside)
        throw_input(fmt::format("input {}, line {}: a quoted field is not closed by the end of the input", s_.path(),
                                st.record_line));
      if (st.complete) {
        st.complete = false;
        return true;
      }
      return false;
    }
    ++st.line;
    std::size_t from = 0;
    if (st.first_line && line.size() >= 3 && line.compare(0, 3, "\xEF\xBB\xBF") == 0) from = 3;  // UTF-8 BOM
    st.first_line = false;
    if (!st.inside) {
      if (line.size() == from) continue;  // an empty line
      st.record_line = st.line;
    }
    line.push_back('\n');
    const std::size_t n = line.size() - from;
    if (csv_parse(&st.parser, line.data() + from, n, State::on_field, State::on_record, &st) != n) {
      check();
      throw_input(fmt::format("input {}, line {}, field {}: malformed quotes (a quoted field must be closed by a quote "
                              "followed by the delimiter or the line end; a quote inside a field is written \"\")",
                              s_.path(), st.line, st.field + 1));
    }
    check();
    st.inside = st.parser.quoted != 0;
    if (st.complete) {
      st.complete = false;
      return true;
    }
  }
}

void CsvReader::check() const {
  if (!st_->error.empty()) throw_input(st_->error);
}

CsvReader::CsvReader(const std::string& path, const DenseOptions& options)
    : s_(path), options_(options), scale_(std::isnan(options.scale) ? 1.0 : options.scale), st_(make_state(options)) {
  State& st = *st_;
  st.path = &s_.path();
  st.layout = &layout_;
  st.scale = scale_;
  st.mode = State::Mode::kCapture;
  if (!next_record()) throw_input("input " + path + ": is empty");
  const std::vector<std::string> first = std::move(st.texts);
  const std::int64_t first_line = st.record_line;
  st.mode = State::Mode::kRows;
  const auto n = static_cast<Index>(first.size());

  // Named columns need the header's names; positions do not.
  std::vector<std::string> tokens = options.usecols;
  if (!options.index_col.empty()) tokens.push_back(options.index_col);
  if (!options.label_column.empty()) tokens.push_back(options.label_column);
  const bool named = std::any_of(tokens.begin(), tokens.end(), [](const std::string& t) { return !only_digits(t); });
  if (named && options.header == CsvHeader::kNo)
    throw_usage("--header no: columns have no names; name --usecols, --index-col and --label-column by 0-based position");
  const auto column = [&](const std::string& token, const char* option, bool header) -> Index {
    if (only_digits(token)) {
      const Index k = token.size() > 9 ? n : static_cast<Index>(std::stoll(token));
      if (k >= n)
        throw_input(fmt::format("input {}: {} {}: there is no column {} (the file has {} columns, counted from 0)", path, option,
                                token, token, n));
      return k;
    }
    if (header) {
      const auto it = std::find(first.begin(), first.end(), token);
      if (it != first.end()) return static_cast<Index>(it - first.begin());
    }
    std::string names;
    for (const auto& f : first) names += (names.empty() ? "'" : ", '") + f + "'";
    throw_input(fmt::format("input {}: {} {}: no column is named '{}' (the header: {})", path, option, token, token, names));
  };
  const auto plan = [&](bool header) {
    layout_ = CsvLayout{};
    layout_.header = header;
    std::vector<int> role(static_cast<std::size_t>(n), options.usecols.empty() ? 0 : CsvLayout::kSkip);
    for (const auto& t : options.usecols) role[static_cast<std::size_t>(column(t, "--usecols", header))] = 0;
    Index index = -1;
    if (!options.index_col.empty()) {
      index = column(options.index_col, "--index-col", header);
      role[static_cast<std::size_t>(index)] = CsvLayout::kSkip;
    }
    if (!options.label_column.empty()) {
      const Index label = column(options.label_column, "--label-column", header);
      if (label == index) throw_usage("--label-column and --index-col name the same column");
      role[static_cast<std::size_t>(label)] = CsvLayout::kLabel;
      layout_.labels = true;
    }
    for (auto& r : role)
      if (r == 0) r = static_cast<int>(layout_.features++);
    layout_.role = std::move(role);
    if (header) layout_.names = first;
  };
  // Auto: a header iff a field to be read (features, label) is not a number.
  bool header = options.header == CsvHeader::kYes || named;
  plan(header);
  st.row.assign(static_cast<std::size_t>(layout_.features), 0.0);
  if (!header) {
    st.record_line = first_line;
    bool numbers = true;
    for (Index k = 0; k < n && numbers; ++k)
      numbers = st.take(k, first[static_cast<std::size_t>(k)].data(), first[static_cast<std::size_t>(k)].size());
    if (!numbers && options.header == CsvHeader::kNo) check();  // throws with the position
    if (!numbers) {
      st.error.clear();
      plan(true);
    }
    header = !numbers;
  }
  pending_first_ = !header;
}

CsvReader::CsvReader(const std::string& path, const DenseOptions& options, const CsvLayout& layout, ByteRange range)
    : s_(path, range), options_(options), layout_(layout), scale_(std::isnan(options.scale) ? 1.0 : options.scale),
      st_(make_state(options)) {
  State& st = *st_;
  st.path = &s_.path();
  st.layout = &layout_;
  st.scale = scale_;
  st.line = s_.lines_before();
  st.first_line = range.begin == 0;
  st.row.assign(static_cast<std::size_t>(layout_.features), 0.0);
  if (layout.header && range.begin == 0 && range.end > 0) {
    st.mode = State::Mode::kSkip;
    next_record();
    st.mode = State::Mode::kRows;
  }
}

Index CsvReader::read(RowMatrix& out, Index max) {
  const Index d = layout_.features;
  out.resize(max, d);
  if (layout_.labels) out_labels_.resize(static_cast<std::size_t>(std::max<Index>(max, 0)));
  const auto put = [&](Index n) {
    for (Index j = 0; j < d; ++j) out(n, j) = st_->row[static_cast<std::size_t>(j)];
    if (layout_.labels) out_labels_[static_cast<std::size_t>(n)] = st_->label;
  };
  Index n = 0;
  if (pending_first_ && n < max) {
    pending_first_ = false;
    put(n++);
  }
  while (n < max && next_record()) put(n++);
  return n;
}

bool csv_odd_quote_lines(const std::string& path, ByteRange range, std::int64_t& lines) {
  ByteStream in(path, range);
  std::string line;
  bool odd = false;
  lines = 0;
  while (in.getline(line)) {
    ++lines;
    if (std::count(line.begin(), line.end(), static_cast<char>(kQuote)) % 2 != 0) odd = true;
  }
  return odd;
}

std::vector<std::uint64_t> csv_record_starts(const std::string& path, const std::vector<std::uint64_t>& cuts) {
  std::vector<std::uint64_t> starts(cuts.size());
  ByteStream in(path);
  std::string line;
  std::size_t i = 0;
  bool inside = false;
  while (i < cuts.size()) {
    const std::uint64_t at = in.tell();
    if (!inside)
      while (i < cuts.size() && cuts[i] <= at) starts[i++] = at;
    if (i == cuts.size() || !in.getline(line)) break;
    if (std::count(line.begin(), line.end(), static_cast<char>(kQuote)) % 2 != 0) inside = !inside;
  }
  const std::uint64_t end = in.tell();
  for (; i < cuts.size(); ++i) starts[i] = end;
  return starts;
}

}  // namespace latent::io::importers
