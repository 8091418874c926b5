// `latent fit MODEL`: generated from the model registry (include/latent/models/registry.hpp).
// This file knows no model: it builds the options of MODEL's spec plus the common ones,
// validates them, and runs the spec's fit with a FitRun that provides the shared services
// (output lock, data, memory check, checkpoints, iteration log, save).
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "common.hpp"
#include "latent/core/error.hpp"
#include "latent/core/kernel.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/models/registry.hpp"
#include "latent/train/checkpoint.hpp"
#include "latent/train/content_hash.hpp"
#include "latent/train/data_summary.hpp"
#include "latent/train/fit_run.hpp"
#include "latent/train/memory.hpp"

namespace latent::cli {
namespace {

using models::ModelSpec;
using models::OptionSpec;
using models::OptionType;
using models::OptionValues;

void add_common(po::options_description& desc, train::FitCommon& c, StreamOptions& stream) {
  desc.add_options()
      ("data", po::value(&c.data)->required(), "training data: directory of HDF5 shards (or one shard file)")
      ("output", po::value(&c.output)->required(), "model file to write (HDF5); refused if it exists")
      ("overwrite", po::bool_switch(&c.overwrite), "replace an existing output file (atomically)")
      ("seed", po::value(&c.seed)->default_value(0), "random seed (results are identical for any rank/thread count)")
      ("log-json", po::value(&c.log_json)->default_value(""), "also write one JSON line per iteration to this file")
      ("profile", po::bool_switch(&c.profile),
       "record per iteration and rank the seconds reading, computing, in collectives and in the M-step, bytes "
       "allreduced and peak RSS (in --log-json; a summary line at the end)")
      ("checkpoint-dir", po::value(&c.checkpoint.dir)->default_value(""),
       "write checkpoints here (ckpt-<run>-<iteration>.h5; SIGTERM/SIGUSR1 checkpoint and exit 75)")
      ("checkpoint-every", po::value(&c.checkpoint.every)->default_value(1), "checkpoint every N iterations (0: only on a stop signal)")
      ("checkpoint-interval", po::value(&c.checkpoint.interval_seconds)->default_value(0.0, "0"),
       "also checkpoint when this many seconds passed since the last one (0: off)")
      ("keep-checkpoints", po::value(&c.checkpoint.keep)->default_value(3), "how many checkpoints to keep")
      ("resume", po::bool_switch(&c.checkpoint.resume),
       "continue from the newest valid checkpoint in --checkpoint-dir (starts fresh if there is none)")
      ("watchdog-seconds", po::value(&c.watchdog_seconds)->default_value(0.0, "0"),
       "abort the whole job (exit 124) if a rank makes no progress for this long, naming the rank that stalled "
       "(0: off; adds an arrival check to each collective)");
  add_stream_options(desc, stream);
}

// The options every fit shares, refused before anything is opened (exit 64 naming the flag).
void validate_common(const train::FitCommon& c) {
  if (c.checkpoint.every < 0)
    throw_usage(fmt::format("--checkpoint-every must be >= 0 (got {}; 0: only on a stop signal)", c.checkpoint.every));
  if (!(c.checkpoint.interval_seconds >= 0))
    throw_usage(fmt::format("--checkpoint-interval must be >= 0 seconds (got {}; 0: off)", c.checkpoint.interval_seconds));
  if (!(c.watchdog_seconds >= 0))
    throw_usage(fmt::format("--watchdog-seconds must be >= 0 (got {}; 0: off)", c.watchdog_seconds));
  if (c.checkpoint.keep < 1)
    throw_usage(fmt::format("--keep-checkpoints must be at least 1 (got {}): the newest checkpoint is always kept",
                            c.checkpoint.keep));
}

std::string usage_line(const ModelSpec& spec) {
  std::string u = "latent fit " + spec.name + " --data DIR --output MODEL.h5";
  for (const OptionSpec& o : spec.options)
    if (o.required) u += " --" + o.flag + " VALUE";
  return u + " [options]";
}

std::string help_tail(const ModelSpec& spec) {
  std::string t = "Data: " + std::string(models::data_kind_name(spec.data)) +
                  (spec.data == models::DataKind::kDense ? " (a directory of shards from `latent import dense`)"
                                                          : " (a count dataset from `latent import counts`)") +
                  ".\nTasks after fitting:";
  for (models::Task task : spec.tasks) t += " " + std::string(models::task_name(task));
  t += "\n\nEXAMPLES\n";
  for (const std::string& e : spec.examples) t += "  " + e + "\n";
  return t + "\n" + exit_status_text();
}

// The FitRun of the command line: the services every model's fit shares.
class CliFitRun final : public train::FitRun {
 public:
  CliFitRun(const Context& ctx, const ModelSpec& spec, OptionValues values, train::FitCommon common,
            StreamOptions stream)
      : ctx_(ctx), spec_(spec), values_(std::move(values)), c_(std::move(common)), stream_(stream) {}

