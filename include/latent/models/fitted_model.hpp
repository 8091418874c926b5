#pragma once
/// \file A fitted model as the commands score/predict/sample/info see it, and the model
/// file registry: each model writes its own HDF5 layout (docs/FORMATS.md) with
/// the common root attributes `format_version`, `model`, `config` (JSON) and the fit
/// history under `/history`.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "latent/core/types.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/models/factor/factor.hpp"
#include "latent/models/gmm/gmm.hpp"
#include "latent/models/mixture/discrete.hpp"
#include "latent/train/batch_em.hpp"

namespace latent::models {

inline constexpr int kModelFormatVersion = 1;

class FittedModel {
 public:
  virtual ~FittedModel() = default;
  virtual std::string name() const = 0;
  virtual Index num_features() const = 0;
  /// Number of clusters/components (labels are in [0, K)).
  virtual Index num_components() const = 0;
  /// True if per-row scores are log-likelihoods (nats); false for k-means, whose score is
  /// minus the squared distance to the nearest center.
  virtual bool has_likelihood() const = 0;
  /// Free parameters, for BIC/AIC (0 if not a likelihood model).
  virtual Index num_parameters() const = 0;
  /// For a block x (B × D): per-row scores (B), hard labels (B), and, if proba is not
  /// null, responsibilities (B × K). Thread-safe.
  virtual void predict_block(const RowMatrix& x, Vector& score, std::vector<std::int64_t>& labels,
                             RowMatrix* proba) const = 0;
  /// Draws first .. first+count-1 (count × D) with their component labels; draw i is a
  /// pure function of (seed, i), so chunked generation gives the same draws.
  virtual RowMatrix sample(Index first, Index count, std::uint64_t seed, std::vector<std::int64_t>& labels) const = 0;
  /// Human-readable summary for `latent info`.
  virtual std::string describe() const = 0;
  /// True for clustering models (labels, responsibilities, ARI); false for factor models.
  virtual bool is_mixture() const { return true; }
  /// `latent transform`: the output dataset's name and width, and per block the rows
  /// (B × width): responsibilities for mixtures, posterior means E[z|x] for factor models.
  virtual std::string transform_name() const { return "proba"; }
  virtual Index transform_dim() const { return num_components(); }
  virtual void transform_block(const RowMatrix& x, RowMatrix& out) const {
    Vector score;
    std::vector<std::int64_t> labels;
    predict_block(x, score, labels, &out);
  }
  /// Whether rows may contain NaN (missing values) in score/transform/impute.
  virtual bool handles_missing() const { return false; }
  /// `latent impute`: x with every NaN replaced by its conditional expectation given the
  /// observed entries of its row. Thread-safe. Throws Error(kUsage) if not supported.
  virtual void impute_block(const RowMatrix& x, RowMatrix& out) const;
};

/// The most probable component of every row of `resp` (B × K; the first one on ties): the
/// hard labels of a mixture.
std::vector<std::int64_t> argmax_labels(const RowMatrix& resp);

/// What every model file records about its fit.
struct FitRecord {
  std::string config_json;  ///< the full configuration
  train::EmResult em;
  Index n_samples = 0;
  std::string data_location;
};

/// The common root attributes (format_version, model, config, n_iter, converged,
/// lower_bound, n_samples_seen, data) and /history of every model file. Local.
void write_fit_record(io::H5Writer& w, const std::string& model, const FitRecord& record);

/// The fit record of a model file as text for describe() (n_iter, converged, lower bound,
/// data, config); empty parts are left out. Local.
std::string fit_summary(const io::H5Reader& file);

/// Writes a GMM model file (/weights, /means, /covariances, /precisions_cholesky with
/// scikit-learn's shapes) atomically. Local (call on one rank).
/// `model` "bgmm" writes a variational mixture's plug-in parameters in the same layout, and
/// `extra` adds its own datasets before the commit.
void save_gmm(const Gmm& gmm, const FitRecord& record, const std::string& path, bool overwrite,
              const std::string& model = "gmm", const std::function<void(io::H5Writer&)>& extra = {});
/// Writes a k-means model file (/cluster_centers, K × D). Local.
void save_kmeans(const RowMatrix& centers, double inertia, const FitRecord& record, const std::string& path,
                 bool overwrite);

/// Writes a PPCA or factor-analysis model file (/components L × D, /mean D,
/// /noise_variance: D for fa, a 1-vector for ppca) atomically. Local.
void save_factor(const FactorModel& model, const FitRecord& record, const std::string& path, bool overwrite);

/// Writes a Bernoulli ("bmm": /weights K, /means K × D) or multinomial ("mmm": /weights K,
/// /components K × V, rows summing to 1, and /vocabulary when given) mixture file
/// atomically. Local.
void save_discrete(const DiscreteMixture& model, const FitRecord& record, const std::string& path, bool overwrite,
                   const std::vector<std::string>& vocabulary = {});
/// The parameters of a bmm/mmm model file. Local. Throws Error(kInput).
DiscreteMixture load_discrete(const std::string& path);

/// The parameters of a GMM model file (for warm starts: `fit gmm --init-model`). Local.
Gmm load_gmm_parameters(const std::string& path);

/// In-memory fitted models (for `latent select`, which scores candidates before writing).
std::unique_ptr<FittedModel> make_fitted(Gmm gmm);
std::unique_ptr<FittedModel> make_fitted(FactorModel model);

/// Opens any model file by its `model` attribute. Throws Error(kInput) naming the file
/// for an unknown model or format version. Local.
std::unique_ptr<FittedModel> load_model(const std::string& path);

}  // namespace latent::models
