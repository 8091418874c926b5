// `latent bench-allreduce` (hidden): times the exact int64 sum across ranks for
// bench/lda_allreduce.py.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "common.hpp"
#include "latent/core/error.hpp"

namespace latent::cli {

int cmd_bench_allreduce(const std::vector<std::string>& args, const Context& ctx) {
  Index size = 0;
  int repeat = 5;
  std::string strategy;
  po::options_description desc("latent bench-allreduce options (hidden: for bench/lda_allreduce.py)");
  desc.add_options()
      ("size", po::value(&size)->required(), "elements (int64) per reduction, e.g. K x V")
      ("strategy", po::value(&strategy)->default_value("allreduce"), "allreduce | reduce-scatter (then allgather)")
      ("repeat", po::value(&repeat)->default_value(5), "timed repetitions (after one warm-up)");
  po::variables_map vm;
  if (!parse(args, desc, vm, ctx, "mpirun -n P latent bench-allreduce --size N [--strategy S] [--repeat R]")) return 0;
  if (size < 1 || repeat < 1) throw_usage("--size and --repeat must be positive");
  if (strategy != "allreduce" && strategy != "reduce-scatter") throw_usage("--strategy must be allreduce or reduce-scatter");
  std::vector<std::int64_t> values(static_cast<std::size_t>(size));
  double best = 1e300, total = 0;
  for (int r = 0; r <= repeat; ++r) {
    std::fill(values.begin(), values.end(), ctx.comm.rank() + 1);
    ctx.comm.barrier();
    const auto t0 = std::chrono::steady_clock::now();
    if (strategy == "allreduce") ctx.comm.allreduce_sum(values);
    else ctx.comm.allreduce_sum_by_slices(values);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::vector<double> worst{seconds};
    ctx.comm.allreduce_max(worst);
    seconds = worst[0];
    const std::int64_t expect = static_cast<std::int64_t>(ctx.comm.size()) * (ctx.comm.size() + 1) / 2;
    if (values.front() != expect || values.back() != expect) throw Error(ErrorKind::kInternal, "wrong reduction result");
    if (r == 0) continue;
    best = std::min(best, seconds);
    total += seconds;
  }
  nlohmann::json j{{"size", size}, {"strategy", strategy}, {"ranks", ctx.comm.size()}, {"bytes_per_element", 8},
                   {"seconds_per_op", total / repeat}, {"best_seconds", best}};
  if (ctx.comm.is_root()) ctx.out << j.dump() << '\n';
  return 0;
}

}  // namespace latent::cli
