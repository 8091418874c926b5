// LDA model files and synthetic corpora.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <memory>

#include "latent/core/error.hpp"
#include "latent/core/rng.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/models/fitted_model.hpp"
#include "latent/models/lda/lda_fit.hpp"
#include "latent/models/lda/lda_gibbs.hpp"
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

void save_lda_sampled(const comm::Communicator& comm, const GibbsSampler& sampler, const std::vector<std::string>& vocabulary,
                      const std::string& config_json, const train::EmResult& em, Index n_documents,
                      const std::string& data_location, const std::string& path, bool overwrite) {
  const Index k = sampler.num_topics(), v = sampler.vocab_size();
  const int parts = comm.size();
  const double eta = sampler.eta();
  std::unique_ptr<io::H5Writer> w;
  std::exception_ptr error;  // rank 0's, agreed at the end: every rank takes part in every piece
  const auto on_root = [&](auto&& fn) {
    if (!comm.is_root() || error) return;
    try {
      fn();
    } catch (...) {
      error = std::current_exception();
      w.reset();  // removes the temporary
    }
  };
  on_root([&] {
    w = std::make_unique<io::H5Writer>(path, overwrite);
    write_fit_record(*w, "lda", FitRecord{config_json, em, n_documents, data_location});
    w->create("components", io::DType::kFloat64, k, v);
  });
  // Pieces of whole words of one slice, at most 64 MiB of int32 counts each; the schedule
  // is a function of (K, V, P), the same on every rank.
  const Index piece_words = std::max<Index>(1, (Index{64} << 20) / (4 * k));
  const std::span<const std::int32_t> home = sampler.n_kw();
  for (int s = 0; s < parts; ++s) {
    const Index lo = GibbsSampler::slice_begin(v, parts, s), hi = GibbsSampler::slice_begin(v, parts, s + 1);
    for (Index a = lo; a < hi; a += piece_words) {
      const Index b = std::min(hi, a + piece_words);
      std::string bytes;
      if (comm.rank() == s) {
        const auto* p = reinterpret_cast<const char*>(home.data() + (a - lo) * k);
        bytes.assign(p, static_cast<std::size_t>((b - a) * k) * sizeof(std::int32_t));
      }
      std::string piece;
      if (parts == 1) {
        piece = std::move(bytes);
      } else {
        std::vector<std::string> got = comm.gather(bytes, 0);
        if (comm.is_root()) piece = std::move(got[static_cast<std::size_t>(s)]);
      }
      heartbeat();
      on_root([&] {
        RowMatrix block(k, b - a);  // λ = n_kw + η, topic-major
        for (Index j = 0; j < b - a; ++j)
          for (Index t = 0; t < k; ++t) {
            std::int32_t c;
            std::memcpy(&c, piece.data() + static_cast<std::size_t>(j * k + t) * sizeof(c), sizeof(c));
            block(t, j) = static_cast<double>(c) + eta;
          }
        w->write_block("components", 0, a, block);
      });
    }
  }
  on_root([&] {
    const std::vector<double> alpha(static_cast<std::size_t>(k), sampler.alpha());
    write_lda_tail(*w, alpha, eta, vocabulary, k, v);
  });
  comm.agree(error);
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
