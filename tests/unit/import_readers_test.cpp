// The importers' readers (include/latent/io/import/), called directly: rows of the dense
// formats, documents of the count formats, the tokenizer, and errors that name the file
// and the line or rows. `latent import` end to end (shards, holdout, exit codes, nothing
// left behind on failure) is tested in import_counts_test.cpp and cli/cli_test.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>

#include "../support/fixtures.hpp"
#include "latent/core/error.hpp"
#include "latent/core/log.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/io/import/byte_stream.hpp"
#include "latent/io/import/csv.hpp"
#include "latent/io/import/hdf5.hpp"
#include "latent/io/import/idx.hpp"
#include "latent/io/import/labels.hpp"
#include "latent/io/import/ldac.hpp"
#include "latent/io/import/libsvm.hpp"
#include "latent/io/import/mtx.hpp"
#include "latent/io/import/npy.hpp"
#include "latent/io/import/text.hpp"
#include "latent/io/import/tokenizer.hpp"
#include "latent/io/import/uci.hpp"

namespace latent {
namespace {

namespace fs = std::filesystem;
namespace imp = io::importers;
using latent::testing::TempDir;
using latent::testing::write_file;
using latent::testing::write_gz;
using Words = std::vector<std::string>;
constexpr double kAuto = std::numeric_limits<double>::quiet_NaN();

// `f` throws an Error of `kind` whose message contains `where`.
void expect_error(const std::function<void()>& f, ErrorKind kind, const std::string& where, const std::string& label = "") {
  try {
    f();
    ADD_FAILURE() << label << ": no error (expected one naming '" << where << "')";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << label << ": " << e.what();
    EXPECT_NE(std::string(e.what()).find(where), std::string::npos) << label << ": " << e.what();
  }
}

// Every row of a reader, read in blocks of `block` rows.
RowMatrix read_all(imp::DenseReader& r, Index block) {
  RowMatrix all(0, r.num_features()), part;
  while (const Index n = r.read(part, block)) {
    all.conservativeResize(all.rows() + n, Eigen::NoChange);
    all.bottomRows(n) = part.topRows(n);
  }
  return all;
}

// An NPY version 1 file: magic, header (padded to 64 bytes), data.
std::string npy(const std::string& descr, const std::string& shape, const std::string& data, bool fortran = false) {
  std::string header = "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") +
                       ", 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY\x01";
  out += '\0';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  return out + header + data;
}

template <class T>
std::string bytes(std::initializer_list<T> values) {
  std::string s;
  for (const T v : values) s.append(reinterpret_cast<const char*>(&v), sizeof v);
  return s;
}

TEST(DenseReaders, IdxScalesBytesAndNamesTruncatedRows) {
  TempDir dir("readers");
  const std::string header("\0\0\x08\x03\0\0\0\x03\0\0\0\x02\0\0\0\x02", 16);
  std::string pixels;
  for (int i = 0; i < 12; ++i) pixels += static_cast<char>(i * 20);
  write_gz(dir / "img.idx.gz", header + pixels);
  imp::IdxReader r(dir / "img.idx.gz", kAuto);
  EXPECT_EQ(r.num_rows(), 3);
  ASSERT_EQ(r.num_features(), 4);
  const RowMatrix x = read_all(r, 2);
  ASSERT_EQ(x.rows(), 3);
  for (int i = 0; i < 12; ++i) EXPECT_DOUBLE_EQ(x.data()[i], i * 20 / 255.0);
  imp::IdxReader unscaled(dir / "img.idx.gz", 1.0);
  EXPECT_EQ(read_all(unscaled, 5)(2, 3), 220);

  write_file(dir / "short.idx", header + pixels.substr(0, 10));
  imp::IdxReader s(dir / "short.idx", kAuto);
  RowMatrix block;
  EXPECT_EQ(s.read(block, 2), 2);
  expect_error([&] { s.read(block, 2); }, ErrorKind::kInput, "short.idx: truncated or unreadable while reading rows 2-2");
  write_file(dir / "bad.idx", "P5\n28 28\n");
  expect_error([&] { imp::IdxReader(dir / "bad.idx", kAuto); }, ErrorKind::kInput, "not an IDX file");
  write_file(dir / "type.idx", std::string("\0\0\x07\x01\0\0\0\x01", 8) + "x");
  expect_error([&] { imp::IdxReader(dir / "type.idx", kAuto); }, ErrorKind::kInput, "unknown IDX element type 0x07");
  write_file(dir / "wide.idx", std::string("\0\0\x08\x03\0\0\0\x01\x40\0\0\0\x40\0\0\0", 16));
  expect_error([&] { imp::IdxReader(dir / "wide.idx", kAuto); }, ErrorKind::kInput, "implausible dimensions");
  write_file(dir / "nocols.idx", std::string("\0\0\x08\x03\0\0\x13\x88\0\0\0\x1c\0\0\0\0", 16));  // 5000 x 28 x 0
  expect_error([&] { imp::IdxReader(dir / "nocols.idx", kAuto); }, ErrorKind::kInput,
               "nocols.idx: has 0 columns (5000 rows x 0 features");
  expect_error([&] { imp::IdxReader(dir / "missing.idx", kAuto); }, ErrorKind::kNoInput, "missing.idx: does not exist");
}

TEST(DenseReaders, NpyDtypesShapesAndRefusals) {
  TempDir dir("readers");
  write_file(dir / "i2.npy", npy("<i2", "(3,)", bytes<std::int16_t>({-2, 7, -32768})));
  imp::NpyReader i2(dir / "i2.npy", kAuto);
  ASSERT_EQ(i2.num_features(), 1);
  const RowMatrix a = read_all(i2, 2);
  EXPECT_EQ(a(0, 0), -2);
  EXPECT_EQ(a(1, 0), 7);
  EXPECT_EQ(a(2, 0), -32768);

  write_file(dir / "f4.npy", npy("<f4", "(2, 3)", bytes<float>({1, 2, 3, 4, 5, 6.5f})));
  imp::NpyReader f4(dir / "f4.npy", 2.0);
  EXPECT_EQ(f4.num_rows(), 2);
  const RowMatrix b = read_all(f4, 8);
  EXPECT_EQ(b(1, 2), 13);
  EXPECT_EQ(b(0, 1), 4);

  write_file(dir / "u1.npy", npy("|u1", "(2, 2)", std::string("\xff\x01\x02\x03", 4)));
  imp::NpyReader u1(dir / "u1.npy", kAuto);
  EXPECT_EQ(read_all(u1, 1)(0, 0), 255);  // no 1/255 scaling outside IDX

  write_file(dir / "be.npy", npy(">f8", "(1,)", bytes<double>({1})));
  expect_error([&] { imp::NpyReader(dir / "be.npy", kAuto); }, ErrorKind::kInput, "big-endian NPY is not supported");
  write_file(dir / "f.npy", npy("<f8", "(1, 1)", bytes<double>({1}), true));
  expect_error([&] { imp::NpyReader(dir / "f.npy", kAuto); }, ErrorKind::kInput, "Fortran-ordered");
  write_file(dir / "s.npy", npy("<U3", "(1,)", "abc"));
  expect_error([&] { imp::NpyReader(dir / "s.npy", kAuto); }, ErrorKind::kInput, "NPY dtype not supported");
  // An item size that overflows the conversion (found by fuzz_import): refused, not thrown as std::out_of_range.
  write_file(dir / "big.npy", npy("<f99999999999", "(1,)", bytes<double>({1})));
  expect_error([&] { imp::NpyReader(dir / "big.npy", kAuto); }, ErrorKind::kInput, "NPY dtype f99999999999 not supported");
  write_file(dir / "3d.npy", npy("<f8", "(1, 1, 1)", bytes<double>({1})));
  expect_error([&] { imp::NpyReader(dir / "3d.npy", kAuto); }, ErrorKind::kInput, "must be 1-D or 2-D");
  // Rows but no columns: said as such (issue 19), not as an implausible header.
  write_file(dir / "nocols.npy", npy("<f8", "(5000, 0)", ""));
  expect_error([&] { imp::NpyReader(dir / "nocols.npy", kAuto); }, ErrorKind::kInput,
               "nocols.npy: has 0 columns (5000 rows x 0 features");
  write_file(dir / "cut.npy", npy("<f8", "(4, 2)", bytes<double>({1, 2, 3})));
  imp::NpyReader cut(dir / "cut.npy", kAuto);
  RowMatrix block;
  expect_error([&] { cut.read(block, 4); }, ErrorKind::kInput, "cut.npy: truncated or unreadable while reading rows 0-3");
}

imp::DenseOptions csv(char delimiter, imp::CsvHeader header, double scale) {
  imp::DenseOptions o;
  o.delimiter = delimiter;
  o.header = header;
  o.scale = scale;
  return o;
}

TEST(DenseReaders, CsvHeaderMissingValuesAndErrors) {
  TempDir dir("readers");
  write_file(dir / "h.csv", "a,b\n1, \"2\"\n\n3,NA\r\n,nan\n");
  imp::CsvReader h(dir / "h.csv", csv(',', imp::CsvHeader::kAuto, 10));
  ASSERT_EQ(h.num_features(), 2);
  EXPECT_EQ(h.num_rows(), -1);
  EXPECT_EQ(h.layout().names, (Words{"a", "b"}));
  EXPECT_EQ(h.row_labels(), nullptr);
  const RowMatrix x = read_all(h, 2);
  ASSERT_EQ(x.rows(), 3);
  EXPECT_EQ(x(0, 0), 10);
  EXPECT_EQ(x(0, 1), 20);
  EXPECT_EQ(x(1, 0), 30);
  EXPECT_TRUE(std::isnan(x(1, 1)));
  EXPECT_TRUE(std::isnan(x(2, 0)) && std::isnan(x(2, 1)));

  write_file(dir / "n.csv", "1;2;3\n4;5;6\n");
  imp::CsvReader n(dir / "n.csv", csv(';', imp::CsvHeader::kAuto, kAuto));
  EXPECT_EQ(read_all(n, 10).rows(), 2);
  imp::CsvReader yes(dir / "n.csv", csv(';', imp::CsvHeader::kYes, kAuto));
  EXPECT_EQ(read_all(yes, 10).rows(), 1);

  // Lines and fields are 1-based; the line is where the record starts.
  expect_error([&] { imp::CsvReader(dir / "h.csv", csv(',', imp::CsvHeader::kNo, kAuto)); }, ErrorKind::kInput,
               "h.csv, line 1, field 1: 'a' is not a number");
  write_file(dir / "ragged.csv", "1,2\n3\n");
  imp::CsvReader ragged(dir / "ragged.csv", csv(',', imp::CsvHeader::kAuto, kAuto));
  RowMatrix block;
  expect_error([&] { ragged.read(block, 5); }, ErrorKind::kInput, "ragged.csv, line 2: expected 2 fields, found 1");
  write_file(dir / "word.csv", "1,2\n3,x4\n");
  imp::CsvReader word(dir / "word.csv", csv(',', imp::CsvHeader::kAuto, kAuto));
  expect_error([&] { word.read(block, 5); }, ErrorKind::kInput, "word.csv, line 2, field 2: 'x4' is not a number");
  write_file(dir / "empty.csv", "");
  expect_error([&] { imp::CsvReader(dir / "empty.csv", csv(',', imp::CsvHeader::kAuto, kAuto)); }, ErrorKind::kInput,
               "empty.csv: is empty");
  write_file(dir / "blank.csv", "\n\r\n\n");
  expect_error([&] { imp::CsvReader(dir / "blank.csv", csv(',', imp::CsvHeader::kAuto, kAuto)); }, ErrorKind::kInput,
               "blank.csv: is empty");
}

// RFC 4180 as people write it: quoted fields holding the delimiter, doubled quotes and
// newlines (CRLF and LF), a BOM, blanks around fields; errors name the line where the
// record starts and the 1-based field.
TEST(DenseReaders, CsvQuotedFieldsBomCrlfAndTab) {
  TempDir dir("readers");
  write_file(dir / "q.csv",
             "\xEF\xBB\xBF\"id\",\"a,b\",c\r\n"
             "r1,\"1.5\",\"he said \"\"hi\"\", then\r\nleft\"\r\n"
             "\r\n"
             "\"r,2\", -2 ,\"x\ny\nz\"\r\n"
             "r3,\" 4e1 \",plain\r\n");
  imp::DenseOptions o = csv(',', imp::CsvHeader::kAuto, kAuto);
  o.index_col = "id";
  o.usecols = {"a,b"};
  imp::CsvReader q(dir / "q.csv", o);
  EXPECT_TRUE(q.header_line());
  EXPECT_EQ(q.layout().names, (Words{"id", "a,b", "c"}));  // the BOM dropped, quotes removed
  ASSERT_EQ(q.num_features(), 1);
  const RowMatrix x = read_all(q, 2);
  ASSERT_EQ(x.rows(), 3);
  EXPECT_EQ(x(0, 0), 1.5);
  EXPECT_EQ(x(1, 0), -2);
  EXPECT_EQ(x(2, 0), 40);
  // The same file by positions; a bad feature in the record on line 5 (which spans 3 lines).
  o.index_col = "0";
  o.usecols = {"2", "1"};
  imp::CsvReader bad(dir / "q.csv", o);
  EXPECT_EQ(bad.num_features(), 2);
  RowMatrix block;
  expect_error([&] { bad.read(block, 5); }, ErrorKind::kInput, "q.csv, line 2, field 3: 'he said \"hi\", then\nleft' is not a number");
  write_file(dir / "late.csv", "a,b\n1,\"x\ny\"\n2,\"u\nv\"\n3,?\n");
  imp::DenseOptions l = csv(',', imp::CsvHeader::kAuto, kAuto);
  l.usecols = {"a", "b"};
  imp::CsvReader late(dir / "late.csv", l);
  expect_error([&] { late.read(block, 5); }, ErrorKind::kInput, "late.csv, line 2, field 2: 'x\ny' is not a number");
  l.usecols = {"a"};
  imp::CsvReader late_a(dir / "late.csv", l);
  EXPECT_EQ(read_all(late_a, 5).col(0), Eigen::VectorXd::LinSpaced(3, 1, 3));
  write_file(dir / "late2.csv", "a,b\n1,\"x\ny\"\n2,\"u\nv\"\nq,w\n");
  imp::CsvReader late2(dir / "late2.csv", l);
  expect_error([&] { late2.read(block, 5); }, ErrorKind::kInput, "late2.csv, line 6, field 1: 'q' is not a number");
  write_file(dir / "late3.csv", "a,b\n1,\"x\ny\"\n2,\"u\nv\"\n4\n");
  imp::CsvReader late3(dir / "late3.csv", l);
  expect_error([&] { late3.read(block, 5); }, ErrorKind::kInput, "late3.csv, line 6: expected 2 fields, found 1");

  // Malformed quotes; a quoted field open at the end of the input.
  write_file(dir / "stray.csv", "1,2\n3,4\"5\n");
  imp::CsvReader stray(dir / "stray.csv", csv(',', imp::CsvHeader::kAuto, kAuto));
  expect_error([&] { stray.read(block, 5); }, ErrorKind::kInput, "stray.csv, line 2, field 2: malformed quotes");
  write_file(dir / "open.csv", "1,2\n3,\"4\n5,6\n");
  imp::CsvReader open(dir / "open.csv", csv(',', imp::CsvHeader::kAuto, kAuto));
  expect_error([&] { open.read(block, 5); }, ErrorKind::kInput, "open.csv, line 2: a quoted field is not closed");

  // A tab delimiter: blanks around fields still trimmed, empty fields kept.
  write_file(dir / "t.tsv", "x\ty\tz\n1\t 2 \t\n4\t5\t6\n");
  imp::CsvReader t(dir / "t.tsv", csv('\t', imp::CsvHeader::kAuto, kAuto));
  ASSERT_EQ(t.num_features(), 3);
  const RowMatrix y = read_all(t, 5);
  ASSERT_EQ(y.rows(), 2);
  EXPECT_EQ(y(0, 0), 1);
  EXPECT_EQ(y(0, 1), 2);
  EXPECT_TRUE(std::isnan(y(0, 2)));
  EXPECT_EQ(y(1, 2), 6);
}

TEST(DenseReaders, CsvColumnsLabelsAndErrors) {
  TempDir dir("readers");
  write_file(dir / "l.csv", "name,x,y,label,comment\na,1,2,3,free text\nb,4,5,-6,\"more, text\"\n");
  imp::DenseOptions o = csv(',', imp::CsvHeader::kAuto, kAuto);
  o.index_col = "name";
  o.label_column = "label";
  o.usecols = {"y", "x"};  // file order is kept (pandas)
  imp::CsvReader r(dir / "l.csv", o);
  ASSERT_EQ(r.num_features(), 2);
  RowMatrix block;
  ASSERT_EQ(r.read(block, 10), 2);
  EXPECT_EQ(block(0, 0), 1);
  EXPECT_EQ(block(0, 1), 2);
  EXPECT_EQ(block(1, 0), 4);
  ASSERT_NE(r.row_labels(), nullptr);
  EXPECT_EQ((*r.row_labels())[0], 3);
  EXPECT_EQ((*r.row_labels())[1], -6);
  // Positions only, no header: auto finds none when the read fields are numbers.
  write_file(dir / "p.csv", "x9,1,2,0\nx8,3,4,1\n");
  imp::DenseOptions p = csv(',', imp::CsvHeader::kAuto, kAuto);
  p.index_col = "0";
  p.label_column = "3";
  imp::CsvReader pr(dir / "p.csv", p);
  EXPECT_FALSE(pr.header_line());
  const RowMatrix px = read_all(pr, 1);
  ASSERT_EQ(px.rows(), 2);
  EXPECT_EQ(px(1, 1), 4);
  EXPECT_EQ((*pr.row_labels())[0], 1);  // the last read's labels

  o.usecols = {"x", "nope"};
  expect_error([&] { imp::CsvReader(dir / "l.csv", o); }, ErrorKind::kInput,
               "l.csv: --usecols nope: no column is named 'nope' (the header: 'name', 'x', 'y', 'label', 'comment')");
  o.usecols = {"5"};
  expect_error([&] { imp::CsvReader(dir / "l.csv", o); }, ErrorKind::kInput,
               "l.csv: --usecols 5: there is no column 5 (the file has 5 columns, counted from 0)");
  o.usecols = {};
  o.label_column = "name";
  expect_error([&] { imp::CsvReader(dir / "l.csv", o); }, ErrorKind::kUsage, "name the same column");
  o.index_col = "";
  o.label_column = "label";
  o.usecols = {"x"};
  write_file(dir / "bad-label.csv", "x,label\n1,2\n3,2.5\n");
  imp::CsvReader bl(dir / "bad-label.csv", o);
  expect_error([&] { read_all(bl, 5); }, ErrorKind::kInput, "bad-label.csv, line 3, field 2: '2.5' is not an integer (the label column)");
  imp::DenseOptions no = csv(',', imp::CsvHeader::kNo, kAuto);
  no.label_column = "label";
  expect_error([&] { imp::CsvReader(dir / "bad-label.csv", no); }, ErrorKind::kUsage, "--header no: columns have no names");
}

// Byte ranges cut at record starts (csv_record_starts) read every record exactly once,
// whatever the cuts, when quoted fields hold newlines.
TEST(DenseReaders, CsvRangesAtRecordStarts) {
  TempDir dir("readers");
  std::string text = "a,note\n";
  for (int i = 0; i < 40; ++i)
    text += std::to_string(i) + (i % 3 ? ",\"x\n\"\"y\"\"\r\nz\"\n" : ",w\n");
  write_file(dir / "r.csv", text);
  std::int64_t lines = 0;
  EXPECT_TRUE(imp::csv_odd_quote_lines(dir / "r.csv", {}, lines));
  EXPECT_EQ(lines, 1 + 40 + 2 * 26);
  imp::DenseOptions o = csv(',', imp::CsvHeader::kAuto, kAuto);
  o.usecols = {"a"};
  const imp::CsvReader whole(dir / "r.csv", o);
  const std::uint64_t size = text.size();
  for (const std::uint64_t parts : {2u, 3u, 7u, 50u}) {
    std::vector<std::uint64_t> cuts;
    for (std::uint64_t q = 1; q < parts; ++q) cuts.push_back(size * q / parts);
    std::vector<std::uint64_t> at = imp::csv_record_starts(dir / "r.csv", cuts);
    at.insert(at.begin(), 0);
    at.push_back(size);
    std::vector<double> got;
    std::int64_t before = 0;
    for (std::uint64_t q = 0; q < parts; ++q) {
      const imp::ByteRange range = at[q] < at[q + 1] ? imp::ByteRange{at[q], at[q + 1], before} : imp::ByteRange{0, 0, 0};
      std::int64_t n = 0;
      imp::csv_odd_quote_lines(dir / "r.csv", range, n);
      before += n;
      imp::CsvReader part(dir / "r.csv", o, whole.layout(), range);
      const RowMatrix x = read_all(part, 4);
      for (Index i = 0; i < x.rows(); ++i) got.push_back(x(i, 0));
    }
    ASSERT_EQ(got.size(), 40u) << parts << " parts";
    for (int i = 0; i < 40; ++i) EXPECT_EQ(got[static_cast<std::size_t>(i)], i) << parts << " parts";
    EXPECT_EQ(before, lines);
  }
  write_file(dir / "plain.csv", "1,\"2\"\n\"3\",4\n");
  EXPECT_FALSE(imp::csv_odd_quote_lines(dir / "plain.csv", {}, lines));
}

TEST(DenseReaders, Hdf5DatasetAndLabelFiles) {
  TempDir dir("readers");
  RowMatrix x(3, 2);
  x << 1, 2, 3, 4, 5, 6;
  latent::testing::write_shard(dir / "x.h5", x);
  imp::DenseOptions options;
  options.dataset = "data";
  options.scale = 0.5;
  const auto r = imp::open_dense_reader(imp::DenseFormat::kHdf5, dir / "x.h5", options);
  EXPECT_EQ(r->num_rows(), 3);
  const RowMatrix y = read_all(*r, 2);
  EXPECT_EQ(y, RowMatrix(0.5 * x));
  expect_error([&] { imp::Hdf5Reader(dir / "x.h5", "", kAuto); }, ErrorKind::kUsage, "--format hdf5 needs --dataset");
  expect_error([&] { imp::Hdf5Reader(dir / "x.h5", "nope", kAuto); }, ErrorKind::kInput,
               "dataset /nope is missing (found: data)");

  write_file(dir / "labels.txt", "3\n\n-1\n");
  imp::LabelReader text(dir / "labels.txt");
  EXPECT_EQ(text.next(0), 3);
  EXPECT_EQ(text.next(1), -1);
  expect_error([&] { text.next(2); }, ErrorKind::kInput, "has fewer labels than data rows (no label for row 2)");
  write_file(dir / "bad.txt", "1\nseven\n");
  imp::LabelReader bad(dir / "bad.txt");
  EXPECT_EQ(bad.next(0), 1);
  expect_error([&] { bad.next(1); }, ErrorKind::kInput, "bad.txt, row 1: 'seven' is not an integer");
  write_file(dir / "l.idx", std::string("\0\0\x08\x01\0\0\0\x02\x05\x09", 10));
  imp::LabelReader idx(dir / "l.idx");
  EXPECT_EQ(idx.next(0), 5);
  EXPECT_EQ(idx.next(1), 9);
  expect_error([&] { idx.next(2); }, ErrorKind::kInput, "no label for row 2");
  write_file(dir / "l.npy", npy("<i8", "(2,)", bytes<std::int64_t>({4, 2})));
  imp::LabelReader n(dir / "l.npy");
  EXPECT_EQ(n.next(0), 4);
  EXPECT_EQ(n.next(1), 2);
}

// ---------------------------------------------------------------------------------------
// Count formats.

imp::Corpus open_corpus(const std::string& format, const std::string& path, const std::string& vocab = "") {
  if (format == "uci") return imp::open_uci(path, vocab);
  if (format == "mm") return imp::open_mtx(path, vocab, imp::MtxLayout::kDocsByWords);
  if (format == "ldac") return imp::open_ldac(path, vocab);
  if (format == "libsvm") return imp::open_libsvm(path, vocab, imp::IndexBase::kAuto, Logger::silent());
  return imp::open_text(path, imp::TextOptions{.vocab = vocab});
}

// Every document of a corpus as read (ids not merged).
std::vector<imp::Document> documents(imp::Corpus& c) {
  std::vector<imp::Document> docs;
  imp::Document d;
  while (c.reader->next(d)) docs.push_back(d);
  return docs;
}

TEST(CountReaders, DocumentsOfEveryFormat) {
  TempDir dir("readers");
  write_file(dir / "c.ldac", "2 0:1 3:2\n0\n3 2:1 0:4 2:2.0\n");
  imp::Corpus ldac = open_corpus("ldac", dir / "c.ldac");
  EXPECT_EQ(ldac.vocabulary, (Words{"0", "1", "2", "3"}));
  EXPECT_EQ(ldac.total, 3);
  auto docs = documents(ldac);
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].ids, (std::vector<std::int32_t>{0, 3}));
  EXPECT_TRUE(docs[1].ids.empty());
  EXPECT_EQ(docs[2].ids, (std::vector<std::int32_t>{2, 0, 2}));
  EXPECT_EQ(docs[2].counts, (std::vector<std::int64_t>{1, 4, 2}));

  write_file(dir / "c.svm", "# comment\n-1 qid:2 1:2 3:0 # trailing\n\n2 2:1\n");
  imp::Corpus svm = open_corpus("libsvm", dir / "c.svm");
  EXPECT_TRUE(svm.with_labels);
  EXPECT_EQ(svm.vocabulary.size(), 3u);  // 1-based: index 3 is id 2
  docs = documents(svm);
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].ids, (std::vector<std::int32_t>{0}));  // the explicit zero is dropped
  EXPECT_EQ(docs[0].label, -1);
  EXPECT_EQ(docs[1].label, 2);

  write_file(dir / "docword.k.txt", "3\n2\n3\n1 2 1\n3 1 4\n3 2 1\n");
  write_gz(dir / "vocab.k.txt.gz", "apple\nbanana\n");
  imp::Corpus uci = open_corpus("uci", dir / "docword.k.txt");
  EXPECT_EQ(uci.vocabulary, (Words{"apple", "banana"}));
  EXPECT_EQ(uci.total, 3);
  docs = documents(uci);
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].ids, (std::vector<std::int32_t>{1}));
  EXPECT_TRUE(docs[1].ids.empty());
  EXPECT_EQ(docs[2].counts, (std::vector<std::int64_t>{4, 1}));

  write_file(dir / "p.mtx", "%%MatrixMarket matrix coordinate pattern general\n2 3 2\n1 3\n2 3\n");
  imp::Corpus mm = imp::open_mtx(dir / "p.mtx", "", imp::MtxLayout::kWordsByDocs);
  EXPECT_EQ(mm.vocabulary, (Words{"0", "1"}));
  docs = documents(mm);
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_TRUE(docs[0].ids.empty());
  EXPECT_EQ(docs[2].ids, (std::vector<std::int32_t>{0, 1}));
  EXPECT_EQ(docs[2].counts, (std::vector<std::int64_t>{1, 1}));
}

