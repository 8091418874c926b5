// VAE: gradients against central finite differences (every layer type, both likelihoods),
// the closed-form KL and likelihood terms, the IWAE estimate's bounds, model files, and a
// fit whose parameters do not depend on the thread count.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>
#include <utility>

#include "../support/fixtures.hpp"
#include "latent/core/log.hpp"
#include "latent/io/dense_dataset.hpp"
#include "latent/models/vae/vae.hpp"
#include "latent/models/vae/vae_fit.hpp"

namespace latent::models {
namespace {

using testing::blobs;
using testing::TempDir;
using testing::write_shards;

RowMatrixF random_rows(Index b, Index d, unsigned seed, bool unit_interval) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::normal_distribution<float> n(0.0f, 1.0f);
  RowMatrixF x(b, d);
  for (Index i = 0; i < b; ++i)
    for (Index j = 0; j < d; ++j) x(i, j) = unit_interval ? u(gen) : n(gen);
  return x;
}

// Central differences of the summed loss in double precision would need a double model; the
// model is float32, so the check uses a step of 1e-2 on a small network with tanh (smooth)
// or ReLU (inputs keep pre-activations away from the kink with high probability) and a
// tolerance that the float rounding (~1e-6 of a loss of ~10) cannot reach but any wrong
// term (a factor 2, a missing branch) exceeds by far.
// `packed`: the products of the packed float32 kernels (Vae::prepare) instead of Eigen's.
void check_gradient(VaeActivation act, VaeLikelihood lik, bool learn_variance, bool packed = false) {
  VaeArchitecture a;
  a.input_dim = 5;
  a.latent_dim = 2;
  a.hidden = {4, 3};
  a.activation = act;
  a.likelihood = lik;
  a.learn_variance = learn_variance;
  a.fixed_log_variance = -0.3;
  Vae model(a);
  model.init_parameters(7);
  const auto repack = [&] {
    if (packed) model.prepare(matmul::Precision::kHighest);
  };
  repack();
  const RowMatrixF x = random_rows(6, 5, 1, lik == VaeLikelihood::kBernoulli);
  const RowMatrixF eps = random_rows(6, 2, 2, false);
  VaeWorkspace w;
  std::vector<float> grad(static_cast<std::size_t>(model.num_parameters()));
  model.loss(x, eps, w, grad);
  const double h = act == VaeActivation::kRelu ? 1e-3 : 1e-2;
  int checked = 0;
  for (Index i = 0; i < model.num_parameters(); ++i) {
    float& p = model.parameters()[static_cast<std::size_t>(i)];
    const float p0 = p;
    p = static_cast<float>(p0 + h);
    repack();
    const double up = model.loss(x, eps, w, {});
    p = static_cast<float>(p0 - h);
    repack();
    const double down = model.loss(x, eps, w, {});
    p = p0;
    repack();
    const double numeric = (up - down) / (2 * h);
    EXPECT_NEAR(grad[static_cast<std::size_t>(i)], numeric, 2e-3 + 1e-2 * std::abs(numeric))
        << "parameter " << i << " (" << to_string(act) << ", " << to_string(lik) << ")";
    ++checked;
  }
  EXPECT_EQ(checked, model.num_parameters());
  // Every layer has parameters: 5·4+4, 4·3+3, 3·4+4 (encoder), 2·3+3, 3·4+4, 4·5+5, and 5
  // log-variances when learned.
  EXPECT_EQ(model.num_parameters(), 24 + 15 + 16 + 9 + 16 + 25 + (learn_variance && lik == VaeLikelihood::kGaussian ? 5 : 0));
}

TEST(VaeGradient, TanhBernoulli) { check_gradient(VaeActivation::kTanh, VaeLikelihood::kBernoulli, false); }
TEST(VaeGradient, ReluBernoulli) { check_gradient(VaeActivation::kRelu, VaeLikelihood::kBernoulli, false); }
TEST(VaeGradient, TanhGaussianLearnedVariance) { check_gradient(VaeActivation::kTanh, VaeLikelihood::kGaussian, true); }
TEST(VaeGradient, ReluGaussianFixedVariance) { check_gradient(VaeActivation::kRelu, VaeLikelihood::kGaussian, false); }
TEST(VaeGradient, PackedTanhBernoulli) { check_gradient(VaeActivation::kTanh, VaeLikelihood::kBernoulli, false, true); }
TEST(VaeGradient, PackedReluBernoulli) { check_gradient(VaeActivation::kRelu, VaeLikelihood::kBernoulli, false, true); }
TEST(VaeGradient, PackedTanhGaussianLearnedVariance) {
  check_gradient(VaeActivation::kTanh, VaeLikelihood::kGaussian, true, true);
}

// bfloat16 products: the loss and gradient of a realistic layer size stay within a few
// bfloat16 roundings (2^-8) of the float32 ones, yet differ from them (the operands really
// are rounded); changing the parameters without prepare() is refused.
TEST(VaeGradient, MediumPrecisionTracksFloat32) {
  if (!matmul::available(matmul::Precision::kMedium)) GTEST_SKIP() << "this CPU lacks AVX512_BF16";
  VaeArchitecture a;
  a.input_dim = 40;
  a.latent_dim = 4;
  a.hidden = {48, 24};
  Vae model(a);
  model.init_parameters(9);
  const RowMatrixF x = random_rows(32, 40, 3, true), eps = random_rows(32, 4, 4, false);
  VaeWorkspace w;
  std::vector<float> g32(static_cast<std::size_t>(model.num_parameters())), g16(g32.size());
  model.prepare(matmul::Precision::kHighest);
  const double l32 = model.loss(x, eps, w, g32);
  model.prepare(matmul::Precision::kMedium);
  const double l16 = model.loss(x, eps, w, g16);
  EXPECT_NEAR(l16, l32, 1e-2 * std::abs(l32));
  EXPECT_NE(l16, l32);
  double diff2 = 0, norm2 = 0;
  for (std::size_t i = 0; i < g32.size(); ++i) {
    diff2 += std::pow(static_cast<double>(g16[i]) - g32[i], 2);
    norm2 += std::pow(static_cast<double>(g32[i]), 2);
  }
  EXPECT_LT(std::sqrt(diff2), 0.03 * std::sqrt(norm2));
  EXPECT_GT(std::sqrt(diff2), 1e-5 * std::sqrt(norm2));
  model.parameters()[0] += 0.1f;
  EXPECT_THROW(model.loss(x, eps, w, g16), std::logic_error);
}

// The trainer's step updates the parameters through update_parameters, which rebuilds
// each segment's packed weights as it goes: the model must then compute exactly what a model
// prepared from scratch with the same parameters computes. The loss also reports max
// |gradient| (the trainer's fixed-point grid), which must be the true maximum.
TEST(VaeUpdate, SegmentRepacksEqualAFreshPrepareAndGradMaxIsExact) {
  std::vector<matmul::Precision> precisions;
  for (auto p : {matmul::Precision::kHighest, matmul::Precision::kMedium})
    if (matmul::available(p)) precisions.push_back(p);
  VaeArchitecture a;
  a.input_dim = 70;
  a.latent_dim = 3;
  a.hidden = {48, 40};  // 32-row segments with partial panels
  a.likelihood = VaeLikelihood::kGaussian;
  a.learn_variance = true;
  const RowMatrixF x = random_rows(20, 70, 5, false), eps = random_rows(20, 3, 6, false);
  for (auto p : precisions) {
    Vae model(a);
    model.init_parameters(11);
    model.prepare(p);
    std::vector<int> seen(static_cast<std::size_t>(model.num_parameters()), 0);
    model.update_parameters([&](float* theta, std::size_t offset, std::size_t n) {
      for (std::size_t j = offset; j < offset + n; ++j) {
        theta[j] = 0.9f * theta[j] + 0.01f * std::sin(static_cast<float>(j));
        ++seen[j];
      }
    });
    for (std::size_t j = 0; j < seen.size(); ++j) ASSERT_EQ(seen[j], 1) << "parameter " << j << " updated " << seen[j] << " times";
    Vae fresh(a);
    const auto updated = std::as_const(model).parameters();
    std::copy(updated.begin(), updated.end(), fresh.parameters().begin());
    fresh.prepare(p);
    VaeWorkspace w1, w2;
    // Aligned gradients, as the trainer's: Eigen's bias sums round by the destination's alignment.
    Eigen::VectorXf g1(model.num_parameters()), g2(model.num_parameters());
    float mx = -1;
    const double l1 = model.loss(x, eps, w1, {g1.data(), seen.size()}, {}, &mx);
    const double l2 = fresh.loss(x, eps, w2, {g2.data(), seen.size()});
    EXPECT_EQ(l1, l2) << matmul::to_string(p);
    for (Index j = 0; j < g1.size(); ++j) ASSERT_EQ(g1[j], g2[j]) << matmul::to_string(p) << " gradient " << j;
    const float true_max = g1.cwiseAbs().maxCoeff();
    EXPECT_EQ(mx, true_max) << matmul::to_string(p);
    EXPECT_GT(mx, 0.0f);
  }
  // Unprepared (Eigen's products): the update applies, and the gradient maximum too.
  Vae plain(a);
  plain.init_parameters(11);
  const float before = plain.parameters()[5];
  plain.update_parameters([](float* theta, std::size_t offset, std::size_t n) {
    for (std::size_t j = offset; j < offset + n; ++j) theta[j] += 0.015625f;
  });
  EXPECT_EQ(std::as_const(plain).parameters()[5], before + 0.015625f);
  VaeWorkspace w;
  Eigen::VectorXf g(plain.num_parameters());
  float mx = 0;
  plain.loss(x, eps, w, {g.data(), static_cast<std::size_t>(g.size())}, {}, &mx);
  ASSERT_TRUE(g.allFinite());
  EXPECT_EQ(mx, g.cwiseAbs().maxCoeff());
  // A non-finite gradient entry shows in the maximum.
  plain.update_parameters([](float* theta, std::size_t offset, std::size_t n) {
    if (offset == 0 && n > 0) theta[0] = std::numeric_limits<float>::infinity();
  });
  plain.loss(x, eps, w, {g.data(), static_cast<std::size_t>(g.size())}, {}, &mx);
  EXPECT_FALSE(std::isfinite(mx));
}

// Ranks that share a node's packed weights copy only the entries the products do not read
// through the packs after each step (vae_fit.cpp): Segments::kUnpacked must visit exactly
// the biases and the log-variances, each once, within [first, last), and leave the packs
// (hence the loss) as they were.
TEST(VaeUpdate, UnpackedSegmentsAreTheBiasesAndLogVariances) {
  VaeArchitecture a;
  a.input_dim = 70;
  a.latent_dim = 3;
  a.hidden = {48, 40};
  a.likelihood = VaeLikelihood::kGaussian;
  a.learn_variance = true;
  Vae model(a);
  model.init_parameters(11);
  model.prepare(matmul::Precision::kHighest);
  const auto p = static_cast<std::size_t>(model.num_parameters());
  std::vector<int> expected(p, 0);
  for (const auto* net : {&model.encoder_layers(), &model.decoder_layers()})
    for (const VaeLayer& l : *net)
      for (Index j = 0; j < l.out; ++j) expected[static_cast<std::size_t>(l.bias_offset + j)] = 1;
  ASSERT_GE(model.log_variance_offset(), 0);
  for (Index d = 0; d < a.input_dim; ++d) expected[static_cast<std::size_t>(model.log_variance_offset() + d)] = 1;
  const RowMatrixF x = random_rows(20, 70, 5, false), eps = random_rows(20, 3, 6, false);
  VaeWorkspace w;
  Eigen::VectorXf g(model.num_parameters());
  const double before = model.loss(x, eps, w, {g.data(), p});
  // Two calls over [0, half) and [half, P), as the trainer's copy of the others' shares.
  std::vector<int> seen(p, 0);
  const auto visit = [&](float*, std::size_t offset, std::size_t n) {
    for (std::size_t j = offset; j < offset + n; ++j) ++seen[j];
  };
  const std::size_t half = p / 2;
  model.update_parameters(visit, 0, half, false, Vae::Segments::kUnpacked);
  model.update_parameters(visit, half, p, false, Vae::Segments::kUnpacked);
  std::size_t biases = 0;
  for (std::size_t j = 0; j < p; ++j) {
    ASSERT_EQ(seen[j], expected[j]) << "parameter " << j;
    biases += static_cast<std::size_t>(expected[j]);
  }
  EXPECT_EQ(biases, static_cast<std::size_t>(48 + 40 + 6 + 40 + 48 + 70 + 70));
  EXPECT_EQ(model.loss(x, eps, w, {g.data(), p}), before);
}

// With every weight zero the encoder gives μ = b, log σ² = b' and the decoder a constant
// output: the loss has a closed form.
TEST(VaeLoss, ClosedFormWithZeroWeights) {
  VaeArchitecture a;
  a.input_dim = 3;
  a.latent_dim = 2;
  a.hidden = {4};
  Vae model(a);
  auto p = model.parameters();
  std::fill(p.begin(), p.end(), 0.0f);
  const VaeLayer& enc_out = model.encoder_layers().back();
  p[static_cast<std::size_t>(enc_out.bias_offset + 0)] = 0.5f;   // μ_1
  p[static_cast<std::size_t>(enc_out.bias_offset + 3)] = -1.0f;  // log σ²_2
  const VaeLayer& dec_out = model.decoder_layers().back();
  p[static_cast<std::size_t>(dec_out.bias_offset + 1)] = 2.0f;   // logit of feature 2
  RowMatrixF x(1, 3);
  x << 1.0f, 0.0f, 0.25f;
  RowMatrixF eps = RowMatrixF::Zero(1, 2);
  VaeWorkspace w;
  std::vector<double> elbo(1);
  const double loss = model.loss(x, eps, w, {}, elbo);
  const auto softplus = [](double l) { return std::log1p(std::exp(l)); };
  const double rec = (softplus(0) - 0) + (softplus(2) - 0) + (softplus(0) - 0);  // Σ softplus(l) − x l
  const double kl = -0.5 * ((1 + 0 - 0.25 - 1) + (1 - 1 - 0 - std::exp(-1.0)));
  EXPECT_NEAR(loss, rec + kl, 1e-5);
  EXPECT_NEAR(elbo[0], -(rec + kl), 1e-5);
}

// The IWAE estimate with k = 1 is an unbiased single-sample ELBO without the closed-form
// KL; as k grows it is a lower bound that increases (Burda et al. 2016, Thm. 1), and with
// an exact posterior it equals log p(x). Here: a decoder that ignores z (zero weights), so
// p(x|z) = p(x) and q = N(μ, σ²): log w = log p(x) + log p(z) − log q(z), whose mean over
// many samples tends to log p(x) − KL while log-mean-exp tends to log p(x).
TEST(VaeIwae, TendsToTheLogLikelihoodWhenTheDecoderIgnoresZ) {
  VaeArchitecture a;
  a.input_dim = 2;
  a.latent_dim = 1;
  a.hidden = {2};
  Vae model(a);
  auto p = model.parameters();
  std::fill(p.begin(), p.end(), 0.0f);
  p[static_cast<std::size_t>(model.encoder_layers().back().bias_offset + 0)] = 0.3f;   // μ
  p[static_cast<std::size_t>(model.encoder_layers().back().bias_offset + 1)] = -0.5f;  // log σ²
  p[static_cast<std::size_t>(model.decoder_layers().back().bias_offset + 0)] = 1.0f;   // logit
  RowMatrixF x(1, 2);
  x << 1.0f, 0.0f;
  const double log_px = (1.0 - std::log1p(std::exp(1.0))) + (0.0 - std::log1p(std::exp(0.0)));
  VaeWorkspace w;
  std::vector<double> iw(1);
  vae_iwae_rows(model, x, 0, 3, 20000, w, iw);
  EXPECT_NEAR(iw[0], log_px, 0.02);
  std::vector<double> elbo(1);
  vae_elbo_rows(model, x, 0, 3, w, elbo);
  const double kl = -0.5 * (1 - 0.5 - 0.09 - std::exp(-0.5));
  EXPECT_NEAR(elbo[0], log_px - kl, 1e-5);
  EXPECT_LT(elbo[0], iw[0]);
}

TEST(VaeFile, RoundTripKeepsEveryParameter) {
  TempDir dir;
  VaeArchitecture a;
  a.input_dim = 4;
  a.latent_dim = 2;
  a.hidden = {3};
  a.likelihood = VaeLikelihood::kGaussian;
  Vae model(a);
  model.init_parameters(11);
  model.parameters()[static_cast<std::size_t>(model.log_variance_offset() + 2)] = 0.7f;
  const std::string path = dir.path() + "/vae.h5";
  save_vae(model, "{}", {}, 10, "data", path, false);
  const Vae back = load_vae(path);
  ASSERT_EQ(back.num_parameters(), model.num_parameters());
  for (Index i = 0; i < model.num_parameters(); ++i)
    EXPECT_EQ(back.parameters()[static_cast<std::size_t>(i)], model.parameters()[static_cast<std::size_t>(i)]) << i;
  EXPECT_EQ(back.architecture().likelihood, VaeLikelihood::kGaussian);
  EXPECT_EQ(back.architecture().hidden, std::vector<Index>{3});
}

// Training lowers the loss and the parameters are the same bits with 1 and 2 threads (the
// rank count is covered by the MPI invariance test).
void check_fit(matmul::Precision precision) {
  if (precision == matmul::Precision::kMedium && !matmul::available(precision)) GTEST_SKIP() << "this CPU lacks AVX512_BF16";
  TempDir dir;
  std::vector<std::int64_t> labels;
  RowMatrix x = blobs(600, 6, 3, 5, &labels);
  x = ((x.array() - x.minCoeff()) / (x.maxCoeff() - x.minCoeff())).matrix();  // into [0, 1]
  write_shards(dir.path() + "/data", x, {250, 350});
  const io::DenseDatasetInfo info = io::open_dense_dataset(dir.path() + "/data");
  const auto comm = comm::Communicator::world();
  const Logger log(nullptr, false);
  VaeFitConfig c;
  c.arch.latent_dim = 2;
  c.arch.hidden = {16};
  c.batch_size = 64;
  c.micro_batch_rows = 16;  // four micro-batches per step for the two threads to share
  c.epochs = 15;
  c.learning_rate = 3e-3;
  c.validation_fraction = 0.1;
  c.matmul_precision = precision;
  c.threads = 1;
  const VaeFitResult one = fit_vae(comm, info, c, log, {}, nullptr);
  c.threads = 2;
  const VaeFitResult two = fit_vae(comm, info, c, log, {}, nullptr);
  ASSERT_EQ(one.model.num_parameters(), two.model.num_parameters());
  for (Index i = 0; i < one.model.num_parameters(); ++i)
    ASSERT_EQ(one.model.parameters()[static_cast<std::size_t>(i)], two.model.parameters()[static_cast<std::size_t>(i)]) << i;
  ASSERT_EQ(one.em.history.size(), 15u);
  EXPECT_GT(one.em.history.back().objective, one.em.history.front().objective + 0.05);
  EXPECT_EQ(one.num_validation_rows + one.num_train_rows, 600);
  EXPECT_GT(one.num_validation_rows, 0);
}

// Early stopping keeps the best epoch's parameters even when it beat the previous best by
// less than tol (scikit-learn keeps them on any improvement; tol only counts epochs without
// one). The kept model is the same bits as a fit stopped at that epoch.
TEST(VaeFit, EarlyStoppingKeepsTheBestEpochOnAnyImprovement) {
  TempDir dir;
  RowMatrix x = blobs(600, 6, 3, 5, nullptr);
  x = ((x.array() - x.minCoeff()) / (x.maxCoeff() - x.minCoeff())).matrix();
  write_shards(dir.path() + "/data", x, {600});
  const io::DenseDatasetInfo info = io::open_dense_dataset(dir.path() + "/data");
  const auto comm = comm::Communicator::world();
  const Logger log(nullptr, false);
  VaeFitConfig c;
  c.arch.latent_dim = 2;
  c.arch.hidden = {16};
  c.batch_size = 64;
  c.epochs = 6;
  c.learning_rate = 3e-3;
  c.validation_fraction = 0.2;
  c.tol = 1e3;              // no epoch improves by more than tol ...
  c.n_iter_no_change = 10;  // ... but all six run
  std::vector<double> val;
  const VaeFitResult fit = fit_vae(comm, info, c, log, [&](const train::IterationRecord&, double v) { val.push_back(v); }, nullptr);
  ASSERT_EQ(val.size(), 6u);
  const auto best = std::max_element(val.begin(), val.end());
  ASSERT_NE(best, val.begin()) << "the validation ELBO did not improve after epoch 1: the test proves nothing";
  EXPECT_EQ(fit.validation_elbo, *best);
  // The fit stopped at the best epoch ends with the same parameters (constant learning rate).
  c.epochs = static_cast<int>(best - val.begin()) + 1;
  const VaeFitResult stopped = fit_vae(comm, info, c, log, {}, nullptr);
  ASSERT_EQ(stopped.model.num_parameters(), fit.model.num_parameters());
  for (Index i = 0; i < fit.model.num_parameters(); ++i)
    ASSERT_EQ(fit.model.parameters()[static_cast<std::size_t>(i)], stopped.model.parameters()[static_cast<std::size_t>(i)]) << i;
}

TEST(VaeFit, LearnsAndIsThreadInvariant) { check_fit(matmul::Precision::kHighest); }
TEST(VaeFit, MediumPrecisionLearnsAndIsThreadInvariant) { check_fit(matmul::Precision::kMedium); }

}  // namespace
}  // namespace latent::models
