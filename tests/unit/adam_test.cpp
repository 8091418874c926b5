// The trainer's Adam step fused with the fixed-point gradient sum (latent/train/adam.hpp):
// the grid's rounding, Adam against a double-precision evaluation of PyTorch's formula, and
// the bits not depending on how the parameter range is cut into calls (threads, segments)
// or on where the integer sum was formed, nor on the kernel variant.
#include <gtest/gtest.h>
#include <immintrin.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "latent/core/kernel.hpp"
#include "latent/train/adam.hpp"

namespace latent::train {
namespace {

std::vector<float> normal_floats(std::size_t n, unsigned seed, float sd) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> x(n);
  for (float& v : x) v = d(gen);
  return x;
}

TEST(AdamGrid, RoundsToNearestWithTiesToEvenAndAccumulates) {
  const std::vector<float> g = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, 3.25f, -3.75f, 0.0f, -0.0f, 1e-9f};
  std::vector<std::int64_t> out(g.size(), 99);
  add_to_grid(g.data(), out.data(), g.size(), 1.0, false);
  EXPECT_EQ(out, (std::vector<std::int64_t>{0, 2, 2, 0, -2, 3, -4, 0, 0, 0}));
  add_to_grid(g.data(), out.data(), g.size(), 4.0, true);  // + {2, 6, 10, -2, -6, 13, -15, 0, 0, 0}
  EXPECT_EQ(out, (std::vector<std::int64_t>{2, 8, 12, -2, -8, 16, -19, 0, 0, 0}));
  // Lengths that end inside a vector, against the definition; a large scale keeps every
  // bit of a float (exact up to 2^61).
  for (std::size_t n : {1u, 15u, 16u, 17u, 100u}) {
    const std::vector<float> x = normal_floats(n, 3, 1.0f);
    std::vector<std::int64_t> q(n + 1, 7);
    add_to_grid(x.data(), q.data(), n, 0x1p58, false);
    for (std::size_t j = 0; j < n; ++j)
      ASSERT_EQ(q[j], static_cast<std::int64_t>(std::nearbyint(static_cast<double>(x[j]) * 0x1p58))) << n << " " << j;
    EXPECT_EQ(q[n], 7) << "wrote past the end";
  }
}

struct State {
  std::vector<float> theta, m, v;
};

State initial(std::size_t n) { return {normal_floats(n, 1, 0.05f), std::vector<float>(n, 0.0f), std::vector<float>(n, 0.0f)}; }

AdamStep step_constants(int t, double lr, double grad_scale) {
  AdamStep s;
  s.beta1 = 0.9;
  s.beta2 = 0.999;
  s.eps = 1e-8f;
  s.step_size = static_cast<float>(lr / (1.0 - std::pow(0.9, t)));
  s.sqrt_bc2 = static_cast<float>(std::sqrt(1.0 - std::pow(0.999, t)));
  s.grad_scale = grad_scale;
  return s;
}

TEST(AdamUpdate, FollowsPyTorchsFormula) {
  // Three steps of two micro-batch gradients each, against the same steps in double
  // precision from the same integer sums: m, v and θ within float rounding.
  const std::size_t n = 1000;
  const double scale = 0x1p40, rows = 128;
  State s = initial(n);
  std::vector<double> th(s.theta.begin(), s.theta.end()), m(n, 0), v(n, 0);
  std::vector<double> m_mag(n, 0);  // Σ of |terms| of m: the scale of its rounding (it may cancel)
  for (int t = 1; t <= 3; ++t) {
    const std::vector<float> g0 = normal_floats(n, 10 + t, 3.0f), g1 = normal_floats(n, 20 + t, 0.01f);
    const float* grads[] = {g0.data(), g1.data()};
    const AdamStep c = step_constants(t, 1e-3, 1.0 / scale / rows);
    adam_update(c, grads, scale, nullptr, s.theta.data(), s.m.data(), s.v.data(), 0, n);
    for (std::size_t j = 0; j < n; ++j) {
      const double sum = std::nearbyint(g0[j] * scale) + std::nearbyint(g1[j] * scale);
      const double g = sum / scale / rows;
      m[j] = 0.9 * m[j] + 0.1 * g;
      m_mag[j] = 0.9 * m_mag[j] + 0.1 * std::abs(g);
      v[j] = 0.999 * v[j] + 0.001 * g * g;
      const double bc1 = 1 - std::pow(0.9, t), bc2 = 1 - std::pow(0.999, t);
      th[j] -= 1e-3 / bc1 * m[j] / (std::sqrt(v[j]) / std::sqrt(bc2) + 1e-8);
    }
    for (std::size_t j = 0; j < n; ++j) {
      ASSERT_NEAR(s.m[j], m[j], 1e-6 * m_mag[j]) << "step " << t << " entry " << j;
      ASSERT_NEAR(s.v[j], v[j], 1e-6 * v[j]) << "step " << t << " entry " << j;
      ASSERT_NEAR(s.theta[j], th[j], 1e-6 * std::abs(th[j]) + 1e-9) << "step " << t << " entry " << j;
    }
  }
  // The first step moves every entry by about the learning rate (Adam's unit step).
  State f = initial(4);
  const std::vector<float> g = {1.0f, -2.0f, 1e-3f, -5.0f};
  const float* gp[] = {g.data()};
  adam_update(step_constants(1, 1e-3, 1.0 / 0x1p30), gp, 0x1p30, nullptr, f.theta.data(), f.m.data(), f.v.data(), 0, 4);
  const State f0 = initial(4);
  for (std::size_t j = 0; j < 4; ++j) EXPECT_NEAR(f0.theta[j] - f.theta[j], 1e-3 * (g[j] > 0 ? 1 : -1), 1e-7) << j;
}

