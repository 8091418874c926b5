#include "latent/models/fitted_model.hpp"

#include "latent/models/registry.hpp"

#include <fmt/format.h>

#include <Eigen/Cholesky>
#include <functional>
#include <map>

#include "latent/core/error.hpp"
#include "latent/core/kernel.hpp"
#include "latent/core/rng.hpp"
#include "latent/models/kmeans/kmeans.hpp"

namespace latent::models {
void write_fit_record(io::H5Writer& w, const std::string& model, const FitRecord& r) {
  w.attr("/", "format_version", static_cast<std::int64_t>(kModelFormatVersion));
  w.attr("/", "model", model);
  w.attr("/", "config", r.config_json);
  w.attr("/", "n_iter", static_cast<std::int64_t>(r.em.n_iter));
  w.attr("/", "converged", static_cast<std::int64_t>(r.em.converged ? 1 : 0));
  w.attr("/", "lower_bound", r.em.objective);
  w.attr("/", "n_samples_seen", static_cast<std::int64_t>(r.n_samples));
  w.attr("/", "data", r.data_location);
  // Which of latent's kernels ran (docs/FORMATS.md; the same bits in avx2 and avx512).
  w.attr("/", "kernel_variant", kernel::to_string(kernel::active()));
  std::vector<double> objective, change, seconds;
  for (const auto& h : r.em.history) {
    objective.push_back(h.objective);
    change.push_back(h.change);
    seconds.push_back(h.seconds);
  }
  w.write("history/objective", objective);
  w.write("history/change", change);
  w.write("history/seconds", seconds);
}

namespace {

std::vector<Index> cov_shape(CovarianceType t, Index k, Index d) {
  switch (t) {
    case CovarianceType::kFull: return {k, d, d};
    case CovarianceType::kTied: return {d, d};
    case CovarianceType::kDiag: return {k, d};
    case CovarianceType::kSpherical: return {k};
  }
  return {};
}

}  // namespace

std::string fit_summary(const io::H5Reader& r) {
  std::string s;
  if (r.has_attr("/", "n_iter"))
    s += fmt::format("  n_iter: {}  converged: {}  lower_bound/objective: {:.6g}\n", r.attr_int("/", "n_iter"),
                     r.attr_int("/", "converged") != 0 ? "yes" : "no", r.attr_double("/", "lower_bound"));
  if (r.has_attr("/", "n_samples_seen"))
    s += fmt::format("  fitted on: {} ({} samples)\n", r.attr_string("/", "data"), r.attr_int("/", "n_samples_seen"));
  if (r.has_attr("/", "config")) s += "  config: " + r.attr_string("/", "config") + "\n";
  if (r.has_attr("/", "kernel_variant")) s += "  kernel variant: " + r.attr_string("/", "kernel_variant") + "\n";
  return s;
}

std::vector<std::int64_t> argmax_labels(const RowMatrix& resp) {
  std::vector<std::int64_t> labels(static_cast<std::size_t>(resp.rows()));
  for (Index i = 0; i < resp.rows(); ++i) {
    Index best = 0;
    resp.row(i).maxCoeff(&best);
    labels[static_cast<std::size_t>(i)] = best;
  }
  return labels;
}

namespace {

class GmmModel final : public FittedModel {
 public:
  GmmModel(Gmm gmm, std::string summary) : gmm_(std::move(gmm)), summary_(std::move(summary)) {}
  std::string name() const override { return "gmm"; }  // also for bgmm files (their plug-in mixture)
  Index num_features() const override { return gmm_.num_features(); }
  Index num_components() const override { return gmm_.num_components(); }
  bool has_likelihood() const override { return true; }
  Index num_parameters() const override { return gmm_.num_parameters(); }

  void predict_block(const RowMatrix& x, Vector& score, std::vector<std::int64_t>& labels, RowMatrix* proba) const override {
    RowMatrix resp;
    gmm_.e_step(x, score, resp);
    labels = argmax_labels(resp);
    if (proba) *proba = std::move(resp);
  }

  bool handles_missing() const override { return true; }  // every covariance type (gmm.hpp)
  void impute_block(const RowMatrix& x, RowMatrix& out) const override { gmm_.impute(x, out); }

