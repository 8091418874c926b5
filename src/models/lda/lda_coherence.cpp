// Topic coherence (UMass, document NPMI) from exact document counts of the top words.
// Definitions and conventions: include/latent/models/lda/lda_coherence.hpp.
#include "latent/models/lda/lda_coherence.hpp"

#include <fmt/format.h>
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/enumerable_thread_specific.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>

#include "latent/core/control.hpp"
#include "latent/core/error.hpp"
#include "latent/io/block_plan.hpp"

namespace latent::models {
namespace {

// gensim.topic_coherence.direct_confirmation_measure.EPSILON (4.x).
constexpr double kGensimEpsilon = 1e-12;

// Index of the pair (a, b), a < b, in the upper triangle of a u × u matrix, row-major.
std::size_t triangle_index(std::int64_t a, std::int64_t b, std::int64_t u) {
  return static_cast<std::size_t>(a * (2 * u - a - 1) / 2 + (b - a - 1));
}

// Index of positions (i, j), i > j, among the n(n−1)/2 pairs of one topic.
std::size_t pair_index(std::int64_t i, std::int64_t j) { return static_cast<std::size_t>(i * (i - 1) / 2 + j); }

}  // namespace

TopWords lda_top_words(const Lda& model, Index n, int threads) {
  const Index v = model.vocab_size(), k = model.num_topics();
  if (n < 1 || n > v) throw_usage(fmt::format("top words per topic must be in [1, {}] (the vocabulary), got {}", v, n));
  TopWords top;
  top.num_topics = k;
  top.n = n;
  top.ids.resize(static_cast<std::size_t>(k * n));
  const auto& lambda = model.lambda_vk();
  tbb::task_arena arena(std::max(1, threads));
  arena.execute([&] {
    tbb::parallel_for(Index{0}, k, [&](Index t) {
      std::vector<std::int32_t> order(static_cast<std::size_t>(v));
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + n, order.end(), [&](std::int32_t x, std::int32_t y) {
        return lambda(x, t) > lambda(y, t) || (lambda(x, t) == lambda(y, t) && x < y);
      });
      std::copy(order.begin(), order.begin() + n, top.ids.begin() + t * n);
    });
  });
  return top;
}

CoherenceCounter::CoherenceCounter(const TopWords& top, Index vocab_size, CoherenceLayout layout) : top_(top) {
  const Index k = top.num_topics, n = top.n;
  if (n < 2) throw_usage(fmt::format("coherence needs at least 2 top words per topic, got {}", n));
  if (static_cast<Index>(top.ids.size()) != k * n)
    throw Error(ErrorKind::kInternal, fmt::format("top words: {} ids for {} topics of {}", top.ids.size(), k, n));
  for (Index t = 0; t < k; ++t) {
    const auto words = top.topic(t);
    for (Index p = 0; p < n; ++p) {
      const std::int32_t w = words[static_cast<std::size_t>(p)];
      if (w < 0 || w >= vocab_size)
        throw_input(fmt::format("top word {} of topic {} is word id {}, outside the vocabulary of {} words", p, t, w,
                                vocab_size));
      for (Index q = 0; q < p; ++q)
        if (words[static_cast<std::size_t>(q)] == w)
          throw_usage(fmt::format("topic {} lists word id {} twice among its top words", t, w));
    }
  }
  union_words_ = top.ids;
  std::sort(union_words_.begin(), union_words_.end());
  union_words_.erase(std::unique(union_words_.begin(), union_words_.end()), union_words_.end());
  const auto u = static_cast<std::int64_t>(union_words_.size());
  union_of_word_.assign(static_cast<std::size_t>(vocab_size), -1);
  for (std::int64_t i = 0; i < u; ++i) union_of_word_[static_cast<std::size_t>(union_words_[static_cast<std::size_t>(i)])] = static_cast<std::int32_t>(i);
  topic_union_.resize(top.ids.size());
  for (std::size_t i = 0; i < top.ids.size(); ++i) topic_union_[i] = union_of_word_[static_cast<std::size_t>(top.ids[i])];
  // Each union word's places (k·n + p), increasing: a counting sort by union index.
  occ_begin_.assign(static_cast<std::size_t>(u) + 1, 0);
  for (std::int32_t x : topic_union_) ++occ_begin_[static_cast<std::size_t>(x) + 1];
  for (std::int64_t i = 0; i < u; ++i) occ_begin_[static_cast<std::size_t>(i) + 1] += occ_begin_[static_cast<std::size_t>(i)];
  occ_.resize(topic_union_.size());
  std::vector<std::int64_t> fill(occ_begin_.begin(), occ_begin_.end() - 1);
  for (std::size_t i = 0; i < topic_union_.size(); ++i)
    occ_[static_cast<std::size_t>(fill[static_cast<std::size_t>(topic_union_[i])]++)] = static_cast<std::int64_t>(i);

  const auto dense = static_cast<std::size_t>(u * (u - 1) / 2);
  const auto pairs = static_cast<std::size_t>(k * (n * (n - 1) / 2));
  layout_ = layout != CoherenceLayout::kAuto ? layout : dense <= pairs ? CoherenceLayout::kDense : CoherenceLayout::kTopicPairs;
  tally_size_ = 1 + static_cast<std::size_t>(u) + (layout_ == CoherenceLayout::kDense ? dense : pairs);
}

