// LDA model files and synthetic corpora.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>

#include "latent/core/error.hpp"
#include "latent/core/rng.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/models/fitted_model.hpp"
#include "latent/models/lda/lda_fit.hpp"
#include "latent/models/lda/lda_gibbs.hpp"
#include "latent/models/lda/lda_slice.hpp"
#include "latent/core/control.hpp"

namespace latent::models {

namespace {

// What follows /components in an LDA model file (docs/FORMATS.md), then the commit: the
// one layout of save_lda and save_lda_sampled.
void write_lda_tail(io::H5Writer& w, std::span<const double> alpha, double eta, const std::vector<std::string>& vocabulary,
                    Index k, Index v) {
  w.write("doc_topic_prior", alpha);
  w.write("topic_word_prior", std::span<const double>(&eta, 1));
  if (!vocabulary.empty()) w.write_strings("vocabulary", vocabulary);
  w.attr("/", "n_topics", static_cast<std::int64_t>(k));
  w.attr("/", "vocab_size", static_cast<std::int64_t>(v));
  w.commit();
}

}  // namespace

void save_lda(const Lda& model, const std::vector<std::string>& vocabulary, const std::string& config_json,
              const train::EmResult& em, Index n_documents, const std::string& data_location, const std::string& path,
              bool overwrite) {
  io::H5Writer w(path, overwrite);
  write_fit_record(w, "lda", FitRecord{config_json, em, n_documents, data_location});
  const RowMatrix components = model.lambda_vk().transpose();
  w.write("components", components);
  write_lda_tail(w, std::span<const double>(model.alpha().data(), static_cast<std::size_t>(model.alpha().size())),
                 model.eta(), vocabulary, model.num_topics(), model.vocab_size());
}

namespace {

// The model file from λ sliced across ranks: rank 0 creates it, `write_slices` streams
// /components in pieces (collective), then the tail; an error on rank 0 is agreed on every
// rank and removes the temporary.
void save_sliced(const comm::Communicator& comm, Index k, Index v, std::span<const double> alpha, double eta,
                 const std::vector<std::string>& vocabulary, const std::string& config_json, const train::EmResult& em,
                 Index n_documents, const std::string& data_location, const std::string& path, bool overwrite,
                 const std::function<void(const std::function<void(Index, const RowMatrix&)>&)>& write_slices) {
  std::unique_ptr<io::H5Writer> w;
  std::exception_ptr error;
  if (comm.is_root()) {
    try {
      w = std::make_unique<io::H5Writer>(path, overwrite);
      write_fit_record(*w, "lda", FitRecord{config_json, em, n_documents, data_location});
      w->create("components", io::DType::kFloat64, k, v);
    } catch (...) {
      error = std::current_exception();
      w.reset();  // removes the temporary
    }
  }
  comm.agree(error);
  try {
    write_slices([&](Index first_word, const RowMatrix& block) { w->write_block("components", 0, first_word, block); });
    if (comm.is_root()) write_lda_tail(*w, alpha, eta, vocabulary, k, v);
  } catch (...) {
    error = std::current_exception();
    w.reset();
  }
  comm.agree(error);
}

}  // namespace

void save_lda_sampled(const comm::Communicator& comm, const GibbsSampler& sampler, const std::vector<std::string>& vocabulary,
                      const std::string& config_json, const train::EmResult& em, Index n_documents,
                      const std::string& data_location, const std::string& path, bool overwrite) {
  const Index k = sampler.num_topics(), v = sampler.vocab_size();
  const int parts = comm.size();
  const double eta = sampler.eta();
  const std::vector<double> alpha(static_cast<std::size_t>(k), sampler.alpha());
  save_sliced(comm, k, v, alpha, eta, vocabulary, config_json, em, n_documents, data_location, path, overwrite,
              [&](const std::function<void(Index, const RowMatrix&)>& write) {
                // Pieces of whole words of int32 counts, λ = n_kw + η written topic-major.
                const std::span<const std::int32_t> home = sampler.n_kw();
                const Index lo = GibbsSampler::slice_begin(v, parts, comm.rank());
                gather_slices_to_root(
                    comm, v, static_cast<std::size_t>(k) * sizeof(std::int32_t),
                    [&](int s) { return GibbsSampler::slice_begin(v, parts, s); },
                    [&](Index a, Index b) {
                      return std::string(reinterpret_cast<const char*>(home.data() + (a - lo) * k),
                                         static_cast<std::size_t>((b - a) * k) * sizeof(std::int32_t));
                    },
                    [&](Index a, Index b, const std::string& piece) {
                      RowMatrix block(k, b - a);
                      for (Index j = 0; j < b - a; ++j)
                        for (Index t = 0; t < k; ++t) {
                          std::int32_t c;
                          std::memcpy(&c, piece.data() + static_cast<std::size_t>(j * k + t) * sizeof(c), sizeof(c));
                          block(t, j) = static_cast<double>(c) + eta;
                        }
                      write(a, block);
                    });
              });
}

void save_lda_sharded(const comm::Communicator& comm, const LdaSlice& slice, const std::vector<std::string>& vocabulary,
                      const std::string& config_json, const train::EmResult& em, Index n_documents,
                      const std::string& data_location, const std::string& path, bool overwrite) {
  const Vector& alpha = slice.alpha();
  save_sliced(comm, slice.num_topics(), slice.vocab_size(),
              std::span<const double>(alpha.data(), static_cast<std::size_t>(alpha.size())), slice.eta(), vocabulary,
              config_json, em, n_documents, data_location, path, overwrite,
              [&](const std::function<void(Index, const RowMatrix&)>& write) {
                slice.gather_to_root(comm, [&](Index a, Index, const RowMatrix& block) { write(a, block); });
              });
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
