// `latent import dense`: IDX (MNIST, gzipped or not), CSV, NPY and HDF5 into a directory of
// HDF5 shards. Streaming: at most one shard of rows is held in memory; the output is
// written to a temporary directory and renamed into place only when everything succeeded.
#include <fmt/format.h>
#include <unistd.h>

#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <regex>

#include "byte_stream.hpp"
#include "common.hpp"
#include "latent/core/error.hpp"
#include "latent/io/h5_file.hpp"

namespace latent::cli {
namespace {

namespace fs = std::filesystem;

// Reads rows from one input file; num_features() is known after construction.
class RowReader {
 public:
  virtual ~RowReader() = default;
  virtual Index num_features() const = 0;
  /// Fills up to max rows into out (resized to max × D); returns rows read (0 at end).
  virtual Index read(RowMatrix& out, Index max) = 0;
  /// Total rows if known from a header, else -1.
  virtual Index num_rows() const { return -1; }
};

std::uint32_t big_endian32(const unsigned char* b) {
  return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) | b[3];
}

struct IdxHeader {
  int type = 0;
  std::vector<Index> dims;
};

IdxHeader read_idx_header(ByteStream& s) {
  unsigned char magic[4];
  s.read(magic, 4, "the IDX header");
  if (magic[0] != 0 || magic[1] != 0 || magic[3] < 1)
    throw_input("input " + s.path() + ": not an IDX file (bad magic number)");
  IdxHeader h;
  h.type = magic[2];
  for (int i = 0; i < magic[3]; ++i) {
    unsigned char b[4];
    s.read(b, 4, "the IDX dimensions");
    h.dims.push_back(static_cast<Index>(big_endian32(b)));
  }
  return h;
}

std::size_t idx_type_size(int type, const std::string& path) {
  switch (type) {
    case 0x08: case 0x09: return 1;
    case 0x0B: return 2;
    case 0x0C: case 0x0D: return 4;
    case 0x0E: return 8;
    default: throw_input(fmt::format("input {}: unknown IDX element type 0x{:02x}", path, type));
  }
}

double idx_value(int type, const unsigned char* p) {
  switch (type) {
    case 0x08: return p[0];
    case 0x09: return static_cast<signed char>(p[0]);
    case 0x0B: return static_cast<std::int16_t>((p[0] << 8) | p[1]);
    case 0x0C: return static_cast<std::int32_t>(big_endian32(p));
    case 0x0D: { const std::uint32_t u = big_endian32(p); float f; std::memcpy(&f, &u, 4); return f; }
    default: {
      std::uint64_t u = 0;
      for (int i = 0; i < 8; ++i) u = (u << 8) | p[i];
      double d; std::memcpy(&d, &u, 8); return d;
    }
  }
}

// Headers are untrusted: dimensions must be positive and their products must not overflow
// before anything is allocated from them.
constexpr Index kMaxFeatures = Index{1} << 28;
void check_dimensions(const std::string& path, Index rows, Index features) {
  if (rows < 0 || features < 1 || features > kMaxFeatures)
    throw_input(fmt::format("input {}: implausible dimensions in the header ({} rows x {} features; at most {} features)",
                            path, rows, features, kMaxFeatures));
}

// Rows of fixed-size binary elements after a header (IDX, NPY): subclasses decode one element.
class BinaryRowReader : public RowReader {
 public:
  Index num_features() const override { return d_; }
  Index num_rows() const override { return rows_; }
  Index read(RowMatrix& out, Index max) override {
    const Index n = std::min(max, rows_ - done_);
    if (n <= 0) return 0;
    buf_.resize(static_cast<std::size_t>(n * d_) * size_);
    s_.read(buf_.data(), buf_.size(), fmt::format("rows {}-{}", done_, done_ + n - 1));
    out.resize(max, d_);
    for (Index i = 0; i < n * d_; ++i) out.data()[i] = scale_ * value(buf_.data() + static_cast<std::size_t>(i) * size_);
    done_ += n;
    return n;
  }

 protected:
  BinaryRowReader(const std::string& path, double scale) : s_(path), scale_(scale) {}
  virtual double value(const unsigned char* p) const = 0;
  ByteStream s_;
  double scale_;
  Index rows_ = 0, d_ = 0, done_ = 0;
  std::size_t size_ = 1;

