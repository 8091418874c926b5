#pragma once
/// \file Data passes that apply any fitted model (FittedModel) to a rank's blocks: the
/// score totals of `latent score`, the per-row scores behind `latent predict
/// --outlier-quantile`, and the mean scores of several candidates (`latent select`).
/// The commands open the data and the outputs; these passes compute.
#include <functional>
#include <memory>
#include <vector>

#include "latent/comm/communicator.hpp"
#include "latent/core/types.hpp"
#include "latent/io/block_source.hpp"
#include "latent/models/fitted_model.hpp"
#include "latent/train/metrics.hpp"

namespace latent::models {

/// What a scoring pass adds up.
struct ScoreTotals {
  double score_sum = 0;  ///< Σ of the per-row scores over every rank (exact sum, then rounded)
  double num_rows = 0;   ///< rows scored over every rank
  /// This rank's (predicted label, true label) counts; empty unless `labelled`. Pass it to
  /// train::global_clustering_agreement for the ARI and purity.
  train::ContingencyTable table;
};

/// Called with each block and its per-row scores (B), in block order, one call at a time.
using BlockScores = std::function<void(const io::DenseBlock& block, const Vector& score)>;

/// Scores every local block with model.predict_block on `threads` threads: the exact sums
/// of the scores and of the rows (rank- and thread-invariant), and with `labelled` (the
/// source reads /labels) the contingency table of hard labels against the true ones.
/// `per_block` (may be empty) receives each block's scores (per-sample output).
/// Collective (errors agreed, then one allreduce of 2 exact cells).
ScoreTotals score_totals(const comm::Communicator& comm, io::BlockSource& source, const FittedModel& model, int threads,
                         bool labelled, const BlockScores& per_block = {});

/// The per-row scores of this rank's rows (source.num_local_rows() values, in row order).
/// Collective (errors agreed).
std::vector<double> local_scores(const comm::Communicator& comm, io::BlockSource& source, const FittedModel& model,
                                 int threads);

/// The mean per-row score of every model over the source's rows (over every rank), in one
/// pass; 0 for an empty source. Collective (train::reduce_global).
std::vector<double> mean_scores(const comm::Communicator& comm, io::BlockSource& source,
                                const std::vector<std::unique_ptr<FittedModel>>& models, int threads);

}  // namespace latent::models
