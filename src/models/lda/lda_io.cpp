// LDA model files and synthetic corpora.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "latent/core/error.hpp"
#include "latent/core/rng.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/models/fitted_model.hpp"
#include "latent/models/lda/lda_fit.hpp"

namespace latent::models {

void save_lda(const Lda& model, const std::vector<std::string>& vocabulary, const std::string& config_json,
              const train::EmResult& em, Index n_documents, const std::string& data_location, const std::string& path,
              bool overwrite) {
  io::H5Writer w(path, overwrite);
  write_fit_record(w, "lda", FitRecord{config_json, em, n_documents, data_location});
  const RowMatrix components = model.lambda_vk().transpose();
  w.write("components", components);
  w.write("doc_topic_prior", std::span<const double>(model.alpha().data(), static_cast<std::size_t>(model.alpha().size())));
  const double eta = model.eta();
  w.write("topic_word_prior", std::span<const double>(&eta, 1));
  if (!vocabulary.empty()) w.write_strings("vocabulary", vocabulary);
  w.attr("/", "n_topics", static_cast<std::int64_t>(model.num_topics()));
  w.attr("/", "vocab_size", static_cast<std::int64_t>(model.vocab_size()));
  w.commit();
}

Lda load_lda(const std::string& path, std::vector<std::string>* vocabulary) {
  io::H5Reader r(path);
  const std::string where = "model " + path;
  if (r.has_attr("/", "model") && r.attr_string("/", "model") != "lda")
    throw_input(where + ": is a '" + r.attr_string("/", "model") + "' model, not lda");
  for (const char* name : {"components", "doc_topic_prior", "topic_word_prior"})
    if (!r.has(name)) throw_input(where + ": dataset /" + name + " is missing");
  const RowMatrix components = r.read_matrix("components");
  const std::vector<double> alpha = r.read_doubles("doc_topic_prior");
  const std::vector<double> eta = r.read_doubles("topic_word_prior");
  const Index k = components.rows(), v = components.cols();
  if (k < 1 || v < 1) throw_input(where + ": /components is empty");
  if (static_cast<Index>(alpha.size()) != k)
    throw_input(fmt::format("{}: /doc_topic_prior has {} entries but /components has {} topics", where, alpha.size(), k));
  if (eta.size() != 1) throw_input(where + ": /topic_word_prior must hold one value");
  const bool ok = (components.array() > 0).all() && components.allFinite() &&
                  std::all_of(alpha.begin(), alpha.end(), [](double a) { return a > 0 && std::isfinite(a); }) &&
                  eta[0] > 0 && std::isfinite(eta[0]);
  if (!ok) throw_input(where + ": components and priors must be positive and finite");
  Lda model(k, v, Eigen::Map<const Vector>(alpha.data(), k), eta[0]);
  model.lambda_vk() = components.transpose();
  if (vocabulary != nullptr) {
    vocabulary->clear();
    if (r.has("vocabulary")) *vocabulary = r.read_strings("vocabulary");
    if (!vocabulary->empty() && static_cast<Index>(vocabulary->size()) != v)
      throw_input(fmt::format("{}: /vocabulary has {} words but /components has {} columns", where, vocabulary->size(), v));
  }
  return model;
}

}  // namespace latent::models
