#include "latent/models/mfa/mfa_fit.hpp"

#include "latent/train/restarts.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numbers>
#include <optional>
#include <string_view>

#include <fmt/format.h>

#include "latent/core/error.hpp"
#include "latent/core/flush_denormals.hpp"
#include "latent/core/lane_sum.hpp"
#include "latent/core/matmul.hpp"
#include "latent/core/rng.hpp"
#include "latent/models/factor/factor_fit.hpp"
#include "latent/models/gmm/float32_tiles.hpp"
#include "latent/models/gmm/gmm_fit.hpp"

namespace latent::models {
namespace {

// EM for the mixture in shifted coordinates x̃ = x − c (c: the data mean); component k is a
// FactorModel with mean μ̃_k = μ_k − c. Statistics: [Σ log p, N, then per component k the
// factor-model block [A_k, B_k, C_k] of factor_fit.hpp weighted by r_ik (N_k = A_k(L, L))].
class MfaEm final : public train::EmModel {
 public:
  // float32: the complete rows' pass in float32 products (e_step_block_f32), as
  // `--matmul-precision high`; else double throughout.
  MfaEm(Mfa model, RowVector center, double floor, double reg_covar, bool float32)
      : model_(std::move(model)), center_(std::move(center)),
        neg_center32_(gmm_kernel::negated_float(center_.data(), center_.size())), floor_(floor), reg_(reg_covar),
        k_(model_.num_components()), l_(model_.num_factors()), d_(model_.num_features()),
        block_(factor_stats_size(l_, d_)), float32_(float32), sparse_columns_(sparse_columns_setting()) {
    prepare();
  }

  const Mfa& model() const { return model_; }
  std::size_t num_stats() const override { return 2 + static_cast<std::size_t>(k_) * block_; }
  bool accepts_float32_blocks() const override { return float32_; }

  void e_step_block(const io::DenseBlock& block, std::span<double> partial) const override {
    if (float32_) {
      e_step_block_f32(block, partial);
      return;
    }
    if (block.is_float32()) throw Error(ErrorKind::kInternal, "MfaEm::e_step_block: a float32 block reached the double path");
    const RowMatrix xt = block.x.rowwise() - center_;
    partial[1] = static_cast<double>(xt.rows());
    double_rows(xt, partial);
  }

  // The double E-step of rows x̃ (complete and incomplete); adds all statistics but the row
  // count partial[1].
  void double_rows(const RowMatrix& xt, std::span<double> partial) const {
    if (!xt.hasNaN()) {
      complete_rows(xt, partial);
      return;
    }
    std::vector<Index> complete, incomplete;
    for (Index i = 0; i < xt.rows(); ++i) (xt.row(i).array().isNaN().any() ? incomplete : complete).push_back(i);
    if (!complete.empty()) {
      RowMatrix xc(static_cast<Index>(complete.size()), d_);
      for (std::size_t i = 0; i < complete.size(); ++i) xc.row(static_cast<Index>(i)) = xt.row(complete[i]);
      complete_rows(xc, partial);
    }
    incomplete_rows(xt, incomplete, partial);
  }

  Step m_step(std::span<const double> stats) override {
    const double n = stats[1];
    const double objective = stats[0] / n;
    RowVector nk(k_);
    std::vector<FactorModel> comps;
    comps.reserve(static_cast<std::size_t>(k_));
    for (Index k = 0; k < k_; ++k) {
      const double* s = stats.data() + 2 + static_cast<std::size_t>(k) * block_;
      nk[k] = s[l_ * (l_ + 1) + l_];  // A_k(L, L) = Σ_i r_ik
      const std::string what = fmt::format("mixture of factor analysers M-step, component {} (N_k = {:.6g}; fewer "
                                           "components or a larger --reg-covar may help)",
                                           k, nk[k]);
      if (!(nk[k] > 0)) throw_numerical(what + ": the component has no responsibility left");
      FactorUpdate u = factor_m_step(s, nk[k], l_, d_, model_.noise_type(), floor_, reg_, what);
      FactorModel m(l_, d_, model_.noise_type());
      m.set_parameters(std::move(u.mean), std::move(u.components), std::move(u.noise_variance));
      comps.push_back(std::move(m));
    }
    model_.set_parameters(nk / nk.sum(), std::move(comps));
    prepare();
    const Step step{objective, objective - previous_};
    previous_ = objective;
    return step;
  }

