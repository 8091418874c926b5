#include "latent/models/apply.hpp"

#include <algorithm>

#include "latent/core/exact_sum.hpp"
#include "latent/train/block_reduce.hpp"

namespace latent::models {

ScoreTotals score_totals(const comm::Communicator& comm, io::BlockSource& source, const FittedModel& model, int threads,
                         bool labelled, const BlockScores& per_block) {
  ScoreTotals t;
  ExactSum sums(2);
  comm::run_agreed(comm, [&] {
    struct Result {
      Vector score;
      std::vector<std::int64_t> labels;
    };
    train::for_each_block_ordered(
        source, threads,
        [&](const io::DenseBlock& b) -> std::shared_ptr<void> {
          auto r = std::make_shared<Result>();
          model.predict_block(b.x, r->score, r->labels, nullptr);
          return r;
        },
        [&](const io::DenseBlock& b, std::shared_ptr<void> p) {
          const auto& r = *static_cast<const Result*>(p.get());
          const double partial[2] = {r.score.sum(), static_cast<double>(b.x.rows())};
          sums.add(partial);
          if (labelled)
            for (std::size_t i = 0; i < r.labels.size(); ++i) ++t.table[{r.labels[i], b.labels[i]}];
          if (per_block) per_block(b, r.score);
        });
  });
  comm.allreduce(sums);
  const auto totals = sums.values();
  t.score_sum = totals[0];
  t.num_rows = totals[1];
  return t;
}

std::vector<double> local_scores(const comm::Communicator& comm, io::BlockSource& source, const FittedModel& model,
                                 int threads) {
  std::vector<double> local(static_cast<std::size_t>(source.num_local_rows()));
  const Index first = source.blocks().empty() ? 0 : source.blocks().front().global_row_begin;
  comm::run_agreed(comm, [&] {
    train::for_each_block(source, threads, [&](const io::DenseBlock& b) {
      Vector score;
      std::vector<std::int64_t> labels;
      model.predict_block(b.x, score, labels, nullptr);
      std::copy(score.begin(), score.end(), local.begin() + (b.ref.global_row_begin - first));
    });
  });
  return local;
}

std::vector<double> mean_scores(const comm::Communicator& comm, io::BlockSource& source,
                                const std::vector<std::unique_ptr<FittedModel>>& models, int threads) {
  const std::size_t m = models.size();
  const std::vector<double> sums = train::reduce_global(comm, source, m + 1, threads, [&](const io::DenseBlock& b, std::span<double> p) {
    for (std::size_t i = 0; i < m; ++i) {
      Vector score;
      std::vector<std::int64_t> labels;
      models[i]->predict_block(b.x, score, labels, nullptr);
      p[i] = score.sum();
    }
    p[m] = static_cast<double>(b.x.rows());
  });
  std::vector<double> out(m);
  for (std::size_t i = 0; i < m; ++i) out[i] = sums[m] > 0 ? sums[i] / sums[m] : 0.0;
  return out;
}

}  // namespace latent::models
