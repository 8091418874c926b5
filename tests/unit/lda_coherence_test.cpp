// Topic coherence (UMass as gensim, document NPMI) on hand-made corpora with closed-form
// values: include/latent/models/lda/lda_coherence.hpp.
#include "latent/models/lda/lda_coherence.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "../support/fixtures.hpp"
#include "latent/comm/communicator.hpp"
#include "latent/core/error.hpp"
#include "latent/io/counts_dataset.hpp"

namespace latent::models {
namespace {

constexpr double kEps = 1e-12;  // gensim's EPSILON

// V = 6 words; word 5 occurs nowhere. N = 6 documents, one of them empty.
const std::vector<std::vector<std::int32_t>> kDocs{{0, 1, 2}, {0, 1}, {0, 3}, {3, 4}, {}, {0, 1, 2, 3, 4}};
// Topic 0: 0 1 2; topic 1: 3 1 4 (word 1 shared); topic 2: 5 0 2 (its first word unseen).
TopWords hand_topics() { return TopWords{3, 3, {0, 1, 2, 3, 1, 4, 5, 0, 2}}; }

// D(w):  D0 = 4, D1 = 3, D2 = 2, D3 = 3, D4 = 2, D5 = 0.
// D(a,b): D01 = 3, D02 = 2, D12 = 2, D13 = 1, D34 = 2, D14 = 1, D5x = 0.
double lc(double dij, double dj) { return std::log((dij / 6 + kEps) / (dj / 6)); }
const double kUmass[3] = {
    (lc(3, 4) + lc(2, 4) + lc(2, 3)) / 3,  // (1|0), (2|0), (2|1)
    (lc(1, 3) + lc(2, 3) + lc(1, 3)) / 3,  // (1|3), (4|3), (4|1)
    (0.0 + 0.0 + lc(2, 4)) / 3,            // (0|5), (2|5): D(5) = 0 counts 0; (2|0)
};
const double kNpmi[3] = {
    (std::log(1.5) / std::log(2.0) + std::log(1.5) / std::log(3.0) + std::log(2.0) / std::log(3.0)) / 3,
    (std::log(2.0 / 3.0) / std::log(6.0) + std::log(2.0) / std::log(3.0) + 0.0) / 3,
    (-1.0 - 1.0 + std::log(1.5) / std::log(3.0)) / 3,  // pairs with word 5 never co-occur: −1
};

std::vector<std::int64_t> count(const CoherenceCounter& c, const std::vector<std::vector<std::int32_t>>& docs) {
  std::vector<std::int64_t> tally(c.tally_size(), 0);
  CoherenceCounter::Scratch scratch;
  for (const auto& d : docs) c.add_document(d, tally, scratch);
  return tally;
}

TEST(LdaCoherence, HandCorpusMatchesClosedFormInBothLayouts) {
  const TopWords top = hand_topics();
  for (CoherenceLayout layout : {CoherenceLayout::kDense, CoherenceLayout::kTopicPairs}) {
    const CoherenceCounter c(top, 6, layout);
    EXPECT_EQ(c.layout(), layout);
    EXPECT_EQ(c.num_distinct_words(), 6);
    EXPECT_EQ(c.tally_size(), layout == CoherenceLayout::kDense ? 1u + 6 + 15 : 1u + 6 + 9);
    const auto tally = count(c, kDocs);
    EXPECT_EQ(tally[0], 6);
    const std::int64_t df[6] = {4, 3, 2, 3, 2, 0};
    for (std::int32_t w = 0; w < 6; ++w) EXPECT_EQ(c.document_frequency(tally, w), df[w]) << w;
    EXPECT_EQ(c.co_document_frequency(tally, 0, 0, 1), 3);
    EXPECT_EQ(c.co_document_frequency(tally, 0, 2, 0), 2);
    EXPECT_EQ(c.co_document_frequency(tally, 0, 1, 2), 2);
    EXPECT_EQ(c.co_document_frequency(tally, 1, 0, 1), 1);
    EXPECT_EQ(c.co_document_frequency(tally, 1, 0, 2), 2);
    EXPECT_EQ(c.co_document_frequency(tally, 1, 1, 2), 1);
    EXPECT_EQ(c.co_document_frequency(tally, 2, 0, 1), 0);
    const TopicCoherence r = c.coherence(tally);
    EXPECT_EQ(r.top_n, 3);
    EXPECT_EQ(r.num_documents, 6);
    ASSERT_EQ(r.umass.size(), 3u);
    for (int t = 0; t < 3; ++t) {
      EXPECT_NEAR(r.umass[t], kUmass[t], 1e-14) << t;
      EXPECT_NEAR(r.npmi[t], kNpmi[t], 1e-14) << t;
    }
    EXPECT_NEAR(r.umass_mean, (kUmass[0] + kUmass[1] + kUmass[2]) / 3, 1e-14);
    EXPECT_NEAR(r.npmi_mean, (kNpmi[0] + kNpmi[1] + kNpmi[2]) / 3, 1e-14);
  }
  // Without ε, topic 0's UMass is (log 3/4 + log 1/2 + log 2/3) / 3 = log(1/4) / 3.
  EXPECT_NEAR(kUmass[0], std::log(0.25) / 3, 1e-11);
}

TEST(LdaCoherence, PartialTalliesAddUpAndLayoutsAgreeBitwise) {
  const TopWords top = hand_topics();
  const CoherenceCounter dense(top, 6, CoherenceLayout::kDense), pairs(top, 6, CoherenceLayout::kTopicPairs);
  const auto whole = count(pairs, kDocs);
  using Docs = std::vector<std::vector<std::int32_t>>;
  auto first = count(pairs, Docs(kDocs.begin(), kDocs.begin() + 2));
  const auto second = count(pairs, Docs(kDocs.begin() + 2, kDocs.end()));
  for (std::size_t i = 0; i < first.size(); ++i) first[i] += second[i];
  EXPECT_EQ(first, whole);
  const TopicCoherence a = dense.coherence(count(dense, kDocs)), b = pairs.coherence(whole);
  EXPECT_EQ(a.umass, b.umass);
  EXPECT_EQ(a.npmi, b.npmi);
  // Counts do not matter, only presence: a repeated or unsorted id is one occurrence.
  std::vector<std::int64_t> t1(pairs.tally_size(), 0), t2(pairs.tally_size(), 0);
  CoherenceCounter::Scratch s;
  pairs.add_document(std::vector<std::int32_t>{2, 0, 1}, t1, s);
  pairs.add_document(std::vector<std::int32_t>{2, 0, 0, 1, 2}, t2, s);
  EXPECT_EQ(t1, count(pairs, Docs{{0, 1, 2}}));
  EXPECT_EQ(t2, t1);
}

TEST(LdaCoherence, RandomOverlappingTopicsCountLikeBruteForce) {
  // Topics drawn from a small pool (heavy overlap), documents random subsets of V = 40.
  std::mt19937_64 rng(20);
  const Index k = 6, n = 5, v = 40;
  TopWords top{k, n, {}};
  for (Index t = 0; t < k; ++t) {
    std::vector<std::int32_t> pool(12);
    for (std::int32_t i = 0; i < 12; ++i) pool[static_cast<std::size_t>(i)] = i * 3;
    std::shuffle(pool.begin(), pool.end(), rng);
    top.ids.insert(top.ids.end(), pool.begin(), pool.begin() + n);
  }
  std::vector<std::vector<std::int32_t>> docs(300);
  for (auto& d : docs)
    for (std::int32_t w = 0; w < v; ++w)
      if (rng() % 4 == 0) d.push_back(w);
  const CoherenceCounter dense(top, v, CoherenceLayout::kDense), pairs(top, v, CoherenceLayout::kTopicPairs);
  const auto td = count(dense, docs), tp = count(pairs, docs);
  auto has = [&](const std::vector<std::int32_t>& d, std::int32_t w) { return std::binary_search(d.begin(), d.end(), w); };
  for (Index t = 0; t < k; ++t) {
    const auto words = top.topic(t);
    for (Index i = 0; i < n; ++i) {
      std::int64_t di = 0;
      for (const auto& d : docs) di += has(d, words[i]);
      EXPECT_EQ(dense.document_frequency(td, words[i]), di);
      for (Index j = 0; j < i; ++j) {
        std::int64_t dij = 0;
        for (const auto& d : docs) dij += has(d, words[i]) && has(d, words[j]);
        EXPECT_EQ(dense.co_document_frequency(td, t, i, j), dij) << t << " " << i << " " << j;
        EXPECT_EQ(pairs.co_document_frequency(tp, t, j, i), dij) << t << " " << i << " " << j;
      }
    }
  }
  const TopicCoherence a = dense.coherence(td), b = pairs.coherence(tp);
  EXPECT_EQ(a.umass, b.umass);
  EXPECT_EQ(a.npmi, b.npmi);
}

TEST(LdaCoherence, CompleteCooccurrenceIsOneAndAbsenceIsMinusOne) {
  // Words 0 and 1 in both documents: P(0,1) = 1, NPMI 1 by convention (Bouma's limit).
  const CoherenceCounter c(TopWords{1, 3, {0, 1, 2}}, 4);
  const TopicCoherence r = c.coherence(count(c, {{0, 1}, {0, 1, 2}}));
  // Pairs (1,0): 1; (2,0): log((1/2)/(1 · 1/2)) / log 2 = 0; (2,1): 0.
  EXPECT_NEAR(r.npmi[0], 1.0 / 3, 1e-15);
  EXPECT_NEAR(r.umass[0], (std::log(1 + kEps) + 2 * std::log(0.5 + kEps)) / 3, 1e-15);
  // An empty corpus: every UMass pair has D(W*) = 0 (0), every NPMI pair never co-occurs (−1).
  const TopicCoherence empty = c.coherence(count(c, {}));
  EXPECT_EQ(empty.num_documents, 0);
  EXPECT_EQ(empty.umass[0], 0.0);
  EXPECT_EQ(empty.npmi[0], -1.0);
}

TEST(LdaCoherence, RefusesBadTopWords) {
  auto kind = [](const TopWords& top, Index v) {
    try {
      CoherenceCounter c(top, v);
    } catch (const Error& e) {
      return e.kind();
    }
    return ErrorKind::kInternal;
  };
  EXPECT_EQ(kind(TopWords{2, 1, {0, 1}}, 4), ErrorKind::kUsage);      // n = 1: no pairs
  EXPECT_EQ(kind(TopWords{1, 3, {0, 4, 1}}, 4), ErrorKind::kInput);   // word id outside V
  EXPECT_EQ(kind(TopWords{1, 3, {0, 1, 0}}, 4), ErrorKind::kUsage);   // a repeated word
}

TEST(LdaCoherence, TopWordsByDecreasingWeightTiesByLowerId) {
  Lda model(2, 4, Vector::Constant(2, 0.5), 0.1);
  model.lambda_vk().col(0) << 1, 3, 3, 2;
  model.lambda_vk().col(1) << 5, 5, 5, 0;
  const TopWords top = lda_top_words(model, 3, 2);
  EXPECT_EQ(top.ids, (std::vector<std::int32_t>{1, 2, 3, 0, 1, 2}));
  EXPECT_THROW(lda_top_words(model, 5), Error);
}

TEST(LdaCoherence, OnePassOverADatasetIsLayoutInvariant) {
  const auto comm = comm::Communicator::world();
  latent::testing::TempDir dir{"coherence"};
  {
    io::CountsWriter w(dir / "corpus", 6, 4, false);  // shards of 4, 4 documents
    for (const auto& d : kDocs) w.add_document(d, std::vector<std::int64_t>(d.size(), 2));
    w.commit({"a", "b", "c", "d", "e", "f"});
  }
  const auto info = io::open_counts_dataset(dir / "corpus");
  const TopWords top = hand_topics();
  for (Index block_rows : {1, 3, 100})
    for (int threads : {1, 2})
      for (std::size_t budget : {std::size_t{1}, std::size_t{1} << 20})
        for (CoherenceLayout layout : {CoherenceLayout::kAuto, CoherenceLayout::kDense, CoherenceLayout::kTopicPairs}) {
          const TopicCoherence r = topic_coherence(comm, info, top, threads, block_rows, 2, budget, layout);
          EXPECT_EQ(r.num_documents, 6);
          for (int t = 0; t < 3; ++t) {
            EXPECT_NEAR(r.umass[t], kUmass[t], 1e-14) << block_rows << " " << threads;
            EXPECT_NEAR(r.npmi[t], kNpmi[t], 1e-14) << block_rows << " " << threads;
          }
        }
}

}  // namespace
}  // namespace latent::models