  void save_state(train::TrainState& state) const override {
    state.arrays["weights"] = model_.weights();
    state.arrays["means"] = model_.means();
    state.arrays["components"] = model_.stacked_components();
    state.arrays["noise_variance"] = model_.noise_variances();
    state.scalars["previous_objective"] = previous_;
  }
  void load_state(const train::TrainState& state) override {
    const RowMatrix& w = state.array("weights");
    model_.set_parameters(RowVector(Eigen::Map<const RowVector>(w.data(), w.size())), state.array("means"),
                          state.array("components"), state.array("noise_variance"));
    prepare();
    previous_ = state.scalar("previous_objective");
  }

 private:
  double* component_stats(std::span<double> partial, Index k) const {
    return partial.data() + 2 + static_cast<std::size_t>(k) * block_;
  }

  // The operands of the complete-row E-step for all components at once, kept in step with
  // the parameters: x̃ is multiplied once by [ (W_k Ψ_k⁻¹)ᵀ ... | (μ̃_k / ψ_k) ... ] and x̃²
  // once by [1 / ψ_k ...], instead of K narrow products over (x̃ − μ̃_k).
  void prepare() {
    const Index kl = k_ * l_;
    stacked_.resize(d_, kl + k_);
    inv_noise_.resize(d_, k_);
    shift_.resize(k_, l_);
    mu_quad_.resize(k_);
    log_norm_.resize(k_);
    const double log2pi = std::log(2.0 * std::numbers::pi);
    for (Index k = 0; k < k_; ++k) {
      const FactorModel& f = model_.component(k);
      if (l_ > 0) stacked_.middleCols(k * l_, l_) = f.components_over_noise().transpose();
      stacked_.col(kl + k) = f.mean().cwiseProduct(f.inverse_noise()).transpose();
      inv_noise_.col(k) = f.inverse_noise().transpose();
      if (l_ > 0) shift_.row(k) = f.mean() * f.components_over_noise().transpose();  // W Ψ⁻¹ μ̃
      mu_quad_[k] = f.mean().cwiseProduct(f.mean()).dot(f.inverse_noise());
      log_norm_[k] = -0.5 * (static_cast<double>(d_) * log2pi + f.log_det_m() + f.sum_log_noise()) +
                     std::log(model_.weights()[k]);
    }
    if (!float32_) return;
    // The float32 pass: (x̃ ψ^-½ − μ̃ ψ^-½)² summed by gmm_kernel::quadratic, as the diagonal
    // GMM's, and the stacked W_k Ψ_k⁻¹ (K L × D) packed once per M-step.
    RowMatrix means(k_, d_), sd_inv(k_, d_);
    for (Index k = 0; k < k_; ++k) {
      const FactorModel& f = model_.component(k);
      for (Index j = 0; j < d_; ++j) {
        means(k, j) = f.mean()[j];
        sd_inv(k, j) = 1.0 / std::sqrt(f.noise_variance()[j]);
      }
    }
    gmm_kernel::scale_and_shift32(means, sd_inv, inv_sd32_, shift32_);
    std::vector<float> w32(static_cast<std::size_t>(kl * d_));
    for (Index k = 0; k < k_; ++k) {
      const FactorModel& f = model_.component(k);
      for (Index i = 0; i < l_; ++i)
        for (Index j = 0; j < d_; ++j)
          w32[static_cast<std::size_t>((k * l_ + i) * d_ + j)] = static_cast<float>(f.components_over_noise()(i, j));
    }
    if (kl > 0) w_over_noise32_.pack_a(matmul::Precision::kHighest, w32.data(), kl, d_, d_, 1);
  }