TEST(CountReaders, MalformedLinesNameFileAndLine) {
  TempDir dir("readers");
  struct Case {
    std::string format, file, content, where;
  };
  const std::vector<Case> cases{
      {"uci", "docword.bad.txt", "2\n3\n2\n1 1 1\n2 x 1\n", "docword.bad.txt, line 5"},
      {"uci", "docword.range.txt", "2\n3\n2\n1 1 1\n2 4 1\n", "docword.range.txt, line 5"},
      {"uci", "docword.order.txt", "2\n3\n2\n2 1 1\n1 1 1\n", "docword.order.txt, line 5"},
      {"uci", "docword.neg.txt", "2\n3\n1\n1 1 -1\n", "docword.neg.txt, line 4"},
      {"uci", "docword.nnz.txt", "2\n3\n1\n1 1 1\n2 2 2\n", "docword.nnz.txt, line 5"},
      {"uci", "docword.short.txt", "2\n3\n5\n1 1 1\n", "declares 5 entries"},
      {"ldac", "bad.ldac", "1 0:1\n2 0:1\n", "bad.ldac, line 2"},
      {"ldac", "colon.ldac", "1 0:1\n1 01\n", "colon.ldac, line 2"},
      {"libsvm", "bad.svm", "1 1:1\n\n1 3:abc\n", "bad.svm, line 3"},
      {"libsvm", "frac.svm", "1 1:1.5\n", "frac.svm, line 1"},
      {"libsvm", "label.svm", "1 1:1\nspam 1:1\n", "label.svm, line 2"},
      {"mm", "bad.mtx", "%%MatrixMarket matrix coordinate integer general\n2 2 2\n1 1 1\n1 x 2\n", "bad.mtx, line 4"},
      {"mm", "banner.mtx", "%%MatrixMarket matrix array integer general\n2 2\n", "banner.mtx, line 1"},
      {"mm", "size.mtx", "%%MatrixMarket matrix coordinate integer general\n2 2\n", "size.mtx, line 2"},
      {"mm", "u.mtx", "%%MatrixMarket matrix coordinate integer general\n3 4 2\n2 1 1\n1 2 1\n", "u.mtx, line 4"},
  };
  for (const auto& c : cases) {
    write_file(dir / c.file, c.content);
    if (c.format == "uci") write_file(dir / ("vocab." + c.file.substr(8, c.file.size() - 12) + ".txt"), "a\nb\nc\n");
    expect_error(
        [&] {
          imp::Corpus corpus = open_corpus(c.format, dir / c.file);
          documents(corpus);
        },
        ErrorKind::kInput, c.where, c.file);
  }

  // A vocabulary of the wrong size, or with an empty line.
  write_file(dir / "two.txt", "a\nb\n");
  expect_error([&] { open_corpus("uci", dir / "docword.bad.txt", dir / "two.txt"); }, ErrorKind::kInput, "W = 3");
  write_file(dir / "holes.txt", "a\n\nc\n");
  expect_error([&] { open_corpus("ldac", dir / "bad.ldac", dir / "holes.txt"); }, ErrorKind::kInput, "holes.txt, line 2");
  write_file(dir / "one.ldac", "1 3:1\n");
  expect_error(
      [&] {
        imp::Corpus corpus = open_corpus("ldac", dir / "one.ldac", dir / "two.txt");
        documents(corpus);
      },
      ErrorKind::kInput, "term id 3 is outside the vocabulary of 2 words");

  // Text: malformed or missing labels.
  fs::create_directories(dir / "docs");
  write_file(dir / "docs/d1", "hello world\n");
  write_file(dir / "docs/d2", "hello again\n");
  write_file(dir / "cats.txt", "d1 greeting\nd2\n");
  expect_error([&] { imp::open_text(dir / "docs", {.labels = dir / "cats.txt"}); }, ErrorKind::kInput,
               "cats.txt, line 2");
  write_file(dir / "cats.txt", "d1 greeting\n");
  expect_error([&] { imp::open_text(dir / "docs", {.labels = dir / "cats.txt"}); }, ErrorKind::kInput,
               "no label for document d2");
  expect_error([&] { open_corpus("ldac", dir / "missing.ldac"); }, ErrorKind::kNoInput, "missing.ldac: does not exist");
  expect_error([&] { open_corpus("uci", dir / "bad.ldac"); }, ErrorKind::kUsage, "pass --vocab FILE");
}

