#include "latent/models/lda/lda_generate.hpp"

#include <fmt/format.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <cmath>

#include "latent/core/control.hpp"
#include "latent/core/error.hpp"
#include "latent/core/rng.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/models/lda/lda_fit.hpp"

namespace latent::models {

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
    if ((d & 1023) == 0) stop_point();
    const std::int64_t label = gen.document(d, ids, counts);
    writer.add_document(ids, counts, label);
  }
  writer.commit(vocab);
  if (!true_model_path.empty())
    save_lda(gen.truth(), vocab, fmt::format(R"({{"model":"lda","generated":true,"seed":{}}})", seed), train::EmResult{},
             n_documents, dir, true_model_path, false);
}

void write_lda_shards(const LdaGenerator& gen, const io::ShardLayout& layout, Index first_shard,
                      Index last_shard, const std::function<std::string(Index)>& shard_path,
                      const std::function<void(Index)>& docs_done, int threads) {
  constexpr Index kChunk = 1024;
  struct Doc {
    std::vector<std::int32_t> ids;
    std::vector<std::int64_t> counts;
    std::int64_t label = 0;
  };
  std::vector<Doc> chunk(static_cast<std::size_t>(kChunk));
  std::vector<std::int32_t> indices;
  std::vector<std::int64_t> indptr, values, labels;
  tbb::task_arena arena(std::max(1, threads));
  for (Index s = first_shard; s < last_shard; ++s) {
    const Index begin = layout.begin(s), end = layout.begin(s + 1);
    indptr.assign(1, 0);
    indices.clear();
    values.clear();
    labels.clear();
    for (Index c0 = begin; c0 < end; c0 += kChunk) {
      stop_point();
      if (docs_done) docs_done(c0 - layout.begin(first_shard));
      const Index n = std::min(kChunk, end - c0);
      arena.execute([&] {
        tbb::parallel_for(Index{0}, n, [&](Index i) {
          Doc& d = chunk[static_cast<std::size_t>(i)];
          d.label = gen.document(c0 + i, d.ids, d.counts);
        });
      });
      for (Index i = 0; i < n; ++i) {
        const Doc& d = chunk[static_cast<std::size_t>(i)];
        labels.push_back(d.label);
        indices.insert(indices.end(), d.ids.begin(), d.ids.end());
        values.insert(values.end(), d.counts.begin(), d.counts.end());
        indptr.push_back(static_cast<std::int64_t>(indices.size()));
      }
    }
    io::write_counts_shard(shard_path(s), gen.vocab_size(), indptr, indices, values, labels);
    if (docs_done) docs_done(end - layout.begin(first_shard));
    heartbeat();
  }
}

}  // namespace latent::models