  RowMatrix sample(Index first, Index n, std::uint64_t seed, std::vector<std::int64_t>& labels) const override {
    const Index k = gmm_.num_components(), d = gmm_.num_features();
    const CovarianceType type = gmm_.covariance_type();
    const bool diagonal = type == CovarianceType::kDiag || type == CovarianceType::kSpherical;
    // Diagonal covariances: x = μ + σ ⊙ z, the same values as the Cholesky product below
    // (its off-diagonal terms are exact zeros) at O(D) instead of O(D²) per row.
    RowMatrix sd(diagonal ? k : 0, d);
    for (Index j = 0; diagonal && j < k; ++j) {
      if (type == CovarianceType::kDiag) sd.row(j) = gmm_.covariances().row(j).array().sqrt();
      else sd.row(j).setConstant(std::sqrt(gmm_.covariances()(j, 0)));
    }
    std::vector<Eigen::MatrixXd> chol(static_cast<std::size_t>(diagonal ? 0 : k));
    for (Index j = 0; !diagonal && j < k; ++j) {
      Eigen::MatrixXd cov;
      switch (gmm_.covariance_type()) {
        case CovarianceType::kFull: cov = gmm_.covariances().middleRows(j * d, d); break;
        case CovarianceType::kTied: cov = gmm_.covariances(); break;
        case CovarianceType::kDiag: cov = gmm_.covariances().row(j).asDiagonal(); break;
        case CovarianceType::kSpherical:
          cov = Eigen::MatrixXd::Identity(d, d) * gmm_.covariances()(j, 0);
          break;
      }
      chol[static_cast<std::size_t>(j)] = Eigen::LLT<Eigen::MatrixXd>(cov).matrixL();
    }
    RowMatrix out(n, d);
    labels.resize(static_cast<std::size_t>(n));
    Vector z(d);
    for (Index i = 0; i < n; ++i) {
      CounterRng rng(seed, RngPurpose::kSample, 0, static_cast<std::uint64_t>(first + i));
      double u = rng.next_uniform();
      Index c = 0;
      while (c + 1 < k && u > gmm_.weights()[c]) u -= gmm_.weights()[c++];
      for (Index j = 0; j < d; ++j) z[j] = rng.next_normal();
      if (diagonal) out.row(i) = gmm_.means().row(c) + sd.row(c).cwiseProduct(z.transpose());
      else out.row(i) = gmm_.means().row(c) + (chol[static_cast<std::size_t>(c)] * z).transpose();
      labels[static_cast<std::size_t>(i)] = c;
    }
    return out;
  }

  std::string describe() const override {
    std::string s = fmt::format("Gaussian mixture: {} components, {} features, covariance_type={}, reg_covar={:g}\n",
                                gmm_.num_components(), gmm_.num_features(), to_string(gmm_.covariance_type()),
                                gmm_.reg_covar());
    s += summary_;
    s += "  component  weight     mean(|mean|)  mean variance\n";
    const Index d = gmm_.num_features();
    for (Index k = 0; k < gmm_.num_components(); ++k) {
      double var = 0;
      switch (gmm_.covariance_type()) {
        case CovarianceType::kFull: var = gmm_.covariances().middleRows(k * d, d).diagonal().mean(); break;
        case CovarianceType::kTied: var = gmm_.covariances().diagonal().mean(); break;
        case CovarianceType::kDiag: var = gmm_.covariances().row(k).mean(); break;
        case CovarianceType::kSpherical: var = gmm_.covariances()(k, 0); break;
      }
      s += fmt::format("  {:>9}  {:<9.5f}  {:<12.6g}  {:.6g}\n", k, gmm_.weights()[k],
                       gmm_.means().row(k).cwiseAbs().mean(), var);
    }
    return s;
  }

