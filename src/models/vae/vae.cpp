#include "latent/models/vae/vae.hpp"

#include <oneapi/tbb/parallel_for.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numbers>
#include <stdexcept>
#include <utility>

#include "latent/core/error.hpp"
#include "latent/core/rng.hpp"

namespace latent::models {
namespace {

using ArrayF = Eigen::Array<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowVectorF = Eigen::Matrix<float, 1, Eigen::Dynamic>;

constexpr double kLog2Pi = 1.8378770664093454836;

// *mx = max(*mx, |x[0..n)|) with NaN above +Inf, as matmul::multiply's abs_max: on the bit
// patterns of the magnitudes, which order as unsigned integers like the values.
void fold_abs_max(float* mx, const float* x, Index n) {
  if (mx == nullptr) return;
  std::uint32_t m = std::bit_cast<std::uint32_t>(*mx) & 0x7fffffffu;
  for (Index i = 0; i < n; ++i) m = std::max(m, std::bit_cast<std::uint32_t>(x[i]) & 0x7fffffffu);
  *mx = std::bit_cast<float>(m);
}

}  // namespace

std::string to_string(VaeActivation a) { return a == VaeActivation::kRelu ? "relu" : "tanh"; }
std::string to_string(VaeLikelihood l) { return l == VaeLikelihood::kBernoulli ? "bernoulli" : "gaussian"; }

VaeActivation parse_vae_activation(const std::string& s) {
  if (s == "relu") return VaeActivation::kRelu;
  if (s == "tanh") return VaeActivation::kTanh;
  throw_usage("--activation must be relu or tanh (got '" + s + "')");
}

VaeLikelihood parse_vae_likelihood(const std::string& s) {
  if (s == "bernoulli") return VaeLikelihood::kBernoulli;
  if (s == "gaussian") return VaeLikelihood::kGaussian;
  throw_usage("--likelihood must be bernoulli or gaussian (got '" + s + "')");
}

Vae::Vae(VaeArchitecture arch) : arch_(std::move(arch)) {
  if (arch_.input_dim < 1 || arch_.latent_dim < 1) throw_usage("the VAE needs at least one feature and one latent dimension");
  for (Index h : arch_.hidden)
    if (h < 1) throw_usage("--hidden widths must be at least 1");
  Index offset = 0;
  const auto add = [&](std::vector<VaeLayer>& net, Index in, Index out) {
    net.push_back(VaeLayer{in, out, offset, offset + in * out});
    offset += in * out + out;
  };
  Index in = arch_.input_dim;
  for (Index h : arch_.hidden) {
    add(encoder_, in, h);
    in = h;
  }
  add(encoder_, in, 2 * arch_.latent_dim);
  in = arch_.latent_dim;
  for (auto it = arch_.hidden.rbegin(); it != arch_.hidden.rend(); ++it) {
    add(decoder_, in, *it);
    in = *it;
  }
  add(decoder_, in, arch_.input_dim);
  if (arch_.likelihood == VaeLikelihood::kGaussian && arch_.learn_variance) {
    log_var_offset_ = offset;
    offset += arch_.input_dim;
  }
  params_ = Eigen::VectorXf::Zero(offset);
  // update_parameters' segments, in parameter order: blocks of kNr weight rows (a whole
  // panel of the forward pack, whole steps of the backward one), then the layer's bias;
  // the log-variances.
  constexpr Index kRows = matmul::Packed::kNr;
  std::size_t li = 0;
  for (const auto* net : {&encoder_, &decoder_})
    for (const VaeLayer& l : *net) {
      for (Index r = 0; r < l.out; r += kRows) {
        const Index r1 = std::min(l.out, r + kRows);
        segments_.push_back({l.weight_offset + r * l.in, (r1 - r) * l.in, li, r, r1, l.weight_offset});
      }
      segments_.push_back({l.bias_offset, l.out, kNoLayer, 0, 0, 0});
      ++li;
    }
  if (log_var_offset_ >= 0) segments_.push_back({log_var_offset_, arch_.input_dim, kNoLayer, 0, 0, 0});
}

Index Vae::count_parameters(const VaeArchitecture& arch) noexcept {
  Index p = 0, in = arch.input_dim;
  for (Index h : arch.hidden) {
    p += in * h + h;
    in = h;
  }
  p += in * 2 * arch.latent_dim + 2 * arch.latent_dim;
  in = arch.latent_dim;
  for (auto it = arch.hidden.rbegin(); it != arch.hidden.rend(); ++it) {
    p += in * *it + *it;
    in = *it;
  }
  p += in * arch.input_dim + arch.input_dim;
  if (arch.likelihood == VaeLikelihood::kGaussian && arch.learn_variance) p += arch.input_dim;
  return p;
}

void Vae::init_parameters(std::uint64_t seed) {
  std::uint64_t layer = 0;
  for (const auto* net : {&encoder_, &decoder_})
    for (const VaeLayer& l : *net) {
      CounterRng rng(seed, RngPurpose::kVaeInit, layer++, 0);
      const double bound = 1.0 / std::sqrt(static_cast<double>(l.in));
      for (Index i = 0; i < l.in * l.out + l.out; ++i)
        params_(l.weight_offset + i) = static_cast<float>((2.0 * rng.next_uniform() - 1.0) * bound);
    }
  if (log_var_offset_ >= 0)
    for (Index d = 0; d < arch_.input_dim; ++d)
      params_(log_var_offset_ + d) = static_cast<float>(arch_.fixed_log_variance);
}

void Vae::prepare(matmul::Precision p) {
  matmul::require(p);
  const std::size_t n = encoder_.size() + decoder_.size();
  fwd_.resize(n);
  bwd_.resize(n);
  tbb::parallel_for(std::size_t{0}, 2 * n, [&](std::size_t t) {
    const std::size_t i = t / 2;
    const VaeLayer& l = i < encoder_.size() ? encoder_[i] : decoder_[i - encoder_.size()];
    const float* w = params_.data() + l.weight_offset;
    if (t % 2 == 0) fwd_[i].pack_b(p, w, l.in, l.out, 1, l.in);  // B(k, j) = W[j][k]
    else if (i > 0) bwd_[i].pack_b(p, w, l.out, l.in, l.in, 1);  // B(k, j) = W[k][j] (not needed for x)
  });
  precision_ = p;
  prepared_ = true;
  packs_stale_ = false;
}

void Vae::update_parameters(const std::function<void(float* theta, std::size_t offset, std::size_t n)>& update) {
  update_parameters(update, 0, params_.size());
}

void Vae::update_parameters(const std::function<void(float* theta, std::size_t offset, std::size_t n)>& update,
                            std::size_t first, std::size_t last, bool repack_packs, Segments which) {
  const bool repack = prepared_ && repack_packs;
  // Segments are in parameter order: those starting in [first, last) are a run.
  const auto starts_before = [](const Segment& sg, std::size_t at) { return static_cast<std::size_t>(sg.offset) < at; };
  const auto t0 = static_cast<std::size_t>(std::partition_point(segments_.begin(), segments_.end(), [&](const Segment& sg) { return starts_before(sg, first); }) - segments_.begin());
  const auto t1 = static_cast<std::size_t>(std::partition_point(segments_.begin(), segments_.end(), [&](const Segment& sg) { return starts_before(sg, last); }) - segments_.begin());
  tbb::parallel_for(t0, std::max(t0, t1), [&](std::size_t t) {
    const Segment& sg = segments_[t];
    if (which == Segments::kUnpacked && sg.layer != kNoLayer) return;
    update(params_.data(), static_cast<std::size_t>(sg.offset), static_cast<std::size_t>(sg.n));
    if (!repack || sg.layer == kNoLayer) return;
    const float* w = params_.data() + sg.weights;
    fwd_[sg.layer].repack(w, sg.r0, sg.r1, 0, fwd_[sg.layer].depth());
    if (sg.layer > 0) bwd_[sg.layer].repack(w, 0, bwd_[sg.layer].rows(), sg.r0, sg.r1);
  });
  packs_stale_ = false;
}

std::size_t Vae::packed_words() const noexcept {
  std::size_t n = 0;
  for (const auto* packs : {&fwd_, &bwd_})
    for (const matmul::Packed& pk : *packs) n += (pk.words() + 15) / 16 * 16;
  return n;
}

void Vae::place_packs(std::uint32_t* storage, bool copy) {
  for (auto* packs : {&fwd_, &bwd_})
    for (matmul::Packed& pk : *packs) {
      pk.place(storage, copy);
      storage += (pk.words() + 15) / 16 * 16;
    }
}

void Vae::own_packs() {
  for (auto* packs : {&fwd_, &bwd_})
    for (matmul::Packed& pk : *packs) pk.own();
}

void Vae::check_packs() const {
  if (packs_stale_) throw std::logic_error("Vae: the parameters changed after prepare(); call prepare() again");
}

void Vae::forward_mlp(const std::vector<VaeLayer>& layers, std::size_t first, const RowMatrixF& input,
                      std::vector<RowMatrixF>& act, RowMatrixF& last, VaeWorkspace& ws) const {
  act.resize(layers.size() - 1);
  const RowMatrixF* a = &input;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const VaeLayer& l = layers[i];
    RowMatrixF& y = i + 1 < layers.size() ? act[i] : last;
    y.resize(a->rows(), l.out);
    if (prepared_) {
      ws.pa.pack_a(precision_, a->data(), a->rows(), l.in, l.in, 1);
      matmul::multiply(ws.pa, fwd_[first + i], y.data(), l.out);
    } else {
      const Eigen::Map<const RowMatrixF> w(params_.data() + l.weight_offset, l.out, l.in);
      y.noalias() = *a * w.transpose();
    }
    // The bias, and the activation on hidden layers, in one pass.
    const float* b = params_.data() + l.bias_offset;
    const bool relu = i + 1 < layers.size() && arch_.activation == VaeActivation::kRelu;
    for (Index r = 0; r < y.rows(); ++r) {
      float* yr = y.data() + r * l.out;
      if (relu)
        for (Index j = 0; j < l.out; ++j) yr[j] = std::max(yr[j] + b[j], 0.0f);
      else
        for (Index j = 0; j < l.out; ++j) yr[j] += b[j];
    }
    if (i + 1 < layers.size() && arch_.activation == VaeActivation::kTanh) y = y.array().tanh().matrix();
    a = &y;
  }
}

