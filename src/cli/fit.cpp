// `latent fit MODEL`: one function per model, registered in the table at the bottom.
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>

#include "common.hpp"
#include "latent/core/error.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/models/fitted_model.hpp"
#include "latent/models/factor/factor_fit.hpp"
#include "latent/models/gmm/gmm_fit.hpp"
#include "latent/models/gmm/bgmm.hpp"
#include "latent/models/mixture/discrete_fit.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/models/kmeans/kmeans.hpp"
#include "latent/models/lda/lda_fit.hpp"
#include "latent/models/vae/vae_fit.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/train/checkpoint.hpp"
#include "latent/train/data_summary.hpp"
#include "latent/train/memory.hpp"

namespace latent::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct CommonFit {
  std::string data, output, log_json;
  bool overwrite = false, profile = false;
  std::uint64_t seed = 0;
  StreamOptions stream;
  train::CheckpointOptions checkpoint;
  double watchdog_seconds = 0;
};

void add_common(po::options_description& desc, CommonFit& c) {
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
      ("checkpoint-interval", po::value(&c.checkpoint.interval_seconds)->default_value(0.0),
       "also checkpoint when this many seconds passed since the last one (0: off)")
      ("keep-checkpoints", po::value(&c.checkpoint.keep)->default_value(3), "how many checkpoints to keep")
      ("resume", po::bool_switch(&c.checkpoint.resume),
       "continue from the newest valid checkpoint in --checkpoint-dir (starts fresh if there is none)")
      ("watchdog-seconds", po::value(&c.watchdog_seconds)->default_value(0.0),
       "abort the whole job (exit 124) if a rank makes no progress for this long (0: off)");
  add_stream_options(desc, c.stream);
}

// Checkpoints: the configuration that decides the bits (everything but paths and runtime
// options) is hashed into each checkpoint; the input is identified by its fingerprint.
struct Control {
  std::unique_ptr<train::CheckpointStore> store;
  std::unique_ptr<train::FitControl> control;
  std::unique_ptr<comm::Watchdog> watchdog;
};

Control make_control(const Context& ctx, const CommonFit& c, const std::string& model, nlohmann::json config,
                     const std::string& fingerprint) {
  Control out;
  if (c.checkpoint.resume && c.checkpoint.dir.empty()) throw_usage("--resume needs --checkpoint-dir");
  config.erase("data");
  if (!c.checkpoint.dir.empty()) {
    comm::run_agreed(ctx.comm, [&] {
      if (!ctx.comm.is_root()) return;
      std::error_code ec;
      std::filesystem::create_directories(c.checkpoint.dir, ec);
      if (ec) throw_output("--checkpoint-dir " + c.checkpoint.dir + ": cannot be created (" + ec.message() + ")");
      io::check_output_path(c.checkpoint.dir + "/.write-probe", true);
    });
  }
  if (!c.checkpoint.dir.empty())
    out.store = std::make_unique<train::CheckpointStore>(c.checkpoint, model, config.dump(),
                                                         fingerprint);
  out.control = std::make_unique<train::FitControl>(ctx.comm, out.store.get(), ctx.log);
  out.watchdog = std::make_unique<comm::Watchdog>(c.watchdog_seconds);
  return out;
}

// Checks the output path and takes its lock on rank 0 (refused on every rank if either
// fails). Collective.
std::unique_ptr<io::OutputLock> lock_output(const Context& ctx, const CommonFit& c) {
  std::unique_ptr<io::OutputLock> lock;
  comm::run_agreed(ctx.comm, [&] {
    if (!ctx.comm.is_root()) return;
    io::check_output_path(c.output, c.overwrite);
    lock = std::make_unique<io::OutputLock>(c.output);
  });
  return lock;
}

// Checks and locks the output, opens the data, and runs the validating summary pass.
// Collective.
// `needs(D, inputs)` fills in the model's part of the memory estimate (num_stats, parameters,
// scratch); the fit is refused before the first pass if it cannot fit.
std::unique_ptr<io::BlockSource> prepare(const Context& ctx, CommonFit& c, train::DataSummary& summary,
                                         std::unique_ptr<io::OutputLock>& lock,
                                         const std::function<void(train::EmMemoryInputs&)>& needs) {
  lock = lock_output(ctx, c);
  c.stream.threads = resolve_threads(c.stream.threads);
  auto source = open_source(ctx, c.data, c.stream, Labels::kNo);
  train::EmMemoryInputs mem;
  mem.num_features = source->info().num_features;
  mem.block_rows = c.stream.block_rows;
  mem.prefetch = c.stream.prefetch;
  mem.threads = c.stream.threads;
  const double local_bytes = static_cast<double>(source->num_local_rows() * source->info().num_features) * 8.0;
  mem.cache_bytes = static_cast<double>(c.stream.cache_mb) * 1048576.0 >= local_bytes ? static_cast<std::size_t>(local_bytes) : 0;
  comm::run_agreed(ctx.comm, [&] {
    needs(mem);
    train::check_memory(train::estimate_em_memory(mem), train::available_memory_bytes(c.stream.memory_budget_gib, ranks_on_node()),
                        "use fewer components, a cheaper --covariance-type, smaller --block-rows or --cache-mb, or more "
                        "nodes (or raise --memory-budget if the limit is wrong)");
  });
  ctx.log.info(fmt::format("data {}: {} samples x {} features in {} shard(s); {} rank(s) x {} thread(s)", c.data,
                           source->info().num_rows, source->info().num_features, source->info().shards.size(),
                           ctx.comm.size(), c.stream.threads));
  summary = train::summarize(ctx.comm, *source, c.stream.threads);
  if (summary.num_constant_features > 0)
    ctx.log.warn(std::to_string(summary.num_constant_features) + " of " + std::to_string(source->info().num_features) +
                 " features are constant (zero variance)");
  if (summary.num_duplicate_rows > 0)
    ctx.log.warn(std::to_string(summary.num_duplicate_rows) + " of " + std::to_string(summary.num_samples) +
                 " samples duplicate an earlier sample; clusters of identical points can collapse");
  return source;
}

