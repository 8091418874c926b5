#pragma once
/// \file Mixtures of products of discrete distributions fitted by EM (Bishop PRML §9.3.3):
///  - Bernoulli mixture ("bmm") for binary data x ∈ {0, 1}^D:
///      log p(x | k) = Σ_d x_d log μ_kd + (1 − x_d) log(1 − μ_kd);
///    values in [0, 1] are accepted as soft counts (the same cross-entropy).
///  - Multinomial mixture ("mmm", mixture of unigrams, Nigam et al. 2000) for count data
///    (documents as bags of words): log p(x | k) = Σ_w x_w log β_kw, up to the
///    multinomial coefficient log(n! / Π x_w!), which does not depend on the parameters.
/// The M-step is the MAP estimate under symmetric priors (additive smoothing, as
/// scikit-learn's BernoulliNB/MultinomialNB `alpha`): μ_kd = (S_kd + α) / (N_k + 2α),
/// β_kw = (S_kw + α) / (Σ_w S_kw + V α), and with a Dirichlet weight prior of pseudo-count
/// γ: π_k = (N_k + γ) / (N + K γ). The EM objective is the mean log posterior
/// (log-likelihood plus the log-prior terms α Σ log μ(1−μ) or α Σ log β, and γ Σ log π,
/// divided by N), which EM never decreases. μ is kept in [1e-10, 1 − 1e-10].
#include <cstdint>
#include <span>
#include <string>

#include "latent/core/types.hpp"
#include "latent/io/block_source.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/train/batch_em.hpp"

namespace latent::models {

enum class DiscreteKind { kBernoulli, kMultinomial };

class DiscreteMixture {
 public:
  /// K components over D features (bmm) or a vocabulary of D words (mmm). Throws
  /// Error(kUsage) for K < 1 or negative smoothing.
  DiscreteMixture(Index num_components, Index num_features, DiscreteKind kind, double alpha, double weight_alpha);

  /// weights (K, sum 1), probabilities (K × D: μ for bmm, rows of β summing to 1 for mmm).
  void set_parameters(RowVector weights, RowMatrix probabilities);

  Index num_components() const noexcept { return k_; }
  Index num_features() const noexcept { return d_; }
  DiscreteKind kind() const noexcept { return kind_; }
  double alpha() const noexcept { return alpha_; }
  double weight_alpha() const noexcept { return weight_alpha_; }
  const RowVector& weights() const noexcept { return weights_; }
  const RowMatrix& probabilities() const noexcept { return probs_; }
  /// Free parameters: K − 1 + K D (bmm) or K − 1 + K (V − 1) (mmm).
  Index num_parameters() const noexcept;

  /// log π_k + log p(x_n | k), B × K, nats. Dense rows (bmm) or documents (mmm). Thread-safe.
  void weighted_log_prob(const Eigen::Ref<const RowMatrix>& x, RowMatrix& out) const;
  void weighted_log_prob(const io::CsrBlock& docs, RowMatrix& out) const;
  /// Turns weighted log-probabilities into responsibilities in place; per-row log p(x) (B).
  static void normalize(RowMatrix& wlp, Vector& log_prob);
  /// The log-prior term of the objective under the current parameters (nats, total).
  double log_prior() const;

  /// Draws (bmm only): row i of the result is a pure function of (seed, first + i).
  RowMatrix sample(Index first, Index count, std::uint64_t seed, std::vector<std::int64_t>& labels) const;

 private:
  void prepare();
  Index k_, d_;
  DiscreteKind kind_;
  double alpha_, weight_alpha_;
  RowVector weights_;
  RowMatrix probs_;
  RowMatrix coef_;  // bmm: D × K, log μ − log(1−μ); mmm: V × K, log β (word-major)
  RowVector bias_;  // K: log π (+ Σ_d log(1−μ_kd) for bmm)
};

/// EM statistics: [Σ log p(x_n), N, N_k (K), S (K × D) = Σ_n r_nk x_n].
class DiscreteEm {
 public:
  explicit DiscreteEm(DiscreteMixture model) : model_(std::move(model)) {}
  DiscreteMixture& model() { return model_; }
  const DiscreteMixture& model() const { return model_; }
  std::size_t num_stats() const;
  /// Adds the statistics of rows with responsibilities resp (B × K). Thread-safe.
  void accumulate(const Eigen::Ref<const RowMatrix>& x, const RowMatrix& resp, std::span<double> partial) const;
  void accumulate(const io::CsrBlock& docs, const RowMatrix& resp, std::span<double> partial) const;
  /// MAP M-step; objective = (Σ log p + log prior of the E-step's parameters) / N.
  train::EmModel::Step m_step(std::span<const double> stats);
  void save_state(train::TrainState& state) const;
  void load_state(const train::TrainState& state);
  void reset_objective();

 private:
  DiscreteMixture model_;
  double previous_ = -1e300;
};

}  // namespace latent::models