void CoherenceCounter::add_document(std::span<const std::int32_t> word_ids, std::span<std::int64_t> tally,
                                    Scratch& s) const {
  s.present.clear();
  for (std::int32_t w : word_ids) {
    const std::int32_t x = union_of_word_[static_cast<std::size_t>(w)];
    if (x >= 0) s.present.push_back(x);
  }
  // CSR rows are strictly increasing, so this is already sorted and distinct; any other
  // caller gets presence semantics too.
  if (!std::is_sorted(s.present.begin(), s.present.end())) std::sort(s.present.begin(), s.present.end());
  s.present.erase(std::unique(s.present.begin(), s.present.end()), s.present.end());
  tally[0] += 1;
  const auto u = static_cast<std::int64_t>(union_words_.size());
  std::int64_t* df = tally.data() + 1;
  std::int64_t* co = df + u;
  for (std::int32_t x : s.present) ++df[x];
  const std::size_t m = s.present.size();
  if (m < 2) return;
  if (layout_ == CoherenceLayout::kDense) {
    for (std::size_t a = 0; a < m; ++a)
      for (std::size_t b = a + 1; b < m; ++b) ++co[triangle_index(s.present[a], s.present[b], u)];
    return;
  }
  s.hits.clear();
  for (std::int32_t x : s.present)
    for (std::int64_t o = occ_begin_[static_cast<std::size_t>(x)]; o < occ_begin_[static_cast<std::size_t>(x) + 1]; ++o)
      s.hits.push_back(occ_[static_cast<std::size_t>(o)]);
  std::sort(s.hits.begin(), s.hits.end());  // by topic, then position
  const std::int64_t n = top_.n, per_topic = n * (n - 1) / 2;
  for (std::size_t first = 0; first < s.hits.size();) {
    const std::int64_t topic = s.hits[first] / n;
    std::size_t last = first + 1;
    while (last < s.hits.size() && s.hits[last] / n == topic) ++last;
    std::int64_t* base = co + topic * per_topic;
    for (std::size_t a = first + 1; a < last; ++a) {
      const std::int64_t i = s.hits[a] % n;
      for (std::size_t b = first; b < a; ++b) ++base[pair_index(i, s.hits[b] % n)];
    }
    first = last;
  }
}

std::int64_t CoherenceCounter::document_frequency(std::span<const std::int64_t> tally, std::int32_t word) const {
  if (word < 0 || static_cast<std::size_t>(word) >= union_of_word_.size()) return 0;
  const std::int32_t x = union_of_word_[static_cast<std::size_t>(word)];
  return x < 0 ? 0 : tally[1 + static_cast<std::size_t>(x)];
}

std::int64_t CoherenceCounter::co_document_frequency(std::span<const std::int64_t> tally, Index topic, Index pos_a,
                                                     Index pos_b) const {
  const auto u = static_cast<std::int64_t>(union_words_.size());
  const std::int64_t* co = tally.data() + 1 + u;
  if (layout_ == CoherenceLayout::kDense) {
    const std::int64_t a = topic_union_[static_cast<std::size_t>(topic * top_.n + pos_a)];
    const std::int64_t b = topic_union_[static_cast<std::size_t>(topic * top_.n + pos_b)];
    return co[triangle_index(std::min(a, b), std::max(a, b), u)];
  }
  const std::int64_t n = top_.n;
  return co[static_cast<std::size_t>(topic * (n * (n - 1) / 2)) + pair_index(std::max(pos_a, pos_b), std::min(pos_a, pos_b))];
}