  const comm::Communicator& comm() const override { return ctx_.comm; }
  const Logger& log() const override { return ctx_.log; }
  const OptionValues& options() const override { return values_; }
  train::FitCommon& common() override { return c_; }

  std::unique_ptr<io::BlockSource> open_dense(train::DataSummary& summary, bool allow_missing,
                                              bool float32_blocks = false) override {
    lock_output();
    resolve();
    stream_.allow_missing = allow_missing;
    stream_.float32 = float32_blocks;
    auto source = open_source(ctx_, c_.data, stream_, Labels::kNo);
    const Index d = source->info().num_features;
    const double local_bytes = static_cast<double>(source->local_bytes());
    const std::size_t cache_bytes =
        static_cast<double>(c_.cache_mb) * 1048576.0 >= local_bytes ? static_cast<std::size_t>(local_bytes) : 0;
    comm::run_agreed(ctx_.comm, [&] {
      c_.row_state_bytes =
          train::check_fit_memory(spec_, values_, c_, d, d, source->num_local_rows(), cache_bytes, available_memory_bytes());
    });
    ctx_.log.info(fmt::format("data {}: {} samples x {} features in {} shard(s); {} rank(s) x {} thread(s); kernel variant {}",
                              c_.data, source->info().num_rows, source->info().num_features, source->info().shards.size(),
                              ctx_.comm.size(), c_.threads, kernel::to_string(kernel::active())));
    summary = train::summarize(ctx_.comm, *source, c_.threads);
    content_ = train::content_json(source->info().shards, summary.shard_hashes);
    if (summary.num_constant_features > 0)
      ctx_.log.warn(std::to_string(summary.num_constant_features) + " of " +
                    std::to_string(source->info().num_features) + " features are constant (zero variance)");
    if (summary.num_duplicate_rows > 0)
      ctx_.log.warn(std::to_string(summary.num_duplicate_rows) + " of " + std::to_string(summary.num_samples) +
                    " samples duplicate an earlier sample; clusters of identical points can collapse");
    return source;
  }

  io::DenseDatasetInfo open_dense_info() override {
    lock_output();
    resolve();
    io::DenseDatasetInfo info;
    comm::run_agreed(ctx_.comm, [&] { info = io::open_dense_dataset(c_.data); });
    return info;
  }

  io::CountsDatasetInfo open_counts(std::vector<std::string>& vocabulary) override {
    lock_output();
    resolve();
    io::CountsDatasetInfo info;
    comm::run_agreed(ctx_.comm, [&] {
      info = io::open_counts_dataset(c_.data);
      if (ctx_.comm.is_root()) vocabulary = io::read_vocabulary(info);
    });
    comm::run_agreed(ctx_.comm, [&] {
      train::check_fit_memory(spec_, values_, c_, 1, info.vocab_size, 0, 0, available_memory_bytes());
    });
    ctx_.log.info(fmt::format(
        "data {}: {} documents, vocabulary {}, {} nonzeros in {} shard(s); {} rank(s) x {} thread(s); kernel variant {}",
        c_.data, info.num_rows, info.vocab_size, info.num_nonzeros, info.shards.size(), ctx_.comm.size(), c_.threads,
        kernel::to_string(kernel::active())));
    return info;
  }