 private:
  std::vector<unsigned char> buf_;
};

class IdxReader final : public BinaryRowReader {
 public:
  IdxReader(const std::string& path, double scale) : BinaryRowReader(path, scale) {
    h_ = read_idx_header(s_);
    rows_ = h_.dims[0];
    d_ = 1;
    for (std::size_t i = 1; i < h_.dims.size(); ++i) {
      if (h_.dims[i] < 1 || d_ > kMaxFeatures / h_.dims[i]) check_dimensions(path, rows_, kMaxFeatures + 1);
      d_ *= h_.dims[i];
    }
    check_dimensions(path, rows_, d_);
    size_ = idx_type_size(h_.type, path);
    if (std::isnan(scale_)) scale_ = h_.type == 0x08 ? 1.0 / 255.0 : 1.0;
  }

 private:
  double value(const unsigned char* p) const override { return idx_value(h_.type, p); }
  IdxHeader h_;
};

class CsvReader final : public RowReader {
 public:
  CsvReader(const std::string& path, char delimiter, const std::string& header, double scale)
      : s_(path), delimiter_(delimiter), scale_(std::isnan(scale) ? 1.0 : scale) {
    std::string line;
    if (!s_.getline(line)) throw_input("input " + path + ": is empty");
    ++line_no_;
    std::vector<double> values;
    const bool numeric = parse(line, values, false);
    const bool is_header = header == "yes" || (header == "auto" && !numeric);
    if (header == "no" && !numeric) parse(line, values, true);  // throws with the position
    if (is_header) {
      d_ = static_cast<Index>(split_count(line));
    } else {
      d_ = static_cast<Index>(values.size());
      pending_ = values;
      has_pending_ = true;
    }
  }
  Index num_features() const override { return d_; }
  Index read(RowMatrix& out, Index max) override {
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

 private:
  std::size_t split_count(const std::string& line) const {
    return static_cast<std::size_t>(std::count(line.begin(), line.end(), delimiter_)) + 1;
  }
  // Empty fields and NA/NaN become NaN (rejected later unless missing values are allowed).
  bool parse(const std::string& line, std::vector<double>& values, bool strict) const {
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
  ByteStream s_;
  char delimiter_;
  double scale_;
  Index d_ = 0, line_no_ = 0;
  std::vector<double> pending_;
  bool has_pending_ = false;
};

class NpyReader final : public BinaryRowReader {
 public:
  NpyReader(const std::string& path, double scale) : BinaryRowReader(path, std::isnan(scale) ? 1.0 : scale) {
    char magic[8];
    s_.read(magic, 8, "the NPY magic");
    if (std::memcmp(magic, "\x93NUMPY", 6) != 0) throw_input("input " + path + ": not an NPY file (bad magic)");
    std::size_t header_len = 0;
    if (magic[6] == 1) {
      unsigned char b[2];
      s_.read(b, 2, "the NPY header length");
      header_len = b[0] | (b[1] << 8);
    } else {
      unsigned char b[4];
      s_.read(b, 4, "the NPY header length");
      header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<std::size_t>(b[3]) << 24);
    }
    if (header_len > (1u << 20)) throw_input("input " + path + ": NPY header of " + std::to_string(header_len) + " bytes is implausible");
    std::string header(header_len, '\0');
    s_.read(header.data(), header_len, "the NPY header");
    std::smatch m;
    if (!std::regex_search(header, m, std::regex("'descr':\\s*'([<>|=])([fiub])(\\d+)'")))
      throw_input("input " + path + ": NPY dtype not supported (need a numeric dtype; found header " + header + ")");
    const std::string order = m[1];
    kind_ = m[2].str()[0];
    size_ = static_cast<std::size_t>(std::stoi(m[3]));
    if (order == ">" && size_ > 1) throw_input("input " + path + ": big-endian NPY is not supported");
    if (std::regex_search(header, std::regex("'fortran_order':\\s*True")))
      throw_input("input " + path + ": Fortran-ordered NPY is not supported; save with np.ascontiguousarray");
    if (!std::regex_search(header, m, std::regex("'shape':\\s*\\((\\d+),\\s*(\\d*)\\s*\\)")))
      throw_input("input " + path + ": NPY array must be 1-D or 2-D");
    try {
      rows_ = std::stoll(m[1]);
      d_ = m[2].str().empty() ? 1 : std::stoll(m[2]);
    } catch (const std::out_of_range&) {
      throw_input("input " + path + ": NPY shape out of range");
    }
    check_dimensions(path, rows_, d_);
    if (!((kind_ == 'f' && (size_ == 4 || size_ == 8)) || ((kind_ == 'i' || kind_ == 'u') && size_ <= 8) || kind_ == 'b'))
      throw_input("input " + path + ": NPY dtype " + kind_ + std::to_string(size_) + " not supported");
  }
  double value(const unsigned char* p) const override {
    if (kind_ == 'f') {
      if (size_ == 4) { float f; std::memcpy(&f, p, 4); return f; }
      double d; std::memcpy(&d, p, 8); return d;
    }
    std::uint64_t u = 0;
    std::memcpy(&u, p, size_);
    if (kind_ == 'i' && size_ < 8 && (u >> (8 * size_ - 1)) != 0) u |= ~std::uint64_t{0} << (8 * size_);
    return kind_ == 'i' ? static_cast<double>(static_cast<std::int64_t>(u)) : static_cast<double>(u);
  }
  char kind_ = 'f';
};

class Hdf5Reader final : public RowReader {
 public:
  Hdf5Reader(const std::string& path, const std::string& dataset, double scale)
      : r_(path), name_(dataset), scale_(std::isnan(scale) ? 1.0 : scale) {
    if (dataset.empty()) throw_usage("--format hdf5 needs --dataset NAME");
    if (!r_.has(dataset)) throw_input("input " + path + ": dataset /" + dataset + " is missing (found: " + list() + ")");
    const auto shape = r_.shape(dataset);
    if (shape.empty() || shape.size() > 2) throw_input("input " + path + ", dataset /" + dataset + ": must be 1-D or 2-D");
    rows_ = shape[0];
    d_ = shape.size() == 2 ? shape[1] : 1;
  }
  Index num_features() const override { return d_; }
  Index num_rows() const override { return rows_; }
  Index read(RowMatrix& out, Index max) override {
    const Index n = std::min(max, rows_ - done_);
    if (n <= 0) return 0;
    out.resize(max, d_);
    out.topRows(n) = scale_ * r_.read_rows(name_, done_, n);
    done_ += n;
    return n;
  }

