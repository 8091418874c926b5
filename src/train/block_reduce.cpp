#include "latent/train/block_reduce.hpp"

#include <oneapi/tbb/enumerable_thread_specific.h>
#include <oneapi/tbb/parallel_pipeline.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <type_traits>

#include "latent/core/control.hpp"

namespace latent::train {
namespace {

using BlockPtr = std::shared_ptr<const io::DenseBlock>;

int clamp_threads(int threads) { return std::max(1, threads); }

// Runs a pipeline whose first stage pulls the pass's blocks from the source (serially:
// BlockSource::next is single-consumer) and whose later stages `rest` builds, in an arena
// of `threads` threads. Stops the pass if any stage throws.
//
// With two or more threads the first stage reads each block itself (ReadMode::kCaller):
// while one thread reads, the others compute, so the pass keeps `threads` threads busy.
// An I/O thread would be one more; on a rank given exactly `threads` cores it took CPU
// from the compute (the copy out of the page cache costs about as much as a diagonal GMM
// E+M step), and the pipeline waited on its slowest thread (docs/PERFORMANCE.md §1,
// Zen 4: "Streaming with two threads"). With one thread, the I/O thread is what overlaps
// reading and compute, where the rank has a core for it: a source without one
// (BlockSourceOptions::io_thread, one rank per core) reads in this stage too. The blocks
// and their order are the same either way, so are the bits.
//
// A dense source that can (BlockSource::claim) is read by every thread: the serial stage
// only claims the next block and a parallel stage reads it, so reads overlap one another
// as well as compute. With the reads serial, a streamed diagonal GMM at two threads ran
// no faster than at one: the copy out of the page cache alone took as long as one
// thread's E+M step (docs/PERFORMANCE.md, eleventh AMD session).
template <class Source, class Rest>
void run_pass(Source& source, int threads, Rest&& rest) {
  using Ptr = decltype(source.next());
  threads = clamp_threads(threads);
  source.start_pass(threads > 1 ? io::ReadMode::kCaller : io::ReadMode::kIoThread);
  try {
    tbb::task_arena arena(threads);
    arena.execute([&] {
      const auto tokens = static_cast<std::size_t>(threads) + 1;
      if constexpr (requires { source.claim(); }) {
        if (threads > 1 && !source.cached()) {
          auto claims = tbb::make_filter<void, std::ptrdiff_t>(tbb::filter_mode::serial_in_order,
                                                               [&](tbb::flow_control& fc) -> std::ptrdiff_t {
                                                                 const std::ptrdiff_t i = source.claim();
                                                                 heartbeat();
                                                                 if (i < 0) fc.stop();
                                                                 return i;
                                                               });
          auto reads = tbb::make_filter<std::ptrdiff_t, Ptr>(tbb::filter_mode::parallel, [&](std::ptrdiff_t i) -> Ptr {
            return i < 0 ? Ptr{} : source.read_claimed(static_cast<std::size_t>(i));
          });
          tbb::parallel_pipeline(tokens, claims & reads & rest());
          return;
        }
      }
      auto input = tbb::make_filter<void, Ptr>(tbb::filter_mode::serial_in_order,
                                               [&](tbb::flow_control& fc) -> Ptr {
                                                      Ptr b = source.next();
                                                      heartbeat();
                                                      if (!b) fc.stop();
                                                      return b;
                                                    });
      tbb::parallel_pipeline(tokens, input & rest());
    });
  } catch (...) {
    source.cancel_pass();
    throw;
  }
}

}  // namespace

void for_each_block(io::BlockSource& source, int threads, const BlockVisitor& visit) {
  run_pass(source, threads, [&] {
    return tbb::make_filter<BlockPtr, void>(tbb::filter_mode::parallel, [&](const BlockPtr& b) {
      if (b) visit(*b);
    });
  });
}

void for_each_block_ordered(io::BlockSource& source, int threads,
                            const std::function<std::shared_ptr<void>(const io::DenseBlock&)>& compute,
                            const std::function<void(const io::DenseBlock&, std::shared_ptr<void>)>& consume) {
  using Item = std::pair<BlockPtr, std::shared_ptr<void>>;
  run_pass(source, threads, [&] {
    return tbb::make_filter<BlockPtr, Item>(tbb::filter_mode::parallel,
                                            [&](const BlockPtr& b) -> Item {
                                              if (!b) return {};
                                              return {b, compute(*b)};
                                            }) &
           tbb::make_filter<Item, void>(tbb::filter_mode::serial_in_order, [&](const Item& item) {
             if (item.first) consume(*item.first, item.second);
           });
  });
}

namespace {

template <class Source, class Kernel>
ExactSum reduce_local_of(Source& source, std::size_t num_stats, int threads, const Kernel& kernel) {
  using Block = std::remove_cvref_t<decltype(*source.next())>;
  struct Local {
    ExactSum sum;
    AlignedDoubles partial;  // aligned: the kernels' Eigen reductions must not see heap-dependent alignment
  };
  tbb::enumerable_thread_specific<Local> locals([num_stats] { return Local{ExactSum(num_stats), AlignedDoubles(num_stats)}; });
  run_pass(source, threads, [&] {
    return tbb::make_filter<std::shared_ptr<const Block>, void>(tbb::filter_mode::parallel,
                                                               [&](const std::shared_ptr<const Block>& block) {
                                                                 if (!block) return;
                                                                 Local& local = locals.local();
                                                                 std::fill(local.partial.begin(), local.partial.end(), 0.0);
                                                                 kernel(*block, local.partial);
                                                                 local.sum.add(local.partial);
                                                               });
  });
  ExactSum total(num_stats);
  for (const Local& local : locals) total.merge(local.sum);
  return total;
}

}  // namespace

ExactSum reduce_local(io::BlockSource& source, std::size_t num_stats, int threads, const BlockKernel& kernel) {
  return reduce_local_of(source, num_stats, threads, kernel);
}

ExactSum reduce_local(io::CountsSource& source, std::size_t num_stats, int threads, const CountsKernel& kernel) {
  return reduce_local_of(source, num_stats, threads, kernel);
}

void for_each_block(io::CountsSource& source, int threads, const std::function<void(const io::CsrBlock&)>& visit) {
  run_pass(source, threads, [&] {
    return tbb::make_filter<std::shared_ptr<const io::CsrBlock>, void>(
        tbb::filter_mode::parallel, [&](const std::shared_ptr<const io::CsrBlock>& b) {
          if (b) visit(*b);
        });
  });
}

std::vector<double> reduce_global(const comm::Communicator& comm, io::BlockSource& source,
                                  std::size_t num_stats, int threads, const BlockKernel& kernel) {
  ExactSum sum;
  comm::run_agreed(comm, [&] { sum = reduce_local(source, num_stats, threads, kernel); });
  comm.allreduce(sum);
  return sum.values();
}

std::vector<double> reduce_global(const comm::Communicator& comm, io::CountsSource& source, std::size_t num_stats,
                                  int threads, const CountsKernel& kernel) {
  ExactSum sum;
  comm::run_agreed(comm, [&] { sum = reduce_local(source, num_stats, threads, kernel); });
  comm.allreduce(sum);
  return sum.values();
}

}  // namespace latent::train
