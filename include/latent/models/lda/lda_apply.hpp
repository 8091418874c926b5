#pragma once
/// \file Applying a fitted LDA model to documents: the topic proportions of `latent
/// transform` (the held-out scores are score_lda in lda_fit.hpp).
#include <functional>
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

}  // namespace latent::models