 private:
  std::string list() const {
    std::string s;
    for (const auto& n : r_.list("/")) s += (s.empty() ? "" : ", ") + n;
    return s.empty() ? "nothing" : s;
  }
  io::H5Reader r_;
  std::string name_;
  double scale_;
  Index rows_ = 0, d_ = 0, done_ = 0;
};

// Labels: IDX1, NPY (1-D integers), or text (one integer per line).
class LabelReader {
 public:
  explicit LabelReader(const std::string& path) : path_(path) {
    const std::string ext = fs::path(path).extension() == ".gz" ? fs::path(path).stem().extension().string()
                                                                 : fs::path(path).extension().string();
    if (ext == ".npy") {
      npy_ = std::make_unique<NpyReader>(path, 1.0);
    } else {
      stream_ = std::make_unique<ByteStream>(path);
      unsigned char peek[4] = {1, 1, 1, 1};
      {
        ByteStream probe(path);
        try { probe.read(peek, 4, "the header"); } catch (const Error&) {}
      }
      if (peek[0] == 0 && peek[1] == 0 && peek[3] == 1) {
        idx_ = read_idx_header(*stream_);
        idx_size_ = idx_type_size(idx_.type, path);
      } else {
        text_ = true;
      }
    }
  }
  std::int64_t next(Index row) {
    if (npy_) {
      RowMatrix one;
      if (npy_->read(one, 1) != 1) short_by(row);
      return static_cast<std::int64_t>(one(0, 0));
    }
    if (text_) {
      std::string line;
      while (stream_->getline(line) && line.find_first_not_of(" \t") == std::string::npos) {}
      if (line.empty()) short_by(row);
      try {
        return std::stoll(line);
      } catch (const std::exception&) {
        throw_input(fmt::format("labels {}, row {}: '{}' is not an integer", path_, row, line));
      }
    }
    if (row >= idx_.dims[0]) short_by(row);
    unsigned char b[8];
    stream_->read(b, idx_size_, "label " + std::to_string(row));
    return static_cast<std::int64_t>(idx_value(idx_.type, b));
  }