  // Complete rows: with u_k = W_k Ψ_k⁻¹ (x̃ − μ̃_k) = x̃ (W_k Ψ_k⁻¹)ᵀ − W_k Ψ_k⁻¹ μ̃_k, E[z | x̃, k]
  // = M_k⁻¹ u_k and (Woodbury) (x̃ − μ̃_k)ᵀ C_k⁻¹ (x̃ − μ̃_k) = Σ_d (x̃_d − μ̃_kd)² / ψ_kd − u_kᵀ
  // E[z | x̃, k], the squares expanded so that every component shares one product with x̃
  // and one with x̃² (x̃ is centred at the data mean, so the expansion loses nothing that
  // matters). Then with z̃ = [E[z]; 1] and the responsibilities r: A_k += Σ r z̃ z̃ᵀ + N_k
  // M_k⁻¹ (top-left), B_k += x̃ᵀ (r ⊙ z̃) (one product for all k), C_k += rᵀ x̃² (one too).
  void complete_rows(const RowMatrix& xt, std::span<double> partial) const {
    const Index b = xt.rows(), a = l_ + 1, kl = k_ * l_;
    const RowMatrix xt2 = xt.array().square();
    RowMatrix xs(b, kl + k_), sq(b, k_);
    xs.noalias() = xt * stacked_;
    sq.noalias() = xt2 * inv_noise_;
    RowMatrix resp(b, k_), z(b, k_ * a), u(b, l_), ez(b, l_);
    for (Index k = 0; k < k_; ++k) {
      const FactorModel& f = model_.component(k);
      u = xs.middleCols(k * l_, l_).rowwise() - shift_.row(k);
      ez.noalias() = u * f.m_inverse();
      const Vector quad = sq.col(k) - 2.0 * xs.col(kl + k) - (ez.array() * u.array()).rowwise().sum().matrix();
      resp.col(k) = (-0.5 * (quad.array() + mu_quad_[k])) + log_norm_[k];
      z.middleCols(k * a, l_) = ez;
      z.col(k * a + l_).setOnes();
    }
    Vector lse;
    log_sum_exp_rows(resp, lse);
    partial[0] += lse.sum();
    RowMatrix zr(b, k_ * a);
    for (Index k = 0; k < k_; ++k) {
      zr.middleCols(k * a, a) = z.middleCols(k * a, a).array().colwise() * resp.col(k).array();
      Eigen::Map<RowMatrix> acc_a(component_stats(partial, k), a, a);
      acc_a.noalias() += zr.middleCols(k * a, a).transpose() * z.middleCols(k * a, a);
      acc_a.topLeftCorner(l_, l_) += resp.col(k).sum() * model_.component(k).m_inverse();
    }
    RowMatrix bz(d_, k_ * a), c(k_, d_);
    bz.noalias() = xt.transpose() * zr;
    c.noalias() = resp.transpose() * xt2;
    for (Index k = 0; k < k_; ++k) {
      double* st = component_stats(partial, k);
      Eigen::Map<RowMatrix>(st + a * a, d_, a) += bz.middleCols(k * a, a);
      Eigen::Map<RowVector>(st + a * a + d_ * a, d_) += c.row(k);
    }
  }

