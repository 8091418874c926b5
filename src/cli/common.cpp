#include "common.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <limits>

#include <fmt/format.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <filesystem>
#include <sstream>
#include <thread>

#include "latent/core/control.hpp"
#include "latent/core/error.hpp"
#include "latent/core/kernel.hpp"
#include "latent/core/profile.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/models/registry.hpp"

namespace latent::cli {

// Boost options for one model option. Values land in `raw` (by flag) and are typed into
// OptionValues after parsing.
std::string help_text(const models::OptionSpec& o) {
  std::string h = o.help;
  if (!o.unit.empty()) h += " [" + o.unit + "]";
  if (o.required) h += " (required)";
  return h;
}

void add_model_options(po::options_description& desc, const std::vector<models::OptionSpec>& options, RawValues& raw,
                       const std::vector<std::string>& as_text) {
  for (const models::OptionSpec& o : options) {
    if (std::find(as_text.begin(), as_text.end(), o.flag) != as_text.end()) {
      auto* v = po::value(&raw.texts[o.flag]);
      if (!o.default_value.empty()) v->default_value(o.default_value);
      desc.add_options()(o.flag.c_str(), v, help_text(o).c_str());
      continue;
    }
    const std::string help = help_text(o);
    const bool has_default = !o.default_value.empty() || o.type == models::OptionType::kText;
    switch (o.type) {
      case models::OptionType::kInt: {
        auto* v = po::value(&raw.ints[o.flag]);
        if (!o.default_value.empty()) v->default_value(std::stoll(o.default_value), o.default_value);
        desc.add_options()(o.flag.c_str(), v, help.c_str());
        break;
      }
      case models::OptionType::kReal: {
        auto* v = po::value(&raw.reals[o.flag]);
        if (!o.default_value.empty()) v->default_value(std::stod(o.default_value), o.default_value);
        desc.add_options()(o.flag.c_str(), v, help.c_str());
        break;
      }
      case models::OptionType::kText: {
        auto* v = po::value(&raw.texts[o.flag]);
        if (has_default) v->default_value(o.default_value, o.default_value.empty() ? "\"\"" : o.default_value);
        desc.add_options()(o.flag.c_str(), v, help.c_str());
        break;
      }
      case models::OptionType::kFlag:
        desc.add_options()(o.flag.c_str(), po::bool_switch(&raw.flags[o.flag]), help.c_str());
        break;
    }
  }
}

models::OptionValues typed_values(const std::vector<models::OptionSpec>& options, const RawValues& raw,
                                  const po::variables_map& vm, const std::vector<std::string>& as_text) {
  models::OptionValues out;
  for (const models::OptionSpec& o : options) {
    if (std::find(as_text.begin(), as_text.end(), o.flag) != as_text.end()) continue;
    const bool given = vm.count(o.flag) && !vm[o.flag].defaulted();
    if (o.type == models::OptionType::kFlag) {
      out.set(o.flag, raw.flags.at(o.flag), given && raw.flags.at(o.flag));
      continue;
    }
    if (!vm.count(o.flag)) continue;  // no default and not given
    switch (o.type) {
      case models::OptionType::kInt: out.set(o.flag, raw.ints.at(o.flag), given); break;
      case models::OptionType::kReal: out.set(o.flag, raw.reals.at(o.flag), given); break;
      default: out.set(o.flag, raw.texts.at(o.flag), given); break;
    }
  }
  return out;
}

std::string exit_status_text() {
  return "EXIT STATUS\n"
         "  0 success; 64 bad option or value; 65 bad input data; 66 input missing; 70 numerical failure;\n"
         "  73 output cannot be created or locked; 74 I/O error part-way (disk full); 75 stopped by SIGTERM/SIGUSR1\n"
         "  (fit: after a checkpoint, resubmit with --resume; other commands: nothing written); 124 watchdog\n"
         "  abort; 1 internal error (docs/FAULTS.md \"Exit codes\")\n";
}

namespace {

// EXAMPLES of the commands whose help is not generated from a spec, by command word.
std::string examples_of(const std::string& usage) {
  static const std::map<std::string, std::vector<std::string>> examples{
      {"score",
       {"latent score --model gmm.h5 --data test/", "latent score --model fa.h5 --data test/ --per-sample scores.h5"}},
      {"predict",
       {"latent predict --model gmm.h5 --data shards/ --output labels.h5 --proba",
        "latent predict --model fa.h5 --data shards/ --output flags.h5 --outlier-quantile 0.01"}},
      {"transform",
       {"latent transform --model lda.h5 --data corpus/ --output theta.h5",
        "latent transform --model fa.h5 --data shards/ --output factors.h5"}},
      {"sample", {"latent sample --model gmm.h5 --n-samples 100000 --output draws.h5 --seed 1"}},
      {"impute", {"latent impute --model fa.h5 --data with_nan/ --output filled.h5"}},
      {"info", {"latent info model.h5", "latent info shards/"}},
      {"import",
       {"latent import dense --format idx --input train-images-idx3-ubyte.gz --labels train-labels-idx1-ubyte.gz "
        "--output fashion/",
        "latent import counts --format uci --input docword.kos.txt.gz --output kos/"}},
      {"generate",
       {"mpirun -n 4 latent generate gmm --n-samples 10000000 --n-features 50 --n-components 20 --output synth/",
        "latent generate lda --n-samples 100000 --vocab-size 5000 --n-components 50 --output corpus/"}},
  };
  std::istringstream words(usage);
  std::string first, command;
  words >> first >> command;
  const auto it = examples.find(command);
  if (it == examples.end()) return "";
  std::string out = "EXAMPLES\n";
  for (const auto& e : it->second) out += "  " + e + "\n";
  return out + "\n";
}

}  // namespace

bool parse(const std::vector<std::string>& args, const po::options_description& desc, po::variables_map& vm,
           const Context& ctx, const std::string& usage, const po::positional_options_description* positional,
           const std::string& help_tail) {
  for (const auto& a : args)
    if (a == "--help" || a == "-h") {
      if (ctx.comm.is_root())
        ctx.out << "Usage: " << usage << "\n\n" << desc << "\n"
                << (help_tail.empty() ? examples_of(usage) + exit_status_text() : help_tail);
      return false;
    }
  try {
    po::command_line_parser parser(args);
    parser.options(desc);
    if (positional) parser.positional(*positional);
    po::store(parser.run(), vm);
    po::notify(vm);
  } catch (const po::unknown_option& e) {
    std::string name = e.get_option_name();
    while (!name.empty() && name[0] == '-') name.erase(0, 1);
    std::vector<std::string> known;
    for (const auto& o : desc.options()) known.push_back(o->long_name());
    const std::string near = models::nearest(name, known);
    throw_usage(std::string(e.what()) + (near.empty() ? "" : " (did you mean --" + near + "?)") + "\nUsage: " + usage +
                " (see --help)");
  } catch (const po::error& e) {
    throw_usage(std::string(e.what()) + "\nUsage: " + usage + " (see --help)");
  }
  return true;
}

void add_stream_options(po::options_description& desc, StreamOptions& o) {
  desc.add_options()
      ("threads", po::value(&o.threads)->default_value(0),
       "TBB threads per rank (0: SLURM_CPUS_PER_TASK, else cores on this node / ranks on this node)")
      ("block-rows", po::value(&o.block_rows)->default_value(2048),
       "rows per block: the unit of streaming, of parallel work and of reproducible summation (results depend on it)")
      ("prefetch", po::value(&o.prefetch)->default_value(4), "blocks read ahead by the I/O thread")
      ("cache-mb", po::value(&o.cache_mb)->default_value(0),
       "keep this rank's data in memory after the first pass if it fits in this many MiB (0: always stream)")
      ("memory-budget", po::value(&o.memory_budget_gib)->default_value(0.0),
       "GiB of memory per rank that the fit may plan for (0: the cgroup limit or MemAvailable, shared by the ranks on the node)");
  add_chunk_option(desc);
}

void add_chunk_option(po::options_description& desc, int default_mb) {
  io::set_max_chunk_bytes(static_cast<std::size_t>(default_mb) << 20);
  desc.add_options()("max-chunk-mb", po::value<int>()->default_value(default_mb)->notifier([](int mb) {
    if (mb < 1) throw_usage("--max-chunk-mb must be at least 1");
    io::set_max_chunk_bytes(static_cast<std::size_t>(mb) << 20);
  }),
                     "largest HDF5 chunk (MiB, uncompressed) an input dataset may have: a chunk is decompressed whole "
                     "for every block read from it");
}

int ranks_on_node() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE"})
    if (const char* s = std::getenv(name)) {
      const int v = std::atoi(s);
      if (v > 0) return v;
    }
  return 1;
}