TEST(AdamUpdate, BitsDoNotDependOnTheCutsOrWhereTheSumWasFormed) {
  const std::size_t n = 777;
  const double scale = 0x1p44;
  const std::vector<float> g0 = normal_floats(n, 5, 1.0f), g1 = normal_floats(n, 6, 2.0f), g2 = normal_floats(n, 7, 0.5f);
  const float* grads[] = {g0.data(), g1.data(), g2.data()};
  const AdamStep c = step_constants(4, 1e-3, 1.0 / scale / 96);
  State whole = initial(n), cut = initial(n), summed = initial(n);
  adam_update(c, grads, scale, nullptr, whole.theta.data(), whole.m.data(), whole.v.data(), 0, n);
  // Cuts at offsets that fall inside vectors, of lengths 1 to 40.
  std::mt19937 gen(8);
  for (std::size_t j = 0; j < n;) {
    const std::size_t len = std::min<std::size_t>(n - j, 1 + gen() % 40);
    adam_update(c, grads, scale, nullptr, cut.theta.data(), cut.m.data(), cut.v.data(), j, len);
    j += len;
  }
  // The integer sum formed first (as the allreduce path does), then the update.
  std::vector<std::int64_t> sum(n);
  for (std::size_t i = 0; i < 3; ++i) add_to_grid(grads[i], sum.data(), n, scale, i > 0);
  adam_update(c, {}, scale, sum.data(), summed.theta.data(), summed.m.data(), summed.v.data(), 0, n);
  for (std::size_t j = 0; j < n; ++j) {
    ASSERT_EQ(whole.theta[j], cut.theta[j]) << j;
    ASSERT_EQ(whole.m[j], cut.m[j]) << j;
    ASSERT_EQ(whole.v[j], cut.v[j]) << j;
    ASSERT_EQ(whole.theta[j], summed.theta[j]) << j;
    ASSERT_EQ(whole.v[j], summed.v[j]) << j;
  }
  // And the update really moved every entry.
  const State start = initial(n);
  for (std::size_t j = 0; j < n; ++j) ASSERT_NE(whole.theta[j], start.theta[j]) << j;
}

