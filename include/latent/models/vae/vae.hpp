#pragma once
/// \file Variational autoencoder (Kingma & Welling 2014): p(z) = N(0, I_L); an MLP decoder
/// gives p(x|z) (Bernoulli logits for data in [0, 1], or a Gaussian mean with a per-feature
/// log-variance, learned or fixed); an MLP encoder gives q(z|x) = N(μ, diag exp(log σ²)).
/// Symbols: D features, L latent dimensions, B rows of a micro-batch, P parameters.
///
/// Parameters live in one flat float32 vector (the unit of the gradient allreduce). Layer
/// i maps in → out as y = a Wᵀ + b with W stored out × in row-major (PyTorch's layout),
/// followed by the activation on every layer but the last of each network. The encoder's
/// last layer has 2L outputs: μ (first L) then log σ². The decoder's widths are the
/// encoder's hidden widths reversed.
///
/// All per-row quantities are pure functions of the row, the parameters and the row's
/// noise ε, so any split of rows over ranks and threads gives the same per-row results;
/// the gradient of a micro-batch is computed by one thread in a fixed order (single-threaded
/// products: Eigen's, or after prepare() the packed kernels of latent/core/matmul.hpp), and
/// micro-batch gradients are combined exactly by the trainer.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "latent/core/matmul.hpp"
#include "latent/core/types.hpp"

namespace latent::models {

enum class VaeActivation { kRelu, kTanh };
enum class VaeLikelihood { kBernoulli, kGaussian };

std::string to_string(VaeActivation a);
std::string to_string(VaeLikelihood l);
/// Parses "relu"/"tanh" and "bernoulli"/"gaussian"; throws Error(kUsage) otherwise.
VaeActivation parse_vae_activation(const std::string& s);
VaeLikelihood parse_vae_likelihood(const std::string& s);

struct VaeArchitecture {
  Index input_dim = 0;          ///< D
  Index latent_dim = 0;         ///< L
  std::vector<Index> hidden;    ///< encoder hidden widths; the decoder uses them reversed
  VaeActivation activation = VaeActivation::kRelu;
  VaeLikelihood likelihood = VaeLikelihood::kBernoulli;
  /// Gaussian decoder: learn one log-variance per feature (initialised to
  /// fixed_log_variance), or keep it fixed at fixed_log_variance.
  bool learn_variance = true;
  double fixed_log_variance = 0.0;
};

/// One affine layer's place in the flat parameter vector.
struct VaeLayer {
  Index in = 0, out = 0;
  Index weight_offset = 0;  ///< out × in, row-major
  Index bias_offset = 0;    ///< out
};

/// Per-thread buffers (no allocation in the steady state).
struct VaeWorkspace {
  std::vector<RowMatrixF> enc_act, dec_act;  ///< activations of every layer (B × width)
  RowMatrixF mu, log_var, z, out, delta, delta_prev, dz;
  matmul::Packed pa, pb;  ///< packed activations and deltas (after Vae::prepare)
};

class Vae {
 public:
  Vae() = default;
  /// Throws Error(kUsage) if a size is < 1.
  explicit Vae(VaeArchitecture arch);

  /// P for an architecture, without allocating it (for the up-front memory check).
  static Index count_parameters(const VaeArchitecture& arch) noexcept;

  const VaeArchitecture& architecture() const noexcept { return arch_; }
  Index num_parameters() const noexcept { return static_cast<Index>(params_.size()); }
  /// Writable parameters. Marks the packed weights stale: call prepare() again before the
  /// next encode/decode/loss (which otherwise throw std::logic_error).
  std::span<float> parameters() noexcept {
    packs_stale_ = prepared_;
    return {params_.data(), static_cast<std::size_t>(params_.size())};
  }
  std::span<const float> parameters() const noexcept { return {params_.data(), static_cast<std::size_t>(params_.size())}; }
  const std::vector<VaeLayer>& encoder_layers() const noexcept { return encoder_; }
  const std::vector<VaeLayer>& decoder_layers() const noexcept { return decoder_; }
  /// Offset of the decoder's D log-variances (Gaussian, learned), or -1.
  Index log_variance_offset() const noexcept { return log_var_offset_; }

  /// PyTorch's nn.Linear default: every weight and bias ~ U(−1/√in, 1/√in), each draw a
  /// pure function of (seed, layer, index). Log-variances start at fixed_log_variance.
  void init_parameters(std::uint64_t seed);