void save_agreed(const Context& ctx, const std::function<void()>& save) {
  comm::run_agreed(ctx.comm, [&] {
    if (ctx.comm.is_root()) save();
  });
}

// Opens a count dataset on every rank (rank 0 also reads its vocabulary), refuses the fit
// before any pass if `needs` (the model's statistics, parameters and scratch, in doubles)
// cannot fit the memory budget, and logs the data line. Collective.
io::CountsDatasetInfo open_counts_checked(const Context& ctx, const CommonFit& c, std::vector<std::string>& vocabulary,
                                          const std::function<void(train::EmMemoryInputs&, const io::CountsDatasetInfo&)>& needs,
                                          const std::string& hint) {
  io::CountsDatasetInfo info;
  comm::run_agreed(ctx.comm, [&] {
    info = io::open_counts_dataset(c.data);
    if (ctx.comm.is_root()) vocabulary = io::read_vocabulary(info);
  });
  comm::run_agreed(ctx.comm, [&] {
    train::EmMemoryInputs m;
    m.num_features = 1;
    m.block_rows = c.stream.block_rows;
    m.prefetch = c.stream.prefetch;
    m.threads = c.stream.threads;
    needs(m, info);
    train::check_memory(train::estimate_em_memory(m), train::available_memory_bytes(c.stream.memory_budget_gib, ranks_on_node()),
                        hint);
  });
  ctx.log.info(fmt::format("data {}: {} documents, vocabulary {}, {} nonzeros in {} shard(s); {} rank(s) x {} thread(s)",
                           c.data, info.num_rows, info.vocab_size, info.num_nonzeros, info.shards.size(), ctx.comm.size(),
                           c.stream.threads));
  return info;
}

int fit_gmm(const std::vector<std::string>& args, const Context& ctx) {
  CommonFit c;
  models::GmmConfig g;
  std::string cov = "full", missing = "error";
  po::options_description desc("latent fit gmm options");
  desc.add_options()
      ("n-components", po::value(&g.n_components)->default_value(1), "number of mixture components K")
      ("covariance-type", po::value(&cov)->default_value("full"), "full | tied | diag | spherical")
      ("reg-covar", po::value(&g.reg_covar)->default_value(1e-6), "added to the diagonal of covariances")
      ("tol", po::value(&g.tol)->default_value(1e-3), "stop when the lower bound (mean log-likelihood) changes less")
      ("max-iter", po::value(&g.max_iter)->default_value(100), "EM iterations per initialisation")
      ("n-init", po::value(&g.n_init)->default_value(1), "initialisations; the best lower bound is kept")
      ("init-params", po::value(&g.init_params)->default_value("kmeans"), "kmeans | k-means++ | random | random_from_data")
      ("init-model", po::value(&g.init_model)->default_value(""),
       "start EM from the weights, means and covariances of this GMM model file (overrides --init-params)")
      ("missing-values", po::value(&missing)->default_value("error"),
       "error (NaN is an input error) | nan (NaN entries are missing and marginalised by the EM; full/tied cost "
       "O(K |o|^3) per row with NaN)");
  add_common(desc, c);
  po::variables_map vm;
  if (!parse(args, desc, vm, ctx, "latent fit gmm --data DIR --output MODEL.h5 --n-components K [options]")) return 0;
  g.covariance_type = models::parse_covariance_type(cov);
  g.seed = c.seed;
  if (missing != "error" && missing != "nan") throw_usage("--missing-values must be error or nan");
  c.stream.allow_missing = missing == "nan";
  train::DataSummary summary;
  std::unique_ptr<io::OutputLock> lock;
  auto source = prepare(ctx, c, summary, lock, [&](train::EmMemoryInputs& m) {
    const Index k = g.n_components, d = m.num_features;
    const bool full = g.covariance_type == models::CovarianceType::kFull;
    const Index cov_doubles = full ? k * d * d : g.covariance_type == models::CovarianceType::kTied ? d * d : k * d;
    m.num_stats = 2 + k + k * d + cov_doubles;
    m.parameter_doubles = k + k * d + 2 * cov_doubles;
    m.scratch_doubles = (full ? models::Gmm::kFullTileRows : models::Gmm::kTileRows) * (2 * d + 2 * k) + d * d;
  });
  g.threads = c.stream.threads;
  nlohmann::json config{{"model", "gmm"},           {"n_components", g.n_components}, {"covariance_type", cov},
                        {"reg_covar", g.reg_covar}, {"tol", g.tol},                   {"max_iter", g.max_iter},
                        {"n_init", g.n_init},       {"init_params", g.init_params}, {"init_model", g.init_model}, {"missing_values", missing},
                        {"seed", c.seed},           {"block_rows", c.stream.block_rows}, {"data", c.data}};
  Control control = make_control(ctx, c, "gmm", config, train::data_fingerprint(source->info()));
  IterationLog ilog(ctx, "gmm", c.log_json, c.checkpoint.resume, c.profile, resolve_threads(c.stream.threads));
  const auto t0 = Clock::now();
  models::GmmFitResult fit = models::fit_gmm(ctx.comm, *source, summary, g, ctx.log, ilog.observer(), control.control.get());
  const double total = std::chrono::duration<double>(Clock::now() - t0).count();
  ilog.done(fit.em, total);
  save_agreed(ctx, [&] {
    models::save_gmm(fit.model, models::FitRecord{config.dump(), fit.em, summary.num_samples, c.data}, c.output, c.overwrite);
  });
  ctx.log.info(fmt::format("{} after {} iterations, lower bound {:.6f} nats/sample, {:.2f} s; wrote {}",
                           fit.em.converged ? "converged" : "stopped", fit.em.n_iter, fit.em.objective, total, c.output));
  return 0;
}

