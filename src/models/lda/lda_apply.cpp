#include "latent/models/lda/lda_apply.hpp"

#include <oneapi/tbb/enumerable_thread_specific.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "latent/core/control.hpp"

namespace latent::models {

void transform_lda(const comm::Communicator& comm, const io::CountsDatasetInfo& info,
                   const std::vector<io::BlockRef>& blocks, const Lda& model, const LdaEStepOptions& e_step, int threads,
                   int prefetch, const LdaThetaVisitor& visit) {
  transform_lda_documents(comm, info, blocks, model, e_step, threads, prefetch,
                          [&](const io::CsrBlock& documents, const RowMatrix& theta) { visit(documents.ref, theta); });
}

void transform_lda_documents(const comm::Communicator& comm, const io::CountsDatasetInfo& info,
                             const std::vector<io::BlockRef>& blocks, const Lda& model, const LdaEStepOptions& e_step,
                             int threads, int prefetch, const LdaDocumentsVisitor& visit) {
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
      visit(*block, theta);
    }
  });
}

LdaExactTransform::LdaExactTransform(const Lda& model) : alpha_(model.alpha()) {
  const RowMatrix& lambda = model.lambda_vk();  // V × K
  const Index v = lambda.rows(), k = lambda.cols();
  exp_elog_beta_.resize(v, k);
  for (Index t = 0; t < k; ++t) {
    double total = 0;
    for (Index w = 0; w < v; ++w) total += lambda(w, t);
    const double psi_total = digamma(total);
    for (Index w = 0; w < v; ++w) exp_elog_beta_(w, t) = std::exp(digamma(lambda(w, t)) - psi_total);
  }
}

Vector LdaExactTransform::theta(std::span<const std::int32_t> ids, std::span<const double> counts,
                                const LdaEStepOptions& options) const {
  const Index k = alpha_.size(), n = static_cast<Index>(ids.size());
  constexpr double kEps = std::numeric_limits<double>::epsilon();
  Vector gamma = Vector::Ones(k), exp_theta(k), last(k), sum(k);
  const auto refresh_exp_theta = [&] {
    double total = 0;
    for (Index t = 0; t < k; ++t) total += gamma[t];
    const double psi_total = digamma(total);
    for (Index t = 0; t < k; ++t) exp_theta[t] = std::exp(digamma(gamma[t]) - psi_total);
  };
  refresh_exp_theta();
  for (int it = 0; it < options.max_doc_update_iter; ++it) {
    last = gamma;
    sum.setZero();
    for (Index i = 0; i < n; ++i) {
      const auto row = exp_elog_beta_.row(ids[static_cast<std::size_t>(i)]);
      double phinorm = 0;
      for (Index t = 0; t < k; ++t) phinorm += exp_theta[t] * row[t];
      const double ratio = counts[static_cast<std::size_t>(i)] / (phinorm + kEps);
      for (Index t = 0; t < k; ++t) sum[t] += ratio * row[t];
    }
    for (Index t = 0; t < k; ++t) gamma[t] = exp_theta[t] * sum[t] + alpha_[t];
    refresh_exp_theta();
    double change = 0;
    for (Index t = 0; t < k; ++t) change += std::abs(gamma[t] - last[t]);
    if (change / static_cast<double>(k) < options.mean_change_tol) break;
  }
  return gamma / gamma.sum();
}

}  // namespace latent::models
