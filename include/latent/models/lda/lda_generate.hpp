#pragma once
/// \file Synthetic LDA corpora (`latent generate lda`, tests, benchmarks): the generating
/// model and its documents, written serially or shard by shard.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "latent/core/types.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/models/lda/lda.hpp"

namespace latent::models {

/// A synthetic LDA corpus (Blei et al. 2003 §3): topics β_k ~ Dir(η), θ_d ~ Dir(α),
/// document length ~ Poisson(mean_length) (at least 1), words by z ~ θ_d, w ~ β_z.
/// Document d is a pure function of (seed, d), so any split over ranks and shards gives the
/// same corpus. write_lda_shards writes any range of its shards (`latent generate lda`).
class LdaGenerator {
 public:
  /// Throws Error(kUsage) unless every argument is positive. Draws β (K × V): O(KV).
  LdaGenerator(Index vocab_size, Index n_topics, double mean_length, double alpha, double eta, std::uint64_t seed);
  /// Document d in CSR form: its distinct word ids in ascending order in `ids`, each
  /// with its count in `counts`; returns the label (the topic with the largest θ_dk).
  /// Thread-safe.
  std::int64_t document(Index d, std::vector<std::int32_t>& ids, std::vector<std::int64_t>& counts) const;
  /// The true topics as an LDA model (λ = β, α, η).
  Lda truth() const;
  Index vocab_size() const { return v_; }

 private:
  Index k_, v_;
  double mean_length_, alpha_, eta_;
  std::uint64_t seed_;
  RowMatrix beta_;                       // K × V
  std::vector<std::vector<double>> cdf_;  // per topic, cumulative β
};

/// The corpus of LdaGenerator written serially to `dir` (a CountsWriter) and, if
/// true_model_path is not empty, the true topics as an LDA model file. Local (one rank).
void generate_lda(Index n_documents, Index vocab_size, Index n_topics, double mean_length, double alpha, double eta,
                  std::uint64_t seed, Index docs_per_shard, const std::string& dir, const std::string& true_model_path);

/// Count shards first_shard .. last_shard-1 of `layout` (documents [layout.begin(s),
/// layout.begin(s + 1)) of `gen`, labels = their main topics) written to shard_path(s) with
/// io::write_counts_shard. Any split of the shards over ranks writes
/// the same corpus. Local (each rank its own shards). `docs_done`, if set, is told the
/// documents drawn so far every 1024 documents and after each shard (a progress line).
/// Documents are drawn on `threads` oneTBB threads in chunks of 1024 (each a pure function
/// of (seed, document)), so the shards are the same bytes for any thread count.
void write_lda_shards(const LdaGenerator& gen, const io::ShardLayout& layout, Index first_shard,
                      Index last_shard, const std::function<std::string(Index)>& shard_path,
                      const std::function<void(Index)>& docs_done = {}, int threads = 1);

}  // namespace latent::models