int fit_kmeans(const std::vector<std::string>& args, const Context& ctx) {
  CommonFit c;
  models::KmeansConfig k;
  po::options_description desc("latent fit kmeans options");
  desc.add_options()
      ("n-clusters", po::value(&k.n_clusters)->default_value(8), "number of clusters K")
      ("init", po::value(&k.init)->default_value("k-means||"), "k-means|| | k-means++ | random")
      ("max-iter", po::value(&k.max_iter)->default_value(300), "Lloyd iterations per initialisation")
      ("tol", po::value(&k.tol)->default_value(1e-4),
       "stop when the squared center shift is below tol times the mean feature variance")
      ("n-init", po::value(&k.n_init)->default_value(1), "initialisations; the lowest inertia is kept");
  add_common(desc, c);
  po::variables_map vm;
  if (!parse(args, desc, vm, ctx, "latent fit kmeans --data DIR --output MODEL.h5 --n-clusters K [options]")) return 0;
  k.seed = c.seed;
  train::DataSummary summary;
  std::unique_ptr<io::OutputLock> lock;
  auto source = prepare(ctx, c, summary, lock, [&](train::EmMemoryInputs& m) {
    const Index d = m.num_features;
    m.num_stats = 1 + k.n_clusters + k.n_clusters * d;
    m.parameter_doubles = 11 * k.n_clusters * d;  // centers plus the k-means|| candidates (10 K)
    m.scratch_doubles = 128 * (k.n_clusters + d);
  });
  k.threads = c.stream.threads;
  nlohmann::json config{{"model", "kmeans"}, {"n_clusters", k.n_clusters}, {"init", k.init},
                        {"max_iter", k.max_iter}, {"tol", k.tol}, {"n_init", k.n_init}, {"seed", c.seed},
                        {"block_rows", c.stream.block_rows}, {"data", c.data}};
  Control control = make_control(ctx, c, "kmeans", config, train::data_fingerprint(source->info()));
  IterationLog ilog(ctx, "kmeans", c.log_json, c.checkpoint.resume, c.profile, resolve_threads(c.stream.threads));
  const auto t0 = Clock::now();
  models::KmeansResult fit = models::fit_kmeans(ctx.comm, *source, summary.num_samples, summary.variance.mean(), k,
                                                ctx.log, ilog.observer(), control.control.get());
  const double total = std::chrono::duration<double>(Clock::now() - t0).count();
  ilog.done(fit.em, total);
  save_agreed(ctx, [&] {
    models::save_kmeans(fit.centers, fit.inertia, models::FitRecord{config.dump(), fit.em, summary.num_samples, c.data},
                        c.output, c.overwrite);
  });
  ctx.log.info(fmt::format("{} after {} iterations, inertia {:.6g}, {:.2f} s; wrote {}",
                           fit.em.converged ? "converged" : "stopped", fit.em.n_iter, fit.inertia, total, c.output));
  return 0;
}