  // Complete rows in float32, one tile of kF32Rows rows at a time while it is in cache
  // (docs/ARCHITECTURE.md §5.9): x̃ = float(x − c) once; the diagonal part of every
  // component's distance Σ_d (x̃_d − μ̃_kd)² / ψ_kd by the diagonal GMM's kernel (no expanded
  // squares); Uᵀ = (W Ψ⁻¹)_stacked x̃ᵀ (K L × n, one float32 product for all components);
  // per component, in double, u_k = U_k − W_k Ψ_k⁻¹ μ̃_k, E[z] = u_k M_k⁻¹ and the Woodbury
  // correction −u_kᵀ E[z]; responsibilities as the GMM's; then the moments Σ r x̃ and
  // Σ r x̃² (the GMM's kernel), A_k in double, and B_k's factor columns as float32 products
  // (r ⊙ E[z])ᵀ x̃ (factor_columns()), each tile's sums added to double sums. Every
  // sum has a fixed order (matmul.hpp, gmm_diag_kernel.hpp), so the bits depend on neither
  // the kernel variant nor the rows outside the tile. A tile with a NaN takes double_rows.
  void e_step_block_f32(const io::DenseBlock& block, std::span<double> partial) const {
    // The products with r ⊙ E[z] of far components (r around 1e-40 and below) would take a
    // microcode assist per subnormal on Intel cores: 2.3 % of the non-zero r ⊙ E[z] of a
    // Fashion-MNIST tile were subnormal, and the per-component products ran at 34 GFLOP/s.
    const FlushDenormals flush;
    const auto sz = [](Index v) { return static_cast<std::size_t>(v); };
    const Index dp = gmm_kernel::padded(d_), kl = k_ * l_, a = l_ + 1;
    LineFloats xf(sz(kF32Rows * dp), 0.0f);  // on cache lines: read 64 bytes at a time
    std::vector<float> q(sz(kF32Rows * k_)), rf(sz(kF32Rows * k_)), ut(sz(kl * kF32Rows)), wz(sz(kl * kF32Rows)),
        c(sz(kl * d_));
    // Per component, L × n, transposed so that the loops over the tile's rows are contiguous:
    // u_k, E[z] (all components) and r ⊙ E[z].
    std::vector<double> w, first(sz(k_ * d_), 0.0), second(sz(k_ * d_), 0.0), nk(sz(k_)), u(sz(l_ * kF32Rows)),
        ez(sz(kl * kF32Rows)), zr(sz(l_ * kF32Rows)), corr(sz(kF32Rows));
    matmul::Packed pxt;
    ColumnScratch scratch;
    // B_k's factor columns summed over the block, (k L + j) × D: contiguous, so that a tile's
    // products add to them in vector loops; added to the statistics once per block (which
    // start at zero: the same sums in the same order, unless a tile took double_rows).
    std::vector<double> factor_sums(sz(kl * d_), 0.0);
    const gmm_kernel::BlockRows rows(block);
    for (Index r0 = 0; r0 < rows.rows(); r0 += kF32Rows) {
      const Index n = std::min(kF32Rows, rows.rows() - r0);
      partial[1] += static_cast<double>(n);
      if (rows.convert(r0, n, d_, center_.data(), xf.data(), dp, neg_center32_)) {
        double_rows(rows.widened(r0, n).rowwise() - center_, partial);
        continue;
      }
      gmm_kernel::PrefetchRange pf = rows.next_tile(r0, n, kF32Rows);
      gmm_kernel::quadratic(xf.data(), n, dp, inv_sd32_.data(), shift32_.data(), k_, q.data(), pf);
      if (l_ > 0) {
        // One B panel (32 rows) at a time: packed, then read by every panel of the stacked
        // W Ψ⁻¹ while it is in cache (the whole tile's packing, 800 KB at D = 784, left
        // the panels to L3 on the Intel Xeon). Each entry is the same sum over the
        // features, so the same bits.
        for (Index c0 = 0; c0 < n; c0 += matmul::Packed::kNr) {
          const Index nc = std::min(matmul::Packed::kNr, n - c0);
          pxt.pack_b(matmul::Precision::kHighest, xf.data() + c0 * dp, d_, nc, 1, dp);
          matmul::multiply(w_over_noise32_, pxt, ut.data() + c0, n);
        }
        for (Index k = 0; k < k_; ++k) {
          const RowMatrix& m_inv = model_.component(k).m_inverse();
          double* e = ez.data() + k * l_ * n;
          for (Index j = 0; j < l_; ++j) {
            const float* uj = ut.data() + (k * l_ + j) * n;
            double* o = u.data() + j * n;
            const double s = shift_(k, j);
            for (Index i = 0; i < n; ++i) o[i] = static_cast<double>(uj[i]) - s;
          }
          // E[z]ᵀ = M⁻ᵀ uᵀ, then the Woodbury correction Σ_j E[z]_j u_j, kChunk rows at a time.
          Index i0 = 0;
          for (; i0 + kChunk <= n; i0 += kChunk) posterior_rows<kChunk>(u.data() + i0, n, m_inv, e + i0, corr.data() + i0);
          for (; i0 < n; ++i0) posterior_rows<1>(u.data() + i0, n, m_inv, e + i0, corr.data() + i0);
          for (Index i = 0; i < n; ++i) {
            float& qi = q[sz(i * k_ + k)];
            qi = static_cast<float>(static_cast<double>(qi) - corr[sz(i)]);
          }
        }
      }
      std::fill(nk.begin(), nk.end(), 0.0);
      partial[0] += gmm_kernel::softmax_rows(q.data(), n, k_, log_norm_, rf.data(), nk.data(), w);
      gmm_kernel::moments(xf.data(), n, dp, d_, rf.data(), k_, first.data(), second.data(), pf);
      for (Index k = 0; k < k_; ++k) {
        Eigen::Map<RowMatrix> acc_a(component_stats(partial, k), a, a);
        acc_a(l_, l_) += nk[sz(k)];
        if (l_ == 0) continue;
        const double* e = ez.data() + k * l_ * n;
        for (Index j = 0; j < l_; ++j) {
          const double* ej = e + j * n;
          double* zj = zr.data() + j * n;
          float* wj = wz.data() + (k * l_ + j) * n;
          for (Index i = 0; i < n; ++i) {
            zj[i] = static_cast<double>(rf[sz(i * k_ + k)]) * ej[i];
            wj[i] = static_cast<float>(zj[i]);
          }
        }
        // A_k: Σ_i r E[z] E[z]ᵀ + N_k M⁻¹ and Σ_i r E[z], each sum over the rows in eight
        // lanes (row i in lane i mod 8) and a fixed tree (not Eigen's products or reductions,
        // whose vectorised order can follow the address's alignment).
        const RowMatrix& m_inv = model_.component(k).m_inverse();
        for (Index j = 0; j < l_; ++j) {
          const double* zj = zr.data() + j * n;
          for (Index m = 0; m < l_; ++m) acc_a(j, m) += lanes::dot(zj, e + m * n, n) + nk[sz(k)] * m_inv(j, m);
          const double sj = lanes::sum(zj, n);
          acc_a(j, l_) += sj;
          acc_a(l_, j) += sj;
        }
      }
      if (l_ > 0) factor_columns(xf.data(), n, dp, rf.data(), wz.data(), c.data(), factor_sums.data(), scratch);
    }
    for (Index k = 0; k < k_; ++k) {
      double* st = component_stats(partial, k);
      for (Index f = 0; f < d_; ++f) {
        for (Index j = 0; j < l_; ++j) st[a * a + f * a + j] += factor_sums[sz((k * l_ + j) * d_ + f)];
        st[a * a + f * a + l_] += first[sz(k * d_ + f)];
        st[a * a + d_ * a + f] += second[sz(k * d_ + f)];
      }
    }
  }