 private:
  [[noreturn]] void short_by(Index row) const {
    throw_input(fmt::format("labels {}: has fewer labels than data rows (no label for row {})", path_, row));
  }
  std::string path_;
  std::unique_ptr<NpyReader> npy_;
  std::unique_ptr<ByteStream> stream_;
  IdxHeader idx_;
  std::size_t idx_size_ = 1;
  bool text_ = false;
};

std::unique_ptr<RowReader> open_reader(const std::string& format, const std::string& path, const std::string& dataset,
                                       char delimiter, const std::string& header, double scale) {
  if (format == "idx") return std::make_unique<IdxReader>(path, scale);
  if (format == "csv") return std::make_unique<CsvReader>(path, delimiter, header, scale);
  if (format == "npy") return std::make_unique<NpyReader>(path, scale);
  if (format == "hdf5") return std::make_unique<Hdf5Reader>(path, dataset, scale);
  throw_usage("unknown --format '" + format + "' (choose idx, csv, npy or hdf5)");
}

struct ShardWriter {
  std::string dir;
  Index rows_per_shard = 1;
  io::DType dtype = io::DType::kFloat32;
  Index d = -1;
  RowMatrix rows;
  std::vector<std::int64_t> labels;
  Index filled = 0, shards = 0, total = 0;
  bool with_labels = false;

