#include "latent/models/lda/lda.hpp"

#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>

#include <xmmintrin.h>

#include <algorithm>
#include <cmath>

#include "latent/core/error.hpp"
#include "latent/core/flush_denormals.hpp"
#include "latent/core/rng.hpp"

namespace latent::models {
namespace {

constexpr Index kChunkRows = Lda::kChunkRows;

double log_gamma(double x) noexcept {
  int sign = 0;
  return lgamma_r(x, &sign);
}

// Sums f(first_row, last_row) -> double over fixed chunks, in chunk order.
template <class F>
double chunked_sum(Index rows, int threads, F&& f) {
  const Index chunks = (rows + kChunkRows - 1) / kChunkRows;
  std::vector<double> partial(static_cast<std::size_t>(chunks), 0.0);
  tbb::task_arena arena(std::max(1, threads));
  arena.execute([&] {
    tbb::parallel_for(Index{0}, chunks, [&](Index c) {
      partial[static_cast<std::size_t>(c)] = f(c * kChunkRows, std::min(rows, (c + 1) * kChunkRows));
    });
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

}  // namespace

double digamma(double x) noexcept {
  // ψ(x) = ψ(x + m) − Σ_{i<m} 1/(x + i), with the sum as one fraction (a single division
  // instead of m), then the asymptotic series (to x^-14; truncation < 2e-15) at x + m >= 8.
  double num = 0, den = 1;
  while (x < 8.0) {
    num = num * x + den;
    den *= x;
    x += 1.0;
  }
  const double f = 1.0 / (x * x);
  const double t = f * (-1.0 / 12 + f * (1.0 / 120 + f * (-1.0 / 252 + f * (1.0 / 240 + f * (-1.0 / 132 + f * (691.0 / 32760 + f * (-1.0 / 12)))))));
  return std::log(x) - 0.5 / x + t - num / den;
}

namespace {

// out[i] = exp(ψ(x[i]) − minus[i]) in single precision (minus: one per entry, padded like
// out, or one for all). The series of digamma() cut to x^-6 (truncation < 3e-10 at x + 8),
// branch-free so every lane runs: entries below 8 are shifted by exactly 8, the eight
// reciprocals summed as one fraction. Written with Eigen's packet primitives (16 lanes with
// AVX-512, 8 with AVX2) so every step stays in registers. x is first narrowed into a
// thread-local buffer padded with 1s to a multiple of 16; out's padding is then zeroed.
void exp_digamma_minus_impl(std::span<const double> x, const float* minus, float minus_all, std::span<float> out) noexcept {
  namespace ei = Eigen::internal;
  using Packet = ei::packet_traits<float>::type;
  constexpr Index kW = ei::packet_traits<float>::size;
  const auto n = static_cast<Index>(x.size());
  const Index m = (n + 15) / 16 * 16;
  thread_local std::vector<float> xf;
  xf.resize(static_cast<std::size_t>(m));
  for (Index i = 0; i < n; ++i) xf[static_cast<std::size_t>(i)] = static_cast<float>(x[static_cast<std::size_t>(i)]);
  for (Index i = n; i < m; ++i) xf[static_cast<std::size_t>(i)] = 1.0f;
  const Packet one = ei::pset1<Packet>(1.0f), eight = ei::pset1<Packet>(8.0f), half = ei::pset1<Packet>(0.5f);
  const Packet c2 = ei::pset1<Packet>(-1.0f / 12), c4 = ei::pset1<Packet>(1.0f / 120), c6 = ei::pset1<Packet>(-1.0f / 252);
  const Packet all = ei::pset1<Packet>(minus_all);
  for (Index c = 0; c < m; c += kW) {
    const Packet in = ei::ploadu<Packet>(xf.data() + c);
    // The shift's fraction on xs = x (x < 8) or 1 (x >= 8, then discarded): no overflow.
    const Packet small = ei::pcmp_lt(in, eight);
    Packet xs = ei::pselect(small, in, one), num = ei::pzero(in), den = one;
    for (int i = 0; i < 8; ++i) {
      num = ei::pmadd(num, xs, den);
      den = ei::pmul(den, xs);
      xs = ei::padd(xs, one);
    }
    const Packet y = ei::pselect(small, ei::padd(in, eight), in);
    const Packet inv = ei::pdiv(one, y), f = ei::pmul(inv, inv);
    const Packet series = ei::pmul(f, ei::pmadd(f, ei::pmadd(f, c6, c4), c2));
    const Packet shift = ei::pselect(small, ei::pdiv(num, den), ei::pzero(in));
    const Packet psi = ei::padd(ei::psub(ei::psub(ei::plog(y), ei::pmul(half, inv)), shift), series);
    const Packet sub = minus != nullptr ? ei::ploadu<Packet>(minus + c) : all;
    ei::pstoreu(out.data() + c, ei::pexp(ei::psub(psi, sub)));
  }
  for (Index i = n; i < m; ++i) out[static_cast<std::size_t>(i)] = 0.0f;
}

}  // namespace

void exp_digamma_minus(std::span<const double> x, std::span<const float> minus, std::span<float> out) noexcept {
  exp_digamma_minus_impl(x, minus.data(), 0.0f, out);
}

void exp_digamma_minus(std::span<const double> x, float minus, std::span<float> out) noexcept {
  exp_digamma_minus_impl(x, nullptr, minus, out);
}

double trigamma(double x) noexcept {
  double result = 0;
  while (x < 10.0) {
    result += 1.0 / (x * x);
    x += 1.0;
  }
  const double f = 1.0 / (x * x);
  // ψ'(x) ~ 1/x + 1/(2x²) + Σ B_2k / x^(2k+1)
  const double t = 1.0 / x + f / 2.0 + f / x * (1.0 / 6 + f * (-1.0 / 30 + f * (1.0 / 42 + f * (-1.0 / 30 + f * (5.0 / 66 + f * (-691.0 / 2730 + f * (7.0 / 6)))))));
  return result + t;
}

Lda::Lda(Index num_topics, Index vocab_size, Vector alpha, double eta)
    : lambda_(RowMatrix::Zero(vocab_size, num_topics)), alpha_(std::move(alpha)), eta_(eta) {
  if (alpha_.size() != num_topics) throw_usage("doc_topic_prior must have one entry per topic");
}

double Lda::initial_lambda(std::uint64_t seed, Index t, Index w) {
  CounterRng rng(seed, RngPurpose::kLdaInit, static_cast<std::uint64_t>(t), static_cast<std::uint64_t>(w));
  return sample_gamma(rng, 100.0) / 100.0;
}

void Lda::init_lambda(std::uint64_t seed) {
  for (Index w = 0; w < vocab_size(); ++w)
    for (Index t = 0; t < num_topics(); ++t) lambda_(w, t) = initial_lambda(seed, t, w);
}

void Lda::initial_gamma(std::uint64_t seed, std::uint64_t update, std::uint64_t doc, Vector& gamma) const {
  CounterRng rng(seed, RngPurpose::kLdaGammaInit, update, doc);
  gamma.resize(num_topics());
  for (Index t = 0; t < num_topics(); ++t) gamma(t) = sample_gamma(rng, 100.0) / 100.0;
}

void Lda::refresh(int threads) {
  refresh_totals(threads);
  const Index v = vocab_size();
  const Index chunks = (v + kChunkRows - 1) / kChunkRows;
  tbb::task_arena arena(std::max(1, threads));
  arena.execute([&] {
    tbb::parallel_for(Index{0}, chunks, [&](Index c) {
      for (Index w = c * kChunkRows; w < std::min(v, (c + 1) * kChunkRows); ++w) refresh_row(w);
    });
  });
}

void Lda::refresh_row(Index w) {
  const auto k = static_cast<std::size_t>(num_topics());
  const auto kp = static_cast<std::size_t>(padded_topics());
  exp_digamma_minus({lambda_.row(w).data(), k}, {digamma_total_f_.data(), kp}, {exp_elog_beta_.row(w).data(), kp});
}

void Lda::refresh_words(std::span<const std::int32_t> words, int threads) {
  tbb::task_arena arena(std::max(1, threads));
  arena.execute([&] {
    tbb::parallel_for(std::size_t{0}, words.size(), [&](std::size_t i) { refresh_row(words[i]); });
  });
}

void Lda::refresh_totals(int threads) {
  const Index k = num_topics(), v = vocab_size();
  const Index chunks = (v + kChunkRows - 1) / kChunkRows;
  RowMatrix partial = RowMatrix::Zero(chunks, k);
  if (exp_elog_beta_.rows() != v || exp_elog_beta_.cols() != padded_topics()) exp_elog_beta_ = RowMatrixF::Zero(v, padded_topics());
  tbb::task_arena arena(std::max(1, threads));
  arena.execute([&] {
    tbb::parallel_for(Index{0}, chunks, [&](Index c) {
      for (Index w = c * kChunkRows; w < std::min(v, (c + 1) * kChunkRows); ++w) partial.row(c) += lambda_.row(w);
    });
  });
  topic_totals_ = Vector::Zero(k);
  for (Index c = 0; c < chunks; ++c) topic_totals_ += partial.row(c).transpose();
  digamma_total_.resize(k);
  for (Index t = 0; t < k; ++t) digamma_total_(t) = digamma(topic_totals_(t));
  digamma_total_f_.setZero(padded_topics());
  digamma_total_f_.head(k) = digamma_total_.cast<float>();
}

double Lda::topic_term(int threads) const {
  const Index k = num_topics(), v = vocab_size();
  const Vector& dg_total = digamma_total_;  // ψ(Σ_w λ_kw), kept by refresh_totals
  const double lg_eta = log_gamma(eta_);
  double total = chunked_sum(v, threads, [&](Index first, Index last) {
    double s = 0;
    for (Index w = first; w < last; ++w)
      for (Index t = 0; t < k; ++t) {
        const double l = lambda_(w, t);
        s += (eta_ - l) * (digamma(l) - dg_total(t)) + log_gamma(l) - lg_eta;
      }
    return s;
  });
  for (Index t = 0; t < k; ++t) total += log_gamma(static_cast<double>(v) * eta_) - log_gamma(topic_totals_(t));
  return total;
}

double Lda::sum_elog_beta(int threads) const {
  const Index k = num_topics();
  const Vector& dg_total = digamma_total_;  // ψ(Σ_w λ_kw), kept by refresh_totals
  return chunked_sum(vocab_size(), threads, [&](Index first, Index last) {
    double s = 0;
    for (Index w = first; w < last; ++w)
      for (Index t = 0; t < k; ++t) s += digamma(lambda_(w, t)) - dg_total(t);
    return s;
  });
}

namespace {

// exp(E[log θ]) = exp(ψ(γ) − ψ(Σγ)) into out_f (single precision, the E-step's products;
// its first K entries) and out (the same values widened).
void exp_elog_theta(const Vector& gamma, Eigen::VectorXf& out_f, Vector& out) {
  const Index k = gamma.size();
  double sum = 0;
  for (Index t = 0; t < k; ++t) sum += gamma(t);
  const auto n = static_cast<std::size_t>(k);
  exp_digamma_minus({gamma.data(), n}, static_cast<float>(digamma(sum)), {out_f.data(), static_cast<std::size_t>(out_f.size())});
  out = out_f.head(k).cast<double>();
}

}  // namespace

// The float32 E-step runs in FlushDenormals (latent/core/flush_denormals.hpp). With many
// topics (α = 1/K small) most of exp(E[log θ]) is tiny, and its products with exp(E[log β])
// fall below FLT_MIN: each such operation then takes a microcode assist (about 100 cycles),
// which made the E-step at K = 1,000, V = 10⁵ run at under 1 GFLOP/s. Flushing them to 0
// changes values below 1e-38 only (relative to sums of order 1e-2 and more).

LdaDocResult Lda::e_step_document(std::span<const std::int32_t> ids, std::span<const double> counts,
                                  const LdaEStepOptions& options, LdaWorkspace& work, Vector& gamma,
                                  bool warm) const {
  const FlushDenormals flush;
  const Index k = num_topics();
  const auto n = static_cast<Index>(ids.size());
  LdaDocResult r;
  const Eigen::Map<const Vector> cts(counts.data(), n);
  if (!warm || gamma.size() != k) gamma = Vector::Constant(k, 1.0);
  if (n == 0) gamma = alpha_;  // no words: the posterior is the prior
  // The document's rows of exp(E[log β]) in float32, as G (kp × np, topic-major). One
  // sweep over G per iteration, in chunks of 64 words: phinorm for the chunk by K
  // multiply-adds into 64 register accumulators, then while the chunk is in L1 each topic's
  // share of G·(n / phinorm) into a 16-lane partial sum; the lanes are added in a fixed
  // order at the end. Zero padding (np to 64 words, kp to 16 topics) keeps every loop at a
  // fixed width. Single precision perturbs γ by ~1e-6 relative, far below mean_change_tol.
  constexpr Index kWords = 64, kLanes = 16;
  const Index np = (n + kWords - 1) / kWords * kWords, kp = padded_topics();
  // G = the rows' transpose, by W × W tiles read straight from exp(E[log β]) (rows padded to
  // kp with zeros; W = 16 lanes with AVX-512, 8 with AVX2, dividing 16) and transposed in
  // registers; words past n are zero. G's rows are ld = np + 16 floats apart: with a
  // power-of-two stride (np = 512, 1024, ...) every topic's slice of a chunk would fall in
  // the same few L1 sets and evict the chunk between the two sweeps.
  const Index ld = np + 16;
  work.g.resize(kp, ld);
  {
    namespace ei = Eigen::internal;
    using Packet = ei::packet_traits<float>::type;
    constexpr Index kW = ei::packet_traits<float>::size;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"  // Packet16f's alignment attribute in a template argument
    ei::PacketBlock<Packet, kW> tile;
#pragma GCC diagnostic pop
    const Packet zero = ei::pset1<Packet>(0.0f);
    for (Index i0 = 0; i0 < np; i0 += kW)
      for (Index t0 = 0; t0 < kp; t0 += kW) {
        for (Index row = 0; row < kW; ++row)
          tile.packet[row] = i0 + row < n ? ei::ploadu<Packet>(exp_elog_beta_.row(ids[static_cast<std::size_t>(i0 + row)]).data() + t0) : zero;
        ei::ptranspose(tile);
        for (Index row = 0; row < kW; ++row) ei::pstoreu(work.g.data() + (t0 + row) * ld + i0, tile.packet[row]);
      }
  }
  work.beta_rows = exp_elog_beta_.data();
  work.beta_stride = kp;
  work.counts_f.setZero(np);
  work.counts_f.head(n) = cts.cast<float>();
  Vector& et = work.exp_elog_theta;
  work.et_f.setZero(kp);
  exp_elog_theta(gamma, work.et_f, et);
  // Hoffman et al. 2010 Alg. 2: phinorm = Gᵀ exp(E[log θ]); γ = α + exp(E[log θ]) ⊙ G (n / phinorm).
  work.ratio_f.resize(kp * kLanes);  // the per-topic lane sums
  work.acc_f.resize(kp);
  float* lanes = work.ratio_f.data();
  float* acc_f = work.acc_f.data();
  const float* cnt = work.counts_f.data();
  const float* g_all = work.g.data();
  for (int it = 1; it <= options.max_doc_update_iter && n > 0; ++it) {
    const float* et_f = work.et_f.data();
    std::fill_n(lanes, k * kLanes, 0.0f);
    for (Index j0 = 0; j0 < np; j0 += kWords) {
      float sum[kWords] = {};
      for (Index t = 0; t < k; ++t) {
        const float e = et_f[t];
        const float* g = g_all + t * ld + j0;
#pragma omp simd
        for (Index j = 0; j < kWords; ++j) sum[j] += e * g[j];
      }
      float rr[kWords];
#pragma omp simd
      for (Index j = 0; j < kWords; ++j) rr[j] = cnt[j0 + j] / (sum[j] + 1e-30f);
      for (Index t = 0; t < k; ++t) {
        const float* g = g_all + t * ld + j0;
        float* lane = lanes + t * kLanes;
#pragma omp simd
        for (Index l = 0; l < kLanes; ++l)
          lane[l] += g[l] * rr[l] + g[16 + l] * rr[16 + l] + g[32 + l] * rr[32 + l] + g[48 + l] * rr[48 + l];
      }
    }
    for (Index t = 0; t < k; ++t) {
      const float* lane = lanes + t * kLanes;
      float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      for (Index l = 0; l < kLanes; l += 4) {
        a0 += lane[l];
        a1 += lane[l + 1];
        a2 += lane[l + 2];
        a3 += lane[l + 3];
      }
      acc_f[t] = (a0 + a1) + (a2 + a3);
    }
    // γ = α + exp(E[log θ]) ⊙ sums, its mean change, then exp(E[log θ]) for the next sweep:
    // plain loops over K (no temporaries; this runs once per document and iteration).
    double change = 0;
    double* gm = gamma.data();
    const double* al = alpha_.data();
    double* e = et.data();
    for (Index t = 0; t < k; ++t) {
      const double next = al[t] + e[t] * static_cast<double>(acc_f[t]);
      change += std::abs(next - gm[t]);
      gm[t] = next;
    }
    exp_elog_theta(gamma, work.et_f, et);
    r.iterations = it;
    if (change / static_cast<double>(k) < options.mean_change_tol) break;
  }
  // Final phinorm in double arithmetic over the gathered (float32) rows: the bound and the
  // statistics then carry the rows' single-precision rounding (~6e-8 relative).
  work.phinorm.setZero(n);
  for (Index t = 0; t < k; ++t) {
    const float* g = g_all + t * ld;
    const double e = et(t);
    double* ph = work.phinorm.data();
#pragma omp simd
    for (Index i = 0; i < n; ++i) ph[i] += e * static_cast<double>(g[i]);
  }
  work.phinorm.array() += 1e-100;
  if (!options.with_bound) return r;
  // The document's terms of the bound with the final γ (and the φ it implies).
  r.word_term = (cts.array() * work.phinorm.array().log()).sum();
  const double dg_sum = digamma(gamma.sum());
  work.elog_theta.resize(k);
  double theta = log_gamma(alpha_.sum()) - log_gamma(gamma.sum());
  for (Index t = 0; t < k; ++t) {
    work.elog_theta(t) = digamma(gamma(t)) - dg_sum;
    theta += (alpha_(t) - gamma(t)) * work.elog_theta(t) + log_gamma(gamma(t)) - log_gamma(alpha_(t));
  }
  r.theta_term = theta;
  return r;
}

LdaStatsAccumulator::LdaStatsAccumulator(Index vocab_size, Index num_topics, int frac_bits)
    : vocab_size_(vocab_size), num_topics_(num_topics), frac_bits_(frac_bits), scale_(std::ldexp(1.0, frac_bits)),
      cells_(static_cast<std::size_t>(vocab_size * num_topics), 0), touched_(static_cast<std::size_t>(vocab_size), 0) {}

void LdaStatsAccumulator::add_document(std::span<const std::int32_t> ids, std::span<const double> counts,
                                       const LdaWorkspace& work) {
  const Index k = num_topics_;
  const Vector& et = work.exp_elog_theta;
  const double* e = et.data();
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::int32_t w = ids[i];
    if (!touched_[static_cast<std::size_t>(w)]) {
      touched_[static_cast<std::size_t>(w)] = 1;
      touched_list_.push_back(w);
    }
    if (i + 2 < ids.size()) {  // the scattered cells two words ahead
      const char* next = reinterpret_cast<const char*>(cells_.data() + static_cast<std::size_t>(ids[i + 2]) * static_cast<std::size_t>(k));
      for (std::size_t b = 0; b < static_cast<std::size_t>(k) * sizeof(std::int64_t); b += 64) __builtin_prefetch(next + b, 1);
    }
    const double ratio = counts[i] / work.phinorm(static_cast<Index>(i)) * scale_;
    std::int64_t* cell = cells_.data() + static_cast<std::size_t>(w) * static_cast<std::size_t>(k);
    const float* g = work.beta_rows + static_cast<Index>(w) * work.beta_stride;  // the row the E-step used
    for (Index t = 0; t < k; ++t) cell[t] += static_cast<std::int64_t>(ratio * e[t] * static_cast<double>(g[t]) + 0.5);
  }
}

void LdaStatsAccumulator::merge_into(std::span<std::int64_t> out, std::span<const std::int32_t> row_of_word) const {
  const auto k = static_cast<std::size_t>(num_topics_);
  for (std::int32_t w : touched_list_) {
    const std::size_t from = static_cast<std::size_t>(w) * k;
    const std::size_t to =
        (row_of_word.empty() ? static_cast<std::size_t>(w) : static_cast<std::size_t>(row_of_word[static_cast<std::size_t>(w)])) * k;
    for (std::size_t t = 0; t < k; ++t) out[to + t] += cells_[from + t];
  }
}

void LdaStatsAccumulator::clear() {
  const auto k = static_cast<std::size_t>(num_topics_);
  for (std::int32_t w : touched_list_) {
    std::fill_n(cells_.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(w) * k), k, 0);
    touched_[static_cast<std::size_t>(w)] = 0;
  }
  touched_list_.clear();
}

void LdaStatsAccumulator::take_rows(std::span<LdaStatsAccumulator* const> accs, Index row_begin, Index row_end,
                                    std::span<std::int64_t> out) {
  if (accs.empty()) {
    std::fill(out.begin(), out.end(), 0);
    return;
  }
  const auto k = static_cast<std::size_t>(accs[0]->num_topics_);
  for (Index w = row_begin; w < row_end; ++w) {
    std::int64_t* o = out.data() + static_cast<std::size_t>(w - row_begin) * k;
    std::fill_n(o, k, 0);
    for (LdaStatsAccumulator* a : accs) {
      if (!a->touched_[static_cast<std::size_t>(w)]) continue;
      std::int64_t* cell = a->cells_.data() + static_cast<std::size_t>(w) * k;
      for (std::size_t t = 0; t < k; ++t) o[t] += cell[t];
      std::fill_n(cell, k, 0);
      a->touched_[static_cast<std::size_t>(w)] = 0;
    }
  }
}

int lda_stats_frac_bits(double max_total) noexcept {
  const double bits = std::ceil(std::log2(std::max(1.0, max_total) + 1.0));
  return static_cast<int>(std::clamp(61.0 - bits, 8.0, 40.0));
}

Vector newton_alpha(const Vector& alpha, const Vector& mean_elog_theta, double step, int max_iter) {
  Vector a = alpha;
  const Index k = a.size();
  for (int it = 0; it < max_iter; ++it) {
    const double sum = a.sum();
    Vector grad(k), q(k);
    for (Index t = 0; t < k; ++t) {
      grad(t) = digamma(sum) - digamma(a(t)) + mean_elog_theta(t);
      q(t) = -trigamma(a(t));
    }
    const double z = trigamma(sum);
    const double b = (grad.array() / q.array()).sum() / (1.0 / z + (1.0 / q.array()).sum());
    const Vector delta = ((grad.array() - b) / q.array()).matrix();
    double s = step;
    Vector next = a - s * delta;
    for (int halve = 0; halve < 60 && (next.array() <= 0).any(); ++halve) {
      s *= 0.5;
      next = a - s * delta;
    }
    if ((next.array() <= 0).any()) break;
    const double change = (next - a).cwiseAbs().maxCoeff();
    a = next;
    if (change < 1e-12 * std::max(1.0, a.maxCoeff())) break;
  }
  return a;
}

double newton_eta(double eta, Index num_topics, Index vocab_size, double sum_elog_beta, double step, int max_iter) {
  const auto k = static_cast<double>(num_topics), v = static_cast<double>(vocab_size);
  for (int it = 0; it < max_iter; ++it) {
    const double grad = k * v * (digamma(v * eta) - digamma(eta)) + sum_elog_beta;
    const double hess = k * v * (v * trigamma(v * eta) - trigamma(eta));
    double s = step;
    double next = eta - s * grad / hess;
    for (int halve = 0; halve < 60 && next <= 0; ++halve) {
      s *= 0.5;
      next = eta - s * grad / hess;
    }
    if (next <= 0) break;
    const double change = std::abs(next - eta);
    eta = next;
    if (change < 1e-12 * std::max(1.0, eta)) break;
  }
  return eta;
}

}  // namespace latent::models
