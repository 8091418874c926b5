// `latent generate gmm|lda`: synthetic data sets of any size, written in parallel (each
// rank writes a contiguous range of shards), with the generating model beside the data.
// Row (document) i is a pure function of (seed, i), so the data do not depend on the rank
// count, the thread count or the number of shards.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/core/error.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/io/dense_dataset.hpp"
#include "latent/models/fitted_model.hpp"
#include "latent/models/gmm/gmm_generate.hpp"
#include "latent/models/lda/lda_fit.hpp"
#include "latent/models/lda/lda_generate.hpp"

namespace latent::cli {
namespace {

namespace fs = std::filesystem;

constexpr Index kMaxShards = 100000;  // part-%05d.h5 sorts in row order below this

struct GenerateOptions {
  std::string kind;  // gmm | lda
  Index n = 0, k = 0, shards = 0, per_shard = 65536;
  std::uint64_t seed = 0;
  std::string output, truth;
  int threads = 0;
  // gmm
  Index d = 0;
  std::string dtype = "float32", covariance_type = "diag";
  double cluster_std = 1.0, center_box = 10.0;
  // lda
  double length = 100, alpha = 0.1, eta = 0.01;
};

// The output directory: rank 0 creates OUTPUT.tmp-<pid>, every rank writes its shards into
// it (a filesystem all ranks share), and publish() renames it into place. Until then a
// failure removes the temporary directory and the truth file (rank 0), so nothing partial
// is left. Construction and publish() are collective.
class ShardDirectory {
 public:
  ShardDirectory(const Context& ctx, std::string output, std::string truth)
      : ctx_(ctx), output_(std::move(output)), truth_(std::move(truth)) {
    while (output_.size() > 1 && output_.back() == '/') output_.pop_back();
    comm::run_agreed(ctx.comm, [&] {
      if (!ctx.comm.is_root()) return;
      std::error_code ec;
      if (fs::exists(output_, ec) || fs::is_symlink(output_, ec))
        throw_output("output " + output_ + ": already exists; choose another name");
      if (!truth_.empty() && (fs::exists(truth_, ec) || fs::is_symlink(truth_, ec)))
        throw_output("--true-model " + truth_ + ": already exists; choose another name (or --true-model none)");
      io::sweep_stale_temporaries(fs::absolute(output_).parent_path().string());
      tmp_ = output_ + io::temp_suffix();
      fs::remove_all(tmp_, ec);  // only a dead process of this pid can have left it
      if (!fs::create_directory(tmp_, ec) || ec)
        throw_output("output " + output_ + ": cannot create " + tmp_ + (ec ? " (" + ec.message() + ")" : std::string()));
      owner_ = true;
    });
    ctx.comm.broadcast(tmp_, 0);
  }
  ~ShardDirectory() {
    if (!owner_ || published_) return;
    std::error_code ec;
    fs::remove_all(tmp_, ec);
    if (truth_written_) fs::remove(truth_, ec);
  }
  ShardDirectory(const ShardDirectory&) = delete;
  ShardDirectory& operator=(const ShardDirectory&) = delete;

  std::string shard_path(Index s) const { return fmt::format("{}/part-{:05d}.h5", tmp_, s); }
  const std::string& tmp() const { return tmp_; }
  void truth_written() { truth_written_ = true; }

  /// Renames the directory into place once every rank's shards are written. Collective.
  void publish() {
    comm::run_agreed(ctx_.comm, [&] {
      if (!ctx_.comm.is_root()) return;
      std::error_code ec;
      if (fs::exists(output_, ec)) throw_output("output " + output_ + ": was created by someone else meanwhile");
      fs::rename(tmp_, output_, ec);
      if (ec) throw_output("output " + output_ + ": cannot rename " + tmp_ + " into place: " + ec.message());
      published_ = true;
    });
  }