TopicCoherence CoherenceCounter::coherence(std::span<const std::int64_t> tally) const {
  const Index k = top_.num_topics, n = top_.n;
  TopicCoherence out;
  out.top_n = n;
  out.num_documents = tally[0];
  out.umass.assign(static_cast<std::size_t>(k), 0.0);
  out.npmi.assign(static_cast<std::size_t>(k), 0.0);
  const auto docs = static_cast<double>(out.num_documents);
  const double pairs = static_cast<double>(n * (n - 1) / 2);
  for (Index t = 0; t < k; ++t) {
    const auto words = top_.topic(t);
    double umass = 0, npmi = 0;
    for (Index i = 1; i < n; ++i) {
      const std::int64_t di = document_frequency(tally, words[static_cast<std::size_t>(i)]);
      for (Index j = 0; j < i; ++j) {
        const std::int64_t dj = document_frequency(tally, words[static_cast<std::size_t>(j)]);
        const std::int64_t dij = co_document_frequency(tally, t, i, j);
        // UMass, gensim's s_one_pre pair (W' = t_i, W* = t_j): log((P(t_i, t_j) + ε) / P(t_j)).
        if (dj > 0) umass += std::log((static_cast<double>(dij) / docs + kGensimEpsilon) / (static_cast<double>(dj) / docs));
        if (dij == 0) {
          npmi += -1.0;
        } else if (dij == out.num_documents) {
          npmi += 1.0;
        } else {
          const double pij = static_cast<double>(dij) / docs;
          const double pi = static_cast<double>(di) / docs, pj = static_cast<double>(dj) / docs;
          npmi += std::log(pij / (pi * pj)) / -std::log(pij);
        }
      }
    }
    out.umass[static_cast<std::size_t>(t)] = umass / pairs;
    out.npmi[static_cast<std::size_t>(t)] = npmi / pairs;
  }
  for (Index t = 0; t < k; ++t) {
    out.umass_mean += out.umass[static_cast<std::size_t>(t)];
    out.npmi_mean += out.npmi[static_cast<std::size_t>(t)];
  }
  if (k > 0) {
    out.umass_mean /= static_cast<double>(k);
    out.npmi_mean /= static_cast<double>(k);
  }
  return out;
}

TopicCoherence topic_coherence(const comm::Communicator& comm, const io::CountsDatasetInfo& info, const TopWords& top,
                               int threads, Index block_rows, int prefetch, std::size_t memory_budget_bytes,
                               CoherenceLayout layout) {
  std::optional<CoherenceCounter> counter;
  comm::run_agreed(comm, [&] { counter.emplace(top, info.vocab_size, layout); });
  const std::size_t size = counter->tally_size();
  const std::size_t bytes = size * sizeof(std::int64_t);
  // One tally per thread; fewer threads rather than more memory than the budget.
  const std::size_t fit = std::max<std::size_t>(1, memory_budget_bytes / std::max<std::size_t>(1, bytes));
  const int used = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(std::max(1, threads)), fit));
  const std::vector<io::BlockRef> mine =
      io::rank_blocks(io::make_block_plan(info.shard_rows(), block_rows), comm.rank(), comm.size());
  struct Local {
    std::vector<std::int64_t> tally;
    CoherenceCounter::Scratch scratch;
  };
  tbb::enumerable_thread_specific<Local> locals([&] { return Local{std::vector<std::int64_t>(size, 0), {}}; });
  comm::run_agreed(comm, [&] {
    io::CountsSource source(info, mine, {std::max(1, prefetch), 0, false});
    source.start_pass();
    tbb::task_arena arena(used);
    while (auto block = source.next()) {
      heartbeat();
      stop_point();
      arena.execute([&] {
        tbb::parallel_for(tbb::blocked_range<Index>(0, block->num_rows(), 64), [&](const tbb::blocked_range<Index>& r) {
          Local& s = locals.local();
          for (Index d = r.begin(); d < r.end(); ++d) {
            const auto b = static_cast<std::size_t>(block->indptr[static_cast<std::size_t>(d)]);
            const auto e = static_cast<std::size_t>(block->indptr[static_cast<std::size_t>(d) + 1]);
            counter->add_document({block->indices.data() + b, e - b}, s.tally, s.scratch);
          }
        });
      });
    }
  });
  // Integer sums: exact whatever the grouping (threads here, ranks in the allreduce).
  std::vector<std::int64_t> total(size, 0);
  for (const Local& s : locals)
    for (std::size_t i = 0; i < size; ++i) total[i] += s.tally[i];
  comm.allreduce_sum(total);
  return counter->coherence(total);
}

}  // namespace latent::models
