#pragma once
/// \file Applying a fitted multinomial mixture (mmm) to count data: the posterior pass of
/// `latent score|predict|transform`, its score totals, and the document
/// sampler of `latent sample`.
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "latent/comm/communicator.hpp"
#include "latent/core/types.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/models/mixture/discrete.hpp"
#include "latent/train/metrics.hpp"

namespace latent::models {

/// One block of documents with its responsibilities (B × K) and per-document log p(x)
/// (B, nats, without the multinomial coefficient).
using DiscretePosteriorVisitor =
    std::function<void(const io::CsrBlock& block, const RowMatrix& resp, const Vector& log_prob)>;

/// Computes the posterior of every block of `source` on `threads` threads and calls
/// `visit` for each, one call at a time (under a lock, blocks in any order). Collective
/// (errors agreed).
void for_each_posterior(const comm::Communicator& comm, io::CountsSource& source, const DiscreteMixture& model,
                        int threads, const DiscretePosteriorVisitor& visit);

/// Totals of a scoring pass over every rank's documents (exact sums, then rounded).
struct DiscreteScore {
  double log_likelihood = 0;  ///< Σ_d log p(x_d), nats, without the multinomial coefficients
  double num_documents = 0;
  double num_tokens = 0;
  /// This rank's (hard label, true label) counts of the blocks that carry labels; pass it
  /// to train::global_clustering_agreement.
  train::ContingencyTable table;
};

/// The scoring pass: for_each_posterior adding the log-likelihoods, documents and tokens
/// into an ExactSum (one allreduce of 3 cells), and counting labelled blocks' hard labels
/// against /labels. Collective.
DiscreteScore score_discrete(const comm::Communicator& comm, io::CountsSource& source, const DiscreteMixture& model,
                             int threads);

/// Documents of a multinomial mixture: document i draws its component c ~ π, then `length`
/// words ~ β_c by inverse CDF, all from CounterRng(seed, kSample, 0, i), so it is a pure
/// function of (seed, i).
class DocumentSampler {
 public:
  explicit DocumentSampler(const DiscreteMixture& model);
  /// Fills `words` (its size is the document length) with word ids; returns the component.
  /// Thread-safe.
  std::int64_t document(Index i, std::uint64_t seed, std::span<std::int32_t> words) const;

 private:
  RowVector weights_;
  RowMatrix cdf_;  // K × V: cumulative β per component
};

}  // namespace latent::models