 private:
  const Context& ctx_;
  std::string output_, truth_, tmp_;
  bool owner_ = false, published_ = false, truth_written_ = false;
};

}  // namespace

int cmd_generate(const std::vector<std::string>& args, const Context& ctx) {
  const std::string usage =
      "latent generate gmm --n-samples N --n-features D --n-components K --output DIR [options]\n"
      "       latent generate lda --n-samples N --vocab-size V --n-components K --output DIR [options]";
  if (args.empty() || (args[0] != "gmm" && args[0] != "lda")) {
    if (!args.empty() && (args[0] == "--help" || args[0] == "-h")) {
      if (ctx.comm.is_root()) ctx.out << "Usage: " << usage << "\n(see latent generate gmm --help, latent generate lda --help)\n";
      return 0;
    }
    throw_usage("usage: " + usage);
  }
  GenerateOptions o;
  o.kind = args[0];
  Index n_alias = 0, k_alias = 0, per_shard_alias = 0;
  po::options_description desc("latent generate " + o.kind + " options");
  desc.add_options()
      ("n-samples", po::value(&o.n)->default_value(0), o.kind == "gmm" ? "rows N" : "documents N")
      ("n-components", po::value(&o.k)->default_value(0), o.kind == "gmm" ? "mixture components K" : "topics K")
      ("shards", po::value(&o.shards)->default_value(0),
       "shard files S (default: N / --rows-per-shard, rounded up); shard s holds rows [sN/S, (s+1)N/S) and rank r "
       "writes shards [rS/P, (r+1)S/P)")
      ("rows-per-shard", po::value(&o.per_shard)->default_value(65536), "rows per shard when --shards is not given")
      ("seed", po::value(&o.seed)->default_value(0), "random seed (row i depends only on seed and i)")
      ("threads", po::value(&o.threads)->default_value(0), "TBB threads per rank (gmm; 0: auto)")
      ("output", po::value(&o.output)->required(), "data directory to create (must not exist)")
      ("true-model", po::value(&o.truth)->default_value(""),
       "where to write the generating model (default OUTPUT.truth.h5 beside the directory; 'none': not written)");
  if (o.kind == "gmm") {
    desc.add_options()
        ("n-features", po::value(&o.d)->required(), "features D")
        ("covariance-type", po::value(&o.covariance_type)->default_value("diag"), "diag | spherical")
        ("cluster-std", po::value(&o.cluster_std)->default_value(1.0),
         "scale of the standard deviations (each is cluster-std x U(0.5, 1.5))")
        ("center-box", po::value(&o.center_box)->default_value(10.0), "means are uniform in [-box, box]^D")
        ("dtype", po::value(&o.dtype)->default_value("float32"), "float32 | float64 (/data on disk)");
  } else {
    desc.add_options()
        ("vocab-size", po::value(&o.d)->required(), "vocabulary size V (words are named w0, w1, ...)")
        ("doc-length", po::value(&o.length)->default_value(100.0), "mean document length (Poisson), tokens")
        ("doc-topic-prior", po::value(&o.alpha)->default_value(0.1, "0.1"), "alpha of theta ~ Dir(alpha)")
        ("topic-word-prior", po::value(&o.eta)->default_value(0.01, "0.01"), "eta of beta_k ~ Dir(eta)")
        ("n-documents", po::value(&n_alias)->default_value(0), "same as --n-samples")
        ("n-topics", po::value(&k_alias)->default_value(0), "same as --n-components")
        ("docs-per-shard", po::value(&per_shard_alias)->default_value(0), "same as --rows-per-shard");
  }
  po::variables_map vm;
  if (!parse(std::vector<std::string>(args.begin() + 1, args.end()), desc, vm, ctx, usage)) return 0;
  if (o.n == 0) o.n = n_alias;
  if (o.k == 0) o.k = k_alias;
  if (per_shard_alias != 0) o.per_shard = per_shard_alias;
  if (o.n < 1 || o.n >= (Index{1} << 46)) throw_usage("--n-samples must be between 1 and 2^46");
  if (o.k < 1) throw_usage("--n-components must be at least 1");
  if (o.d < 1) throw_usage(o.kind == "gmm" ? "--n-features must be at least 1" : "--vocab-size must be at least 1");
  if (o.per_shard < 1) throw_usage("--rows-per-shard must be at least 1");
  if (o.shards == 0) o.shards = (o.n + o.per_shard - 1) / o.per_shard;
  if (o.shards < 1 || o.shards > o.n) throw_usage(fmt::format("--shards must be between 1 and N = {}", o.n));
  if (o.shards >= kMaxShards) throw_usage(fmt::format("--shards must be below {}", kMaxShards));
  if (o.kind == "gmm") {
    if (o.covariance_type != "diag" && o.covariance_type != "spherical")
      throw_usage("--covariance-type must be diag or spherical");
    if (o.dtype != "float32" && o.dtype != "float64") throw_usage("--dtype must be float32 or float64");
    if (!(o.cluster_std > 0) || !(o.center_box >= 0)) throw_usage("--cluster-std must be positive and --center-box >= 0");
  } else if (!(o.length > 0) || !(o.alpha > 0) || !(o.eta > 0)) {
    throw_usage("--doc-length, --doc-topic-prior and --topic-word-prior must be positive");
  }
  std::string output = o.output;
  while (output.size() > 1 && output.back() == '/') output.pop_back();
  if (o.truth.empty()) o.truth = output + ".truth.h5";
  if (o.truth == "none") o.truth.clear();

  const auto t0 = std::chrono::steady_clock::now();
  ShardDirectory dir(ctx, output, o.truth);
  const int p = ctx.comm.size();
  // Shard s holds rows [s N / S, (s + 1) N / S); this rank writes its range of the shards.
  // n < 2^46 and S < 10^5 (checked): the products fit int64.
  const io::ShardLayout layout{o.n, o.shards};
  const io::BlockRange mine = io::rank_block_range(o.shards, ctx.comm.rank(), p);
  const auto shard_path = [&](Index s) { return dir.shard_path(s); };
  const std::string config = nlohmann::json{{"generated", o.kind},  {"seed", o.seed}, {"n_samples", o.n},
                                            {"n_components", o.k}, {"n_features", o.d}}
                                 .dump();
  if (o.kind == "gmm") {
    // Rank 0 writes the true mixture; every rank samples from that file (shared filesystem).
    const std::string model_path = o.truth.empty() ? dir.tmp() + "/truth.model" : o.truth;
    comm::run_agreed(ctx.comm, [&] {
      if (!ctx.comm.is_root()) return;
      const models::GmmGeneratorOptions g{o.k, o.d,
                                          o.covariance_type == "diag" ? models::CovarianceType::kDiag
                                                                      : models::CovarianceType::kSpherical,
                                          o.cluster_std, o.center_box, o.seed};
      models::save_gmm(models::generating_gmm(g), models::FitRecord{config, {}, o.n, output}, model_path, false);
      if (!o.truth.empty()) dir.truth_written();
    });
    comm::run_agreed(ctx.comm, [&] {
      const auto model = models::load_model(model_path);
      models::write_sampled_shards(*model, layout, mine.first, mine.last, shard_path,
                                   o.dtype == "float64" ? io::DType::kFloat64 : io::DType::kFloat32, o.seed,
                                   resolve_threads(o.threads));
    });
    comm::run_agreed(ctx.comm, [&] {
      if (ctx.comm.is_root() && o.truth.empty()) fs::remove(model_path);
    });
  } else {
    const models::LdaGenerator gen(o.d, o.k, o.length, o.alpha, o.eta, o.seed);
    std::vector<std::string> vocab;
    for (Index w = 0; w < o.d; ++w) vocab.push_back(fmt::format("w{}", w));
    comm::run_agreed(ctx.comm, [&] {
      if (!ctx.comm.is_root()) return;
      io::write_vocabulary(dir.tmp(), vocab);
      if (!o.truth.empty()) {
        models::save_lda(gen.truth(), vocab, config, train::EmResult{}, o.n, output, o.truth, false);
        dir.truth_written();
      }
    });
    comm::run_agreed(ctx.comm, [&] { models::write_lda_shards(gen, layout, mine.first, mine.last, shard_path); });
  }
  dir.publish();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ctx.log.info(fmt::format("wrote {} {} ({} = {}, K = {}) in {} shards to {} on {} rank(s) in {:.1f} s{}", o.n,
                           o.kind == "gmm" ? "rows" : "documents", o.kind == "gmm" ? "D" : "V", o.d, o.k, o.shards,
                           output, p, seconds, o.truth.empty() ? "" : "; true model: " + o.truth));
  return 0;
}

}  // namespace latent::cli