int cores_per_rank() {
  if (const char* s = std::getenv("SLURM_CPUS_PER_TASK")) {
    const int v = std::atoi(s);
    if (v > 0) return v;
  }
  const int local = ranks_on_node();
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, cores / local);
}

int resolve_threads(int requested) { return requested > 0 ? requested : cores_per_rank(); }

bool io_thread_has_core(int threads) { return cores_per_rank() > resolve_threads(threads); }

std::unique_ptr<io::BlockSource> open_source(const Context& ctx, const std::string& data, const StreamOptions& o,
                                             Labels labels) {
  std::unique_ptr<io::BlockSource> source;
  comm::run_agreed(ctx.comm, [&] {
    if (o.block_rows < 1) throw_usage("--block-rows must be at least 1");
    io::DenseDatasetInfo info = io::open_dense_dataset(data);
    const bool read_labels = labels == Labels::kRequired || (labels == Labels::kIfPresent && info.has_labels);
    if (labels == Labels::kRequired && !info.has_labels) throw_usage("data " + data + ": labels requested but not every shard has /labels");
    std::vector<io::BlockRef> mine = io::rank_blocks(io::make_block_plan(info, o.block_rows), ctx.comm.rank(), ctx.comm.size());
    io::BlockSourceOptions bo;
    bo.prefetch_blocks = o.prefetch;
    bo.cache_bytes = static_cast<std::size_t>(std::max<Index>(0, o.cache_mb)) << 20;
    bo.read_labels = read_labels;
    bo.allow_nan = o.allow_missing;
    bo.float32 = o.float32;
    bo.io_thread = io_thread_has_core(o.threads);
    source = std::make_unique<io::BlockSource>(std::move(info), std::move(mine), bo);
  });
  return source;
}