TEST(Tokenizer, WordsAsCountVectorizer) {
  const auto words = [](imp::Tokenizer& t, std::string_view line) {
    Words w;
    t.run(line, [&](const std::string& word) { w.push_back(word); });
    return w;
  };
  imp::Tokenizer plain("", true, {});
  EXPECT_EQ(words(plain, "The cat's food! a x_y 3.14 \xc3\xa9 \xc3\xa9t\xc3\xa9"),
            (Words{"the", "cat", "food", "x_y", "14", "\xc3\xa9t\xc3\xa9"}));
  imp::Tokenizer tags("/", false, {"jury"});
  EXPECT_EQ(words(tags, "The/at jury/nn New/York/np said/vbd ./."), (Words{"The", "New", "York", "said"}));
  std::unordered_set<std::string> english(imp::english_stop_words().begin(), imp::english_stop_words().end());
  EXPECT_EQ(english.size(), 318u);
  imp::Tokenizer stop("", true, english);
  EXPECT_EQ(words(stop, "The dog ate the cat"), (Words{"dog", "ate", "cat"}));
}

TEST(CountReaders, TextVocabularyPruningAndPasses) {
  TempDir dir("readers");
  write_file(dir / "corpus.txt", "The cat sat on the mat.\nThe dog ate the cat's food!\nA dog, a cat, and a bird.\nx y z\n");
  imp::Corpus c = imp::open_text(dir / "corpus.txt", {.min_df = "2"});
  EXPECT_TRUE(c.text);
  EXPECT_EQ(c.total, 4);
  EXPECT_EQ(c.vocabulary, (Words{"cat", "dog", "the"}));
  auto docs = documents(c);
  ASSERT_EQ(docs.size(), 4u);
  EXPECT_EQ(docs[1].ids, (std::vector<std::int32_t>{2, 1, 2, 0}));
  EXPECT_TRUE(docs[3].ids.empty());

  write_file(dir / "vocab.txt", "the\ncat\n");
  c = imp::open_text(dir / "corpus.txt", {.vocab = dir / "vocab.txt"});
  EXPECT_EQ(c.total, -1);  // one pass
  docs = documents(c);
  EXPECT_EQ(docs[0].ids, (std::vector<std::int32_t>{0, 1, 0}));

  expect_error([&] { imp::open_text(dir / "corpus.txt", {.min_df = "4"}); }, ErrorKind::kUsage, "no words remain");
  expect_error([&] { imp::parse_doc_frequency("1.5", "--max-df"); }, ErrorKind::kUsage, "--max-df must be");
  EXPECT_EQ(imp::parse_doc_frequency("0.5", "--max-df").documents(10), 5);
  EXPECT_EQ(imp::parse_doc_frequency("3", "--min-df").documents(10), 3);

  // The input changes between the passes.
  imp::Corpus changing = imp::open_text(dir / "corpus.txt", {});
  write_file(dir / "corpus.txt", "the cat\n");
  expect_error([&] { documents(changing); }, ErrorKind::kInput, "changed while being imported");
}

}  // namespace
}  // namespace latent