void Vae::backward_mlp(const std::vector<VaeLayer>& layers, std::size_t first, const RowMatrixF& input,
                       const std::vector<RowMatrixF>& act, RowMatrixF& delta, RowMatrixF& scratch, std::span<float> grad,
                       RowMatrixF* input_grad, VaeWorkspace& ws, float* grad_abs_max) const {
  for (std::size_t j = layers.size(); j-- > 0;) {
    const VaeLayer& l = layers[j];
    const RowMatrixF& a_prev = j == 0 ? input : act[j - 1];
    const Index b = delta.rows();
    Eigen::Map<RowVectorF> gb(grad.data() + l.bias_offset, l.out);
    if (prepared_) {
      ws.pa.pack_a(precision_, delta.data(), l.out, b, 1, l.out);  // A(o, r) = δ[r][o]
      ws.pb.pack_b(precision_, a_prev.data(), b, l.in, l.in, 1);   // B(r, i) = a[r][i]
      matmul::multiply(ws.pa, ws.pb, grad.data() + l.weight_offset, l.in, false, grad_abs_max);
    } else {
      Eigen::Map<RowMatrixF> gw(grad.data() + l.weight_offset, l.out, l.in);
      gw.noalias() = delta.transpose() * a_prev;
      fold_abs_max(grad_abs_max, gw.data(), gw.size());
    }
    gb = delta.colwise().sum();
    fold_abs_max(grad_abs_max, gb.data(), l.out);
    if (j == 0 && input_grad == nullptr) break;
    scratch.resize(b, l.in);
    if (prepared_) {
      ws.pa.pack_a(precision_, delta.data(), b, l.out, l.out, 1);
      matmul::multiply(ws.pa, bwd_[first + j], scratch.data(), l.in);
    } else {
      const Eigen::Map<const RowMatrixF> w(params_.data() + l.weight_offset, l.out, l.in);
      scratch.noalias() = delta * w;
    }
    if (j > 0) {
      // The activation's derivative from its output: ReLU 1[a > 0], tanh 1 − a².
      if (arch_.activation == VaeActivation::kRelu) scratch = (a_prev.array() > 0.0f).select(scratch.array(), 0.0f).matrix();
      else scratch.array() *= 1.0f - a_prev.array().square();
    }
    std::swap(delta, scratch);
    if (j == 0) *input_grad = delta;
  }
}