IterationLog::IterationLog(const Context& ctx, std::string model, const std::string& json_path,
                           const std::string& output, bool resume, bool profile, int threads)
    : ctx_(ctx), model_(std::move(model)), output_(output), profile_(profile), threads_(threads) {
  if (!json_path.empty() && ctx.comm.is_root()) {
    json_ = std::make_unique<std::ofstream>(json_path, std::ios::app);
    if (!*json_) throw_output("--log-json " + json_path + ": cannot open for writing");
    nlohmann::json j = line("start");
    j["resume"] = resume;
    j["kernel_variant"] = kernel::to_string(kernel::active());  // the job's (docs/ARCHITECTURE.md §5.7)
    *json_ << j.dump() << '\n';
    json_->flush();
  }
}

nlohmann::json IterationLog::line(const char* event) const {
  // ISO 8601 UTC with milliseconds: 2026-12-03T02:31:05.123Z
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  nlohmann::json j{{"event", event},
                   {"time", fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                                        tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms)},
                   {"model", model_},
                   {"ranks", ctx_.comm.size()},
                   {"threads", threads_}};
  if (const models::ModelSpec* spec = models::find_model(model_)) {
    j["objective_name"] = spec->objective_name;
    j["objective_unit"] = spec->objective_unit;
    j["change_name"] = spec->change_name;
  }
  j["output"] = output_;
  return j;
}

void IterationLog::ended(int exit_status, const std::string& message) {
  if (!ctx_.comm.is_root() || !json_) return;
  nlohmann::json j = line(exit_status == 75 ? "stopped" : "failed");
  j["exit_status"] = exit_status;
  j["message"] = message;
  *json_ << j.dump() << '\n';
  json_->flush();
}

namespace {

using profile::Counter;
double counter(const profile::Snapshot& s, Counter c) { return s[static_cast<std::size_t>(c)]; }

// The counters reported, in the order of IterationLog::gather_profile's row.
std::array<double, 8> profile_counters(const profile::Snapshot& now, const profile::Snapshot& since) {
  const auto d = [&](Counter c) { return counter(now, c) - counter(since, c); };
  return {d(Counter::kReadWaitSeconds), d(Counter::kReadSeconds), d(Counter::kCommSeconds),
          d(Counter::kMstepSeconds),    d(Counter::kCommBytes),   d(Counter::kCollectives),
          d(Counter::kSettledRows),     d(Counter::kKmeansRows)};
}

}  // namespace