// The kernel variants (latent/core/kernel.hpp) run different Adam code (AVX-512 with masked
// tails, or the scalar path in avx2) for the same bits: a job's result must not depend on
// the variant its ranks agreed on.
TEST(AdamUpdate, EveryKernelVariantGivesTheSameBits) {
  const std::size_t n = 301;
  const double scale = 0x1p40;
  const std::vector<float> g0 = normal_floats(n, 9, 1.0f), g1 = normal_floats(n, 10, 3.0f);
  const float* grads[] = {g0.data(), g1.data()};
  const AdamStep c = step_constants(3, 1e-3, 1.0 / scale / 64);
  std::vector<State> states;
  std::vector<std::vector<std::int64_t>> sums;
  for (kernel::Variant var : kernel::all_variants()) {
    if (!kernel::supported(var)) continue;
    const kernel::ScopedVariant scope(var);
    State st = initial(n);
    std::vector<std::int64_t> sum(n);
    for (std::size_t i = 0; i < 2; ++i) add_to_grid(grads[i], sum.data(), n, scale, i > 0);
    adam_update(c, {}, scale, sum.data(), st.theta.data(), st.m.data(), st.v.data(), 0, n);
    adam_update(c, grads, scale, nullptr, st.theta.data(), st.m.data(), st.v.data(), 5, n - 5);  // a second step
    states.push_back(st);
    sums.push_back(sum);
  }
  ASSERT_GE(states.size(), 1u);
  for (std::size_t k = 1; k < states.size(); ++k)
    for (std::size_t j = 0; j < n; ++j) {
      ASSERT_EQ(sums[0][j], sums[k][j]) << j;
      ASSERT_EQ(std::bit_cast<std::uint32_t>(states[0].theta[j]), std::bit_cast<std::uint32_t>(states[k].theta[j])) << j;
      ASSERT_EQ(std::bit_cast<std::uint32_t>(states[0].m[j]), std::bit_cast<std::uint32_t>(states[k].m[j])) << j;
      ASSERT_EQ(std::bit_cast<std::uint32_t>(states[0].v[j]), std::bit_cast<std::uint32_t>(states[k].v[j])) << j;
    }
}

// Flush-to-zero and denormals-are-zero inside the update (latent/train/adam.hpp): m and v
// whose results would be subnormal are stored as zero, a subnormal input reads as zero, θ
// is unchanged by them, every variant gives the same bits, and the caller's floating-point
// mode is restored.
TEST(AdamUpdate, SubnormalsFlushToZeroInEveryVariantAndTheModeIsRestored) {
  const std::size_t n = 37;
  const double scale = 0x1p40;
  std::vector<float> zero(n, 0.0f), tiny(n);  // tiny: 0 or 2^-60 ... 2^-66
  for (std::size_t j = 0; j < n; ++j) tiny[j] = j % 3 == 0 ? 0.0f : std::ldexp(1.0f, -60 - static_cast<int>(j % 7));
  const AdamStep c = step_constants(5, 1e-3, 1.0 / scale / 64);
  const unsigned csr = _mm_getcsr();
  std::vector<State> states;
  for (kernel::Variant var : kernel::all_variants()) {
    if (!kernel::supported(var)) continue;
    const kernel::ScopedVariant scope(var);
    State st = initial(n);
    for (std::size_t j = 0; j < n; ++j) {
      st.m[j] = j % 2 ? 1e-38f : -3e-39f;  // 0.9 m is subnormal (the second is already)
      st.v[j] = j % 2 ? 1.1e-38f : 5e-40f;  // 0.999 v is subnormal
    }
    const State before = st;
    const float* grads[] = {zero.data()};
    adam_update(c, grads, scale, nullptr, st.theta.data(), st.m.data(), st.v.data(), 0, n);
    EXPECT_EQ(_mm_getcsr(), csr) << kernel::to_string(var);
    for (std::size_t j = 0; j < n; ++j) {
      EXPECT_EQ(st.m[j], 0.0f) << kernel::to_string(var) << " " << j;
      EXPECT_EQ(st.v[j], 0.0f) << kernel::to_string(var) << " " << j;
      EXPECT_EQ(st.theta[j], before.theta[j]) << kernel::to_string(var) << " " << j;
    }
    // Gradients of about 2^-66 (on a grid of 2^100), whose squares are subnormal: v stays
    // zero, m takes the normal (1 − β₁) g.
    const float* small[] = {tiny.data()};
    adam_update(step_constants(6, 1e-3, 0x1p-106), small, 0x1p100, nullptr, st.theta.data(), st.m.data(), st.v.data(), 0, n);
    for (std::size_t j = 0; j < n; ++j) {
      EXPECT_EQ(st.v[j], 0.0f) << kernel::to_string(var) << " " << j;
      EXPECT_EQ(st.m[j] == 0.0f, tiny[j] == 0.0f) << kernel::to_string(var) << " " << j;
    }
    states.push_back(st);
  }
  for (std::size_t k = 1; k < states.size(); ++k)
    for (std::size_t j = 0; j < n; ++j) {
      ASSERT_EQ(std::bit_cast<std::uint32_t>(states[0].theta[j]), std::bit_cast<std::uint32_t>(states[k].theta[j])) << j;
      ASSERT_EQ(std::bit_cast<std::uint32_t>(states[0].m[j]), std::bit_cast<std::uint32_t>(states[k].m[j])) << j;
    }
}

}  // namespace
}  // namespace latent::train