  // W rows of one component's posterior: e[j n + i] = Σ_m M⁻¹(m, j) u[m n + i] (E[z]ᵀ = M⁻ᵀ uᵀ) and
  // corr[i] = Σ_j e[j n + i] u[j n + i] (the Woodbury correction), for i < W; u, e: L rows of
  // stride n. Plain loops, each entry summed over m (j) in order from zero: Eigen would take
  // a coefficient-based product for small sizes, whose vectorised order can follow the
  // address. W is a constant so that the W sums stay in registers.
  template <Index W>
  void posterior_rows(const double* u, Index n, const RowMatrix& m_inv, double* e, double* corr) const {
    for (Index j = 0; j < l_; ++j) {
      double acc[W] = {};
      for (Index m = 0; m < l_; ++m) {
        const double g = m_inv(m, j);
        for (Index i = 0; i < W; ++i) acc[i] += g * u[m * n + i];
      }
      for (Index i = 0; i < W; ++i) e[j * n + i] = acc[i];
    }
    double acc[W] = {};
    for (Index j = 0; j < l_; ++j)
      for (Index i = 0; i < W; ++i) acc[i] += e[j * n + i] * u[j * n + i];
    for (Index i = 0; i < W; ++i) corr[i] = acc[i];
  }

  // LATENT_MFA_SPARSE_COLUMNS=1 or 0 forces factor_columns()' per-component or single
  // product (for tests and tuning: the bits are the same); else −1, chosen per tile.
  static int sparse_columns_setting() {
    const char* e = std::getenv("LATENT_MFA_SPARSE_COLUMNS");
    if (e == nullptr || *e == '\0') return -1;
    return std::string_view(e) != "0" ? 1 : 0;
  }

  // Operands of factor_columns(), kept from tile to tile.
  struct ColumnScratch {
    matmul::Packed a, b;
    std::vector<std::int32_t> rows;  // K × n: the rows of each component whose responsibility is not zero
    std::vector<Index> count;        // K
    std::vector<float> wz;           // L × n: one component's r ⊙ E[z] on those rows
  };