Eigen::Array<float, 1, Eigen::Dynamic> Vae::decoder_log_variance() const {
  if (log_var_offset_ >= 0) return params_.segment(log_var_offset_, arch_.input_dim).transpose().array();
  return Eigen::Array<float, 1, Eigen::Dynamic>::Constant(arch_.input_dim, static_cast<float>(arch_.fixed_log_variance));
}

void Vae::encode(const RowMatrixF& x, VaeWorkspace& w) const {
  check_packs();
  forward_mlp(encoder_, 0, x, w.enc_act, w.delta_prev, w);
  const Index l = arch_.latent_dim;
  w.mu = w.delta_prev.leftCols(l);
  w.log_var = w.delta_prev.rightCols(l);
}

void Vae::decode(const RowMatrixF& z, VaeWorkspace& w) const {
  check_packs();
  forward_mlp(decoder_, encoder_.size(), z, w.dec_act, w.out, w);
}

void Vae::log_likelihood_rows(const RowMatrixF& x, const RowMatrixF& out, std::span<double> ll) const {
  const Index b = x.rows();
  if (arch_.likelihood == VaeLikelihood::kBernoulli) {
    // log p(x|l) = x l − softplus(l), softplus(l) = max(l, 0) + log1p(exp(−|l|)).
    const ArrayF t = x.array() * out.array() - (out.array().max(0.0f) + (-out.array().abs()).exp().log1p());
    for (Index r = 0; r < b; ++r) ll[static_cast<std::size_t>(r)] = static_cast<double>(t.row(r).sum());
    return;
  }
  const Index d = arch_.input_dim;
  const Eigen::Array<float, 1, Eigen::Dynamic> s = decoder_log_variance();
  const Eigen::Array<float, 1, Eigen::Dynamic> inv_var = (-s).exp();
  const double const_term = -0.5 * (static_cast<double>(d) * kLog2Pi + static_cast<double>(s.sum()));
  const ArrayF sq = (x - out).array().square().rowwise() * inv_var;
  for (Index r = 0; r < b; ++r) ll[static_cast<std::size_t>(r)] = const_term - 0.5 * static_cast<double>(sq.row(r).sum());
}