  void flush() {
    if (filled == 0) return;
    io::H5Writer w(fmt::format("{}/part-{:05d}.h5", dir, shards), false);
    w.attr("/", "format_version", static_cast<std::int64_t>(io::kDataFormatVersion));
    w.attr("/", "kind", std::string("dense"));
    w.create(io::kDataDataset, dtype, filled, d);
    w.write_rows(io::kDataDataset, 0, RowMatrix(rows.topRows(filled)));
    if (with_labels) {
      w.create(io::kLabelsDataset, io::DType::kInt64, filled, 0);
      w.write_rows(io::kLabelsDataset, 0, std::span<const std::int64_t>(labels.data(), static_cast<std::size_t>(filled)));
    }
    w.commit();
    ++shards;
    total += filled;
    filled = 0;
  }
};

}  // namespace

int cmd_import(const std::vector<std::string>& args, const Context& ctx) {
  if (!args.empty() && args[0] == "counts") return cmd_import_counts(std::vector<std::string>(args.begin() + 1, args.end()), ctx);
  if (args.empty() || args[0] != "dense") {
    if (!args.empty() && (args[0] == "--help" || args[0] == "-h")) {
      if (ctx.comm.is_root())
        ctx.out << "Usage: latent import dense --format idx|csv|npy|hdf5 --input FILE... --output DIR\n"
                   "       latent import counts --format uci|ldac|libsvm|mm|text --input PATH --output DIR\n";
      return 0;
    }
    throw_usage("usage: latent import dense|counts --format FMT --input PATH --output DIR (see --help)");
  }
  std::string format, output, labels_path, dataset, delimiter, header, dtype, scale_text;
  std::vector<std::string> inputs;
  Index rows_per_shard = 0;
  bool overwrite = false;
  po::options_description desc("latent import dense options");
  desc.add_options()
      ("format", po::value(&format)->required(), "idx (MNIST, .gz or plain) | csv | npy | hdf5")
      ("input", po::value(&inputs)->multitoken()->required(), "input file(s); rows are concatenated in the order given")
      ("output", po::value(&output)->required(), "directory of HDF5 shards to create (must not exist)")
      ("labels", po::value(&labels_path)->default_value(""), "labels: IDX1, NPY or text (one integer per line)")
      ("rows-per-shard", po::value(&rows_per_shard)->default_value(16384), "rows per shard file (memory: one shard)")
      ("dataset", po::value(&dataset)->default_value(""), "dataset name inside the input (--format hdf5)")
      ("delimiter", po::value(&delimiter)->default_value(","), "CSV field delimiter")
      ("header", po::value(&header)->default_value("auto"), "CSV header line: auto | yes | no")
      ("dtype", po::value(&dtype)->default_value("float32"), "stored precision: float32 | float64")
      ("scale", po::value(&scale_text)->default_value("auto"),
       "multiply values by this factor (auto: 1/255 for unsigned-byte IDX, else 1)")
      ("overwrite", po::bool_switch(&overwrite), "replace an existing output directory once the import succeeded");
  po::variables_map vm;
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (!parse(rest, desc, vm, ctx, "latent import dense --format FMT --input FILE... --output DIR [options]")) return 0;
  if (rows_per_shard < 1) throw_usage("--rows-per-shard must be at least 1");
  if (delimiter.size() != 1) throw_usage("--delimiter must be one character");
  if (header != "auto" && header != "yes" && header != "no") throw_usage("--header must be auto, yes or no");
  if (dtype != "float32" && dtype != "float64") throw_usage("--dtype must be float32 or float64");
  double scale = std::nan("");
  if (scale_text != "auto") {
    try { scale = std::stod(scale_text); } catch (const std::exception&) { throw_usage("--scale must be a number or auto"); }
  }
  Index total = 0, shards = 0, d = 0;
  comm::run_agreed(ctx.comm, [&] {
    if (!ctx.comm.is_root()) return;
    if (fs::exists(output) && !overwrite) throw_output("output " + output + ": already exists (pass --overwrite to replace it)");
    const std::string tmp = output + ".tmp-" + std::to_string(::getpid());
    fs::create_directories(tmp);
    struct Cleanup {
      std::string path;
      bool keep = false;
      ~Cleanup() { if (!keep) { std::error_code ec; fs::remove_all(path, ec); } }
    } cleanup{tmp};
    ShardWriter w;
    w.dir = tmp;
    w.rows_per_shard = rows_per_shard;
    w.dtype = dtype == "float32" ? io::DType::kFloat32 : io::DType::kFloat64;
    std::unique_ptr<LabelReader> labels;
    if (!labels_path.empty()) labels = std::make_unique<LabelReader>(labels_path);
    w.with_labels = labels != nullptr;
    Index known_total = 0;
    std::vector<std::unique_ptr<RowReader>> readers;
    for (const auto& in : inputs) {
      readers.push_back(open_reader(format, in, dataset, delimiter[0], header, scale));
      if (w.d >= 0 && readers.back()->num_features() != w.d)
        throw_input(fmt::format("input {}: has {} features but {} has {}", in, readers.back()->num_features(), inputs[0], w.d));
      w.d = readers.back()->num_features();
      known_total = readers.back()->num_rows() < 0 || known_total < 0 ? -1 : known_total + readers.back()->num_rows();
    }
    const double shard_bytes = 8.0 * static_cast<double>(rows_per_shard) * static_cast<double>(w.d);
    if (shard_bytes > (double{8} * (Index{1} << 30)))
      throw_usage(fmt::format("--rows-per-shard {} x {} features needs {:.1f} GiB of memory per shard; use fewer rows per shard",
                              rows_per_shard, w.d, shard_bytes / (1 << 30)));
    Progress progress(ctx.err, ctx.comm.is_root() && stderr_is_tty(), "import", known_total);
    RowMatrix chunk;
    for (std::size_t input = 0; input < readers.size(); ++input) {
      auto& reader = readers[input];
      while (true) {
        if (w.rows.rows() != rows_per_shard) w.rows.resize(rows_per_shard, w.d), w.labels.resize(static_cast<std::size_t>(rows_per_shard));
        // At most 64 MiB of doubles per chunk, whatever D is.
        const Index chunk_rows = std::max<Index>(1, std::min<Index>(4096, (Index{64} << 20) / (8 * w.d)));
        const Index n = reader->read(chunk, std::min<Index>(chunk_rows, rows_per_shard - w.filled));
        if (n == 0) break;
        for (Index i = 0; i < n; ++i) {
          const Index row = w.total + w.filled;
          for (Index j = 0; j < w.d; ++j)
            if (std::isinf(chunk(i, j)))
              throw_input(fmt::format("input {}: row {} of the dataset, column {} is infinite", inputs[input], row, j));
          w.rows.row(w.filled) = chunk.row(i);
          if (labels) w.labels[static_cast<std::size_t>(w.filled)] = labels->next(row);
          ++w.filled;
        }
        if (w.filled == rows_per_shard) w.flush();
        progress.update(w.total + w.filled);
      }
    }
    w.flush();
    progress.finish();
    if (w.total == 0) throw_input("input " + inputs[0] + ": has no rows");
    if (fs::exists(output)) {
      const std::string old = output + ".old-" + std::to_string(::getpid());
      fs::rename(output, old);
      fs::rename(tmp, output);
      fs::remove_all(old);
    } else {
      fs::rename(tmp, output);
    }
    cleanup.keep = true;
    total = w.total;
    shards = w.shards;
    d = w.d;
  });
  ctx.log.info(fmt::format("imported {} rows x {} features into {} shard(s) in {}", total, d, shards, output));
  return 0;
}

}  // namespace latent::cli