  // B_k's factor columns of one tile: sums[(k L + j) D + f] += Σ_i wz[(k L + j) n + i] x[i dp + f]
  // (wz = r ⊙ E[z] in float32), each entry a float32 FMA chain over the tile's rows in order
  // (matmul.hpp), added to the double sums once per tile. A row whose responsibility r_ik is
  // exactly zero has wz = ±0 for every factor of component k (E[z] is finite where the
  // distances are), which leaves such a chain
  // (started at +0) as it is; so where the tile's responsibilities are sparse (high D: most
  // are zero, as moments() finds), each component's product runs over its own non-zero rows
  // only, L × n_k × D instead of its share of one K L × n × D product: the same bits, about
  // K times less arithmetic. `c`: K L × D floats of scratch.
  void factor_columns(const float* xf, Index n, Index dp, const float* rf, const float* wz, float* c, double* sums,
                      ColumnScratch& s) const {
    const auto sz = [](Index v) { return static_cast<std::size_t>(v); };
    const Index kl = k_ * l_, mr = matmul::Packed::kMr, nr = matmul::Packed::kNr;
    s.rows.resize(sz(k_ * n));
    s.count.assign(sz(k_), 0);
    for (Index i = 0; i < n; ++i)
      for (Index k = 0; k < k_; ++k)
        if (rf[i * k_ + k] != 0.0f) s.rows[sz(k * n + s.count[sz(k)]++)] = static_cast<std::int32_t>(i);
    Index nonzero = 0;
    for (const Index v : s.count) nonzero += v;
    const auto padded_rows = [&](Index m) { return (m + mr - 1) / mr * mr; };
    const bool dense = sparse_columns_ == 0 || (sparse_columns_ < 0 && 2 * padded_rows(l_) * nonzero > padded_rows(kl) * n);
    if (dense) {  // one product for all components
      s.a.pack_a(matmul::Precision::kHighest, wz, kl, n, n, 1);
      s.b.pack_b(matmul::Precision::kHighest, xf, n, d_, dp, 1);
      matmul::multiply(s.a, s.b, c, d_);
      for (Index q = 0; q < kl * d_; ++q) sums[q] += static_cast<double>(c[q]);
      return;
    }
    s.wz.resize(sz(l_ * n));
    const Index panels = (d_ + nr - 1) / nr;
    for (Index k = 0; k < k_; ++k) {
      const Index nk = s.count[sz(k)];
      if (nk == 0) continue;
      const std::int32_t* rows = s.rows.data() + k * n;
      for (Index j = 0; j < l_; ++j) {
        const float* wj = wz + (k * l_ + j) * n;
        float* o = s.wz.data() + j * nk;
        for (Index t = 0; t < nk; ++t) o[t] = wj[rows[t]];
      }
      s.a.pack_a(matmul::Precision::kHighest, s.wz.data(), l_, nk, nk, 1);
      // B = the component's rows of x, written straight into its panels (step t: row rows[t]).
      s.b.shape(d_, nk, false);
      for (Index q = 0; q < panels; ++q) {
        std::uint32_t* p = s.b.panel_words(q);
        const Index f0 = q * nr, w = std::min(nr, d_ - f0);
        if (w == nr)  // a constant size: vector moves, not a call
          for (Index t = 0; t < nk; ++t) std::memcpy(p + t * nr, xf + rows[t] * dp + f0, sizeof(float) * nr);
        else
          for (Index t = 0; t < nk; ++t) std::memcpy(p + t * nr, xf + rows[t] * dp + f0, sz(w) * sizeof(float));
      }
      matmul::multiply(s.a, s.b, c, d_);
      double* out = sums + k * l_ * d_;
      for (Index q = 0; q < l_ * d_; ++q) out[q] += static_cast<double>(c[q]);
    }
  }

  // Rows with missing values, one at a time: per component the posterior of z given the
  // observed coordinates, the responsibilities, then factor_fit's expected statistics of
  // the row weighted by r_ik.
  void incomplete_rows(const RowMatrix& xt, const std::vector<Index>& rows, std::span<double> partial) const {
    if (rows.empty()) return;
    const Index a = l_ + 1;
    std::vector<RowMatrix> wt(static_cast<std::size_t>(k_), RowMatrix(a, d_)), cov(static_cast<std::size_t>(k_));
    std::vector<Vector> ez(static_cast<std::size_t>(k_));
    for (Index k = 0; k < k_; ++k) {
      wt[static_cast<std::size_t>(k)].topRows(l_) = model_.component(k).components();
      wt[static_cast<std::size_t>(k)].row(l_) = model_.component(k).mean();
    }
    std::vector<Index> missing;
    FactorRowScratch scratch;
    RowMatrix resp(1, k_);
    Vector lse;
    for (const Index i : rows) {
      for (Index k = 0; k < k_; ++k) {
        const std::size_t s = static_cast<std::size_t>(k);
        resp(0, k) = model_.component(k).missing_row_posterior(xt.row(i), missing, ez[s], &cov[s]) +
                     std::log(model_.weights()[k]);
      }
      log_sum_exp_rows(resp, lse);
      if (static_cast<Index>(missing.size()) < d_) partial[0] += lse[0];  // nothing observed: log p = 0
      for (Index k = 0; k < k_; ++k) {
        const double r = resp(0, k);
        if (r == 0) continue;
        const std::size_t s = static_cast<std::size_t>(k);
        add_factor_row_stats(model_.component(k), wt[s], xt.row(i), missing, ez[s], cov[s], r, component_stats(partial, k),
                             scratch);
      }
    }
  }