 private:
  Gmm gmm_;
  std::string summary_;
};

class KmeansModel final : public FittedModel {
 public:
  // Distances are taken about the centers' mean (centred coordinates keep their digits
  // when a feature is offset far from 0; KmeansFrame).
  KmeansModel(RowMatrix centers, std::string summary)
      : centers_(std::move(centers)), origin_(centers_.colwise().mean()),
        centered_(centers_.rowwise() - origin_), norms_(centered_.rowwise().squaredNorm()), summary_(std::move(summary)) {}
  std::string name() const override { return "kmeans"; }
  Index num_features() const override { return centers_.cols(); }
  Index num_components() const override { return centers_.rows(); }
  bool has_likelihood() const override { return false; }
  Index num_parameters() const override { return 0; }

  void predict_block(const RowMatrix& x, Vector& score, std::vector<std::int64_t>& labels, RowMatrix* proba) const override {
    RowMatrix dist;
    squared_distances(x.rowwise() - origin_, centered_, norms_, dist);
    std::vector<Index> l;
    nearest_centers(dist, l, score);
    score = -score;
    labels.assign(l.begin(), l.end());
    if (proba) {
      *proba = RowMatrix::Zero(x.rows(), centers_.rows());
      for (Index i = 0; i < x.rows(); ++i) (*proba)(i, l[static_cast<std::size_t>(i)]) = 1.0;
    }
  }

  RowMatrix sample(Index, Index, std::uint64_t, std::vector<std::int64_t>&) const override {
    throw_usage("k-means is not a generative model; `latent sample` needs a mixture model (fit gmm)");
  }

  std::string describe() const override {
    return fmt::format("k-means: {} clusters, {} features\n", centers_.rows(), centers_.cols()) + summary_;
  }

 private:
  RowMatrix centers_;
  RowVector origin_;
  RowMatrix centered_;
  Vector norms_;
  std::string summary_;
};

void check_shape(const io::H5Reader& r, const std::string& name, const std::vector<Index>& expected) {
  if (!r.has(name)) throw_input("model " + r.path() + ": dataset /" + name + " is missing");
  if (r.shape(name) != expected) throw_input("model " + r.path() + ": dataset /" + name + " has an unexpected shape");
}

Gmm read_gmm(const io::H5Reader& r) {
  const auto type = parse_covariance_type(r.attr_string("/", "covariance_type"));
  const RowMatrix means = r.read_matrix("means");
  const Index k = means.rows(), d = means.cols();
  check_shape(r, "weights", {k});
  check_shape(r, "covariances", cov_shape(type, k, d));
  const RowMatrix w = r.read_matrix("weights");
  RowMatrix cov;
  const std::vector<double> flat = r.read_doubles("covariances");
  switch (type) {
    case CovarianceType::kFull: cov = Eigen::Map<const RowMatrix>(flat.data(), k * d, d); break;
    case CovarianceType::kTied: cov = Eigen::Map<const RowMatrix>(flat.data(), d, d); break;
    case CovarianceType::kDiag: cov = Eigen::Map<const RowMatrix>(flat.data(), k, d); break;
    case CovarianceType::kSpherical: cov = Eigen::Map<const RowMatrix>(flat.data(), k, 1); break;
  }
  Gmm gmm(k, d, type, r.attr_double("/", "reg_covar"));
  gmm.set_parameters(Eigen::Map<const RowVector>(w.data(), k), means, cov);
  return gmm;
}

std::unique_ptr<FittedModel> load_gmm(const io::H5Reader& r) { return std::make_unique<GmmModel>(read_gmm(r), fit_summary(r)); }

std::unique_ptr<FittedModel> load_kmeans(const io::H5Reader& r) {
  if (!r.has("cluster_centers")) throw_input("model " + r.path() + ": dataset /cluster_centers is missing");
  return std::make_unique<KmeansModel>(r.read_matrix("cluster_centers"), fit_summary(r));
}

class FactorFitted final : public FittedModel {
 public:
  FactorFitted(FactorModel model, std::string summary) : model_(std::move(model)), summary_(std::move(summary)) {}
  std::string name() const override { return model_name(model_.noise_type()); }
  Index num_features() const override { return model_.num_features(); }
  Index num_components() const override { return model_.num_components(); }
  bool has_likelihood() const override { return true; }
  Index num_parameters() const override { return model_.num_parameters(); }
  bool is_mixture() const override { return false; }
  bool handles_missing() const override { return true; }
  std::string transform_name() const override { return "latent_mean"; }
  Index transform_dim() const override { return model_.num_components(); }
  void predict_block(const RowMatrix& x, Vector& score, std::vector<std::int64_t>& labels, RowMatrix*) const override {
    model_.infer(x, score, nullptr, nullptr);
    labels.assign(static_cast<std::size_t>(x.rows()), 0);
  }
  void transform_block(const RowMatrix& x, RowMatrix& out) const override {
    Vector score;
    model_.infer(x, score, &out, nullptr);
  }
  void impute_block(const RowMatrix& x, RowMatrix& out) const override {
    Vector score;
    model_.infer(x, score, nullptr, &out);
  }
  RowMatrix sample(Index first, Index n, std::uint64_t seed, std::vector<std::int64_t>& labels) const override {
    labels.assign(static_cast<std::size_t>(n), 0);
    return model_.sample(first, n, seed);
  }
  std::string describe() const override {
    const RowVector var = model_.components().rowwise().squaredNorm();
    std::string s = fmt::format("{}: {} components, {} features, noise variance {}\n",
                                model_.noise_type() == NoiseType::kIsotropic ? "probabilistic PCA" : "factor analysis",
                                model_.num_components(), model_.num_features(),
                                model_.noise_type() == NoiseType::kIsotropic
                                    ? fmt::format("{:.6g}", model_.noise_variance()[0])
                                    : fmt::format("mean {:.6g}, min {:.6g}, max {:.6g}", model_.noise_variance().mean(),
                                                  model_.noise_variance().minCoeff(), model_.noise_variance().maxCoeff()));
    s += summary_;
    s += "  component  |w|^2 (variance it explains)\n";
    for (Index k = 0; k < model_.num_components(); ++k) s += fmt::format("  {:>9}  {:.6g}\n", k, var[k]);
    return s;
  }

