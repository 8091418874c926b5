// latent._core: the engine in a Python process (docs/PYTHON.md). The estimators of the
// Python package `latent` (python/latent/) call these functions; users need not.
//
// A fit runs the registry's own fit function (ModelSpec::fit, the code `latent fit MODEL`
// runs) with a FitRun implemented here: the data are a NumPy array or CSR arrays held in
// memory (io::MemoryRows / io::MemoryCsr: read by the same BlockSource/CountsSource, cut
// into the same blocks and validated the same way as shard files), or a shard directory
// streamed from disk exactly as by the command line. The process is one rank
// (comm::Communicator::single_process(): no MPI call is made); the E-steps run on oneTBB
// threads; the GIL is released while the engine computes. The model file the fit writes
// is the file `latent fit` writes (same datasets and attributes; only `data`, `config`'s
// data entry and /history/seconds can differ).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <exception>
#include <future>
#include <cstdint>
#include <iostream>
#include <mutex>
#include <streambuf>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "latent/comm/communicator.hpp"
#include "latent/core/error.hpp"
#include "latent/core/log.hpp"
#include "latent/core/stop_request.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/io/block_source.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/io/dense_dataset.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/models/fitted_model.hpp"
#include "latent/models/lda/lda_apply.hpp"
#include "latent/models/lda/lda_fit.hpp"
#include "latent/models/mixture/discrete_apply.hpp"
#include "latent/models/vae/vae_apply.hpp"
#include "latent/models/vae/vae_fit.hpp"
#include "latent/models/registry.hpp"
#include "latent/train/checkpoint.hpp"
#include "latent/train/data_summary.hpp"
#include "latent/train/fit_run.hpp"
#include "latent/train/memory.hpp"

namespace py = pybind11;
using namespace latent;