  std::unique_ptr<io::CountsSource> counts_source(const io::CountsDatasetInfo& info) override {
    if (c_.block_rows < 1) throw_usage("--block-rows must be at least 1");
    return std::make_unique<io::CountsSource>(
        info, io::rank_blocks(io::make_block_plan(info.shard_rows(), c_.block_rows), ctx_.comm.rank(), ctx_.comm.size()),
        io::CountsSourceOptions{c_.prefetch, static_cast<std::size_t>(c_.cache_mb) * 1048576, false});
  }

  double available_memory_bytes() const override {
    return train::available_memory_bytes(c_.memory_budget_gib, ranks_on_node());
  }

  // Checkpoints: the configuration that decides the bits (everything but paths and runtime
  // options) is hashed into each checkpoint; the input is identified by its fingerprint.
  train::FitControl* control(nlohmann::json config, const std::string& fingerprint) override {
    if (c_.checkpoint.resume && c_.checkpoint.dir.empty()) throw_usage("--resume needs --checkpoint-dir");
    config.erase("data");
    if (!c_.checkpoint.dir.empty()) {
      store_ = std::make_unique<train::CheckpointStore>(c_.checkpoint, spec_.name, config.dump(), fingerprint);
      // Rank 0 locks the directory for the life of the fit (a second fit on it exits 73
      // naming the holder) and refuses to start afresh over another fit's checkpoints.
      train::RunIdentity run;
      comm::run_agreed(ctx_.comm, [&] {
        if (!ctx_.comm.is_root()) return;
        std::error_code ec;
        std::filesystem::create_directories(c_.checkpoint.dir, ec);
        if (ec) throw_output("--checkpoint-dir " + c_.checkpoint.dir + ": cannot be created (" + ec.message() + ")");
        io::check_output_path(c_.checkpoint.dir + "/.write-probe", true);
        ckpt_lock_ = std::make_unique<io::OutputLock>(c_.checkpoint.dir, "--checkpoint-dir", c_.checkpoint.dir + "/.lock");
        if (!c_.checkpoint.resume && store_->has_checkpoints())
          throw_output("--checkpoint-dir " + c_.checkpoint.dir +
                       " holds the checkpoints of an earlier fit; pass --resume to continue it, or choose an empty "
                       "directory (nothing was changed)");
        run = train::new_run_identity(c_.output);
      });
      ctx_.comm.broadcast(run.id, 0);
      ctx_.comm.broadcast(run.started, 0);
      run.output = c_.output;
      store_->set_run(run);
    }
    control_ = std::make_unique<train::FitControl>(ctx_.comm, store_.get(), ctx_.log);
    if (!content_.empty()) control_->set_data_content(content_);  // from open_dense's validating pass
    watchdog_ = std::make_unique<comm::Watchdog>(c_.watchdog_seconds);
    return control_.get();
  }

  train::IterationObserver observer() override {
    if (!ilog_)
      ilog_ = std::make_unique<IterationLog>(ctx_, spec_.name, c_.log_json, c_.output, c_.checkpoint.resume,
                                             c_.profile, resolve_threads(stream_.threads));
    for (const char* flag : {"max-iter", "epochs"})
      if (values_.all().count(flag)) ilog_->set_max_iterations(values_.integer(flag));
    return ilog_->observer();
  }

  void done(const train::EmResult& result, double seconds) override {
    if (ilog_) ilog_->done(result, seconds);
  }
  /// The --log-json line of a fit that ended with an error or a stop (local).
  void ended(int exit_status, const std::string& message) {
    if (c_.log_json.empty()) return;
    try {
      if (!ilog_)
        ilog_ = std::make_unique<IterationLog>(ctx_, spec_.name, c_.log_json, c_.output, c_.checkpoint.resume,
                                               c_.profile, resolve_threads(stream_.threads));
      ilog_->ended(exit_status, message);
    } catch (const std::exception&) {
      // The log cannot be written: the error being reported matters more.
    }
  }

  void save(const std::function<void()>& write) override {
    comm::run_agreed(ctx_.comm, [&] {
      if (ctx_.comm.is_root()) write();
    });
  }