nlohmann::json IterationLog::gather_profile(double seconds, const std::array<double, 8>& c) const {
  const auto [read_wait, read, comm, m_step, bytes, collectives, settled, kmeans_rows] = c;
  const double compute = std::max(0.0, seconds - read_wait - comm - m_step);
  constexpr std::size_t kFields = 11;
  const std::array<double, kFields> row{seconds, read_wait, read,        compute, comm, m_step, bytes, collectives,
                                        profile::max_rss_bytes(), settled, kmeans_rows};
  const std::vector<double> all = ctx_.comm.allgatherv(std::span<const double>(row));
  static constexpr const char* kNames[kFields] = {"seconds",           "read_wait_seconds", "read_seconds",
                                                  "compute_seconds",   "allreduce_seconds", "m_step_seconds",
                                                  "allreduce_bytes",   "collectives",       "max_rss_bytes",
                                                  "settled_rows",      "kmeans_rows"};
  nlohmann::json j = nlohmann::json::object();
  for (std::size_t f = 0; f < kFields; ++f) {
    nlohmann::json ranks = nlohmann::json::array();
    for (std::size_t r = 0; r < all.size() / kFields; ++r) ranks.push_back(all[r * kFields + f]);
    j[kNames[f]] = std::move(ranks);
  }
  return j;
}

void IterationLog::operator()(const train::IterationRecord& r) {
  nlohmann::json prof;
  if (profile_) {
    prof = gather_profile(r.seconds, profile_counters(profile::snapshot(), profile::iteration_start()));
    profile::begin_iteration();  // the gather above is not the next iteration's
  }
  if (!ctx_.comm.is_root()) return;
  const models::ModelSpec* spec = models::find_model(model_);
  // Iteration 1 has no previous objective (a resumed fit continues the numbering).
  const double change = r.iteration <= 1 ? std::numeric_limits<double>::quiet_NaN() : r.change;
  std::string text =
      r.evaluated
          ? fmt::format("iter {:>4}  objective {:>14.6f} {}  {} {:>11.4e}  {:>8.3f} s  {:>10.4g} samples/s", r.iteration,
                        r.objective, spec ? spec->objective_unit : "", spec ? spec->change_name : "change", change,
                        r.seconds, r.samples_per_second)
          : fmt::format("iter {:>4}  objective (not evaluated; --evaluate-every)  {:>8.3f} s  {:>10.4g} samples/s",
                        r.iteration, r.seconds, r.samples_per_second);
  if (r.tokens_per_second > 0) text += fmt::format("  {:>10.4g} tokens/s", r.tokens_per_second);
  seconds_so_far_ += r.seconds;
  ++iterations_so_far_;
  if (max_iterations_ > 0 && stderr_is_tty()) {  // for people watching; not in a non-terminal log
    const double left = seconds_so_far_ / static_cast<double>(iterations_so_far_) *
                        static_cast<double>(std::max<Index>(0, max_iterations_ - r.iteration));
    text += fmt::format("  [{}/{}, at most {} left]", r.iteration, max_iterations_, clock_text(left));
  }
  ctx_.log.info(text);
  if (json_) {
    nlohmann::json j = line("iteration");
    j["iteration"] = r.iteration;
    j["objective"] = r.evaluated ? nlohmann::json(r.objective) : nlohmann::json(nullptr);
    j["change"] = r.evaluated && std::isfinite(change) ? nlohmann::json(change) : nlohmann::json(nullptr);
    j["seconds"] = r.seconds;
    j["samples_per_second"] = r.samples_per_second;
    if (r.tokens_per_second > 0) j["tokens_per_second"] = r.tokens_per_second;
    if (profile_) j["profile"] = std::move(prof);
    *json_ << j.dump() << '\n';
    json_->flush();
  }
}

