#include "latent/train/checkpoint.hpp"
#include "latent/train/content_hash.hpp"

#include <fmt/format.h>
#include <fmt/chrono.h>
#include <unistd.h>
#include <xxhash.h>
#include <zlib.h>

#include <random>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>

#include "latent/core/control.hpp"
#include "latent/core/error.hpp"
#include "latent/io/h5_file.hpp"

namespace latent::train {
namespace {

namespace fs = std::filesystem;

std::uint32_t crc_of(const RowMatrix& m) {
  return static_cast<std::uint32_t>(crc32(0L, reinterpret_cast<const Bytef*>(m.data()),
                                          static_cast<uInt>(m.size() * static_cast<Index>(sizeof(double)))));
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Checkpoint files, newest first: ckpt-<run>-<iteration>.h5.
std::vector<std::pair<std::pair<std::int64_t, std::int64_t>, std::string>> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<std::pair<std::int64_t, std::int64_t>, std::string>> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  static const std::regex pattern(R"(ckpt-(\d+)-(\d+)\.h5)");
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    const std::string name = e.path().filename().string();
    if (std::regex_match(name, m, pattern)) out.push_back({{std::stoll(m[1]), std::stoll(m[2])}, e.path().string()});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  return out;
}

// Names the first differences between two JSON objects ("n_components: 10 -> 12").
std::string json_diff(const std::string& old_json, const std::string& new_json) {
  const auto a = nlohmann::json::parse(old_json, nullptr, /*allow_exceptions=*/false);
  const auto b = nlohmann::json::parse(new_json, nullptr, false);
  if (!a.is_object() || !b.is_object()) return "the recorded value is not a JSON object";
  std::string out;
  for (const auto& [key, value] : b.items()) {
    const std::string before = a.contains(key) ? a[key].dump() : "(absent)";
    if (before != value.dump()) out += (out.empty() ? "" : ", ") + key + ": " + before + " -> " + value.dump();
  }
  for (const auto& [key, value] : a.items())
    if (!b.contains(key)) out += (out.empty() ? "" : ", ") + key + ": " + value.dump() + " -> (absent)";
  return out.empty() ? "(reordered)" : out;
}

}  // namespace

const RowMatrix& TrainState::array(const std::string& name) const {
  const auto it = arrays.find(name);
  if (it == arrays.end()) throw_input("checkpoint: array '" + name + "' is missing");
  return it->second;
}

double TrainState::scalar(const std::string& name) const {
  const auto it = scalars.find(name);
  if (it == scalars.end()) throw_input("checkpoint: value '" + name + "' is missing");
  return it->second;
}

std::string data_fingerprint(const io::DenseDatasetInfo& info) {
  nlohmann::json shards = nlohmann::json::array();
  for (const auto& s : info.shards) {
    std::error_code ec;
    const auto bytes = fs::file_size(s.path, ec);
    shards.push_back({{"shard", fs::path(s.path).filename().string()},
                      {"rows", s.num_rows},
                      {"dtype", s.dtype == io::DType::kFloat32 ? "float32" : "float64"},
                      {"bytes", ec ? 0 : bytes}});
  }
  return nlohmann::json{{"features", info.num_features}, {"rows", info.num_rows}, {"shards", shards}}.dump();
}

std::string data_fingerprint(const io::CountsDatasetInfo& info) {
  nlohmann::json shards = nlohmann::json::array();
  for (const auto& s : info.shards) {
    std::error_code ec;
    const auto bytes = fs::file_size(s.path, ec);
    shards.push_back({{"shard", fs::path(s.path).filename().string()},
                      {"documents", s.num_rows},
                      {"nonzeros", s.num_nonzeros},
                      {"bytes", ec ? 0 : bytes}});
  }
  return nlohmann::json{{"vocab_size", info.vocab_size}, {"documents", info.num_rows}, {"shards", shards}}.dump();
}

CheckpointStore::CheckpointStore(CheckpointOptions options, std::string model, std::string config_json,
                                 std::string fingerprint)
    : options_(std::move(options)), model_(std::move(model)), config_json_(std::move(config_json)),
      fingerprint_(std::move(fingerprint)) {}

std::string CheckpointStore::write(const TrainState& state, std::int64_t run, std::int64_t iteration) const {
  std::error_code ec;
  fs::create_directories(options_.dir, ec);
  const std::string path = fmt::format("{}/ckpt-{:03d}-{:06d}.h5", options_.dir, run, iteration);
  {
    io::H5Writer w(path, true);
    w.attr("/", "format_version", static_cast<std::int64_t>(kCheckpointFormatVersion));
    w.attr("/", "kind", std::string("checkpoint"));
    w.attr("/", "model", model_);
    w.attr("/", "config", config_json_);
    w.attr("/", "data_fingerprint", fingerprint_);
    if (!content_.empty()) w.attr("/", "data_content", content_);
    if (!run_.id.empty()) {
      char host[256] = {0};
      ::gethostname(host, sizeof host - 1);
      w.attr("/", "run_id", run_.id);
      w.attr("/", "run_started", run_.started);
      w.attr("/", "output", run_.output);
      w.attr("/", "writer", fmt::format("pid {} on {}", ::getpid(), host));
    }
    w.attr("/", "run", run);
    w.attr("/", "iteration", iteration);
    for (const auto& [name, m] : state.arrays) {
      w.write("arrays/" + name, m);
      w.attr("arrays/" + name, "crc32", static_cast<std::int64_t>(crc_of(m)));
    }
    std::vector<double> values;
    std::string names;
    for (const auto& [name, v] : state.scalars) {
      values.push_back(v);
      names += (names.empty() ? "" : "\n") + name;
    }
    RowMatrix scalars = Eigen::Map<RowMatrix>(values.data(), static_cast<Index>(values.size()), 1);
    w.write("scalars", scalars);
    w.attr("scalars", "names", names);
    w.attr("scalars", "crc32", static_cast<std::int64_t>(crc_of(scalars)));
    if (FaultPlan::get().due(0, iteration, "enospc"))
      throw Error(ErrorKind::kIo, "checkpoint " + path + ": No space left on device (injected by LATENT_FAULT)");
    w.commit();
  }
  const auto all = list_checkpoints(options_.dir);
  for (std::size_t i = static_cast<std::size_t>(std::max(1, options_.keep)); i < all.size(); ++i) fs::remove(all[i].second, ec);
  return path;
}

RunIdentity new_run_identity(const std::string& output) {
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  const auto now = std::chrono::system_clock::now();
  const std::string seed = fmt::format("{}/{}/{}/{}", host, ::getpid(), now.time_since_epoch().count(), output);
  RunIdentity r;
  r.id = fmt::format("{:016x}", XXH64(seed.data(), seed.size(), std::random_device{}()));
  r.started = fmt::format("{:%Y-%m-%dT%H:%M:%SZ}", fmt::gmtime(std::chrono::system_clock::to_time_t(now)));
  r.output = output;
  return r;
}

RunIdentity CheckpointStore::read_run(const std::string& path) const {
  const io::H5Reader r(path);
  RunIdentity out;
  if (r.has_attr("/", "run_id")) out.id = r.attr_string("/", "run_id");
  if (r.has_attr("/", "run_started")) out.started = r.attr_string("/", "run_started");
  if (r.has_attr("/", "output")) out.output = r.attr_string("/", "output");
  return out;
}

bool CheckpointStore::has_checkpoints() const { return !list_checkpoints(options_.dir).empty(); }

TrainState CheckpointStore::read(const std::string& path) const {
  const io::H5Reader r(path);
  if (!r.has_attr("/", "kind") || r.attr_string("/", "kind") != "checkpoint")
    throw_input("checkpoint " + path + ": not a latent checkpoint");
  if (r.attr_int("/", "format_version") != kCheckpointFormatVersion)
    throw_input("checkpoint " + path + ": format_version " + std::to_string(r.attr_int("/", "format_version")) +
                " is not supported");
  TrainState state;
  for (const auto& name : r.list("arrays")) {
    RowMatrix m = r.read_matrix("arrays/" + name);
    if (static_cast<std::uint32_t>(r.attr_int("arrays/" + name, "crc32")) != crc_of(m))
      throw_input("checkpoint " + path + ": checksum mismatch in /arrays/" + name);
    state.arrays[name] = std::move(m);
  }
  const RowMatrix scalars = r.read_matrix("scalars");
  if (static_cast<std::uint32_t>(r.attr_int("scalars", "crc32")) != crc_of(scalars))
    throw_input("checkpoint " + path + ": checksum mismatch in /scalars");
  std::stringstream names(r.attr_string("scalars", "names"));
  std::string name;
  for (Index i = 0; std::getline(names, name) && i < scalars.rows(); ++i) state.scalars[name] = scalars(i, 0);
  return state;
}

std::optional<std::string> CheckpointStore::find_latest(const Logger& log) const {
  for (const auto& [key, path] : list_checkpoints(options_.dir)) {
    try {
      read(path);
    } catch (const Error& e) {
      log.warn("checkpoint " + path + " is damaged (" + e.what() + "); falling back to the previous one");
      continue;
    }
    const io::H5Reader r(path);
    if (r.attr_string("/", "model") != model_)
      throw_usage("checkpoint " + path + " is for model '" + r.attr_string("/", "model") + "', not '" + model_ + "'");
    if (r.attr_string("/", "config") != config_json_)
      throw_usage("cannot resume from " + path + ": the configuration changed (" +
                  json_diff(r.attr_string("/", "config"), config_json_) +
                  "); use the original options or a new --checkpoint-dir");
    if (r.attr_string("/", "data_fingerprint") != fingerprint_)
      throw_usage("cannot resume from " + path + ": the input data changed (" +
                  json_diff(r.attr_string("/", "data_fingerprint"), fingerprint_) + ")");
    if (!content_.empty()) {
      if (!r.has_attr("/", "data_content")) {
        log.warn("checkpoint " + path + " records no content hashes of the data (an older version wrote it); the data's "
                 "bytes are not compared");
      } else if (const std::string diff = content_difference(r.attr_string("/", "data_content"), content_); !diff.empty()) {
        throw_usage("cannot resume from " + path + ": " + diff +
                    "; resume with the data the fit started on, or start again with a new --checkpoint-dir");
      }
    }
    return path;
  }
  return std::nullopt;
}

FitControl::FitControl(const comm::Communicator& comm, CheckpointStore* store, const Logger& log)
    : comm_(comm), store_(store), log_(log), last_write_(now_seconds()) {}

std::optional<TrainState> FitControl::resume() {
  if (store_ == nullptr || !store_->options().resume) return std::nullopt;
  std::string path;
  comm::run_agreed(comm_, [&] {
    if (comm_.is_root()) path = store_->find_latest(log_).value_or("");
  });
  comm_.broadcast(path, 0);
  if (path.empty()) {
    log_.info("--resume: no checkpoint in " + store_->options().dir + "; starting from the beginning");
    return std::nullopt;
  }
  TrainState state;
  RunIdentity run;
  comm::run_agreed(comm_, [&] {
    state = store_->read(path);
    run = store_->read_run(path);
  });
  if (run.id.empty()) {
    log_.info("resuming from " + path);
  } else {
    // The fit continues the run that wrote the checkpoint.
    const std::string output = store_->run().output;
    if (!run.output.empty() && run.output != output)
      log_.warn("resuming run " + run.id + ", which was writing " + run.output + "; this fit writes " + output);
    run.output = output;
    store_->set_run(run);
    log_.info("resuming from " + path + " (run " + run.id + ", started " + run.started + ")");
  }
  return state;
}

void FitControl::boundary(std::int64_t run, std::int64_t iteration, const std::function<TrainState()>& snapshot) {
  heartbeat();
  inject_boundary_faults(comm_.rank(), iteration);
  // One small agreement: [stop requested anywhere, checkpoint due by rank 0's clock].
  double flags[2] = {stop_signal() != 0 ? 1.0 : 0.0, 0.0};
  if (store_ != nullptr && comm_.is_root()) {
    const auto& o = store_->options();
    const bool by_count = o.every > 0 && iteration % o.every == 0;
    const bool by_time = o.interval_seconds > 0 && now_seconds() - last_write_ >= o.interval_seconds;
    flags[1] = by_count || by_time ? 1.0 : 0.0;
  }
  comm_.allreduce_max(flags);
  const bool stop = flags[0] > 0, due = flags[1] > 0;
  std::string written;
  if (store_ != nullptr && (stop || due)) {
    const TrainState state = snapshot();
    comm::run_agreed(comm_, [&] {
      if (comm_.is_root()) written = store_->write(state, run, iteration);
    });
    last_write_ = now_seconds();
  }
  if (stop)
    throw Error(ErrorKind::kRequeue,
                fmt::format("stopped by a signal after iteration {}; {}", iteration,
                            store_ != nullptr ? "checkpoint written to " + store_->options().dir + "; rerun with --resume"
                                              : "no --checkpoint-dir was given, so nothing was saved"));
}

void FitControl::init_boundary(std::int64_t run, const std::function<TrainState()>& snapshot) {
  heartbeat();
  double flags[2] = {stop_signal() != 0 ? 1.0 : 0.0, 0.0};
  if (store_ != nullptr && comm_.is_root()) {
    const auto& o = store_->options();
    flags[1] = o.interval_seconds > 0 && now_seconds() - last_write_ >= o.interval_seconds ? 1.0 : 0.0;
  }
  comm_.allreduce_max(flags);
  const bool stop = flags[0] > 0, due = flags[1] > 0;
  if (store_ != nullptr && (stop || due)) {
    const TrainState state = snapshot();
    comm::run_agreed(comm_, [&] {
      if (comm_.is_root()) store_->write(state, run, 0);
    });
    last_write_ = now_seconds();
  }
  if (stop)
    throw Error(ErrorKind::kRequeue,
                fmt::format("stopped by a signal during initialisation {} (before its first iteration); {}", run + 1,
                            store_ != nullptr ? "checkpoint written to " + store_->options().dir + "; rerun with --resume"
                                              : "no --checkpoint-dir was given, so nothing was saved"));
}

}  // namespace latent::train
