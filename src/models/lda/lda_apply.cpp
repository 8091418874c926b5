#include "latent/models/lda/lda_apply.hpp"

#include <oneapi/tbb/enumerable_thread_specific.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>

#include "latent/core/control.hpp"

namespace latent::models {

void transform_lda(const comm::Communicator& comm, const io::CountsDatasetInfo& info,
                   const std::vector<io::BlockRef>& blocks, const Lda& model, const LdaEStepOptions& e_step, int threads,
                   int prefetch, const LdaThetaVisitor& visit) {
  const Index k = model.num_topics();
  comm::run_agreed(comm, [&] {
    io::CountsSource source(info, blocks, {prefetch, 0, false});
    source.start_pass();
    tbb::task_arena arena(std::max(1, threads));
    struct Local {
      LdaWorkspace work;
      Vector gamma;
    };
    tbb::enumerable_thread_specific<Local> locals;
    while (auto block = source.next()) {
      heartbeat();
      RowMatrix theta(block->num_rows(), k);
      arena.execute([&] {
        tbb::parallel_for(Index{0}, block->num_rows(), [&](Index d) {
          Local& s = locals.local();
          const auto b = static_cast<std::size_t>(block->indptr[static_cast<std::size_t>(d)]);
          const auto e = static_cast<std::size_t>(block->indptr[static_cast<std::size_t>(d) + 1]);
          model.e_step_document({block->indices.data() + b, e - b}, {block->counts.data() + b, e - b}, e_step, s.work,
                                s.gamma);
          theta.row(d) = (s.gamma / s.gamma.sum()).transpose();
        });
      });
      visit(block->ref, theta);
    }
  });
}

}  // namespace latent::models