int fit_lda(const std::vector<std::string>& args, const Context& ctx) {
  CommonFit c;
  models::LdaConfig l;
  std::string learn_priors = "none";
  po::options_description desc("latent fit lda options");
  desc.add_options()
      ("n-topics", po::value(&l.n_topics)->default_value(10), "number of topics K (scikit-learn's n_components)")
      ("n-components", po::value(&l.n_topics), "alias of --n-topics")
      ("method", po::value(&l.method)->default_value("batch"),
       "batch (variational EM) | online (stochastic variational inference); scikit-learn's learning_method")
      ("doc-topic-prior", po::value(&l.doc_topic_prior)->default_value(-1.0), "alpha, symmetric start (default 1/K)")
      ("topic-word-prior", po::value(&l.topic_word_prior)->default_value(-1.0), "eta (default 1/K)")
      ("learning-decay", po::value(&l.learning_decay)->default_value(0.7), "kappa in (0.5, 1]: rho_t = (tau0 + t)^-kappa")
      ("learning-offset", po::value(&l.learning_offset)->default_value(10.0), "tau0 >= 0 (down-weights early updates)")
      ("batch-size", po::value(&l.batch_size)->default_value(128), "documents per global minibatch (online)")
      ("max-iter", po::value(&l.max_iter)->default_value(10), "passes over the corpus")
      ("tol", po::value(&l.tol)->default_value(0.1),
       "stop when the bound perplexity changes by less than this between passes (scikit-learn's perp_tol)")
      ("evaluate-every", po::value(&l.evaluate_every)->default_value(1),
       "compute the bound (log line, --tol) every N passes and after the last; 0: never (scikit-learn's default -1)")
      ("max-doc-update-iter", po::value(&l.e_step.max_doc_update_iter)->default_value(100),
       "variational iterations per document at most")
      ("mean-change-tol", po::value(&l.e_step.mean_change_tol)->default_value(1e-3),
       "per-document stop: mean absolute change of gamma")
      ("learn-priors", po::value(&learn_priors)->default_value("none"),
       "none | alpha | eta | both: learn the doc-topic prior (asymmetric) and/or the topic-word prior by Newton steps");
  add_common(desc, c);
  po::variables_map vm;
  if (!parse(args, desc, vm, ctx, "latent fit lda --data DIR --output MODEL.h5 --n-topics K [--method batch|online] [options]"))
    return 0;
  if (learn_priors != "none" && learn_priors != "alpha" && learn_priors != "eta" && learn_priors != "both")
    throw_usage("--learn-priors must be none, alpha, eta or both");
  l.learn_alpha = learn_priors == "alpha" || learn_priors == "both";
  l.learn_eta = learn_priors == "eta" || learn_priors == "both";
  l.seed = c.seed;
  std::unique_ptr<io::OutputLock> lock;
  lock = lock_output(ctx, c);
  c.stream.threads = resolve_threads(c.stream.threads);
  l.threads = c.stream.threads;
  l.block_rows = c.stream.block_rows;
  l.prefetch = c.stream.prefetch;
  l.cache_bytes = static_cast<std::size_t>(c.stream.cache_mb) * 1048576;
  std::vector<std::string> vocabulary;
  // Parameters: lambda, exp(E[log beta]) and one topic-word accumulator per thread (V x K
  // each), the global sums (V x K integers), plus prefetched blocks.
  const io::CountsDatasetInfo info = open_counts_checked(
      ctx, c, vocabulary,
      [&](train::EmMemoryInputs& m, const io::CountsDatasetInfo& i) {
        m.num_stats = i.vocab_size * l.n_topics;
        m.parameter_doubles = 3 * i.vocab_size * l.n_topics;
        m.scratch_doubles = i.vocab_size * l.n_topics;
      },
      "use fewer topics, prune the vocabulary (--min-df/--max-df on import), fewer --threads, or raise --memory-budget "
      "if the limit is wrong");
  if (l.method == "online" && vm["checkpoint-every"].defaulted()) {
    // Online updates are per minibatch: by default checkpoint once per pass.
    c.checkpoint.every = static_cast<int>(std::max<Index>(1, (info.num_rows + l.batch_size - 1) / l.batch_size));
  }
  nlohmann::json config{{"model", "lda"},
                        {"n_topics", l.n_topics},
                        {"method", l.method},
                        {"doc_topic_prior", l.doc_topic_prior},
                        {"topic_word_prior", l.topic_word_prior},
                        {"learning_decay", l.learning_decay},
                        {"learning_offset", l.learning_offset},
                        {"batch_size", l.batch_size},
                        {"max_iter", l.max_iter},
                        {"tol", l.tol},
                        {"evaluate_every", l.evaluate_every},
                        {"max_doc_update_iter", l.e_step.max_doc_update_iter},
                        {"mean_change_tol", l.e_step.mean_change_tol},
                        {"learn_priors", learn_priors},
                        {"seed", c.seed},
                        {"block_rows", c.stream.block_rows},
                        {"data", c.data}};
  Control control = make_control(ctx, c, "lda", config, train::data_fingerprint(info));
  IterationLog ilog(ctx, "lda", c.log_json, c.checkpoint.resume, c.profile, resolve_threads(c.stream.threads));
  const auto t0 = Clock::now();
  models::LdaFitResult fit = models::fit_lda(ctx.comm, info, l, ctx.log, ilog.observer(), control.control.get());
  const double total = std::chrono::duration<double>(Clock::now() - t0).count();
  ilog.done(fit.em, total);
  save_agreed(ctx, [&] {
    models::save_lda(fit.model, vocabulary, config.dump(), fit.em, fit.num_documents, c.data, c.output, c.overwrite);
  });
  ctx.log.info(fmt::format("{} after {} passes ({} updates), training bound perplexity {:.4f} ({} tokens), {:.2f} s; wrote {}",
                           fit.em.converged ? "converged" : "stopped", fit.em.n_iter, fit.num_updates, fit.bound_perplexity,
                           static_cast<Index>(fit.num_tokens), total, c.output));
  if (fit.num_updates > 0)
    ctx.log.info(fmt::format("statistics allreduced per update: {:.2f} MiB on average (dense K x V would be {:.2f} MiB); "
                             "{} of {} updates sent only the touched words' rows",
                             fit.bytes_allreduced / static_cast<double>(fit.num_updates) / 1048576.0,
                             8.0 * static_cast<double>(l.n_topics * info.vocab_size) / 1048576.0, fit.sparse_updates,
                             fit.num_updates));
  return 0;
}