 private:
  FactorModel model_;
  std::string summary_;
};

class BmmFitted final : public FittedModel {
 public:
  BmmFitted(DiscreteMixture m, std::string summary) : m_(std::move(m)), summary_(std::move(summary)) {}
  std::string name() const override { return "bmm"; }
  Index num_features() const override { return m_.num_features(); }
  Index num_components() const override { return m_.num_components(); }
  bool has_likelihood() const override { return true; }
  Index num_parameters() const override { return m_.num_parameters(); }
  void predict_block(const RowMatrix& x, Vector& score, std::vector<std::int64_t>& labels, RowMatrix* proba) const override {
    RowMatrix resp;
    m_.weighted_log_prob(x, resp);
    DiscreteMixture::normalize(resp, score);
    labels = argmax_labels(resp);
    if (proba) *proba = std::move(resp);
  }
  RowMatrix sample(Index first, Index n, std::uint64_t seed, std::vector<std::int64_t>& labels) const override {
    return m_.sample(first, n, seed, labels);
  }
  std::string describe() const override {
    std::string s = fmt::format("Bernoulli mixture: {} components, {} features, alpha={:g}\n", m_.num_components(),
                                m_.num_features(), m_.alpha());
    s += summary_;
    s += "  component  weight     mean probability\n";
    for (Index k = 0; k < m_.num_components(); ++k)
      s += fmt::format("  {:>9}  {:<9.5f}  {:.6g}\n", k, m_.weights()[k], m_.probabilities().row(k).mean());
    return s;
  }

