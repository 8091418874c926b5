#pragma once
/// \file Counter-based randomness (docs/ARCHITECTURE.md §5): every draw is a pure function of
/// (seed, purpose, epoch, id, counter), so results do not depend on how rows are spread
/// over ranks and threads, and a resumed run needs no saved generator state.
/// The mixer is SplitMix64's finaliser (Steele, Lea, Flood 2014) applied in a chain.
#include <cmath>
#include <cstdint>

namespace latent {

/// Distinct streams for distinct uses of randomness; never renumber (results would change).
enum class RngPurpose : std::uint64_t {
  kKmeansSeeding = 1,   ///< k-means|| / k-means++ / random_from_data row selection
  kRandomInit = 2,      ///< random responsibilities ("random" init)
  kCandidateReduce = 3, ///< weighted k-means++ over k-means|| candidates
  kSample = 4,          ///< `latent sample`
  kNInit = 5,           ///< derivation of per-restart seeds for --n-init
  kHoldout = 6,         ///< `latent import counts --holdout-fraction`: document i goes to the test
                        ///< set iff CounterRng(seed, kHoldout, 0, i).next_uniform() < fraction
  kLdaInit = 7,         ///< initial LDA topics λ ~ Gamma(100, 1/100)
  kGenerate = 8,        ///< synthetic corpora (`latent generate`)
  kLdaGammaInit = 9,    ///< starting γ of a document's E-step in LDA training
  kVaeInit = 10,        ///< VAE weights (epoch = layer number)
  kVaeNoise = 11,       ///< VAE training noise ε (epoch = optimiser step, id = global row)
  kVaeEval = 12,        ///< VAE evaluation noise (epoch 0: the ELBO's ε; 1: the IWAE samples; id = row)
  kVaeShuffle = 13,     ///< VAE --shuffle: the order of an epoch's minibatches (epoch = epoch)
  kFactorInit = 14,     ///< PPCA/FA initial components (id = component)
  kGibbsInit = 15,      ///< LDA Gibbs sampler: initial topic of a token (id = global token id)
  kGibbsSweep = 16,     ///< LDA Gibbs sampler: proposals and acceptances (epoch = sweep, id = global token id)
};

constexpr std::uint64_t mix64(std::uint64_t z) noexcept {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// A stream of draws keyed by (seed, purpose, epoch, id); `next_*` advance a counter.
class CounterRng {
 public:
  CounterRng(std::uint64_t seed, RngPurpose purpose, std::uint64_t epoch, std::uint64_t id) noexcept
      : key_(mix64(mix64(mix64(mix64(seed) ^ static_cast<std::uint64_t>(purpose)) ^ epoch) ^ id)) {}

  /// The key of stream (seed, purpose, epoch, id) is mix64(prefix(seed, purpose, epoch) ^ id):
  /// per-token loops compute the prefix once.
  static constexpr std::uint64_t prefix(std::uint64_t seed, RngPurpose purpose, std::uint64_t epoch) noexcept {
    return mix64(mix64(mix64(seed) ^ static_cast<std::uint64_t>(purpose)) ^ epoch);
  }
  /// Draw number `counter` of the stream whose key is `key` (= mix64(prefix ^ id)): the same
  /// value as the counter-th next_u64() of CounterRng(seed, purpose, epoch, id).
  static constexpr std::uint64_t draw(std::uint64_t key, std::uint64_t counter) noexcept { return mix64(key ^ mix64(counter)); }

  std::uint64_t next_u64() noexcept { return mix64(key_ ^ mix64(counter_++)); }
  /// Uniform on the open interval (0, 1): 53 random bits, never exactly 0 or 1.
  double next_uniform() noexcept {
    return (static_cast<double>(next_u64() >> 11) + 0.5) * 0x1.0p-53;
  }
  /// Standard normal by Box-Muller (two uniforms per draw; deterministic given libm).
  double next_normal() noexcept {
    const double u1 = next_uniform();
    const double u2 = next_uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  std::uint64_t key_;
  std::uint64_t counter_ = 0;
};

/// A Gamma(shape, 1) draw by Marsaglia & Tsang 2000 (shape < 1 via the boost
/// Gamma(shape + 1) · U^(1/shape)); deterministic given the stream.
inline double sample_gamma(CounterRng& rng, double shape) noexcept {
  if (shape < 1.0) {
    const double u = rng.next_uniform();
    return sample_gamma(rng, shape + 1.0) * std::pow(u, 1.0 / shape);
  }
  const double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  while (true) {
    double x, v;
    do {
      x = rng.next_normal();
      v = 1.0 + c * x;
    } while (v <= 0.0);
    v = v * v * v;
    const double u = rng.next_uniform();
    if (u < 1.0 - 0.0331 * (x * x) * (x * x)) return d * v;  // the squeeze: no logarithms
    if (std::log(u) < 0.5 * x * x + d - d * v + d * std::log(v)) return d * v;
  }
}

}  // namespace latent