std::vector<Index> parse_widths(const std::string& s) {
  std::vector<Index> out;
  std::size_t pos = 0;
  while (pos <= s.size() && !s.empty()) {
    const std::size_t comma = s.find(',', pos);
    const std::string item = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    try {
      std::size_t used = 0;
      const long long v = std::stoll(item, &used);
      if (used != item.size() || v < 1) throw std::invalid_argument(item);
      out.push_back(v);
    } catch (const std::exception&) {
      throw_usage("--hidden must be a comma-separated list of positive widths such as 512,256 (got '" + s + "')");
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

int fit_vae(const std::vector<std::string>& args, const Context& ctx) {
  CommonFit c;
  models::VaeFitConfig v;
  std::string hidden = "512,256", activation = "relu", likelihood = "bernoulli", variance = "learned";
  std::string precision = "highest";
  po::options_description desc("latent fit vae options");
  desc.add_options()
      ("latent-dim", po::value(&v.arch.latent_dim)->default_value(20), "latent dimensions L")
      ("hidden", po::value(&hidden)->default_value("512,256"), "encoder hidden widths (the decoder mirrors them)")
      ("activation", po::value(&activation)->default_value("relu"), "relu | tanh")
      ("likelihood", po::value(&likelihood)->default_value("bernoulli"),
       "bernoulli (data in [0, 1]; logits) | gaussian (real data; per-feature variance)")
      ("gaussian-variance", po::value(&variance)->default_value("learned"),
       "gaussian decoder: learned (one log-variance per feature, starting at 0) or a fixed variance such as 0.1")
      ("batch-size", po::value(&v.batch_size)->default_value(128), "rows per optimiser step (global, any rank count)")
      ("micro-batch-rows", po::value(&v.micro_batch_rows)->default_value(64),
       "rows per micro-batch: the unit of parallelism (a step's micro-batches are spread over ranks x threads); "
       "results depend on it, not on the rank or thread count")
      ("matmul-precision", po::value(&precision)->default_value("highest"),
       "highest (float32 products) | medium (bfloat16 operands with float32 sums, about twice as fast; needs "
       "AVX512_BF16 on every rank), as PyTorch's torch.set_float32_matmul_precision")
      ("epochs", po::value(&v.epochs)->default_value(10), "passes over the training rows (scikit-learn's max_iter)")
      ("shuffle", po::bool_switch(&v.shuffle),
       "visit each epoch's minibatches in a seeded random order (their rows stay fixed; disables --cache-mb for training)")
      ("learning-rate", po::value(&v.learning_rate)->default_value(1e-3), "Adam step size")
      ("beta1", po::value(&v.beta1)->default_value(0.9), "Adam's first-moment decay")
      ("beta2", po::value(&v.beta2)->default_value(0.999), "Adam's second-moment decay")
      ("adam-epsilon", po::value(&v.adam_epsilon)->default_value(1e-8), "Adam's epsilon (added to the root of v-hat)")
      ("lr-schedule", po::value(&v.lr_schedule)->default_value("constant"),
       "constant | step (times --lr-gamma every --lr-step-size epochs) | cosine (to 0 at the last epoch)")
      ("lr-step-size", po::value(&v.lr_step_size)->default_value(10), "epochs between decays (step schedule)")
      ("lr-gamma", po::value(&v.lr_gamma)->default_value(0.1), "decay factor (step schedule)")
      ("max-grad-norm", po::value(&v.max_grad_norm)->default_value(0.0), "clip the gradient's L2 norm to this (0: off)")
      ("validation-fraction", po::value(&v.validation_fraction)->default_value(0.0),
       "hold out the last fraction of the rows; early stopping then watches the validation ELBO and keeps the best epoch")
      ("n-iter-no-change", po::value(&v.n_iter_no_change)->default_value(10),
       "stop after this many epochs without an improvement of more than --tol")
      ("tol", po::value(&v.tol)->default_value(1e-4), "nats per sample (validation ELBO, or training ELBO without one)");
  add_common(desc, c);
  po::variables_map vm;
  if (!parse(args, desc, vm, ctx, "latent fit vae --data DIR --output MODEL.h5 [--latent-dim 20] [--hidden 512,256] [options]"))
    return 0;
  v.arch.hidden = parse_widths(hidden);
  v.matmul_precision = matmul::parse_precision(precision);
  v.arch.activation = models::parse_vae_activation(activation);
  v.arch.likelihood = models::parse_vae_likelihood(likelihood);
  if (variance != "learned") {
    char* end = nullptr;
    const double var = std::strtod(variance.c_str(), &end);
    if (end == variance.c_str() || *end != '\0' || !(var > 0) || !std::isfinite(var))
      throw_usage("--gaussian-variance must be 'learned' or a positive number (got '" + variance + "')");
    v.arch.learn_variance = false;
    v.arch.fixed_log_variance = std::log(var);
  }
  v.seed = c.seed;
  std::unique_ptr<io::OutputLock> lock = lock_output(ctx, c);
  c.stream.threads = resolve_threads(c.stream.threads);
  v.threads = c.stream.threads;
  v.prefetch = c.stream.prefetch;
  v.cache_bytes = static_cast<std::size_t>(c.stream.cache_mb) * 1048576;
  io::DenseDatasetInfo info;
  comm::run_agreed(ctx.comm, [&] { info = io::open_dense_dataset(c.data); });
  comm::run_agreed(ctx.comm, [&] {
    // Parameters P (float): parameters, Adam's two moments, the best copy, one gradient per
    // micro-batch of a rank's share of a step, the integer sum (8 bytes) and a checkpoint
    // snapshot (8 bytes); activations per thread: micro-batch rows × (Σ widths) floats, a few
    // times over; plus blocks in flight.
    models::VaeArchitecture arch = v.arch;
    arch.input_dim = info.num_features;
    const Index num_params = models::Vae::count_parameters(arch);
    const double p = static_cast<double>(num_params);
    const double micro = static_cast<double>(std::min(v.micro_batch_rows, v.batch_size));
    const double local_blocks = std::ceil(static_cast<double>(v.batch_size) / micro / ctx.comm.size());
    double widths = static_cast<double>(2 * info.num_features + 4 * v.arch.latent_dim);
    for (Index h : v.arch.hidden) widths += 2.0 * static_cast<double>(h);
    train::MemoryEstimate need;
    const double params_bytes = p * 4.0 * (4.0 + local_blocks) + p * 16.0 + p * 8.0;  // + packed weights
    const double act_bytes = static_cast<double>(c.stream.threads) * micro * widths * 4.0 * 4.0;
    const double block_bytes = static_cast<double>(c.stream.prefetch + c.stream.threads + 2) * micro *
                               static_cast<double>(info.num_features) * 12.0;
    need.bytes = params_bytes + act_bytes + block_bytes;
    need.breakdown = fmt::format("{} parameters and optimiser state {:.2f} GiB, activations {:.2f} GiB, blocks {:.2f} GiB",
                                 num_params, params_bytes / 1073741824.0, act_bytes / 1073741824.0,
                                 block_bytes / 1073741824.0);
    train::check_memory(need, train::available_memory_bytes(c.stream.memory_budget_gib, ranks_on_node()),
                        "use smaller --hidden widths or --latent-dim, fewer --threads, or raise --memory-budget if the "
                        "limit is wrong");
  });
  ctx.log.info(fmt::format("data {}: {} samples x {} features in {} shard(s); {} rank(s) x {} thread(s)", c.data,
                           info.num_rows, info.num_features, info.shards.size(), ctx.comm.size(), c.stream.threads));
  nlohmann::json config{{"model", "vae"},
                        {"latent_dim", v.arch.latent_dim},
                        {"hidden", v.arch.hidden},
                        {"activation", activation},
                        {"likelihood", likelihood},
                        {"gaussian_variance", variance},
                        {"batch_size", v.batch_size},
                        {"epochs", v.epochs},
                        {"shuffle", v.shuffle},
                        {"learning_rate", v.learning_rate},
                        {"beta1", v.beta1},
                        {"beta2", v.beta2},
                        {"adam_epsilon", v.adam_epsilon},
                        {"lr_schedule", v.lr_schedule},
                        {"lr_step_size", v.lr_step_size},
                        {"lr_gamma", v.lr_gamma},
                        {"max_grad_norm", v.max_grad_norm},
                        {"validation_fraction", v.validation_fraction},
                        {"n_iter_no_change", v.n_iter_no_change},
                        {"tol", v.tol},
                        {"micro_batch_rows", v.micro_batch_rows},
                        {"matmul_precision", precision},
                        {"seed", c.seed},
                        {"data", c.data}};
  if (vm["checkpoint-every"].defaulted()) {
    // Checkpoints count optimiser steps: by default one per epoch.
    c.checkpoint.every = static_cast<int>(std::max<Index>(1, models::vae_steps_per_epoch(info, v)));
  }
  Control control = make_control(ctx, c, "vae", config, train::data_fingerprint(info));
  IterationLog ilog(ctx, "vae", c.log_json, c.checkpoint.resume, c.profile, resolve_threads(c.stream.threads));
  const auto observe = ilog.observer();
  const bool validating = v.validation_fraction > 0;
  const auto t0 = Clock::now();
  models::VaeFitResult fit = models::fit_vae(
      ctx.comm, info, v, ctx.log,
      [&](const train::IterationRecord& rec, double validation_elbo) {
        if (observe) observe(rec);
        if (validating) ctx.log.info(fmt::format("epoch {}: validation ELBO {:.4f} nats/sample", rec.iteration, validation_elbo));
      },
      control.control.get());
  const double total = std::chrono::duration<double>(Clock::now() - t0).count();
  ilog.done(fit.em, total);
  save_agreed(ctx, [&] {
    models::save_vae(fit.model, config.dump(), fit.em, fit.num_train_rows, c.data, c.output, c.overwrite);
  });
  ctx.log.info(fmt::format("{} after {} epochs ({} steps), training ELBO {:.4f} nats/sample{}, {:.2f} s; wrote {}",
                           fit.em.converged ? "stopped early" : "finished", fit.em.n_iter, fit.steps, fit.em.objective,
                           validating ? fmt::format(", best validation ELBO {:.4f}", fit.validation_elbo) : std::string(),
                           total, c.output));
  return 0;
}

// `latent fit ppca` and `latent fit fa`: the same EM with isotropic or diagonal noise.
int fit_factor(const std::vector<std::string>& args, const Context& ctx, models::NoiseType noise) {
  const std::string name = models::model_name(noise);
  CommonFit c;
  models::FactorConfig f;
  f.noise = noise;
  std::string missing = "error";
  po::options_description desc("latent fit " + name + " options");
  desc.add_options()
      ("n-components", po::value(&f.n_components)->default_value(2), "latent dimension L (1 <= L < D)")
      ("tol", po::value(&f.tol)->default_value(1e-6), "stop when the mean log-likelihood changes by less (nats/sample)")
      ("max-iter", po::value(&f.max_iter)->default_value(1000), "EM iterations at most")
      ("solver", po::value(&f.solver)->default_value("auto"),
       "auto | covariance (one pass for the D x D scatter matrix, then EM in memory) | streaming (one pass per "
       "iteration, O(D L) memory; needed for missing values)")
      ("missing-values", po::value(&missing)->default_value("error"),
       "error (NaN is an input error) | nan (NaN entries are missing and marginalised by the EM)")
      ("noise-variance-floor", po::value(&f.noise_variance_floor)->default_value(1e-12),
       "lower bound of the noise variances (scikit-learn's FactorAnalysis uses 1e-12)");
  add_common(desc, c);
  po::variables_map vm;
  if (!parse(args, desc, vm, ctx, "latent fit " + name + " --data DIR --output MODEL.h5 --n-components L [options]"))
    return 0;
  if (missing != "error" && missing != "nan") throw_usage("--missing-values must be error or nan");
  f.missing_values = missing == "nan";
  c.stream.allow_missing = f.missing_values;
  f.seed = c.seed;
  train::DataSummary summary;
  std::unique_ptr<io::OutputLock> lock;
  std::string solver;
  auto source = prepare(ctx, c, summary, lock, [&](train::EmMemoryInputs& m) {
    const Index l = f.n_components, d = m.num_features;
    solver = models::resolve_factor_solver(f, d);
    const bool cov = solver == "covariance";
    m.num_stats = cov ? d * (d + 1) / 2 + d : 2 + (l + 1) * (l + 1) + d * (l + 2);
    m.parameter_doubles = 6 * l * d + (cov ? 2 * d * d : 0);
    m.scratch_doubles = m.block_rows * (d + 2 * l) + (cov ? d * d : 0);
  });
  if (summary.num_missing > 0)
    ctx.log.info(fmt::format("{} of {} entries are missing ({:.2f} %)", summary.num_missing,
                             summary.num_samples * source->info().num_features,
                             100.0 * static_cast<double>(summary.num_missing) /
                                 static_cast<double>(summary.num_samples * source->info().num_features)));
  f.threads = c.stream.threads;
  nlohmann::json config{{"model", name},        {"n_components", f.n_components}, {"tol", f.tol},
                        {"max_iter", f.max_iter}, {"solver", f.solver},           {"missing_values", missing},
                        {"noise_variance_floor", f.noise_variance_floor},         {"seed", c.seed},
                        {"block_rows", c.stream.block_rows},                      {"data", c.data}};
  Control control = make_control(ctx, c, name, config, train::data_fingerprint(source->info()));
  IterationLog ilog(ctx, name, c.log_json, c.checkpoint.resume, c.profile, resolve_threads(c.stream.threads));
  const auto t0 = Clock::now();
  models::FactorFitResult fit =
      models::fit_factor(ctx.comm, *source, summary, f, ctx.log, ilog.observer(), control.control.get());
  const double total = std::chrono::duration<double>(Clock::now() - t0).count();
  ilog.done(fit.em, total);
  save_agreed(ctx, [&] {
    models::save_factor(fit.model, models::FitRecord{config.dump(), fit.em, summary.num_samples, c.data}, c.output,
                        c.overwrite);
  });
  ctx.log.info(fmt::format("{} after {} iterations, mean log-likelihood {:.6f} nats/sample, {:.2f} s; wrote {}",
                           fit.em.converged ? "converged" : "stopped", fit.em.n_iter, fit.em.objective, total, c.output));
  return 0;
}

// `latent fit bmm` (dense data in [0, 1]) and `latent fit mmm` (count data).
int fit_discrete(const std::vector<std::string>& args, const Context& ctx, models::DiscreteKind kind) {
  const bool bernoulli = kind == models::DiscreteKind::kBernoulli;
  const std::string name = bernoulli ? "bmm" : "mmm";
  CommonFit c;
  models::DiscreteConfig dc;
  po::options_description desc("latent fit " + name + " options");
  desc.add_options()
      ("n-components", po::value(&dc.n_components)->default_value(2), "number of mixture components K")
      ("alpha", po::value(&dc.alpha)->default_value(1.0),
       bernoulli ? "additive smoothing of the Bernoulli means: (S + alpha) / (N_k + 2 alpha) (Beta(1+alpha, 1+alpha) MAP)"
                 : "additive smoothing of the word probabilities: (S + alpha) / (S_k + V alpha) (Dirichlet(1+alpha) MAP)")
      ("weight-alpha", po::value(&dc.weight_alpha)->default_value(0.0),
       "Dirichlet pseudo-count added to each component's weight (0: maximum likelihood)")
      ("tol", po::value(&dc.tol)->default_value(1e-3), "stop when the mean log posterior changes less (nats/sample)")
      ("max-iter", po::value(&dc.max_iter)->default_value(100), "EM iterations")
      ("init-params", po::value(&dc.init_params)->default_value(bernoulli ? "kmeans" : "random"),
       bernoulli ? "kmeans | random" : "random (uniform random responsibilities)");
  add_common(desc, c);
  po::variables_map vm;
  if (!parse(args, desc, vm, ctx, "latent fit " + name + " --data DIR --output MODEL.h5 --n-components K [options]")) return 0;
  dc.seed = c.seed;
  nlohmann::json config{{"model", name},           {"n_components", dc.n_components}, {"alpha", dc.alpha},
                        {"weight_alpha", dc.weight_alpha}, {"tol", dc.tol},               {"max_iter", dc.max_iter},
                        {"init_params", dc.init_params},   {"seed", c.seed},              {"block_rows", c.stream.block_rows},
                        {"data", c.data}};
  IterationLog ilog(ctx, name, c.log_json, c.checkpoint.resume, c.profile, resolve_threads(c.stream.threads));
  const auto t0 = Clock::now();
  models::DiscreteFitResult fit{models::DiscreteMixture(1, 1, kind, 0, 0), {}};
  Index n = 0;
  std::vector<std::string> vocabulary;
  std::unique_ptr<io::OutputLock> lock;
  if (bernoulli) {
    train::DataSummary summary;
    auto source = prepare(ctx, c, summary, lock, [&](train::EmMemoryInputs& m) {
      m.num_stats = 2 + dc.n_components * (1 + m.num_features);
      m.parameter_doubles = 3 * dc.n_components * m.num_features;
      m.scratch_doubles = m.block_rows * dc.n_components * 2;
    });
    dc.threads = c.stream.threads;
    Control control = make_control(ctx, c, name, config, train::data_fingerprint(source->info()));
    fit = models::fit_bmm(ctx.comm, *source, summary, dc, ctx.log, ilog.observer(), control.control.get());
    n = summary.num_samples;
  } else {
    lock = lock_output(ctx, c);
    c.stream.threads = resolve_threads(c.stream.threads);
    dc.threads = c.stream.threads;
    const io::CountsDatasetInfo info = open_counts_checked(
        ctx, c, vocabulary,
        [&](train::EmMemoryInputs& m, const io::CountsDatasetInfo& i) {
          m.num_stats = 2 + dc.n_components * (1 + i.vocab_size);
          m.parameter_doubles = 3 * dc.n_components * i.vocab_size;
          m.scratch_doubles = m.block_rows * dc.n_components * 2;
        },
        "use fewer components, prune the vocabulary (--min-df/--max-df on import), fewer --threads");
    if (c.stream.block_rows < 1) throw_usage("--block-rows must be at least 1");
    const auto plan = io::make_block_plan(info.shard_rows(), c.stream.block_rows);
    const auto range = io::rank_block_range(static_cast<Index>(plan.size()), ctx.comm.rank(), ctx.comm.size());
    io::CountsSource source(info, {plan.begin() + range.first, plan.begin() + range.last},
                            {c.stream.prefetch, static_cast<std::size_t>(c.stream.cache_mb) * 1048576, false});
    Control control = make_control(ctx, c, name, config, train::data_fingerprint(info));
    fit = models::fit_mmm(ctx.comm, source, info.num_rows, dc, ctx.log, ilog.observer(), control.control.get());
    n = info.num_rows;
  }
  const double total = std::chrono::duration<double>(Clock::now() - t0).count();
  ilog.done(fit.em, total);
  save_agreed(ctx, [&] {
    models::save_discrete(fit.model, models::FitRecord{config.dump(), fit.em, n, c.data}, c.output, c.overwrite, vocabulary);
  });
  ctx.log.info(fmt::format("{} after {} iterations, mean log posterior {:.6f} nats/sample, {:.2f} s; wrote {}",
                           fit.em.converged ? "converged" : "stopped", fit.em.n_iter, fit.em.objective, total, c.output));
  return 0;
}

int fit_bgmm(const std::vector<std::string>& args, const Context& ctx) {
  CommonFit c;
  models::BgmmConfig b;
  std::string cov = "full";
  po::options_description desc("latent fit bgmm options");
  desc.add_options()
      ("n-components", po::value(&b.n_components)->default_value(1), "upper bound on the number of components K")
      ("covariance-type", po::value(&cov)->default_value("full"), "full | tied | diag | spherical")
      ("weight-concentration-prior-type", po::value(&b.weight_concentration_prior_type)->default_value("dirichlet_process"),
       "dirichlet_process (stick-breaking) | dirichlet_distribution")
      ("weight-concentration-prior", po::value(&b.weight_concentration_prior)->default_value(-1.0),
       "gamma0 (default 1/K); small values leave more components empty")
      ("mean-precision-prior", po::value(&b.mean_precision_prior)->default_value(-1.0), "beta0 (default 1)")
      ("degrees-of-freedom-prior", po::value(&b.degrees_of_freedom_prior)->default_value(-1.0), "nu0 (default D)")
      ("reg-covar", po::value(&b.reg_covar)->default_value(1e-6), "added to the diagonal of the covariance statistics")
      ("tol", po::value(&b.tol)->default_value(1e-3), "stop when the lower bound per sample changes less (nats)")
      ("max-iter", po::value(&b.max_iter)->default_value(100), "iterations")
      ("init-params", po::value(&b.init_params)->default_value("kmeans"), "kmeans | random");
  add_common(desc, c);
  po::variables_map vm;
  if (!parse(args, desc, vm, ctx, "latent fit bgmm --data DIR --output MODEL.h5 --n-components K [options]")) return 0;
  b.covariance_type = models::parse_covariance_type(cov);
  b.seed = c.seed;
  train::DataSummary summary;
  std::unique_ptr<io::OutputLock> lock;
  auto source = prepare(ctx, c, summary, lock, [&](train::EmMemoryInputs& m) {
    const Index k = b.n_components, d = m.num_features;
    const bool dense = b.covariance_type == models::CovarianceType::kFull || b.covariance_type == models::CovarianceType::kTied;
    const Index cov_doubles = b.covariance_type == models::CovarianceType::kFull ? k * d * d : dense ? d * d : k * d;
    m.num_stats = 3 + k + k * d + cov_doubles + (dense ? d * d : 0);
    m.parameter_doubles = 3 * (k + k * d + 2 * cov_doubles);
    m.scratch_doubles = models::Gmm::kFullTileRows * (2 * d + 2 * k) + d * d;
  });
  b.threads = c.stream.threads;
  nlohmann::json config{{"model", "bgmm"},
                        {"n_components", b.n_components},
                        {"covariance_type", cov},
                        {"weight_concentration_prior_type", b.weight_concentration_prior_type},
                        {"weight_concentration_prior", b.weight_concentration_prior},
                        {"mean_precision_prior", b.mean_precision_prior},
                        {"degrees_of_freedom_prior", b.degrees_of_freedom_prior},
                        {"reg_covar", b.reg_covar},
                        {"tol", b.tol},
                        {"max_iter", b.max_iter},
                        {"init_params", b.init_params},
                        {"seed", c.seed},
                        {"block_rows", c.stream.block_rows},
                        {"data", c.data}};
  Control control = make_control(ctx, c, "bgmm", config, train::data_fingerprint(source->info()));
  IterationLog ilog(ctx, "bgmm", c.log_json, c.checkpoint.resume, c.profile, resolve_threads(c.stream.threads));
  const auto t0 = Clock::now();
  models::BgmmFitResult fit = models::fit_bgmm(ctx.comm, *source, summary, b, ctx.log, ilog.observer(), control.control.get());
  const double total = std::chrono::duration<double>(Clock::now() - t0).count();
  ilog.done(fit.em, total);
  save_agreed(ctx, [&] {
    models::save_gmm(fit.mixture, models::FitRecord{config.dump(), fit.em, summary.num_samples, c.data}, c.output,
                     c.overwrite, "bgmm", [&](io::H5Writer& w) {
                       w.write("weight_concentration", fit.weight_concentration);
                       w.write("mean_precision", std::span<const double>(fit.mean_precision.data(),
                                                                        static_cast<std::size_t>(fit.mean_precision.size())));
                       w.write("degrees_of_freedom", std::span<const double>(fit.degrees_of_freedom.data(),
                                                                            static_cast<std::size_t>(fit.degrees_of_freedom.size())));
                     });
  });
  Index active = 0;
  for (Index j = 0; j < fit.mixture.num_components(); ++j) active += fit.mixture.weights()[j] > 1e-2 ? 1 : 0;
  ctx.log.info(fmt::format("{} after {} iterations, lower bound {:.6f} nats/sample, {} of {} components with weight > 0.01, "
                           "{:.2f} s; wrote {}",
                           fit.em.converged ? "converged" : "stopped", fit.em.n_iter, fit.em.objective, active,
                           b.n_components, total, c.output));
  return 0;
}

}  // namespace

int cmd_fit(const std::vector<std::string>& args, const Context& ctx) {
  // The fit registry: one line per model.
  static const std::map<std::string, std::function<int(const std::vector<std::string>&, const Context&)>> models{
      {"gmm", fit_gmm},
      {"kmeans", fit_kmeans},
      {"lda", fit_lda},
      {"vae", fit_vae},
      {"ppca", [](const auto& a, const Context& c) { return fit_factor(a, c, models::NoiseType::kIsotropic); }},
      {"fa", [](const auto& a, const Context& c) { return fit_factor(a, c, models::NoiseType::kDiagonal); }},
      {"bgmm", fit_bgmm},
      {"bmm", [](const auto& a, const Context& c) { return fit_discrete(a, c, models::DiscreteKind::kBernoulli); }},
      {"mmm", [](const auto& a, const Context& c) { return fit_discrete(a, c, models::DiscreteKind::kMultinomial); }},
  };
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    if (ctx.comm.is_root()) ctx.out << "Usage: latent fit MODEL [options]; MODEL is one of: gmm, bgmm, kmeans, lda, vae, ppca, fa, bmm, mmm\n";
    return args.empty() ? exit_code(ErrorKind::kUsage) : 0;
  }
  const auto it = models.find(args[0]);
  if (it == models.end()) throw_usage("unknown model '" + args[0] + "' (available: gmm, bgmm, kmeans, lda, vae, ppca, fa, bmm, mmm)");
  return it->second(std::vector<std::string>(args.begin() + 1, args.end()), ctx);
}

}  // namespace latent::cli