  /// Packs every layer's weight matrix, in the orientations of the forward and the backward
  /// products, for matmul::multiply at precision p (kHighest: float32; kMedium: bfloat16
  /// operands with float32 sums). encode/decode/loss use these packs from then on (without
  /// prepare() they use Eigen's float32 products). O(P) work and 2P words of memory; the
  /// (layer, orientation) packs are spread over the calling TBB arena's threads. Call again
  /// after changing parameters through parameters() (update_parameters keeps the packs
  /// current). kHighest runs in every kernel variant (latent/core/kernel.hpp, the same
  /// bits in each); kMedium throws Error(kUsage) unless the variant is avx512bf16
  /// or amxbf16 (matmul::require; their medium bits differ).
  void prepare(matmul::Precision p);
  /// Changes the parameters in place, segment by segment, on the calling TBB arena's
  /// threads: update(theta, offset, n) is given the whole parameter vector (P floats) and
  /// may change only entries [offset, offset + n); it runs concurrently for distinct
  /// segments. Segments: runs of 32 rows of a layer's weight matrix, a layer's bias, the
  /// log-variances. If the model is prepared, each weight segment's part of the packed
  /// weights is rebuilt right after its update, while the rows are still in cache, and the
  /// model stays prepared (no prepare() needed).
  void update_parameters(const std::function<void(float* theta, std::size_t offset, std::size_t n)>& update);
  /// The same for the segments whose first entry is in [first, last) only (a rank's share
  /// of a sharded update, then the copy of the others' shares); the packs stay current once
  /// every segment has been visited by one call or another.
  /// With repack false the packed weights are left as they are: for ranks that share them
  /// (place_packs), where the rank that updated a segment has repacked it. With
  /// `which` kUnpacked only the segments the products do not read through the packs (the
  /// biases, the log-variances) are visited: what a prepared model's forward and backward
  /// passes read from the parameters themselves.
  enum class Segments { kAll, kUnpacked };
  void update_parameters(const std::function<void(float* theta, std::size_t offset, std::size_t n)>& update,
                         std::size_t first, std::size_t last, bool repack = true, Segments which = Segments::kAll);
  /// Words (4 bytes each) of all packed weights of a prepared model, each pack rounded up to
  /// 16 words (64 bytes).
  std::size_t packed_words() const noexcept;
  /// Moves the packed weights of a prepared model into `storage` (packed_words() words,
  /// 64-byte aligned, alive until own_packs() or prepare()), copying them if `copy`: ranks on
  /// one node read one copy (matmul::Packed::place). own_packs() moves them back.
  void place_packs(std::uint32_t* storage, bool copy);
  void own_packs();
  /// The precision prepare() packed for, if any.
  bool prepared() const noexcept { return prepared_; }
  matmul::Precision matmul_precision() const noexcept { return precision_; }

  /// q(z|x): μ and log σ² (B × L each) for rows x (B × D). Thread-safe.
  void encode(const RowMatrixF& x, VaeWorkspace& w) const;
  /// The decoder's output for z (B × L) into w.out (B × D): Bernoulli logits, or the
  /// Gaussian mean. Thread-safe.
  void decode(const RowMatrixF& z, VaeWorkspace& w) const;
  /// log p(x|z) (nats) of each row given the decoder output `out` (B × D) into ll (B).
  void log_likelihood_rows(const RowMatrixF& x, const RowMatrixF& out, std::span<double> ll) const;

  /// The negative ELBO of each row, −log p(x|z) + KL(q(z|x) ‖ p(z)) with z = μ + σ ⊙ ε
  /// (one sample; the KL term in closed form, Kingma & Welling 2014 App. B), summed over the
  /// B rows and returned (nats); per-row ELBOs (−loss) go to elbo_rows if non-empty.
  /// If grad is non-empty (P floats), it receives the gradient of the summed loss
  /// (overwritten; the reparameterisation trick, §2.4). eps is B × L. Thread-safe.
  /// If grad_abs_max is non-null (and grad non-empty) it receives max_j |grad_j|: +Inf if an
  /// entry is infinite and NaN if one is NaN (found while the gradient is written, no extra
  /// pass over it).
  double loss(const RowMatrixF& x, const RowMatrixF& eps, VaeWorkspace& w, std::span<float> grad,
              std::span<double> elbo_rows = {}, float* grad_abs_max = nullptr) const;

 private:
  // The Gaussian decoder's log-variance of each feature (learned or fixed), 1 × D.
  Eigen::Array<float, 1, Eigen::Dynamic> decoder_log_variance() const;
  // `first` is the index of layers[0] among all layers (encoder first) for the packs.
  void forward_mlp(const std::vector<VaeLayer>& layers, std::size_t first, const RowMatrixF& input,
                   std::vector<RowMatrixF>& act, RowMatrixF& last, VaeWorkspace& w) const;
  // Backpropagates `delta` (B × out of the last layer) through `layers`, writing weight and
  // bias gradients; leaves the gradient w.r.t. the network's input in `input_grad`.
  void backward_mlp(const std::vector<VaeLayer>& layers, std::size_t first, const RowMatrixF& input,
                    const std::vector<RowMatrixF>& act, RowMatrixF& delta, RowMatrixF& scratch, std::span<float> grad,
                    RowMatrixF* input_grad, VaeWorkspace& w, float* grad_abs_max) const;
  void check_packs() const;

  VaeArchitecture arch_;
  // Aligned to Eigen's widest packet (Eigen's allocator): Eigen's vectorised reductions over a Map start
  // their lanes at the first aligned element, so the rounding of a dot product would
  // otherwise depend on where the allocator placed the parameters.
  Eigen::VectorXf params_;
  std::vector<VaeLayer> encoder_, decoder_;
  Index log_var_offset_ = -1;
  // Per layer (encoder then decoder): W packed as B(k, j) = W[j][k] (forward, K = in) and
  // as B(k, j) = W[k][j] (the input gradient δ W, K = out).
  std::vector<matmul::Packed> fwd_, bwd_;
  matmul::Precision precision_ = matmul::Precision::kHighest;
  bool prepared_ = false, packs_stale_ = false;
  // update_parameters' segments (built by the constructor): entries [offset, offset + n),
  // rows [r0, r1) of the weight matrix of layer `layer` (at offset `weights`), or
  // layer == kNoLayer for a bias or the log-variances.
  static constexpr std::size_t kNoLayer = SIZE_MAX;
  struct Segment {
    Index offset, n;
    std::size_t layer;
    Index r0, r1, weights;
  };
  std::vector<Segment> segments_;
};

}  // namespace latent::models
