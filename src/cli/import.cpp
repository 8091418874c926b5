// `latent import dense`: IDX (MNIST, gzipped or not), CSV, NPY and HDF5 into a directory of
// HDF5 shards. The formats are read by the library (include/latent/io/import/); this file
// parses the options and writes the shards. Streaming: at most one shard of rows is held
// in memory; the output is written to a temporary directory and renamed into place only
// when everything succeeded.
#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <optional>

#include "common.hpp"
#include "latent/core/control.hpp"
#include "latent/core/error.hpp"
#include "latent/io/h5_file.hpp"
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
  add_chunk_option(desc, 1024);  // --format hdf5: a big chunk is read once, in order
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
    w.with_labels = labels != nullptr;
    Index known_total = 0;
    imp::DenseOptions options;
    options.dataset = dataset;
    options.delimiter = delimiter[0];
    options.header = header == "yes" ? imp::CsvHeader::kYes : header == "no" ? imp::CsvHeader::kNo : imp::CsvHeader::kAuto;
    options.scale = scale;
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