namespace latent {
namespace {

// The byte ranges of a parallel import tile the file's lines: for every cut into P equal
// ranges (and for cuts at every byte), the lines of the ranges, in order, are exactly the
// lines of the whole file, whatever the line ends (CRLF, a CR at a cut, no final newline,
// empty lines, a line longer than a range).
TEST(ByteRanges, TileTheLinesOfTheFile) {
  latent::testing::TempDir dir;
  const std::vector<std::string> contents{
      "",
      "a",
      "\n",
      "\n\n\n",
      "one\ntwo\nthree",
      "one\r\ntwo\r\n\r\nthree\r\n",
      "x\n" + std::string(1000, 'y') + "\nz\n",
      "ab\ncd\n\nef\r\ngh",
  };
  for (std::size_t c = 0; c < contents.size(); ++c) {
    const std::string path = dir.path() + "/f" + std::to_string(c);
    latent::testing::write_file(path, contents[c]);
    std::vector<std::string> whole;
    {
      imp::ByteStream s(path);
      std::string line;
      while (s.getline(line)) whole.push_back(line);
    }
    std::uint64_t size = 0;
    ASSERT_TRUE(imp::splittable_file(path, size));
    ASSERT_EQ(size, contents[c].size());
    const auto lines_of = [&](const std::vector<std::uint64_t>& cuts) {
      std::vector<std::string> got;
      for (std::size_t r = 0; r + 1 < cuts.size(); ++r) {
        imp::ByteStream s(path, imp::ByteRange{cuts[r], cuts[r + 1], 0});
        std::string line;
        while (s.getline(line)) got.push_back(line);
      }
      return got;
    };
    for (std::uint64_t p = 1; p <= 7; ++p) {
      std::vector<std::uint64_t> cuts;
      for (std::uint64_t r = 0; r <= p; ++r) cuts.push_back(size * r / p);
      EXPECT_EQ(lines_of(cuts), whole) << "content " << c << ", " << p << " ranges";
    }
    for (std::uint64_t at = 0; at <= size; ++at) EXPECT_EQ(lines_of({0, at, size}), whole) << "content " << c << ", cut at " << at;
  }
}

}  // namespace
}  // namespace latent