void IterationLog::done(const train::EmResult& result, double total_seconds) {
  nlohmann::json total;
  if (profile_) {
    total = gather_profile(total_seconds, profile_counters(profile::snapshot(), profile::Snapshot{}));
    if (ctx_.comm.is_root()) {
      const auto mean = [&](const char* key) {
        double s = 0;
        for (const auto& x : total[key]) s += x.get<double>();
        return s / static_cast<double>(total[key].size());
      };
      double rss = 0;
      for (const auto& x : total["max_rss_bytes"]) rss = std::max(rss, x.get<double>());
      ctx_.log.info(fmt::format(
          "profile (mean over {} rank(s)): {:.2f} s = read wait {:.2f} + compute {:.2f} + allreduce {:.2f} + M-step "
          "{:.2f} s; I/O thread read {:.2f} s; {:.1f} MB in {:.0f} collectives; peak RSS {:.0f} MiB (max rank)",
          ctx_.comm.size(), mean("seconds"), mean("read_wait_seconds"), mean("compute_seconds"),
          mean("allreduce_seconds"), mean("m_step_seconds"), mean("read_seconds"), mean("allreduce_bytes") / 1e6,
          mean("collectives"), rss / 1048576.0));
      double settled = 0, visits = 0;
      for (const auto& x : total["settled_rows"]) settled += x.get<double>();
      for (const auto& x : total["kmeans_rows"]) visits += x.get<double>();
      if (settled > 0 && visits > 0)  // visits: the k-means E-steps' (a mixture's k-means start included)
        ctx_.log.info(fmt::format("distance bounds settled {:.1f} % of this run's {:.0f} k-means row visits without "
                                  "the other centres' distances",
                                  100.0 * settled / visits, visits));
    }
  }
  if (!ctx_.comm.is_root() || !json_) return;
  nlohmann::json j = line("done");
  j["n_iter"] = result.n_iter;
  j["converged"] = result.converged;
  j["objective"] = result.objective;
  j["total_seconds"] = total_seconds;
  j["exit_status"] = 0;
  if (profile_) j["profile_total"] = std::move(total);
  *json_ << j.dump() << '\n';
  json_->flush();
}

bool stderr_is_tty() { return ::isatty(STDERR_FILENO) != 0; }

Progress::Progress(std::ostream& err, bool enabled, std::string label, Index total, std::string unit)
    : err_(err), enabled_(enabled), label_(std::move(label)), unit_(std::move(unit)), total_(total),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

std::string clock_text(double seconds) {
  const auto s = static_cast<long long>(std::max(0.0, seconds) + 0.5);
  return s >= 3600 ? fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60) : fmt::format("{}:{:02}", s / 60, s % 60);
}

void Progress::update(Index done) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  const int percent = total_ > 0 ? static_cast<int>(100 * std::min(done, total_) / total_) : -1;
  if ((percent == last_percent_ || total_ <= 0) && now - last_draw_ < std::chrono::milliseconds(500)) return;
  last_percent_ = percent;
  last_draw_ = now;
  drawn_ = true;
  const double seconds = std::chrono::duration<double>(now - start_).count();
  const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0.0;
  const auto rate_text = [&] {
    return rate >= 1e6 ? fmt::format("{:.2f}M", rate / 1e6) : rate >= 1e3 ? fmt::format("{:.1f}k", rate / 1e3)
                                                                           : fmt::format("{:.0f}", rate);
  };
  if (total_ > 0) {
    const int width = 30, filled = percent * width / 100;
    err_ << '\r' << label_ << " [" << std::string(static_cast<std::size_t>(filled), '#')
         << std::string(static_cast<std::size_t>(width - filled), ' ') << "] " << percent << "%  " << rate_text() << ' '
         << unit_ << "/s  ETA " << (rate > 0 ? clock_text(static_cast<double>(total_ - done) / rate) : "?") << "   "
         << std::flush;
  } else {
    err_ << '\r' << label_ << ' ' << done << ' ' << unit_ << "  " << rate_text() << ' ' << unit_ << "/s  "
         << clock_text(seconds) << "   " << std::flush;
  }
}

void Progress::finish() {
  if (enabled_ && drawn_) err_ << '\n';
}

RowParts::RowParts(const Context& ctx, std::string output, std::vector<Column> columns, Index local_rows)
    : ctx_(ctx), output_(std::move(output)), columns_(std::move(columns)), local_rows_(local_rows) {
  // Rank 0 locks the output for the life of the command (a second run on it exits 73
  // naming the holder); the part names carry rank 0's temporary suffix, unique per run and
  // swept by a later run if this one is killed.
  comm::run_agreed(ctx_.comm, [&] {
    if (!ctx_.comm.is_root()) return;
    lock_ = std::make_unique<io::OutputLock>(output_);
    suffix_ = io::temp_suffix();
  });
  ctx_.comm.broadcast(suffix_, 0);
  comm::run_agreed(ctx_.comm, [&] {
    part_ = std::make_unique<io::H5Writer>(part_name(ctx_.comm.rank()), true);
    for (const Column& c : columns_) part_->create(c.name, c.type, local_rows_, c.cols);
  });
}