  static constexpr Index kF32Rows = 256;  // rows per tile of the float32 pass
  static constexpr Index kChunk = 16;     // rows per posterior_rows() call

  Mfa model_;
  RowMatrix stacked_, inv_noise_, shift_;  // D × (K L + K), D × K, K × L (prepare())
  LineFloats inv_sd32_, shift32_;   // K × padded(D): ψ^-½ and −μ̃ ψ^-½ (float32 pass)
  matmul::Packed w_over_noise32_;           // the stacked W_k Ψ_k⁻¹, K L × D (float32 pass)
  Vector mu_quad_, log_norm_;              // K: Σ μ̃²/ψ; log π_k − ½ (D log 2π + log|C_k|)
  RowVector center_;
  std::vector<float> neg_center32_;  // gmm_kernel::negated_float(center_): empty unless each entry is a float
  double floor_, reg_;
  Index k_, l_, d_;
  std::size_t block_;
  bool float32_;
  int sparse_columns_;  // factor_columns(): 1 per component, 0 one product, −1 by the cost (the same bits)
  double previous_ = -std::numeric_limits<double>::infinity();
};

void validate(const MfaConfig& c, const train::DataSummary& summary, Index d) {
  if (c.n_components < 1) throw_usage(fmt::format("--n-components must be at least 1 (got {})", c.n_components));
  if (c.n_components > summary.num_samples)
    throw_usage(fmt::format("--n-components {} exceeds the number of samples {}", c.n_components, summary.num_samples));
  if (c.n_factors < 0 || c.n_factors >= d)
    throw_usage(fmt::format("--n-factors must be between 0 and n_features - 1 = {} (got {})", d - 1, c.n_factors));
  if (!(c.tol >= 0)) throw_usage("--tol must be non-negative");
  if (c.max_iter < 1) throw_usage("--max-iter must be at least 1");
  if (c.n_init < 1) throw_usage("--n-init must be at least 1");
  if (!(c.reg_covar >= 0) || !std::isfinite(c.reg_covar)) throw_usage("--reg-covar must be non-negative and finite");
  if (!(c.noise_variance_floor > 0)) throw_usage("--noise-variance-floor must be positive");
  if (c.matmul_precision != "high" && c.matmul_precision != "highest")
    throw_usage("invalid --matmul-precision '" + c.matmul_precision + "' for mfa (choose high or highest)");
  if (c.init_params != "kmeans" && c.init_params != "random")
    throw_usage("invalid --init-params '" + c.init_params + "' for mfa (choose kmeans or random)");
  if (summary.num_missing > 0 && !c.missing_values)
    throw_usage(fmt::format("the data have {} missing (NaN) entries; pass --missing-values nan to marginalise them",
                            summary.num_missing));
}

// W (L × D): row i from CounterRng(seed, kFactorInit, component, i), N(0, 1) × scale.
RowMatrix initial_components(Index l, Index d, std::uint64_t seed, Index component, double scale) {
  RowMatrix w(l, d);
  for (Index i = 0; i < l; ++i) {
    CounterRng rng(seed, RngPurpose::kFactorInit, static_cast<std::uint64_t>(component), static_cast<std::uint64_t>(i));
    for (Index j = 0; j < d; ++j) w(i, j) = scale * rng.next_normal();
  }
  return w;
}

// The starting mixture of one restart, in coordinates shifted by `centre` (the data mean's
// gmm_kernel::float32_centre).
Mfa make_initial(const comm::Communicator& comm, io::BlockSource& source, const train::DataSummary& summary,
                 const RowVector& centre, const MfaConfig& c, std::uint64_t seed, const Logger& log,
                 const train::InitPoints& points) {
  const Index k = c.n_components, l = c.n_factors, d = source.info().num_features;
  Mfa mfa(k, l, d, c.noise);
  std::vector<FactorModel> comps;
  if (k == 1) {
    // fit_factor's start, exactly.
    const double scale = 0.1 * std::sqrt(std::max(summary.variance.mean(), 1e-300));
    RowVector psi = summary.variance.cwiseMax(c.noise_variance_floor);
    if (c.noise == NoiseType::kIsotropic) psi.setConstant(std::max(summary.variance.mean(), c.noise_variance_floor));
    FactorModel m(l, d, c.noise);
    m.set_parameters(RowVector::Zero(d), initial_components(l, d, seed, 0, scale), psi);
    comps.push_back(std::move(m));
    mfa.set_parameters(RowVector::Ones(1), std::move(comps));
    return mfa;
  }
  // fit_gmm's start for a diagonal mixture: weights, means, variances (+ reg_covar).
  GmmConfig g;
  g.n_components = k;
  g.covariance_type = CovarianceType::kDiag;
  g.reg_covar = c.reg_covar;
  g.init_params = c.init_params;
  g.seed = seed;
  g.threads = c.threads;
  const Gmm start = initial_gmm(comm, source, summary, g, seed, log, points);
  for (Index j = 0; j < k; ++j) {
    RowVector psi = start.covariances().row(j);
    const double mean_var = psi.mean();
    if (c.noise == NoiseType::kIsotropic) psi.setConstant(mean_var);
    psi = psi.cwiseMax(c.noise_variance_floor);
    FactorModel m(l, d, c.noise);
    m.set_parameters(start.means().row(j) - centre,
                     initial_components(l, d, seed, j, 0.1 * std::sqrt(std::max(mean_var, 1e-300))), psi);
    comps.push_back(std::move(m));
  }
  mfa.set_parameters(start.weights(), std::move(comps));
  return mfa;
}

// The model in the data's coordinates.
Mfa unshifted(const Mfa& m, const RowVector& center) {
  Mfa out(m.num_components(), m.num_factors(), m.num_features(), m.noise_type());
  out.set_parameters(m.weights(), m.means().rowwise() + center, m.stacked_components(), m.noise_variances());
  return out;
}


}  // namespace

MfaFitResult fit_mfa(const comm::Communicator& comm, io::BlockSource& source, const train::DataSummary& summary,
                     const MfaConfig& config, const Logger& log, const train::IterationObserver& observer,
                     train::FitControl* control) {
  const Index k = config.n_components, l = config.n_factors, d = source.info().num_features;
  validate(config, summary, d);
  const bool float32 = config.matmul_precision == "high";
  const RowVector centre = gmm_kernel::float32_centre(summary.mean, summary.variance);
  const auto blank = [&] {
    return MfaEm(Mfa(k, l, d, config.noise), centre, config.noise_variance_floor, config.reg_covar, float32);
  };
  log.info(fmt::format("mfa: {} components, {} factors, {} noise", k, l, noise_name(config.noise)));
  train::RestartSteps<MfaEm> steps;
  steps.blank = blank;
  steps.initial = [&](int, std::uint64_t seed, const train::InitPoints& points) {
    return MfaEm(make_initial(comm, source, summary, centre, config, seed, log, points), centre,
                 config.noise_variance_floor, config.reg_covar, float32);
  };
  steps.fit = [&](MfaEm& em, train::EmResult start, const train::IterationHook& hook) {
    return train::run_batch_em(comm, source, summary.num_samples, em, {config.max_iter, config.tol, config.threads},
                               observer, std::move(start), hook);
  };
  train::BestRun<MfaEm> best = train::run_restarts(control, config.n_init, config.seed, log, steps);
  if (!best.em.converged)
    log.warn(fmt::format("mfa did not converge in {} iterations (|last change| {:.3g} nats/sample, not below tol {:.3g}); "
                         "raise --max-iter or --tol",
                         best.em.n_iter, best.em.history.empty() ? 0.0 : std::abs(best.em.history.back().change),
                         config.tol));
  return MfaFitResult{unshifted(best.model.model(), centre), std::move(best.em), best.run};
}

}  // namespace latent::models