 private:
  DiscreteMixture m_;
  std::string summary_;
};

DiscreteMixture read_discrete(const io::H5Reader& r) {
  const std::string model = r.attr_string("/", "model");
  const bool bmm = model == "bmm";
  const std::string pname = bmm ? "means" : "components";
  if (!r.has(pname)) throw_input("model " + r.path() + ": dataset /" + pname + " is missing");
  const RowMatrix p = r.read_matrix(pname);
  check_shape(r, "weights", {p.rows()});
  const std::vector<double> w = r.read_doubles("weights");
  DiscreteMixture m(p.rows(), p.cols(), bmm ? DiscreteKind::kBernoulli : DiscreteKind::kMultinomial,
                    r.has_attr("/", "alpha") ? r.attr_double("/", "alpha") : 0.0,
                    r.has_attr("/", "weight_alpha") ? r.attr_double("/", "weight_alpha") : 0.0);
  if (!((p.array() >= 0).all() && (p.array() <= 1).all()))
    throw_input("model " + r.path() + ": /" + pname + " has values outside [0, 1]");
  m.set_parameters(Eigen::Map<const RowVector>(w.data(), p.rows()), p);
  return m;
}

FactorModel read_factor(const io::H5Reader& r, NoiseType noise) {
  if (!r.has("components")) throw_input("model " + r.path() + ": dataset /components is missing");
  const RowMatrix w = r.read_matrix("components");
  const Index l = w.rows(), d = w.cols();
  check_shape(r, "mean", {d});
  check_shape(r, "noise_variance", {noise == NoiseType::kIsotropic ? 1 : d});
  const std::vector<double> mean = r.read_doubles("mean"), psi = r.read_doubles("noise_variance");
  FactorModel m(l, d, noise);
  m.set_parameters(Eigen::Map<const RowVector>(mean.data(), d),
                   w, noise == NoiseType::kIsotropic ? RowVector::Constant(d, psi[0]) : RowVector(Eigen::Map<const RowVector>(psi.data(), d)));
  return m;
}

// The registry of model file loaders: one line per model.
const std::map<std::string, std::function<std::unique_ptr<FittedModel>(const io::H5Reader&)>>& loaders() {
  static const std::map<std::string, std::function<std::unique_ptr<FittedModel>(const io::H5Reader&)>> table{
      {"gmm", load_gmm},
      {"bgmm", load_gmm},  // the plug-in mixture of the variational posterior
      {"kmeans", load_kmeans},
      {"bmm", [](const io::H5Reader& r) -> std::unique_ptr<FittedModel> {
         return std::make_unique<BmmFitted>(read_discrete(r), fit_summary(r));
       }},
      {"ppca", [](const io::H5Reader& r) -> std::unique_ptr<FittedModel> {
         return std::make_unique<FactorFitted>(read_factor(r, NoiseType::kIsotropic), fit_summary(r));
       }},
      {"fa", [](const io::H5Reader& r) -> std::unique_ptr<FittedModel> {
         return std::make_unique<FactorFitted>(read_factor(r, NoiseType::kDiagonal), fit_summary(r));
       }},
  };
  return table;
}

}  // namespace

void save_gmm(const Gmm& gmm, const FitRecord& record, const std::string& path, bool overwrite, const std::string& model,
              const std::function<void(io::H5Writer&)>& extra) {
  io::H5Writer w(path, overwrite);
  write_fit_record(w, model, record);
  if (extra) extra(w);
  const Index k = gmm.num_components(), d = gmm.num_features();
  const auto shape = cov_shape(gmm.covariance_type(), k, d);
  w.write("weights", std::span<const double>(gmm.weights().data(), static_cast<std::size_t>(k)));
  w.write("means", gmm.means());
  w.write("covariances", std::span<const double>(gmm.covariances().data(), static_cast<std::size_t>(gmm.covariances().size())), shape);
  w.write("precisions_cholesky",
          std::span<const double>(gmm.precisions_cholesky().data(), static_cast<std::size_t>(gmm.precisions_cholesky().size())),
          shape);
  w.attr("/", "covariance_type", to_string(gmm.covariance_type()));
  w.attr("/", "n_components", static_cast<std::int64_t>(k));
  w.attr("/", "n_features_in", static_cast<std::int64_t>(d));
  w.attr("/", "reg_covar", gmm.reg_covar());
  w.commit();
}

void save_factor(const FactorModel& m, const FitRecord& record, const std::string& path, bool overwrite) {
  io::H5Writer w(path, overwrite);
  write_fit_record(w, model_name(m.noise_type()), record);
  const Index d = m.num_features();
  w.write("components", m.components());
  w.write("mean", std::span<const double>(m.mean().data(), static_cast<std::size_t>(d)));
  const bool iso = m.noise_type() == NoiseType::kIsotropic;
  w.write("noise_variance", std::span<const double>(m.noise_variance().data(), static_cast<std::size_t>(iso ? 1 : d)));
  w.attr("/", "n_components", static_cast<std::int64_t>(m.num_components()));
  w.attr("/", "n_features_in", static_cast<std::int64_t>(d));
  w.commit();
}

std::unique_ptr<FittedModel> make_fitted(Gmm gmm) { return std::make_unique<GmmModel>(std::move(gmm), ""); }
std::unique_ptr<FittedModel> make_fitted(FactorModel model) { return std::make_unique<FactorFitted>(std::move(model), ""); }

void save_discrete(const DiscreteMixture& m, const FitRecord& record, const std::string& path, bool overwrite,
                   const std::vector<std::string>& vocabulary) {
  io::H5Writer w(path, overwrite);
  if (!vocabulary.empty()) w.write_strings("vocabulary", vocabulary);
  const bool bmm = m.kind() == DiscreteKind::kBernoulli;
  write_fit_record(w, bmm ? "bmm" : "mmm", record);
  w.write("weights", std::span<const double>(m.weights().data(), static_cast<std::size_t>(m.num_components())));
  w.write(bmm ? "means" : "components", m.probabilities());
  w.attr("/", "n_components", static_cast<std::int64_t>(m.num_components()));
  w.attr("/", bmm ? "n_features_in" : "vocab_size", static_cast<std::int64_t>(m.num_features()));
  w.attr("/", "alpha", m.alpha());
  w.attr("/", "weight_alpha", m.weight_alpha());
  w.commit();
}

DiscreteMixture load_discrete(const std::string& path) {
  io::H5Reader r(path);
  if (!r.has_attr("/", "model") || (r.attr_string("/", "model") != "bmm" && r.attr_string("/", "model") != "mmm"))
    throw_input("model " + path + ": not a bmm/mmm model file");
  return read_discrete(r);
}

void FittedModel::impute_block(const RowMatrix&, RowMatrix&) const {
  throw_usage("`latent impute` does not apply to a " + name() + " model (it needs gmm, ppca or fa)");
}

void save_kmeans(const RowMatrix& centers, double inertia, const FitRecord& record, const std::string& path,
                 bool overwrite) {
  io::H5Writer w(path, overwrite);
  write_fit_record(w, "kmeans", record);
  w.write("cluster_centers", centers);
  w.attr("/", "inertia", inertia);
  w.attr("/", "n_clusters", static_cast<std::int64_t>(centers.rows()));
  w.attr("/", "n_features_in", static_cast<std::int64_t>(centers.cols()));
  w.commit();
}

Gmm load_gmm_parameters(const std::string& path) {
  io::H5Reader r(path);
  if (!r.has_attr("/", "model") || r.attr_string("/", "model") != "gmm")
    throw_input("model " + path + ": not a GMM model file (attribute model != \"gmm\")");
  return read_gmm(r);
}

std::unique_ptr<FittedModel> load_model(const std::string& path) {
  io::H5Reader r(path);
  if (!r.has_attr("/", "model") || !r.has_attr("/", "format_version"))
    throw_input("model " + path + ": not a latent model file (no 'model'/'format_version' attributes)");
  const auto version = r.attr_int("/", "format_version");
  if (version != kModelFormatVersion)
    throw_input("model " + path + ": format_version " + std::to_string(version) + " is not supported (this build reads " +
                std::to_string(kModelFormatVersion) + ")");
  const std::string model = r.attr_string("/", "model");
  const auto it = loaders().find(model);
  if (model == "lda" || model == "vae")
    throw_usage("model " + path + ": this command does not apply to a " + model + " model; use `latent transform` (" +
                (model == "lda" ? "topic proportions" : "posterior means") + "), `latent score` or `latent info`");
  if (model == "mmm")
    throw_usage("model " + path + ": a multinomial mixture applies to count data: `latent score`, `latent predict` "
                "and `latent transform` with --data a count dataset");
  if (it != loaders().end()) return it->second(r);
  // Models registered with a loader of their own (the registry, docs/ARCHITECTURE.md §3).
  if (const ModelSpec* spec = find_model(model); spec && spec->load) return spec->load(path);
  throw_input("model " + path + ": unknown model '" + model + "'");
}

}  // namespace latent::models
