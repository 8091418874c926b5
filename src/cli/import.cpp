// `latent import dense`: IDX (MNIST, gzipped or not), CSV, NPY and HDF5 into a directory of
// HDF5 shards. The formats are read by the library (include/latent/io/import/); this file
// parses the options and writes the shards. Streaming: at most one shard of rows is held
// in memory; the output is written to a temporary directory and renamed into place only
// when everything succeeded. Under mpirun, plain CSV inputs are read in parallel
// (import_csv_parallel: the same bytes for any number of ranks); other inputs on rank 0.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <optional>

#include "common.hpp"
#include "latent/core/control.hpp"
#include "latent/core/error.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/io/import/csv.hpp"
#include "latent/io/import/labels.hpp"
#include "latent/io/import/reader.hpp"

namespace latent::cli {
namespace {

namespace fs = std::filesystem;
namespace imp = io::importers;

// The --format names; an unknown one is refused where its first input is opened.
std::optional<imp::DenseFormat> dense_format(const std::string& name) {
  if (name == "idx") return imp::DenseFormat::kIdx;
  if (name == "csv") return imp::DenseFormat::kCsv;
  if (name == "npy") return imp::DenseFormat::kNpy;
  if (name == "hdf5") return imp::DenseFormat::kHdf5;
  return std::nullopt;
}

// One dense shard: `rows` (all of them) and, if not empty, one label per row.
void write_dense_shard(const std::string& path, io::DType dtype, const RowMatrix& rows,
                       std::span<const std::int64_t> labels) {
  io::H5Writer w(path, false);
  w.attr("/", "format_version", static_cast<std::int64_t>(io::kDataFormatVersion));
  w.attr("/", "kind", std::string("dense"));
  w.create(io::kDataDataset, dtype, rows.rows(), rows.cols());
  w.write_rows(io::kDataDataset, 0, rows);
  if (!labels.empty()) {
    w.create(io::kLabelsDataset, io::DType::kInt64, rows.rows(), 0);
    w.write_rows(io::kLabelsDataset, 0, labels);
  }
  w.commit();
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
    write_dense_shard(fmt::format("{}/part-{:05d}.h5", dir, shards), dtype, RowMatrix(rows.topRows(filled)),
                      with_labels ? std::span<const std::int64_t>(labels.data(), static_cast<std::size_t>(filled))
                                  : std::span<const std::int64_t>());
    ++shards;
    total += filled;
    filled = 0;
  }
};


// ---------------------------------------------------------------------------------------
// `mpirun -n P latent import dense --format csv`: plain CSV inputs read in parallel. The
// inputs are one byte space (their concatenation, in the order given) cut into P equal
// ranges; a line belongs to the rank whose range holds its first byte (byte_stream.hpp),
// so each rank's rows are a contiguous run of the global rows. If a line of a file has an
// odd number of quotes (a quoted field holds a newline, so a line start may be inside a
// record), rank 0 moves that file's cuts to record starts (csv_record_starts). Shard s holds global rows
// [s·n, (s+1)·n): a rank writes the shards within its rows and a piece of a shared one,
// which the rank holding the shard's first row joins. The same bytes for any P.

struct DenseJob {
  imp::DenseFormat kind = imp::DenseFormat::kCsv;
  imp::DenseOptions options;
  std::vector<std::string> inputs;
  std::string output, labels_path;
  Index rows_per_shard = 1;
  io::DType dtype = io::DType::kFloat32;
  bool overwrite = false;
};

std::string dense_piece(const std::string& dir, Index shard, int rank) {
  return fmt::format("{}/.piece-{:05d}-{:05d}", dir, shard, rank);
}

void write_dense_piece(const std::string& path, const RowMatrix& rows, Index n, std::span<const std::int64_t> labels) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) throw_output("output " + path + ": cannot create");
  const std::int64_t head[2] = {n, static_cast<std::int64_t>(labels.size())};
  bool ok = std::fwrite(head, sizeof head, 1, f) == 1;
  if (n > 0) ok = ok && std::fwrite(rows.data(), sizeof(double) * static_cast<std::size_t>(n * rows.cols()), 1, f) == 1;
  if (!labels.empty()) ok = ok && std::fwrite(labels.data(), labels.size_bytes(), 1, f) == 1;
  ok = std::fclose(f) == 0 && ok;
  if (!ok) throw Error(ErrorKind::kIo, "output " + path + ": write failed (disk full?)");
}