RowParts::~RowParts() {
  if (finished_) return;
  // An error on the way (here or on another rank, agreed): this rank's part goes, whether
  // or not it was complete, so that a retry finds the disk as it was.
  part_.reset();
  std::error_code ec;
  std::filesystem::remove(part_name(ctx_.comm.rank()), ec);
}

std::string RowParts::part_name(int rank) const {
  return fmt::format("{}.part-{}-of-{}{}", output_, rank, ctx_.comm.size(), suffix_);
}

void RowParts::finish(bool overwrite, const std::string& model, const std::string& data, Index total_rows,
                      const std::string& kind) {
  comm::run_agreed(ctx_.comm, [&] {
    part_->commit();
    part_.reset();
  });
  const auto sizes = ctx_.comm.allgatherv(std::vector<std::int64_t>{local_rows_});
  comm::run_agreed(ctx_.comm, [&] {
    if (!ctx_.comm.is_root()) return;
    io::H5Writer w(output_, overwrite);
    w.attr("/", "format_version", static_cast<std::int64_t>(io::kDataFormatVersion));
    if (!kind.empty()) w.attr("/", "kind", kind);
    // `model` is the model's kind everywhere (as in model files); its path is model_path.
    std::string model_kind;
    try {
      const io::H5Reader m(model);
      if (m.has_attr("/", "model")) model_kind = m.attr_string("/", "model");
    } catch (const Error&) {
      // The model was read a moment ago; if it is gone now, the kind stays empty.
    }
    w.attr("/", "model", model_kind);
    w.attr("/", "model_path", model);
    w.attr("/", "data", data);
    for (const Column& c : columns_) w.create(c.name, c.type, total_rows, c.cols);
    // Copied in slabs of kSlab rows with a stop point before each (and before the commit):
    // the merge can be most of a command's time (a 2M-row transform: 0.65 of 0.95 s), and
    // a stop signal then ends it with exit 75 and nothing written, as during the pass.
    constexpr Index kSlab = 65536;
    const auto in_slabs = [&](Index n, const auto& write) {  // write(first row, rows)
      for (Index i = 0; i < n; i += kSlab) {
        stop_point();
        write(i, std::min(kSlab, n - i));
      }
    };
    Index at = 0;
    for (int r = 0; r < ctx_.comm.size(); ++r) {
      const Index n = sizes[static_cast<std::size_t>(r)];
      if (n > 0) {
        const io::H5Reader part(part_name(r));
        for (const Column& c : columns_) {
          stop_point();
          if (c.type == io::DType::kInt64) {
            const std::vector<std::int64_t> v = part.read_int64(c.name);
            in_slabs(n, [&](Index i, Index m) {
              w.write_rows(c.name, at + i, std::span<const std::int64_t>(v.data() + i, static_cast<std::size_t>(m)));
            });
          } else {
            const RowMatrix v = part.read_matrix(c.name);
            in_slabs(n, [&](Index i, Index m) { w.write_rows(c.name, at + i, v.data() + i * v.cols(), m, v.cols()); });
          }
        }
      }
      at += n;
    }
    stop_point();
    w.commit();
  });
  ctx_.comm.barrier();
  std::error_code ec;
  std::filesystem::remove(part_name(ctx_.comm.rank()), ec);
  finished_ = true;
}

std::vector<std::string> per_sample_output_form(std::vector<std::string> args) {
  const auto flag = std::find(args.begin(), args.end(), "--per-sample");
  if (flag == args.end() || (flag + 1 != args.end() && (flag + 1)->rfind("-", 0) != 0)) return args;
  const auto out = std::find(args.begin(), args.end(), "--output");
  if (out == args.end() || out + 1 == args.end())
    throw_usage("--per-sample needs a file: --per-sample OUT.h5 or --per-sample --output OUT.h5");
  const std::string file = *(out + 1);
  const auto at = flag - args.begin();
  args.erase(out, out + 2);
  args.insert(args.begin() + (at < out - args.begin() ? at + 1 : at - 1), file);
  return args;
}

}  // namespace latent::cli
