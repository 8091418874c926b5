#pragma once
/// \file Applying a fitted LDA model to documents: the topic proportions of `latent
/// transform` (the held-out scores are score_lda in lda_fit.hpp).
#include <functional>
#include <span>
#include <vector>

#include "latent/comm/communicator.hpp"
#include "latent/core/types.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/models/lda/lda.hpp"

namespace latent::models {

/// One block's topic proportions θ (B × K, rows sum to 1), with the block.
using LdaThetaVisitor = std::function<void(const io::BlockRef& block, const RowMatrix& theta)>;

/// The E-step (Lda::e_step_document with `e_step`) on every document of `blocks` (this
/// rank's share of the count dataset's plan), documents in parallel on `threads` threads,
/// reading `prefetch` blocks ahead; θ_d = γ_d / Σ_k γ_dk. `visit` gets each block's θ in
/// block order, one call at a time. `model` must be refreshed (Lda::refresh). A document's
/// θ depends only on the document. Collective (errors agreed).
void transform_lda(const comm::Communicator& comm, const io::CountsDatasetInfo& info,
                   const std::vector<io::BlockRef>& blocks, const Lda& model, const LdaEStepOptions& e_step, int threads,
                   int prefetch, const LdaThetaVisitor& visit);

/// One block's documents (as read: CSR, sorted ids, integral counts) and their θ.
using LdaDocumentsVisitor = std::function<void(const io::CsrBlock& documents, const RowMatrix& theta)>;
/// transform_lda whose visitor also gets the documents, so a caller can count them in the
/// same pass (`latent export --format ldavis`). The same θ, the same collective behaviour.
void transform_lda_documents(const comm::Communicator& comm, const io::CountsDatasetInfo& info,
                             const std::vector<io::BlockRef>& blocks, const Lda& model, const LdaEStepOptions& e_step,
                             int threads, int prefetch, const LdaDocumentsVisitor& visit);

/// The E-step of transform in double precision throughout, in scikit-learn's order
/// (LatentDirichletAllocation._update_doc_distribution; Hoffman et al. 2010 Algorithm 2):
/// γ = 1; then φnorm = Bᵀ exp(E[log θ]) + ε (ε the double epsilon), γ = α + exp(E[log θ]) ⊙
/// B (n / φnorm), exp(E[log θ]) = exp(ψ(γ) − ψ(Σγ)), until the mean |Δγ| is below
/// mean_change_tol or max_doc_update_iter; θ = γ / Σγ. B = exp(ψ(λ) − ψ(Σ_w λ)) in double.
/// The training kernel (Lda::e_step_document) holds B in float32 for speed (θ within about
/// 1e-7 of this); this one matches a double reference to rounding (the Python module's
/// transform and its scikit-learn agreement). Thread-safe after construction.
class LdaExactTransform {
 public:
  explicit LdaExactTransform(const Lda& model);
  /// θ (K) of one document: sorted word ids and their counts (n each).
  Vector theta(std::span<const std::int32_t> ids, std::span<const double> counts,
               const LdaEStepOptions& options) const;

 private:
  RowMatrix exp_elog_beta_;  // V × K
  Vector alpha_;
};

}  // namespace latent::models