 private:
  // Checks the output path and takes its lock on rank 0 (refused on every rank if either
  // fails). Collective.
  void lock_output() {
    comm::run_agreed(ctx_.comm, [&] {
      if (!ctx_.comm.is_root()) return;
      io::check_output_path(c_.output, c_.overwrite);
      lock_ = std::make_unique<io::OutputLock>(c_.output);
    });
  }
  void resolve() {
    c_.threads = stream_.threads = resolve_threads(stream_.threads);
  }
  const Context& ctx_;
  const ModelSpec& spec_;
  OptionValues values_;
  train::FitCommon c_;
  StreamOptions stream_;
  std::unique_ptr<io::OutputLock> lock_;
  std::unique_ptr<io::OutputLock> ckpt_lock_;  // rank 0: the --checkpoint-dir, for the life of the fit
  std::string content_;  // the shards' content hashes, when open_dense computed them
  std::unique_ptr<train::CheckpointStore> store_;
  std::unique_ptr<train::FitControl> control_;
  std::unique_ptr<comm::Watchdog> watchdog_;
  std::unique_ptr<IterationLog> ilog_;
};

int fit_model(const ModelSpec& spec, const std::vector<std::string>& args, const Context& ctx) {
  train::FitCommon c;
  StreamOptions stream;
  RawValues raw;
  po::options_description own("latent fit " + spec.name + " options"), common("options of every fit");
  add_model_options(own, spec.options, raw);
  add_common(common, c, stream);
  po::options_description desc;
  desc.add(own).add(common);
  po::variables_map vm;
  if (!parse(args, desc, vm, ctx, usage_line(spec), nullptr, help_tail(spec))) return 0;
  const OptionValues values = typed_values(spec.options, raw, vm);
  models::validate_options(spec, values);
  validate_common(c);
  c.threads = stream.threads;
  c.block_rows = stream.block_rows;
  c.prefetch = stream.prefetch;
  c.cache_mb = stream.cache_mb;
  c.memory_budget_gib = stream.memory_budget_gib;
  c.checkpoint_every_given = !vm["checkpoint-every"].defaulted();
  CliFitRun run(ctx, spec, values, c, stream);
  try {
    return spec.fit(run);
  } catch (const Error& e) {
    run.ended(e.exit_code(), e.what());
    throw;
  } catch (const std::exception& e) {
    run.ended(exit_code(ErrorKind::kInternal), e.what());
    throw;
  }
}

std::vector<std::string> names() {
  std::vector<std::string> out;
  for (const ModelSpec& s : models::registry()) out.push_back(s.name);
  return out;
}

}  // namespace

std::string fit_models_help() {
  std::string out;
  for (const ModelSpec& s : models::registry()) out += fmt::format("  fit {:<10} {}\n", s.name, s.summary);
  return out;
}

int cmd_fit(const std::vector<std::string>& args, const Context& ctx) {
  if (!args.empty() && args[0] == "--list-json") {
    // The registry as JSON (for scripts and the every-model CLI test).
    nlohmann::json all = nlohmann::json::array();
    for (const ModelSpec& s : models::registry()) {
      nlohmann::json m{{"name", s.name}, {"summary", s.summary}, {"data", models::data_kind_name(s.data)}};
      m["tasks"] = nlohmann::json::array();
      for (models::Task t : s.tasks) m["tasks"].push_back(models::task_name(t));
      m["select_grid"] = s.select_grid;
      m["options"] = nlohmann::json::array();
      for (const OptionSpec& o : s.options)
        m["options"].push_back({{"flag", o.flag}, {"default", o.default_value}, {"required", o.required}});
      all.push_back(std::move(m));
    }
    if (ctx.comm.is_root()) ctx.out << all.dump(1) << "\n";
    return 0;
  }
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    if (ctx.comm.is_root())
      ctx.out << "Usage: latent fit MODEL --data DIR --output MODEL.h5 [options]   (latent fit MODEL --help)\n\nModels:\n"
              << fit_models_help() << "\n" << exit_status_text();
    return args.empty() ? exit_code(ErrorKind::kUsage) : 0;
  }
  const ModelSpec* spec = models::find_model(args[0]);
  if (!spec) {
    const std::string near = models::nearest(args[0], names());
    throw_usage("unknown model '" + args[0] + "'" + (near.empty() ? "" : " (did you mean " + near + "?)") +
                "; available: " + models::model_names());
  }
  return fit_model(*spec, std::vector<std::string>(args.begin() + 1, args.end()), ctx);
}

}  // namespace latent::cli
