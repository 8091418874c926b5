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

LdaGenerator::LdaGenerator(Index vocab_size, Index n_topics, double mean_length, double alpha, double eta,
                           std::uint64_t seed)
    : k_(n_topics), v_(vocab_size), mean_length_(mean_length), alpha_(alpha), eta_(eta), seed_(seed) {
  if (vocab_size < 1 || n_topics < 1 || !(mean_length > 0) || !(alpha > 0) || !(eta > 0))
    throw_usage("generate lda: --vocab-size, --n-components, --doc-length and the priors must be positive");
  // Topics β_k ~ Dir(η): cumulative distributions for sampling words by bisection.
  beta_.resize(k_, v_);
  for (Index t = 0; t < k_; ++t) {
    for (Index w = 0; w < v_; ++w) {
      CounterRng rng(seed, RngPurpose::kGenerate, 0, static_cast<std::uint64_t>(t * v_ + w));
      beta_(t, w) = std::max(sample_gamma(rng, eta), 1e-300);
    }
    beta_.row(t) /= beta_.row(t).sum();
  }
  cdf_.assign(static_cast<std::size_t>(k_), std::vector<double>(static_cast<std::size_t>(v_)));
  for (Index t = 0; t < k_; ++t) {
    double acc = 0;
    for (Index w = 0; w < v_; ++w) cdf_[static_cast<std::size_t>(t)][static_cast<std::size_t>(w)] = acc += beta_(t, w);
  }
}

std::int64_t LdaGenerator::document(Index d, std::vector<std::int32_t>& ids, std::vector<std::int64_t>& counts) const {
  CounterRng rng(seed_, RngPurpose::kGenerate, 1, static_cast<std::uint64_t>(d));
  Vector theta(k_);
  for (Index t = 0; t < k_; ++t) theta(t) = std::max(sample_gamma(rng, alpha_), 1e-300);
  theta /= theta.sum();
  // Poisson length by inversion (mean_length is moderate), at least one word.
  Index length = 0;
  {
    const double limit = std::exp(-mean_length_);
    double p = rng.next_uniform();
    while (p > limit && length < 100000) {
      p *= rng.next_uniform();
      ++length;
    }
    length = std::max<Index>(1, length);
  }
  ids.clear();
  for (Index i = 0; i < length; ++i) {
    double u = rng.next_uniform();
    Index z = 0;
    while (z + 1 < k_ && u > theta(z)) u -= theta(z++);
    const auto& c = cdf_[static_cast<std::size_t>(z)];
    const double target = rng.next_uniform() * c.back();
    const auto w = std::min<std::ptrdiff_t>(std::lower_bound(c.begin(), c.end(), target) - c.begin(), v_ - 1);
    ids.push_back(static_cast<std::int32_t>(w));
  }
  // Tokens to (word, count) pairs: sort, then merge repeats.
  std::sort(ids.begin(), ids.end());
  counts.clear();
  std::size_t distinct = 0;
  for (std::size_t j = 0; j < ids.size(); ++j) {
    if (j > 0 && ids[j] == ids[j - 1]) {
      ++counts.back();
    } else {
      ids[distinct++] = ids[j];
      counts.push_back(1);
    }
  }
  ids.resize(distinct);
  Index main_topic = 0;
  theta.maxCoeff(&main_topic);
  return main_topic;
}

Lda LdaGenerator::truth() const {
  Lda truth(k_, v_, Vector::Constant(k_, alpha_), eta_);
  truth.lambda_vk() = beta_.transpose();
  return truth;
}

void generate_lda(Index n_documents, Index vocab_size, Index n_topics, double mean_length, double alpha, double eta,
                  std::uint64_t seed, Index docs_per_shard, const std::string& dir, const std::string& true_model_path) {
  if (n_documents < 1) throw_usage("generate lda: --n-samples must be positive");
  const LdaGenerator gen(vocab_size, n_topics, mean_length, alpha, eta, seed);
  std::vector<std::string> vocab;
  for (Index w = 0; w < vocab_size; ++w) vocab.push_back(fmt::format("w{}", w));
  io::CountsWriter writer(dir, vocab_size, docs_per_shard, true);
  std::vector<std::int32_t> ids;
  std::vector<std::int64_t> counts;
  for (Index d = 0; d < n_documents; ++d) {
    const std::int64_t label = gen.document(d, ids, counts);
    writer.add_document(ids, counts, label);
  }
  writer.commit(vocab);
  if (!true_model_path.empty())
    save_lda(gen.truth(), vocab, fmt::format(R"({{"model":"lda","generated":true,"seed":{}}})", seed), train::EmResult{},
             n_documents, dir, true_model_path, false);
}

}  // namespace latent::models
