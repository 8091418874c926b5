#include "latent/models/mixture/discrete_apply.hpp"

#include <algorithm>
#include <mutex>

#include "latent/core/exact_sum.hpp"
#include "latent/core/rng.hpp"
#include "latent/models/fitted_model.hpp"
#include "latent/train/block_reduce.hpp"

namespace latent::models {

void for_each_posterior(const comm::Communicator& comm, io::CountsSource& source, const DiscreteMixture& model,
                        int threads, const DiscretePosteriorVisitor& visit) {
  std::mutex mutex;
  comm::run_agreed(comm, [&] {
    train::for_each_block(source, threads, [&](const io::CsrBlock& b) {
      RowMatrix resp;
      Vector lp;
      model.weighted_log_prob(b, resp);
      DiscreteMixture::normalize(resp, lp);
      std::lock_guard lock(mutex);
      visit(b, resp, lp);
    });
  });
}

DiscreteScore score_discrete(const comm::Communicator& comm, io::CountsSource& source, const DiscreteMixture& model,
                             int threads) {
  DiscreteScore s;
  ExactSum sums(3);
  for_each_posterior(comm, source, model, threads, [&](const io::CsrBlock& b, const RowMatrix& resp, const Vector& lp) {
    const double p[3] = {lp.sum(), static_cast<double>(b.num_rows()), b.num_tokens()};
    sums.add(p);
    if (b.labels.empty()) return;
    const std::vector<std::int64_t> labels = argmax_labels(resp);
    for (std::size_t i = 0; i < labels.size(); ++i) ++s.table[{labels[i], b.labels[i]}];
  });
  comm.allreduce(sums);
  const auto t = sums.values();
  s.log_likelihood = t[0];
  s.num_documents = t[1];
  s.num_tokens = t[2];
  return s;
}

DocumentSampler::DocumentSampler(const DiscreteMixture& model) : weights_(model.weights()), cdf_(model.probabilities()) {
  for (Index k = 0; k < cdf_.rows(); ++k)
    for (Index w = 1; w < cdf_.cols(); ++w) cdf_(k, w) += cdf_(k, w - 1);
}

std::int64_t DocumentSampler::document(Index i, std::uint64_t seed, std::span<std::int32_t> words) const {
  CounterRng rng(seed, RngPurpose::kSample, 0, static_cast<std::uint64_t>(i));
  double u = rng.next_uniform();
  Index c = 0;
  while (c + 1 < cdf_.rows() && u > weights_[c]) u -= weights_[c++];
  const double* row = cdf_.data() + c * cdf_.cols();
  for (auto& w : words) {
    const double v = rng.next_uniform() * row[cdf_.cols() - 1];
    w = static_cast<std::int32_t>(std::min<Index>(std::upper_bound(row, row + cdf_.cols(), v) - row, cdf_.cols() - 1));
  }
  return c;
}

}  // namespace latent::models