namespace {

using DenseArray = py::array_t<double, py::array::c_style | py::array::forcecast>;
using IndexArray = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;

int resolve_threads(int requested) {
  if (requested > 0) return requested;
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// Collects the engine's log lines (written on the fit's thread) for the Python thread to
// print with sys.stderr, so that notebooks show them.
class LineBuffer final : public std::streambuf {
 public:
  std::string take() {
    std::lock_guard lock(mutex_);
    const auto end = text_.rfind('\n');
    if (end == std::string::npos) return {};
    std::string out = text_.substr(0, end + 1);
    text_.erase(0, end + 1);
    return out;
  }

 protected:
  int_type overflow(int_type c) override {
    if (c != traits_type::eof()) {
      std::lock_guard lock(mutex_);
      text_.push_back(static_cast<char>(c));
    }
    return c;
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    std::lock_guard lock(mutex_);
    text_.append(s, static_cast<std::size_t>(n));
    return n;
  }

 private:
  std::mutex mutex_;
  std::string text_;
};

void print_lines(LineBuffer& lines) {
  const std::string text = lines.take();
  if (!text.empty()) py::module_::import("sys").attr("stderr").attr("write")(text);
}

// The data of a fit: exactly one of a shard directory, dense rows or CSR documents.
struct FitData {
  std::string directory;
  std::optional<io::DenseDatasetInfo> dense;
  std::optional<io::CountsDatasetInfo> counts;
  std::vector<std::string> vocabulary;  // for counts in memory (empty: w0, w1, ...)
};

// The FitRun of the Python module: the services of the command line's (src/cli/fit.cpp)
// for one process, without output locks, checkpoints or the iteration log file.
class PyFitRun final : public train::FitRun {
 public:
  PyFitRun(const models::ModelSpec& spec, models::OptionValues values, train::FitCommon common, FitData data,
           std::ostream* log, bool verbose)
      : spec_(spec), values_(std::move(values)), c_(std::move(common)), data_(std::move(data)), log_(log, verbose) {}

  const comm::Communicator& comm() const override { return comm_; }
  const Logger& log() const override { return log_; }
  const models::OptionValues& options() const override { return values_; }
  train::FitCommon& common() override { return c_; }

  std::unique_ptr<io::BlockSource> open_dense(train::DataSummary& summary, bool allow_missing,
                                              bool float32_blocks = false) override {
    const io::DenseDatasetInfo info = open_dense_info();
    if (c_.block_rows < 1) throw Error(ErrorKind::kUsage, "block_rows must be at least 1");
    io::BlockSourceOptions bo;
    bo.prefetch_blocks = c_.prefetch;
    // Rows in memory are not cached a second time; a directory is cached as by --cache-mb.
    bo.cache_bytes = info.memory ? 0 : static_cast<std::size_t>(std::max<Index>(0, c_.cache_mb)) << 20;
    bo.allow_nan = allow_missing;
    bo.float32 = float32_blocks;
    auto source = std::make_unique<io::BlockSource>(info, io::rank_blocks(io::make_block_plan(info, c_.block_rows), 0, 1), bo);
    const double local_bytes = static_cast<double>(info.num_rows * info.num_features) * 8.0;
    const std::size_t cache_bytes =
        static_cast<double>(bo.cache_bytes) >= local_bytes ? static_cast<std::size_t>(local_bytes) : 0;
    c_.row_state_bytes = train::check_fit_memory(spec_, values_, c_, info.num_features, info.num_features,
                                                 source->num_local_rows(), cache_bytes, available_memory_bytes());
    summary = train::summarize(comm_, *source, c_.threads);
    return source;
  }

  io::CountsDatasetInfo open_counts(std::vector<std::string>& vocabulary) override {
    c_.threads = resolve_threads(c_.threads);
    io::CountsDatasetInfo info;
    if (data_.counts) {
      info = *data_.counts;
      vocabulary = data_.vocabulary;
      if (vocabulary.empty())
        for (Index v = 0; v < info.vocab_size; ++v) vocabulary.push_back("w" + std::to_string(v));
      if (static_cast<Index>(vocabulary.size()) != info.vocab_size)
        throw Error(ErrorKind::kUsage, "vocabulary has " + std::to_string(vocabulary.size()) +
                                           " words but the documents have " + std::to_string(info.vocab_size) +
                                           " columns");
    } else {
      if (data_.directory.empty()) throw Error(ErrorKind::kUsage, "model " + spec_.name + " needs count data");
      info = io::open_counts_dataset(data_.directory);
      vocabulary = io::read_vocabulary(info);
    }
    train::check_fit_memory(spec_, values_, c_, 1, info.vocab_size, 0, 0, available_memory_bytes());
    return info;
  }

  io::DenseDatasetInfo open_dense_info() override {
    c_.threads = resolve_threads(c_.threads);
    if (data_.dense) return *data_.dense;
    if (data_.directory.empty()) throw Error(ErrorKind::kUsage, "model " + spec_.name + " needs dense data");
    return io::open_dense_dataset(data_.directory);
  }

  double available_memory_bytes() const override { return train::available_memory_bytes(c_.memory_budget_gib, 1); }

  std::unique_ptr<io::CountsSource> counts_source(const io::CountsDatasetInfo& info) override {
    if (c_.block_rows < 1) throw Error(ErrorKind::kUsage, "block_rows must be at least 1");
    return std::make_unique<io::CountsSource>(
        info, io::rank_blocks(io::make_block_plan(info.shard_rows(), c_.block_rows), 0, 1),
        io::CountsSourceOptions{c_.prefetch, static_cast<std::size_t>(std::max<Index>(0, c_.cache_mb)) * 1048576, false});
  }

  train::FitControl* control(nlohmann::json, const std::string&) override {
    control_ = std::make_unique<train::FitControl>(comm_, nullptr, log_);
    return control_.get();
  }

  train::IterationObserver observer() override {
    return [this](const train::IterationRecord& r) {
      history_.push_back(r);
      if (log_.active())
        log_.info("iter " + std::to_string(r.iteration) + "  objective " + std::to_string(r.objective) + " " +
                  spec_.objective_unit + "  change " + std::to_string(r.change));
    };
  }
  void done(const train::EmResult& result, double seconds) override {
    result_ = result;
    seconds_ = seconds;
  }
  void save(const std::function<void()>& write) override { write(); }

  const train::EmResult& result() const { return result_; }
  double seconds() const { return seconds_; }

 private:
  const models::ModelSpec& spec_;
  models::OptionValues values_;
  train::FitCommon c_;
  FitData data_;
  comm::Communicator comm_ = comm::Communicator::single_process();
  Logger log_;
  std::unique_ptr<train::FitControl> control_;
  std::vector<train::IterationRecord> history_;
  train::EmResult result_;
  double seconds_ = 0;
};

const models::ModelSpec& spec_of(const std::string& name) {
  const models::ModelSpec* spec = models::find_model(name);
  if (!spec) throw Error(ErrorKind::kUsage, "unknown model '" + name + "'; available: " + models::model_names());
  return *spec;
}

// The spec's options from a dict {flag: value} (flags as on the command line, values of
// the option's type); the rest take their defaults, as the command line does.
models::OptionValues option_values(const models::ModelSpec& spec, const py::dict& given) {
  for (const auto& item : given) {
    const std::string flag = py::str(item.first);
    if (!spec.find_option(flag))
      throw Error(ErrorKind::kUsage, "model " + spec.name + " has no option --" + flag);
  }
  models::OptionValues out;
  for (const models::OptionSpec& o : spec.options) {
    const bool is_given = given.contains(o.flag.c_str());
    const py::object v = is_given ? given[o.flag.c_str()] : py::object(py::none());
    if (is_given && v.is_none()) continue;
    switch (o.type) {
      case models::OptionType::kFlag:
        out.set(o.flag, is_given ? v.cast<bool>() : false, is_given && v.cast<bool>());
        break;
      case models::OptionType::kInt:
        if (is_given) out.set(o.flag, v.cast<std::int64_t>(), true);
        else if (!o.default_value.empty()) out.set(o.flag, static_cast<std::int64_t>(std::stoll(o.default_value)), false);
        break;
      case models::OptionType::kReal:
        if (is_given) out.set(o.flag, v.cast<double>(), true);
        else if (!o.default_value.empty()) out.set(o.flag, std::stod(o.default_value), false);
        break;
      case models::OptionType::kText:
        if (is_given) out.set(o.flag, v.cast<std::string>(), true);
        else out.set(o.flag, o.default_value, false);
        break;
    }
  }
  models::validate_options(spec, out);
  return out;
}

// fit(model, options, data, output, ...) -> dict: runs ModelSpec::fit and writes `output`.
py::dict fit(const std::string& model, const py::dict& options, const py::object& data, const std::string& output,
             std::uint64_t seed, int threads, Index block_rows, int prefetch, Index cache_mb, double memory_budget_gib,
             const std::vector<std::string>& vocabulary, bool verbose) {
  const models::ModelSpec& spec = spec_of(model);
  const models::OptionValues values = option_values(spec, options);
  train::FitCommon c;
  c.output = output;
  c.overwrite = true;
  c.seed = seed;
  c.threads = threads;
  c.block_rows = block_rows;
  c.prefetch = prefetch;
  c.cache_mb = cache_mb;
  c.memory_budget_gib = memory_budget_gib;
  FitData d;
  // Arrays converted here (with the GIL) stay alive until the fit returns.
  DenseArray rows;
  IndexArray indptr, indices;
  DenseArray counts;
  if (py::isinstance<py::str>(data)) {
    d.directory = data.cast<std::string>();
    c.data = d.directory;
  } else if (py::isinstance<py::tuple>(data)) {  // (indptr, indices, counts, n_features): CSR
    const auto t = data.cast<py::tuple>();
    if (t.size() != 4) throw Error(ErrorKind::kUsage, "CSR data must be (indptr, indices, data, n_features)");
    indptr = t[0].cast<IndexArray>();
    indices = t[1].cast<IndexArray>();
    counts = t[2].cast<DenseArray>();
    const Index n = static_cast<Index>(indptr.size()) - 1;
    if (n < 0 || indptr.ndim() != 1 || indices.ndim() != 1 || counts.ndim() != 1 || indices.size() != counts.size())
      throw Error(ErrorKind::kInput, "data: CSR arrays of inconsistent shapes");
    if (indptr.at(n) != static_cast<std::int64_t>(indices.size()))
      throw Error(ErrorKind::kInput, "data: indptr ends at " + std::to_string(indptr.at(n)) + " but there are " +
                                         std::to_string(indices.size()) + " entries");
    auto csr = std::make_shared<io::MemoryCsr>();
    csr->indptr = indptr.data();
    csr->indices = indices.data();
    csr->counts = counts.data();
    d.counts = io::memory_counts_dataset(csr, n, t[3].cast<Index>(), "<memory>");
    d.vocabulary = vocabulary;
    c.data = "<memory>";
  } else {
    rows = data.cast<DenseArray>();
    if (rows.ndim() != 2) throw Error(ErrorKind::kInput, "data: expected a 2-D array (n_samples, n_features)");
    auto mem = std::make_shared<io::MemoryRows>();
    mem->data = rows.data();
    d.dense = io::memory_dense_dataset(mem, rows.shape(0), rows.shape(1), "<memory>");
    c.data = "<memory>";
  }
  if ((d.dense || d.counts) && (d.dense ? spec.data != models::DataKind::kDense : spec.data != models::DataKind::kCounts))
    throw Error(ErrorKind::kUsage, "model " + model + " takes " + std::string(models::data_kind_name(spec.data)) + " data");
  LineBuffer lines;
  std::ostream log_stream(&lines);
  PyFitRun run(spec, values, c, std::move(d), &log_stream, verbose);
  // The fit runs on its own thread; this thread waits with the GIL released and checks
  // Python's signals every 100 ms. Ctrl-C (KeyboardInterrupt) requests a stop: the fit
  // ends at its next iteration boundary (Error kRequeue, as on SIGTERM), and the
  // KeyboardInterrupt is raised once it has returned.
  clear_stop();
  std::future<int> done = std::async(std::launch::async, [&] { return spec.fit(run); });
  bool interrupted = false;
  PyObject *type = nullptr, *value = nullptr, *trace = nullptr;
  {
    py::gil_scoped_release release;
    while (done.wait_for(std::chrono::milliseconds(100)) != std::future_status::ready) {
      py::gil_scoped_acquire acquire;
      if (verbose) print_lines(lines);
      if (interrupted) continue;
      if (PyErr_CheckSignals() != 0) {
        interrupted = true;
        PyErr_Fetch(&type, &value, &trace);
        request_stop(SIGINT);
      }
    }
  }
  if (verbose && !interrupted) print_lines(lines);
  int code = 0;
  try {
    code = done.get();
  } catch (const Error& e) {
    clear_stop();
    if (!interrupted || e.kind() != ErrorKind::kRequeue) {
      if (interrupted) PyErr_Restore(type, value, trace), PyErr_Clear();
      throw;
    }
    PyErr_Restore(type, value, trace);
    throw py::error_already_set();
  } catch (...) {
    clear_stop();
    if (interrupted) PyErr_Restore(type, value, trace), PyErr_Clear();  // drop the interrupt's references
    throw;
  }
  clear_stop();
  if (interrupted) {  // the fit finished before reaching another boundary: raise all the same
    PyErr_Restore(type, value, trace);
    throw py::error_already_set();
  }
  py::dict out;
  out["exit_code"] = code;
  out["n_iter"] = run.result().n_iter;
  out["converged"] = run.result().converged;
  out["objective"] = run.result().objective;
  out["seconds"] = run.seconds();
  return out;
}

// The spec's options as a list of dicts (for the estimators' parameter tables and tests).
py::list model_options(const std::string& model) {
  py::list out;
  for (const models::OptionSpec& o : spec_of(model).options) {
    py::dict d;
    d["flag"] = o.flag;
    d["default"] = o.default_value;
    d["alias_of"] = o.alias_of;
    d["help"] = o.help;
    out.append(d);
  }
  return out;
}

// Every dataset named in `names` (any rank) as a float64 array of its shape; root attributes
// as str/float/int.
py::dict read_datasets(const std::string& path, const std::vector<std::string>& names) {
  io::H5Reader f(path);
  py::dict out;
  for (const std::string& name : names) {
    if (!f.has(name)) continue;
    const std::vector<Index> shape = f.shape(name);
    std::vector<double> v = f.read_doubles(name);
    py::array_t<double> a(std::vector<py::ssize_t>(shape.begin(), shape.end()));
    std::copy(v.begin(), v.end(), a.mutable_data());
    out[py::str(name)] = a;
  }
  return out;
}

py::dict read_attributes(const std::string& path, const std::vector<std::string>& text,
                         const std::vector<std::string>& reals, const std::vector<std::string>& ints) {
  io::H5Reader f(path);
  py::dict out;
  for (const auto& n : text)
    if (f.has_attr("/", n)) out[py::str(n)] = f.attr_string("/", n);
  for (const auto& n : reals)
    if (f.has_attr("/", n)) out[py::str(n)] = f.attr_double("/", n);
  for (const auto& n : ints)
    if (f.has_attr("/", n)) out[py::str(n)] = f.attr_int("/", n);
  return out;
}

std::vector<std::string> read_strings(const std::string& path, const std::string& name) {
  io::H5Reader f(path);
  if (!f.has(name)) return {};
  return f.read_strings(name);
}

// Runs fn(begin, count) over row blocks of `block_rows` on `threads` threads. Each row's
// result depends only on its block, so the output equals the command line's for the same
// --block-rows.
template <class Fn>
void for_blocks(Index n, Index block_rows, int threads, Fn&& fn) {
  if (block_rows < 1) throw Error(ErrorKind::kUsage, "block_rows must be at least 1");
  const Index blocks = (n + block_rows - 1) / block_rows;
  tbb::task_arena arena(resolve_threads(threads));
  arena.execute([&] {
    tbb::parallel_for(Index{0}, blocks, [&](Index b) {
      const Index begin = b * block_rows;
      fn(begin, std::min(block_rows, n - begin));
    });
  });
}

// A fitted dense model (FittedModel, the generic tasks of score/predict/transform/sample).
class PyModel {
 public:
  explicit PyModel(const std::string& path) : model_(models::load_model(path)) {}

  std::string name() const { return model_->name(); }
  Index num_features() const { return model_->num_features(); }
  Index num_components() const { return model_->num_components(); }
  bool has_likelihood() const { return model_->has_likelihood(); }
  Index num_parameters() const { return model_->num_parameters(); }
  Index transform_dim() const { return model_->transform_dim(); }

  // (score (N), labels (N), proba (N × K) or None)
  py::tuple predict(const DenseArray& x, bool proba, int threads, Index block_rows) const {
    const Index n = check(x), d = model_->num_features(), k = model_->num_components();
    py::array_t<double> score(n);
    py::array_t<std::int64_t> labels(n);
    py::array_t<double> resp(proba ? std::vector<py::ssize_t>{n, k} : std::vector<py::ssize_t>{0, k});
    const double* xp = x.data();
    double* sp = score.mutable_data();
    std::int64_t* lp = labels.mutable_data();
    double* rp = resp.mutable_data();
    {
      py::gil_scoped_release release;
      for_blocks(n, block_rows, threads, [&](Index begin, Index count) {
        const RowMatrix block = Eigen::Map<const RowMatrix>(xp + begin * d, count, d);
        Vector s;
        std::vector<std::int64_t> l;
        RowMatrix r;
        model_->predict_block(block, s, l, proba ? &r : nullptr);
        std::copy(s.data(), s.data() + count, sp + begin);
        std::copy(l.begin(), l.end(), lp + begin);
        if (proba) std::copy(r.data(), r.data() + count * k, rp + begin * k);
      });
    }
    return py::make_tuple(score, labels, proba ? py::object(resp) : py::object(py::none()));
  }

  py::array_t<double> transform(const DenseArray& x, int threads, Index block_rows) const {
    const Index n = check(x), d = model_->num_features(), w = model_->transform_dim();
    py::array_t<double> out(std::vector<py::ssize_t>{n, w});
    const double* xp = x.data();
    double* op = out.mutable_data();
    {
      py::gil_scoped_release release;
      for_blocks(n, block_rows, threads, [&](Index begin, Index count) {
        const RowMatrix block = Eigen::Map<const RowMatrix>(xp + begin * d, count, d);
        RowMatrix r;
        model_->transform_block(block, r);
        std::copy(r.data(), r.data() + count * w, op + begin * w);
      });
    }
    return out;
  }

  py::tuple sample(Index count, std::uint64_t seed) const {
    std::vector<std::int64_t> labels;
    RowMatrix x;
    {
      py::gil_scoped_release release;
      x = model_->sample(0, count, seed, labels);
    }
    py::array_t<double> xs(std::vector<py::ssize_t>{x.rows(), x.cols()});
    std::copy(x.data(), x.data() + x.size(), xs.mutable_data());
    return py::make_tuple(xs, py::array_t<std::int64_t>(static_cast<py::ssize_t>(labels.size()), labels.data()));
  }

 private:
  Index check(const DenseArray& x) const {
    if (x.ndim() != 2 || x.shape(1) != model_->num_features())
      throw Error(ErrorKind::kInput, "X has " + std::to_string(x.ndim() == 2 ? x.shape(1) : -1) +
                                         " features, but the model was fitted with " +
                                         std::to_string(model_->num_features()));
    return x.shape(0);
  }
  std::unique_ptr<models::FittedModel> model_;
};

io::CountsDatasetInfo memory_counts(const IndexArray& indptr, const IndexArray& indices, const DenseArray& counts,
                                    Index vocab_size) {
  auto csr = std::make_shared<io::MemoryCsr>();
  csr->indptr = indptr.data();
  csr->indices = indices.data();
  csr->counts = counts.data();
  return io::memory_counts_dataset(csr, static_cast<Index>(indptr.size()) - 1, vocab_size, "<memory>");
}

// A fitted LDA model: topic proportions (`latent transform`) and the held-out scores
// (`latent score`) of documents in memory.
class PyLda {
 public:
  explicit PyLda(const std::string& path) : model_(models::load_lda(path)), exact_(model_) { model_.refresh(1); }
  Index num_topics() const { return model_.num_topics(); }
  Index vocab_size() const { return model_.vocab_size(); }

  // Topic proportions (N × K). exact: the double-precision E-step (LdaExactTransform);
  // otherwise the training kernel of `latent transform` (float32 exp(E[log β])), the same
  // bits as the command line at the same block_rows.
  py::array_t<double> transform(const IndexArray& indptr, const IndexArray& indices, const DenseArray& counts,
                                int max_doc_update_iter, double mean_change_tol, int threads, Index block_rows,
                                bool exact) const {
    const io::CountsDatasetInfo info = memory_counts(indptr, indices, counts, model_.vocab_size());
    const Index k = model_.num_topics();
    py::array_t<double> out(std::vector<py::ssize_t>{info.num_rows, k});
    double* op = out.mutable_data();
    {
      py::gil_scoped_release release;
      if (block_rows < 1) throw Error(ErrorKind::kUsage, "block_rows must be at least 1");
      const auto blocks = io::rank_blocks(io::make_block_plan(info.shard_rows(), block_rows), 0, 1);
      models::LdaEStepOptions e;
      e.max_doc_update_iter = max_doc_update_iter;
      e.mean_change_tol = mean_change_tol;
      if (!exact) {
        models::transform_lda(comm::Communicator::single_process(), info, blocks, model_, e, resolve_threads(threads),
                              4, [&](const io::BlockRef& b, const RowMatrix& theta) {
                                std::copy(theta.data(), theta.data() + theta.size(), op + b.global_row_begin * k);
                              });
      } else {
        io::CountsSource source(info, blocks, {});  // validates the CSR as a file's
        tbb::task_arena arena(resolve_threads(threads));
        source.start_pass();
        while (auto block = source.next()) {
          arena.execute([&] {
            tbb::parallel_for(Index{0}, block->num_rows(), [&](Index d) {
              const auto b = static_cast<std::size_t>(block->indptr[static_cast<std::size_t>(d)]);
              const auto n = static_cast<std::size_t>(block->indptr[static_cast<std::size_t>(d) + 1]) - b;
              const Vector theta = exact_.theta(std::span<const std::int32_t>(block->indices).subspan(b, n),
                                                std::span<const double>(block->counts).subspan(b, n), e);
              std::copy(theta.data(), theta.data() + k, op + (block->ref.global_row_begin + d) * k);
            });
          });
        }
      }
    }
    return out;
  }

  py::dict score(const IndexArray& indptr, const IndexArray& indices, const DenseArray& counts, int max_doc_update_iter,
                 double mean_change_tol, int threads, Index block_rows) const {
    const io::CountsDatasetInfo info = memory_counts(indptr, indices, counts, model_.vocab_size());
    models::LdaScore s;
    {
      py::gil_scoped_release release;
      models::LdaEStepOptions e;
      e.max_doc_update_iter = max_doc_update_iter;
      e.mean_change_tol = mean_change_tol;
      s = models::score_lda(comm::Communicator::single_process(), info, model_, e, resolve_threads(threads), block_rows);
    }
    py::dict out;
    out["bound"] = s.bound;
    out["num_tokens"] = s.num_tokens;
    out["num_documents"] = s.num_documents;
    out["bound_perplexity"] = s.bound_perplexity;
    out["doc_completion_perplexity"] = s.doc_completion_perplexity;
    return out;
  }

 private:
  models::Lda model_;
  models::LdaExactTransform exact_;
};

// A fitted multinomial mixture (mmm): the posterior pass of `latent score|predict|transform`
// on documents in memory.
class PyMmm {
 public:
  explicit PyMmm(const std::string& path) : model_(models::load_discrete(path)) {}
  Index num_components() const { return model_.num_components(); }
  Index vocab_size() const { return model_.num_features(); }
  Index num_parameters() const { return model_.num_parameters(); }

  // (responsibilities (N × K), log p(x_d) (N, nats, without the multinomial coefficient))
  py::tuple posterior(const IndexArray& indptr, const IndexArray& indices, const DenseArray& counts, int threads,
                      Index block_rows) const {
    const io::CountsDatasetInfo info = memory_counts(indptr, indices, counts, model_.num_features());
    const Index k = model_.num_components();
    py::array_t<double> resp(std::vector<py::ssize_t>{info.num_rows, k});
    py::array_t<double> logp(info.num_rows);
    double* rp = resp.mutable_data();
    double* lp = logp.mutable_data();
    {
      py::gil_scoped_release release;
      if (block_rows < 1) throw Error(ErrorKind::kUsage, "block_rows must be at least 1");
      io::CountsSource source(info, io::rank_blocks(io::make_block_plan(info.shard_rows(), block_rows), 0, 1), {});
      models::for_each_posterior(comm::Communicator::single_process(), source, model_, resolve_threads(threads),
                                 [&](const io::CsrBlock& b, const RowMatrix& r, const Vector& l) {
                                   const Index first = b.ref.global_row_begin;
                                   std::copy(r.data(), r.data() + r.size(), rp + first * k);
                                   std::copy(l.data(), l.data() + l.size(), lp + first);
                                 });
    }
    return py::make_tuple(resp, logp);
  }

 private:
  models::DiscreteMixture model_;
};

// A fitted VAE: the posterior of `latent transform`, the per-row ELBO/IWAE of `latent
// score --per-sample` and the prior draws of `latent sample`, on rows in memory.
class PyVae {
 public:
  explicit PyVae(const std::string& path) : model_(models::load_vae(path)) {}
  Index num_features() const { return model_.architecture().input_dim; }
  Index latent_dim() const { return model_.architecture().latent_dim; }

  io::DenseDatasetInfo info(const DenseArray& x) const {
    if (x.ndim() != 2 || x.shape(1) != num_features())
      throw Error(ErrorKind::kInput, "X has " + std::to_string(x.ndim() == 2 ? x.shape(1) : -1) +
                                         " features, but the model was fitted with " + std::to_string(num_features()));
    auto rows = std::make_shared<io::MemoryRows>();
    rows->data = x.data();
    return io::memory_dense_dataset(rows, x.shape(0), x.shape(1), "<memory>");
  }

  // (posterior mean (N × L), posterior log-variance (N × L))
  py::tuple transform(const DenseArray& x, int threads, Index block_rows) const {
    const io::DenseDatasetInfo in = info(x);
    const Index n = in.num_rows, l = latent_dim();
    py::array_t<double> mean(std::vector<py::ssize_t>{n, l}), log_var(std::vector<py::ssize_t>{n, l});
    double* mp = mean.mutable_data();
    double* vp = log_var.mutable_data();
    {
      py::gil_scoped_release release;
      if (block_rows < 1) throw Error(ErrorKind::kUsage, "block_rows must be at least 1");
      models::transform_vae_rows(comm::Communicator::single_process(), in,
                                 io::rank_blocks(io::make_block_plan(in, block_rows), 0, 1), model_, false,
                                 {resolve_threads(threads), 4},
                                 [&](Index row, const RowMatrix& m, const RowMatrix& v, const RowMatrix&) {
                                   std::copy(m.data(), m.data() + m.size(), mp + row * l);
                                   std::copy(v.data(), v.data() + v.size(), vp + row * l);
                                 });
    }
    return py::make_tuple(mean, log_var);
  }

  // (ELBO per row (N), IWAE estimate of log p(x) per row (N) or None when iw_samples = 0)
  py::tuple score(const DenseArray& x, int iw_samples, std::uint64_t seed, int threads, Index block_rows) const {
    const io::DenseDatasetInfo in = info(x);
    const Index n = in.num_rows;
    py::array_t<double> elbo(n), iwae(n);
    double* ep = elbo.mutable_data();
    double* ip = iwae.mutable_data();
    {
      py::gil_scoped_release release;
      if (block_rows < 1) throw Error(ErrorKind::kUsage, "block_rows must be at least 1");
      models::score_vae_rows(comm::Communicator::single_process(), in,
                             io::rank_blocks(io::make_block_plan(in, block_rows), 0, 1), model_, iw_samples, seed,
                             {resolve_threads(threads), 4}, [&](Index row, const RowMatrix& e, const RowMatrix& w) {
                               std::copy(e.data(), e.data() + e.rows(), ep + row);
                               if (iw_samples > 0) std::copy(w.data(), w.data() + w.rows(), ip + row);
                             });
    }
    return py::make_tuple(elbo, iw_samples > 0 ? py::object(iwae) : py::object(py::none()));
  }

  // (decoded means (n × D), latent draws (n × L))
  py::tuple sample(Index count, std::uint64_t seed) const {
    RowMatrix data, latent;
    {
      py::gil_scoped_release release;
      models::VaeWorkspace workspace;
      models::sample_vae_rows(model_, 0, count, seed, workspace, data, latent);
    }
    py::array_t<double> d(std::vector<py::ssize_t>{data.rows(), data.cols()});
    py::array_t<double> z(std::vector<py::ssize_t>{latent.rows(), latent.cols()});
    std::copy(data.data(), data.data() + data.size(), d.mutable_data());
    std::copy(latent.data(), latent.data() + latent.size(), z.mutable_data());
    return py::make_tuple(d, z);
  }

 private:
  models::Vae model_;
};

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "latent's engine in-process (docs/PYTHON.md); used by the estimators of the package latent";
  static py::exception<Error> latent_error(m, "LatentError", PyExc_RuntimeError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      switch (e.kind()) {
        case ErrorKind::kUsage:
        case ErrorKind::kInput: PyErr_SetString(PyExc_ValueError, e.what()); return;
        case ErrorKind::kNoInput: PyErr_SetString(PyExc_FileNotFoundError, e.what()); return;
        case ErrorKind::kOutput:
        case ErrorKind::kIo: PyErr_SetString(PyExc_OSError, e.what()); return;
        case ErrorKind::kNumerical: PyErr_SetString(PyExc_FloatingPointError, e.what()); return;
        default: latent_error(e.what()); return;
      }
    }
  });
  m.def("fit", &fit, py::arg("model"), py::arg("options"), py::arg("data"), py::arg("output"), py::arg("seed") = 0,
        py::arg("threads") = 0, py::arg("block_rows") = 2048, py::arg("prefetch") = 4, py::arg("cache_mb") = 0,
        py::arg("memory_budget_gib") = 0.0, py::arg("vocabulary") = std::vector<std::string>{},
        py::arg("verbose") = false,
        "Runs `latent fit MODEL` in this process on `data` (a shard directory, a float64 array (N, D), or CSR "
        "(indptr, indices, counts, n_features)); writes the model file `output`. Releases the GIL.");
  m.def("model_options", &model_options, py::arg("model"));
  m.def("model_names", [] {
    std::vector<std::string> out;
    for (const auto& s : models::registry()) out.push_back(s.name);
    return out;
  });
  m.def("read_datasets", &read_datasets, py::arg("path"), py::arg("names"));
  m.def("read_attributes", &read_attributes, py::arg("path"), py::arg("text") = std::vector<std::string>{},
        py::arg("reals") = std::vector<std::string>{}, py::arg("ints") = std::vector<std::string>{});
  m.def("read_strings", &read_strings, py::arg("path"), py::arg("name"));
  py::class_<PyModel>(m, "Model")
      .def(py::init<const std::string&>(), py::arg("path"))
      .def_property_readonly("name", &PyModel::name)
      .def_property_readonly("n_features", &PyModel::num_features)
      .def_property_readonly("n_components", &PyModel::num_components)
      .def_property_readonly("has_likelihood", &PyModel::has_likelihood)
      .def_property_readonly("n_parameters", &PyModel::num_parameters)
      .def_property_readonly("transform_dim", &PyModel::transform_dim)
      .def("predict", &PyModel::predict, py::arg("x"), py::arg("proba") = false, py::arg("threads") = 0,
           py::arg("block_rows") = 2048)
      .def("transform", &PyModel::transform, py::arg("x"), py::arg("threads") = 0, py::arg("block_rows") = 2048)
      .def("sample", &PyModel::sample, py::arg("n"), py::arg("seed") = 0);
  py::class_<PyMmm>(m, "Mmm")
      .def(py::init<const std::string&>(), py::arg("path"))
      .def_property_readonly("n_components", &PyMmm::num_components)
      .def_property_readonly("vocab_size", &PyMmm::vocab_size)
      .def_property_readonly("n_parameters", &PyMmm::num_parameters)
      .def("posterior", &PyMmm::posterior, py::arg("indptr"), py::arg("indices"), py::arg("counts"),
           py::arg("threads") = 0, py::arg("block_rows") = 2048);
  py::class_<PyVae>(m, "Vae")
      .def(py::init<const std::string&>(), py::arg("path"))
      .def_property_readonly("n_features", &PyVae::num_features)
      .def_property_readonly("latent_dim", &PyVae::latent_dim)
      .def("transform", &PyVae::transform, py::arg("x"), py::arg("threads") = 0, py::arg("block_rows") = 2048)
      .def("score", &PyVae::score, py::arg("x"), py::arg("iw_samples") = 0, py::arg("seed") = 0,
           py::arg("threads") = 0, py::arg("block_rows") = 2048)
      .def("sample", &PyVae::sample, py::arg("n"), py::arg("seed") = 0);
  py::class_<PyLda>(m, "Lda")
      .def(py::init<const std::string&>(), py::arg("path"))
      .def_property_readonly("n_topics", &PyLda::num_topics)
      .def_property_readonly("vocab_size", &PyLda::vocab_size)
      .def("transform", &PyLda::transform, py::arg("indptr"), py::arg("indices"), py::arg("counts"),
           py::arg("max_doc_update_iter") = 100, py::arg("mean_change_tol") = 1e-3, py::arg("threads") = 0,
           py::arg("block_rows") = 2048, py::arg("exact") = true)
      .def("score", &PyLda::score, py::arg("indptr"), py::arg("indices"), py::arg("counts"),
           py::arg("max_doc_update_iter") = 100, py::arg("mean_change_tol") = 1e-3, py::arg("threads") = 0,
           py::arg("block_rows") = 2048);
}