// Appends a piece's rows at row `at` of `rows` (and its labels); returns its rows.
Index read_dense_piece(const std::string& path, RowMatrix& rows, Index at, std::vector<std::int64_t>& labels) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) throw Error(ErrorKind::kIo, "output " + path + ": a piece of a shard is missing");
  std::int64_t head[2] = {0, 0};
  bool ok = std::fread(head, sizeof head, 1, f) == 1 && at + head[0] <= rows.rows();
  if (ok && head[0] > 0)
    ok = std::fread(rows.data() + at * rows.cols(), sizeof(double) * static_cast<std::size_t>(head[0] * rows.cols()), 1, f) == 1;
  if (ok && head[1] > 0) {
    const std::size_t l = labels.size();
    labels.resize(l + static_cast<std::size_t>(head[1]));
    ok = std::fread(labels.data() + l, sizeof(std::int64_t) * static_cast<std::size_t>(head[1]), 1, f) == 1;
  }
  std::fclose(f);
  if (!ok) throw Error(ErrorKind::kIo, "output " + path + ": cannot read a piece of a shard");
  return head[0];
}

// CSV in plain files is cut by bytes; IDX, NPY and HDF5 (their headers declare the rows)
// by rows. Gzipped CSV is read by rank 0.
bool dense_splittable(const DenseJob& job, const comm::Communicator& comm) {
  if (comm.size() == 1) return false;
  if (job.kind != imp::DenseFormat::kCsv) return true;
  std::uint64_t size = 0;
  for (const auto& in : job.inputs)
    if (!imp::splittable_file(in, size)) return false;
  return true;
}