double Vae::loss(const RowMatrixF& x, const RowMatrixF& eps, VaeWorkspace& w, std::span<float> grad,
                 std::span<double> elbo_rows, float* grad_abs_max) const {
  const Index b = x.rows(), l = arch_.latent_dim, d = arch_.input_dim;
  encode(x, w);
  const ArrayF sigma = (0.5f * w.log_var.array()).exp();
  w.z = (w.mu.array() + sigma * eps.array()).matrix();
  decode(w.z, w);
  std::vector<double> ll(static_cast<std::size_t>(b));
  log_likelihood_rows(x, w.out, ll);
  // KL(N(μ, σ²) ‖ N(0, 1)) = −½ Σ (1 + log σ² − μ² − σ²).
  const ArrayF kl_terms = 1.0f + w.log_var.array() - w.mu.array().square() - w.log_var.array().exp();
  double total = 0;
  for (Index r = 0; r < b; ++r) {
    const double kl = -0.5 * static_cast<double>(kl_terms.row(r).sum());
    const double row_loss = -ll[static_cast<std::size_t>(r)] + kl;
    if (!elbo_rows.empty()) elbo_rows[static_cast<std::size_t>(r)] = -row_loss;
    total += row_loss;
  }
  if (grad.empty()) return total;
  if (grad_abs_max != nullptr) *grad_abs_max = 0.0f;

  // d loss / d decoder output.
  if (arch_.likelihood == VaeLikelihood::kBernoulli) {
    w.delta = ((1.0f + (-w.out.array()).exp()).inverse() - x.array()).matrix();  // σ(l) − x
  } else {
    const Eigen::Array<float, 1, Eigen::Dynamic> inv_var = (-decoder_log_variance()).exp();
    const ArrayF diff = w.out.array() - x.array();
    w.delta = (diff.rowwise() * inv_var).matrix();  // (m − x) / σ²
    if (log_var_offset_ >= 0) {
      // d/ds_d of ½ Σ_rows (s_d + (x − m)² e^{−s_d}) = ½ Σ_rows (1 − (x − m)² e^{−s_d}).
      const Eigen::Array<float, 1, Eigen::Dynamic> sq = diff.square().colwise().sum();
      for (Index j = 0; j < d; ++j)
        grad[static_cast<std::size_t>(log_var_offset_ + j)] = 0.5f * (static_cast<float>(b) - sq(j) * inv_var(j));
      fold_abs_max(grad_abs_max, grad.data() + log_var_offset_, d);
    }
  }
  backward_mlp(decoder_, encoder_.size(), w.z, w.dec_act, w.delta, w.delta_prev, grad, &w.dz, w, grad_abs_max);
  // Through z = μ + σ ε, plus the KL term: d/dμ = μ, d/dlog σ² = ½ (σ² − 1).
  w.delta.resize(b, 2 * l);
  w.delta.leftCols(l) = w.dz + w.mu;
  w.delta.rightCols(l) = (w.dz.array() * eps.array() * 0.5f * sigma + 0.5f * (w.log_var.array().exp() - 1.0f)).matrix();
  backward_mlp(encoder_, 0, x, w.enc_act, w.delta, w.delta_prev, grad, nullptr, w, grad_abs_max);
  return total;
}

}  // namespace latent::models
