#include "latent/cli/cli.hpp"

#include <functional>
#include <map>

#include "common.hpp"
#include "latent/core/control.hpp"
#include "latent/core/error.hpp"
#include "latent/core/kernel.hpp"
#include "latent/models/registry.hpp"
#include "latent/train/build_info.hpp"

namespace latent::cli {
namespace {

const char* kUsageHead =
    "latent <command> [options]   (every command takes --help; latent --version: build and libraries)\n\n"
    "Commands:\n"
    "  import dense   convert IDX / CSV / NPY / HDF5 into a directory of HDF5 shards\n"
    "  import counts  convert UCI bag-of-words / LDA-C / libsvm / Matrix Market / text into CSR shards\n"
    "  fit MODEL      fit a registered model (below)\n";
const char* kUsageTail =
    "  score          JSON scores of a model on data (mean log-likelihood, BIC, AIC, ARI, purity;\n"
    "                 LDA: document-completion and bound perplexities); --per-sample: each row's score\n"
    "  transform      per-row latent representation: topic proportions (LDA), posterior means (VAE,\n"
    "                 PPCA, FA), responsibilities (mixtures)\n"
    "  predict        hard labels (and --proba responsibilities); --outlier-quantile flags anomalies\n";
const char* kUsageEnd =
    "  sample         draws from a generative model to an HDF5 shard\n"
    "  info           summary of a model file (LDA: top words per topic), checkpoint, shard or data directory\n";
const char* kUsageExport =
    "  export         a model for another tool with a corpus: pyLDAvis inputs (JSON) or gensim files (";

// The registered models that declare `task`, comma-separated.
std::string models_with(models::Task task) {
  std::string names;
  for (const models::ModelSpec& spec : models::registry())
    if (spec.supports(task)) names += (names.empty() ? "" : ", ") + spec.name;
  return names;
}

// The command list, then one line per registered model.
std::string usage_text() {
  return std::string(kUsageHead) + "  generate NAME  a synthetic data set of any size from a random model, in parallel (" +
         models_with(models::Task::kGenerate) + ")\n" + kUsageTail + "  select         fit a model for several sizes (" + models_with(models::Task::kSelect) +
         "); BIC, AIC, held-out log-likelihood\n" +
         "  impute         fill NaN entries with their conditional expectation (" + models_with(models::Task::kImpute) +
         ")\n" + kUsageExport + models_with(models::Task::kExport) + ")\n" + kUsageEnd + "\nModels (latent fit MODEL --help):\n" + fit_models_help() + "\n" +
         exit_status_text();
}

// The job's kernel variant (docs/ARCHITECTURE.md §5.7): each rank's choice (LATENT_KERNEL,
// else the best its CPU runs; a bad or unsupported LATENT_KERNEL fails every rank with 64),
// then the minimum over the ranks, so every rank runs the same kernels wherever it landed.
// Collective.
void agree_kernel_variant(const comm::Communicator& comm) {
  double local = 0;
  comm::run_agreed(comm, [&] { local = static_cast<double>(kernel::local_choice()); });
  comm.allreduce_min(std::span<double>(&local, 1));
  kernel::set_active(static_cast<kernel::Variant>(static_cast<int>(local)));
}

// `latent --version`'s kernel lines: every variant, which this CPU runs, and the one this
// process would use (local: no agreement).
std::string kernel_variants_text() {
  std::string all, here;
  for (kernel::Variant v : kernel::all_variants()) {
    all += (all.empty() ? "" : ", ") + kernel::to_string(v);
    if (kernel::supported(v)) here += (here.empty() ? "" : ", ") + kernel::to_string(v);
  }
  std::string chosen;
  try {
    chosen = kernel::to_string(kernel::local_choice());
  } catch (const Error& e) {
    chosen = std::string("none (") + e.what() + ")";
  }
  return "  kernel variants: " + all + " (this CPU: " + (here.empty() ? "none" : here) + "; selected: " + chosen +
         ", LATENT_KERNEL to force one; the ranks of a job use the lowest selected)\n" +
         "  tile prefetch: " + (kernel::tile_prefetch() ? "on" : "off") +
         " (on for Intel CPUs, off for others; LATENT_TILE_PREFETCH=0/1 to force; no result depends on it)\n";
}

}  // namespace

int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  const comm::Communicator comm = comm::Communicator::world();
  Context ctx{comm, out, err, Logger(&err, comm.is_root())};
  static const std::map<std::string, std::function<int(const std::vector<std::string>&, const Context&)>> commands{
      {"import", cmd_import}, {"fit", cmd_fit},       {"score", cmd_score},
      {"predict", cmd_predict}, {"sample", cmd_sample}, {"info", cmd_info},
      {"transform", cmd_transform}, {"impute", cmd_impute}, {"select", cmd_select}, {"generate", cmd_generate}, {"export", cmd_export},
      {"bench-allreduce", cmd_bench_allreduce},
  };
  try {
    if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
      if (comm.is_root()) (args.empty() ? err : out) << usage_text();
      return args.empty() ? exit_code(ErrorKind::kUsage) : 0;
    }
    if (args[0] == "--version") {
      if (comm.is_root()) {
        for (const auto& [name, value] : train::build_info())
          out << (name == "latent" ? "latent " + value : "  " + name + ": " + value) << '\n';
        out << kernel_variants_text();
      }
      return 0;
    }
    const auto it = commands.find(args[0]);
    if (it == commands.end()) {
      std::vector<std::string> names;
      for (const auto& [name, fn] : commands) names.push_back(name);
      const std::string near = models::nearest(args[0], names);
      throw_usage("unknown command '" + args[0] + "'" + (near.empty() ? "" : " (did you mean " + near + "?)") + "\n" +
                  usage_text());
    }
    agree_kernel_variant(comm);
    // A fit stops at its next iteration boundary after a checkpoint; every other command
    // stops at its next block, leaving nothing behind (exit 75).
    set_stop_aborts(it->first != "fit");
    return it->second(std::vector<std::string>(args.begin() + 1, args.end()), ctx);
  } catch (const Error& e) {
    if (comm.is_root()) err << "latent: error: " << e.what() << '\n';
    return e.exit_code();
  } catch (const std::exception& e) {
    if (comm.is_root()) err << "latent: internal error: " << e.what() << '\n';
    return exit_code(ErrorKind::kInternal);
  }
}

}  // namespace latent::cli