void import_dense_parallel(const DenseJob& job, const Context& ctx, Index& total, Index& shards, Index& d) {
  const comm::Communicator& comm = ctx.comm;
  const auto F = job.inputs.size();
  const int P = comm.size(), me = comm.rank();
  std::string tmp;
  struct Cleanup {
    std::string path;
    bool keep = false;
    ~Cleanup() {
      if (!keep && !path.empty()) {
        std::error_code ec;
        fs::remove_all(path, ec);
      }
    }
  } cleanup;
  comm::run_agreed(comm, [&] {
    if (!comm.is_root()) return;
    if (fs::exists(job.output) && !job.overwrite)
      throw_output("output " + job.output + ": already exists (pass --overwrite to replace it)");
    io::sweep_stale_temporaries(fs::absolute(job.output).parent_path().string());
    tmp = job.output + io::temp_suffix();
    fs::create_directories(tmp);
    cleanup.path = tmp;
  });
  comm.broadcast(tmp, 0);

  std::vector<imp::CsvLayout> layout(F);
  std::vector<imp::ByteRange> range(F);
  std::vector<std::unique_ptr<imp::DenseReader>> binary(F);
  std::function<std::unique_ptr<imp::DenseReader>(std::size_t)> open_part;
  Index chunk_rows = 1, local = 0;
  d = -1;
  const auto check_shard_memory = [&] {
    const double shard_bytes = 8.0 * static_cast<double>(job.rows_per_shard) * static_cast<double>(d);
    if (shard_bytes > (double{8} * (Index{1} << 30)))
      throw_usage(fmt::format("--rows-per-shard {} x {} features needs {:.1f} GiB of memory per shard; use fewer rows per shard",
                              job.rows_per_shard, d, shard_bytes / (1 << 30)));
  };
  if (job.kind != imp::DenseFormat::kCsv) {
    // Rows declared by the headers: rank r reads global rows [rN/P, (r+1)N/P).
    std::vector<Index> rows_in(F);
    comm::run_agreed(comm, [&] {
      for (std::size_t f = 0; f < F; ++f) {
        binary[f] = imp::open_dense_reader(job.kind, job.inputs[f], job.options);
        if (binary[f]->num_features() < 1)
          throw_input(fmt::format("input {}: has 0 columns; every sample needs at least one feature", job.inputs[f]));
        if (d >= 0 && binary[f]->num_features() != d)
          throw_input(fmt::format("input {}: has {} features but {} has {}", job.inputs[f], binary[f]->num_features(),
                                  job.inputs[0], d));
        d = binary[f]->num_features();
        rows_in[f] = binary[f]->num_rows();
      }
      check_shard_memory();
      Index n = 0;
      for (const Index k : rows_in) n += k;
      const Index lo = n / P * me + n % P * me / P, hi = n / P * (me + 1) + n % P * (me + 1) / P;
      Index at = 0;
      for (std::size_t f = 0; f < F; ++f) {
        const Index b = std::max(lo, at), e = std::min(hi, at + rows_in[f]);
        if (b < e) {
          binary[f]->select_rows(b - at, e - at);
          local += e - b;
        } else {
          binary[f].reset();
        }
        at += rows_in[f];
      }
    });
    open_part = [&](std::size_t f) { return std::move(binary[f]); };
    chunk_rows = std::max<Index>(1, std::min<Index>(4096, (Index{64} << 20) / (8 * d)));
  } else {
    // D and the header of every input (each rank reads their first lines), the byte space.
    std::vector<std::uint64_t> offset(F + 1, 0);
    comm::run_agreed(comm, [&] {
      for (std::size_t f = 0; f < F; ++f) {
        imp::CsvReader first(job.inputs[f], job.options);
        if (first.num_features() < 1)
          throw_input(fmt::format("input {}: has 0 columns; every sample needs at least one feature", job.inputs[f]));
        if (d >= 0 && first.num_features() != d)
          throw_input(fmt::format("input {}: has {} features but {} has {}", job.inputs[f], first.num_features(),
                                  job.inputs[0], d));
        d = first.num_features();
        layout[f] = first.layout();
        std::uint64_t size = 0;
        if (!imp::splittable_file(job.inputs[f], size)) throw_input("input " + job.inputs[f] + ": changed (not a plain file)");
        offset[f + 1] = offset[f] + size;
      }
      const double shard_bytes = 8.0 * static_cast<double>(job.rows_per_shard) * static_cast<double>(d);
      if (shard_bytes > (double{8} * (Index{1} << 30)))
        throw_usage(fmt::format("--rows-per-shard {} x {} features needs {:.1f} GiB of memory per shard; use fewer rows per shard",
                                job.rows_per_shard, d, shard_bytes / (1 << 30)));
    });
    // cut[f][q]: where rank q's part of file f begins (cut[f][P]: its size).
    const std::uint64_t S = offset[F], p = static_cast<std::uint64_t>(P);
    std::vector<std::vector<std::uint64_t>> cut(F, std::vector<std::uint64_t>(p + 1));
    for (std::size_t f = 0; f < F; ++f)
      for (std::uint64_t q = 0; q <= p; ++q)
        cut[f][q] = std::clamp(S / p * q + S % p * q / p, offset[f], offset[f + 1]) - offset[f];
    const auto set_ranges = [&] {
      for (std::size_t f = 0; f < F; ++f) {
        const std::uint64_t b = cut[f][static_cast<std::size_t>(me)], e = cut[f][static_cast<std::size_t>(me) + 1];
        range[f] = b < e ? imp::ByteRange{b, e, 0} : imp::ByteRange{0, 0, 0};
      }
    };
    set_ranges();
    // Lines of each rank's part of each file (error messages name the line of the file),
    // and whether a quoted field may hold a newline.
    std::vector<std::int64_t> lines(F, 0), odd(F, 0);
    comm::run_agreed(comm, [&] {
      for (std::size_t f = 0; f < F; ++f) odd[f] = imp::csv_odd_quote_lines(job.inputs[f], range[f], lines[f]) ? 1 : 0;
    });
    comm.allreduce_sum(std::span<std::int64_t>(odd));
    if (std::any_of(odd.begin(), odd.end(), [](std::int64_t o) { return o > 0; })) {
      // Rank 0 moves the cuts of those files to record starts; every rank recounts.
      std::vector<std::int64_t> moved;
      comm::run_agreed(comm, [&] {
        if (!comm.is_root()) return;
        for (std::size_t f = 0; f < F; ++f) {
          if (odd[f] == 0) continue;
          const std::vector<std::uint64_t> inner(cut[f].begin() + 1, cut[f].end() - 1);
          for (const std::uint64_t a : imp::csv_record_starts(job.inputs[f], inner)) moved.push_back(static_cast<std::int64_t>(a));
        }
      });
      const auto all = comm.allgatherv(std::span<const std::int64_t>(moved));  // rank 0's
      std::size_t at = 0;
      for (std::size_t f = 0; f < F; ++f)
        if (odd[f] > 0)
          for (std::uint64_t q = 1; q < p; ++q) cut[f][q] = static_cast<std::uint64_t>(all[at++]);
      set_ranges();
      comm::run_agreed(comm, [&] {
        for (std::size_t f = 0; f < F; ++f)
          if (odd[f] > 0) imp::csv_odd_quote_lines(job.inputs[f], range[f], lines[f]);
      });
    }
    const auto all_lines = comm.allgatherv(std::span<const std::int64_t>(lines));
    for (std::size_t f = 0; f < F; ++f)
      for (int q = 0; q < me; ++q) range[f].lines_before += all_lines[static_cast<std::size_t>(q) * F + f];
    open_part = [&](std::size_t f) -> std::unique_ptr<imp::DenseReader> {
      return std::make_unique<imp::CsvReader>(job.inputs[f], job.options, layout[f], range[f]);
    };
    chunk_rows = std::max<Index>(1, std::min<Index>(4096, (Index{64} << 20) / (8 * d)));
    comm::run_agreed(comm, [&] {
      RowMatrix chunk;
      for (std::size_t f = 0; f < F; ++f) {
        auto reader = open_part(f);
        Index n = 0;
        while ((n = reader->read(chunk, chunk_rows)) > 0) {
          stop_point();
          local += n;
        }
      }
    });
  }
  const std::int64_t mine = local;
  const auto rows_of = comm.allgatherv(std::span<const std::int64_t>(&mine, 1));
  Index first = 0;
  total = 0;
  for (int q = 0; q < P; ++q) {
    if (q < me) first += rows_of[static_cast<std::size_t>(q)];
    total += rows_of[static_cast<std::size_t>(q)];
  }
  if (total == 0) throw_input("input " + job.inputs[0] + ": has no rows");  // the same on every rank
  const Index n_shards = (total + job.rows_per_shard - 1) / job.rows_per_shard;
  shards = n_shards;

  // Pass 2: the rows, into shards and pieces.
  const bool with_labels = !job.labels_path.empty() || !job.options.label_column.empty();
  RowMatrix rows;
  std::vector<std::int64_t> labels;
  Index shard = -1, filled = 0;
  const auto flush = [&] {
    if (filled == 0) return;
    const Index begin = shard * job.rows_per_shard, end = std::min(total, begin + job.rows_per_shard);
    const std::span<const std::int64_t> l(labels.data(), with_labels ? static_cast<std::size_t>(filled) : 0);
    if (begin >= first && end <= first + local)
      write_dense_shard(fmt::format("{}/part-{:05d}.h5", tmp, shard), job.dtype, RowMatrix(rows.topRows(filled)), l);
    else
      write_dense_piece(dense_piece(tmp, shard, me), rows, filled, l);
    filled = 0;
  };
  comm::run_agreed(comm, [&] {
    std::unique_ptr<imp::LabelReader> label_reader;
    if (!job.labels_path.empty()) {
      label_reader = std::make_unique<imp::LabelReader>(job.labels_path);
      for (Index i = 0; i < first; ++i) label_reader->next(i);
    }
    rows.resize(job.rows_per_shard, d);
    labels.resize(static_cast<std::size_t>(job.rows_per_shard));
    Progress progress(ctx.err, comm.is_root() && stderr_is_tty(), "import", local);
    RowMatrix chunk;
    Index row = first;
    for (std::size_t f = 0; f < F; ++f) {
      auto reader = open_part(f);
      if (!reader) continue;
      Index n = 0;
      while ((n = reader->read(chunk, chunk_rows)) > 0) {
        stop_point();  // SIGTERM/SIGUSR1: exit 75, the temporary directory removed
        for (Index i = 0; i < n; ++i, ++row) {
          for (Index j = 0; j < d; ++j)
            if (std::isinf(chunk(i, j)))
              throw_input(fmt::format("input {}: row {} of the dataset, column {} is infinite", job.inputs[f], row, j));
          if (row / job.rows_per_shard != shard) {
            flush();
            shard = row / job.rows_per_shard;
          }
          rows.row(filled) = chunk.row(i);
          if (label_reader) labels[static_cast<std::size_t>(filled)] = label_reader->next(row);
          if (reader->row_labels()) labels[static_cast<std::size_t>(filled)] = (*reader->row_labels())[static_cast<std::size_t>(i)];
          ++filled;
        }
        progress.update(row - first);
      }
    }
    if (row != first + local) throw_input("input changed while being imported (a different number of rows)");
    flush();
    progress.finish();
  });
  // Join the shard this rank starts and another ends.
  comm::run_agreed(comm, [&] {
    if (local == 0) return;
    const Index s = (first + local - 1) / job.rows_per_shard;
    const Index begin = s * job.rows_per_shard, end = std::min(total, begin + job.rows_per_shard);
    if (begin < first || end <= first + local) return;
    RowMatrix joined(end - begin, d);
    std::vector<std::int64_t> joined_labels;
    std::vector<std::string> pieces;
    Index at = 0, f0 = first;
    for (int q = me; q < P; ++q) {
      const Index n = rows_of[static_cast<std::size_t>(q)];
      if (n > 0 && f0 < end) {
        pieces.push_back(dense_piece(tmp, s, q));
        at += read_dense_piece(pieces.back(), joined, at, joined_labels);
      }
      f0 += n;
    }
    if (at != end - begin)
      throw Error(ErrorKind::kInternal, fmt::format("shard {} joined from pieces has {} rows, not {}", s, at, end - begin));
    write_dense_shard(fmt::format("{}/part-{:05d}.h5", tmp, s), job.dtype, joined, joined_labels);
    for (const auto& piece : pieces) fs::remove(piece);
  });
  comm::run_agreed(comm, [&] {
    if (!comm.is_root()) return;
    if (fs::exists(job.output)) {
      const std::string old = job.output + ".old-" + std::to_string(::getpid());
      fs::rename(job.output, old);
      fs::rename(tmp, job.output);
      fs::remove_all(old);
    } else {
      fs::rename(tmp, job.output);
    }
    cleanup.keep = true;
  });
}

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
  std::string format, output, labels_path, dataset, delimiter, header, dtype, scale_text, usecols, index_col, label_column;
  std::vector<std::string> inputs;
  Index rows_per_shard = 0;
  bool overwrite = false;
  po::options_description desc("latent import dense options");
  desc.add_options()
      ("format", po::value(&format)->required(), "idx (MNIST, .gz or plain) | csv | npy | hdf5")
      ("input", po::value(&inputs)->multitoken()->required(),
       "input file(s); rows are concatenated in the order given; - is standard input (CSV; read by rank 0)")
      ("output", po::value(&output)->required(), "directory of HDF5 shards to create (must not exist)")
      ("labels", po::value(&labels_path)->default_value(""), "labels: IDX1, NPY or text (one integer per line)")
      ("rows-per-shard", po::value(&rows_per_shard)->default_value(16384), "rows per shard file (memory: one shard)")
      ("dataset", po::value(&dataset)->default_value(""), "dataset name inside the input (--format hdf5)")
      ("delimiter", po::value(&delimiter)->default_value(","), "CSV field delimiter: one character; \\t or a tab for tabs")
      ("header", po::value(&header)->default_value("auto"), "CSV header line: auto | yes | no")
      ("usecols", po::value(&usecols)->default_value(""),
       "CSV columns to read, comma-separated: header names or 0-based positions (default: all)")
      ("index-col", po::value(&index_col)->default_value(""), "CSV column of row names, dropped: a name or 0-based position")
      ("label-column", po::value(&label_column)->default_value(""),
       "CSV column of integer labels, stored as /labels: a name or 0-based position")
      ("dtype", po::value(&dtype)->default_value("float32"), "stored precision: float32 | float64")
      ("scale", po::value(&scale_text)->default_value("auto"),
       "multiply values by this factor (auto: 1/255 for unsigned-byte IDX, else 1)")
      ("overwrite", po::bool_switch(&overwrite), "replace an existing output directory once the import succeeded");
  add_chunk_option(desc, 1024);  // --format hdf5: a big chunk is read once, in order
  po::variables_map vm;
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (!parse(rest, desc, vm, ctx, "latent import dense --format FMT --input FILE... --output DIR [options]")) return 0;
  // "train/" names the directory train: its temporary and its previous version go beside
  // it, not inside it.
  while (output.size() > 1 && output.back() == '/') output.pop_back();
  if (rows_per_shard < 1) throw_usage("--rows-per-shard must be at least 1");
  if (delimiter == "\\t") delimiter = "\t";
  if (delimiter.size() != 1) throw_usage("--delimiter must be one character (\\t for a tab)");
  if (delimiter == "\"" || delimiter == "\n" || delimiter == "\r")
    throw_usage("--delimiter cannot be a quote or a line end");
  std::vector<std::string> columns;
  for (std::size_t at = 0; !usecols.empty() && at <= usecols.size();) {
    const std::size_t comma = std::min(usecols.find(',', at), usecols.size());
    columns.push_back(usecols.substr(at, comma - at));
    if (columns.back().empty()) throw_usage("--usecols: an empty column name (give names or positions separated by commas)");
    at = comma + 1;
  }
  if (format != "csv" && !(usecols.empty() && index_col.empty() && label_column.empty()))
    throw_usage("--usecols, --index-col and --label-column are for --format csv");
  if (!label_column.empty() && !labels_path.empty()) throw_usage("--labels and --label-column: give one source of labels");
  if (header != "auto" && header != "yes" && header != "no") throw_usage("--header must be auto, yes or no");
  if (dtype != "float32" && dtype != "float64") throw_usage("--dtype must be float32 or float64");
  double scale = std::nan("");
  if (scale_text != "auto") {
    try { scale = std::stod(scale_text); } catch (const std::exception&) { throw_usage("--scale must be a number or auto"); }
  }
  Index total = 0, shards = 0, d = 0;
  DenseJob job;
  job.inputs = inputs;
  job.output = output;
  job.labels_path = labels_path;
  job.rows_per_shard = rows_per_shard;
  job.dtype = dtype == "float32" ? io::DType::kFloat32 : io::DType::kFloat64;
  job.overwrite = overwrite;
  job.options.dataset = dataset;
  job.options.delimiter = delimiter[0];
  job.options.header = header == "yes" ? imp::CsvHeader::kYes : header == "no" ? imp::CsvHeader::kNo : imp::CsvHeader::kAuto;
  job.options.scale = scale;
  job.options.usecols = columns;
  job.options.index_col = index_col;
  job.options.label_column = label_column;
  const auto parallel_kind = dense_format(format);
  if (parallel_kind) job.kind = *parallel_kind;
  if (parallel_kind && dense_splittable(job, ctx.comm)) {
    import_dense_parallel(job, ctx, total, shards, d);
    ctx.log.info(fmt::format("imported {} rows x {} features into {} shard(s) in {}", total, d, shards, output));
    return 0;
  }
  comm::run_agreed(ctx.comm, [&] {
    if (!ctx.comm.is_root()) return;
    if (fs::exists(output) && !overwrite) throw_output("output " + output + ": already exists (pass --overwrite to replace it)");
    io::sweep_stale_temporaries(fs::absolute(output).parent_path().string());
    const std::string tmp = output + io::temp_suffix();
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
    std::unique_ptr<imp::LabelReader> labels;
    if (!labels_path.empty()) labels = std::make_unique<imp::LabelReader>(labels_path);
    w.with_labels = labels != nullptr || !label_column.empty();
    Index known_total = 0;
    const imp::DenseOptions& options = job.options;
    std::vector<std::unique_ptr<imp::DenseReader>> readers;
    for (const auto& in : inputs) {
      const auto kind = dense_format(format);
      if (!kind) throw_usage("unknown --format '" + format + "' (choose idx, csv, npy or hdf5)");
      readers.push_back(imp::open_dense_reader(*kind, in, options));
      if (readers.back()->num_features() < 1)  // the readers refuse it; a row needs a feature
        throw_input(fmt::format("input {}: has 0 columns; every sample needs at least one feature", in));
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
        stop_point();  // SIGTERM/SIGUSR1: exit 75, the temporary directory removed
        const Index n = reader->read(chunk, std::min<Index>(chunk_rows, rows_per_shard - w.filled));
        if (n == 0) break;
        for (Index i = 0; i < n; ++i) {
          const Index row = w.total + w.filled;
          for (Index j = 0; j < w.d; ++j)
            if (std::isinf(chunk(i, j)))
              throw_input(fmt::format("input {}: row {} of the dataset, column {} is infinite", inputs[input], row, j));
          w.rows.row(w.filled) = chunk.row(i);
          if (labels) w.labels[static_cast<std::size_t>(w.filled)] = labels->next(row);
          if (reader->row_labels()) w.labels[static_cast<std::size_t>(w.filled)] = (*reader->row_labels())[static_cast<std::size_t>(i)];
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
