// The O(1)-per-token MH collapsed Gibbs sampler (WarpLDA's proposals with delayed updates):
// see include/latent/models/lda/lda_gibbs.hpp.
#include "latent/models/lda/lda_gibbs.hpp"

#include <fmt/format.h>
#include <oneapi/tbb/enumerable_thread_specific.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>

#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <new>

#include "latent/core/control.hpp"
#include "latent/core/error.hpp"
#include "latent/core/exact_sum.hpp"
#include "latent/core/rng.hpp"

namespace latent::models {
namespace {

// Draw slots of one MH step (doc proposal, then word proposal).
constexpr int kSlotsPerStep = 6;

inline double to_uniform(std::uint64_t r) noexcept { return (static_cast<double>(r >> 11) + 0.5) * 0x1.0p-53; }
// ⌊n · hi32(r) / 2^32⌋, in [0, n) for 0 < n < 2^32.
inline std::uint64_t below_hi(std::uint64_t r, std::uint64_t n) noexcept { return ((r >> 32) * n) >> 32; }
inline std::uint64_t below_lo(std::uint64_t r, std::uint64_t n) noexcept { return ((r & 0xffffffffULL) * n) >> 32; }

}  // namespace

void* gibbs_huge_alloc(std::size_t bytes) {
  constexpr std::size_t kHuge = std::size_t{2} << 20;
  if (bytes < 2 * kHuge) {
    void* p = std::malloc(bytes == 0 ? 1 : bytes);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  const std::size_t rounded = (bytes + kHuge - 1) / kHuge * kHuge;
  void* p = std::aligned_alloc(kHuge, rounded);
  if (p == nullptr) throw std::bad_alloc();
  (void)madvise(p, rounded, MADV_HUGEPAGE);  // advice only: without THP the pages stay small
  return p;
}

void gibbs_huge_free(void* p) noexcept { std::free(p); }

struct GibbsSampler::Impl {
  explicit Impl(int threads) : arena(std::max(1, threads)) {}
  struct Scratch {
    std::vector<std::int32_t> n_dk;       // K, zero between documents
    std::vector<std::int32_t> z_old;      // the document's frozen topics
    std::vector<std::int32_t> changes;    // (word, old, new) triples
    std::vector<std::int32_t> props;      // a document's proposals, 2 mh_steps per token
    std::vector<std::uint64_t> keys;      // a document's token keys
    std::vector<std::int32_t> ys;         // a document's alias threshold draws
    std::vector<std::uint8_t> mark;       // K, zero between words (alias rebuilds)
    std::vector<std::int32_t> topics;     // alias building
    std::vector<std::int64_t> counts, alias_scratch;
    std::int64_t proposals = 0, accepted = 0;
  };
  tbb::task_arena arena;
  tbb::enumerable_thread_specific<Scratch> scratch;
  std::vector<std::uint64_t> slot_keys;  // mix64(c) for every draw slot
  std::vector<std::uint8_t> word_flag;   // V, zero between uses
  std::vector<std::int32_t> word_slot;   // V, −1 between uses
};

void gibbs_build_alias(std::span<const std::int32_t> topics, std::span<const std::int64_t> counts, std::int64_t total,
                       std::span<GibbsAliasBin> bins, std::vector<std::int64_t>& scratch) {
  const auto m = static_cast<std::int64_t>(topics.size());
  scratch.resize(static_cast<std::size_t>(3 * m));
  std::int64_t* s = scratch.data();
  std::int64_t* small = s + m;
  std::int64_t* large = s + 2 * m;
  std::int64_t ns = 0, nl = 0;
  for (std::int64_t j = 0; j < m; ++j) {
    s[j] = counts[static_cast<std::size_t>(j)] * m;  // scaled so that every bin holds `total`
    if (s[j] < total) small[ns++] = j;
    else large[nl++] = j;
  }
  while (ns > 0 && nl > 0) {
    const std::int64_t j = small[--ns], l = large[nl - 1];
    bins[static_cast<std::size_t>(j)] = {topics[static_cast<std::size_t>(j)], topics[static_cast<std::size_t>(l)],
                                         static_cast<std::int32_t>(s[j])};
    s[l] -= total - s[j];
    if (s[l] < total) {
      --nl;
      small[ns++] = l;
    }
  }
  // Integer arithmetic: what is left is exactly full (s == total).
  for (std::int64_t i = 0; i < nl; ++i) {
    const auto t = topics[static_cast<std::size_t>(large[i])];
    bins[static_cast<std::size_t>(large[i])] = {t, t, static_cast<std::int32_t>(total)};
  }
  for (std::int64_t i = 0; i < ns; ++i) {
    const auto t = topics[static_cast<std::size_t>(small[i])];
    bins[static_cast<std::size_t>(small[i])] = {t, t, static_cast<std::int32_t>(total)};
  }
}

GibbsSampler::GibbsSampler(Index num_topics, Index vocab_size, double alpha, double eta, int mh_steps,
                           std::uint64_t seed, int threads)
    : k_(num_topics), v_(vocab_size), alpha_(alpha), eta_(eta), mh_steps_(mh_steps), seed_(seed),
      threads_(std::max(1, threads)), impl_(std::make_unique<Impl>(threads)) {
  if (k_ < 1 || k_ > std::numeric_limits<std::int32_t>::max()) throw_usage("gibbs: the number of topics must be in [1, 2^31)");
  if (v_ < 1) throw_usage("gibbs: the vocabulary is empty");
  if (!(alpha > 0) || !(eta > 0) || !std::isfinite(alpha) || !std::isfinite(eta))
    throw_usage("gibbs: --doc-topic-prior and --topic-word-prior must be positive");
  if (mh_steps < 1) throw_usage("--mh-steps must be at least 1");
  const double cells = static_cast<double>(k_) * static_cast<double>(v_);
  if (cells > 4e9) throw_usage(fmt::format("K x V = {} x {} is too large for one process's topic-word counts", k_, v_));
  n_kw_.assign(static_cast<std::size_t>(k_ * v_), 0);
  n_k_.assign(static_cast<std::size_t>(k_), 0);
  n_w_.assign(static_cast<std::size_t>(v_), 0);
  n_k_veta_.assign(static_cast<std::size_t>(k_), static_cast<double>(v_) * eta_);
  bin_ptr_.assign(static_cast<std::size_t>(v_) + 1, 0);
  bin_len_.assign(static_cast<std::size_t>(v_), 0);
  impl_->word_flag.assign(static_cast<std::size_t>(v_), 0);
  impl_->word_slot.assign(static_cast<std::size_t>(v_), -1);
  for (int c = 0; c < kSlotsPerStep * mh_steps_; ++c) impl_->slot_keys.push_back(mix64(static_cast<std::uint64_t>(c)));
}

GibbsSampler::~GibbsSampler() = default;

void GibbsSampler::set_corpus(std::vector<std::int64_t> doc_ptr, std::vector<std::int32_t> words, std::int64_t first_token) {
  doc_ptr_ = std::move(doc_ptr);
  words_ = std::move(words);
  first_token_ = first_token;
  topics_.assign(words_.size(), 0);
}

void GibbsSampler::init_topics() {
  const std::uint64_t prefix = CounterRng::prefix(seed_, RngPurpose::kGibbsInit, 0);
  const auto k = static_cast<std::uint64_t>(k_);
  for (std::size_t i = 0; i < topics_.size(); ++i) {
    const std::uint64_t key = mix64(prefix ^ static_cast<std::uint64_t>(first_token_ + static_cast<std::int64_t>(i)));
    topics_[i] = static_cast<std::int32_t>(below_hi(CounterRng::draw(key, 0), k));
  }
}

void GibbsSampler::rebuild_alias(std::span<const std::int32_t> words, const std::int64_t* added_begin,
                                 const std::int32_t* added) {
  // The nonzero topics of word i of `words`: with `added` (topics added[added_begin[i] ..
  // added_begin[i + 1]) of word i went from 0 to nonzero), the topics of its previous table
  // still nonzero plus its added ones, O(nnz + changes); without, a scan of the row, O(K).
  // Either way sorted ascending, so a table is a function of its row alone (a resumed fit
  // rebuilds the same tables).
  const auto body = [&](Index lo, Index hi) {
    Impl::Scratch& s = impl_->scratch.local();
    if (added_begin != nullptr && static_cast<Index>(s.mark.size()) != k_) s.mark.assign(static_cast<std::size_t>(k_), 0);
    for (Index i = lo; i < hi; ++i) {
      const std::int32_t w = words[static_cast<std::size_t>(i)];
      const std::int32_t* row = n_kw_.data() + static_cast<std::size_t>(w) * static_cast<std::size_t>(k_);
      GibbsAliasBin* bins = bins_.data() + bin_ptr_[static_cast<std::size_t>(w)];
      s.topics.clear();
      if (added_begin == nullptr) {
        for (Index t = 0; t < k_; ++t)
          if (row[t] != 0) s.topics.push_back(static_cast<std::int32_t>(t));
      } else {
        const std::int32_t old_len = bin_len_[static_cast<std::size_t>(w)];
        for (std::int32_t j = 0; j < old_len; ++j) {
          const std::int32_t t = bins[j].topic;  // each nonzero topic is the `topic` of exactly one bin
          if (row[t] != 0 && !s.mark[static_cast<std::size_t>(t)]) {
            s.mark[static_cast<std::size_t>(t)] = 1;
            s.topics.push_back(t);
          }
        }
        for (auto j = added_begin[i]; j < added_begin[i + 1]; ++j) {
          const std::int32_t t = added[j];
          if (row[t] != 0 && !s.mark[static_cast<std::size_t>(t)]) {
            s.mark[static_cast<std::size_t>(t)] = 1;
            s.topics.push_back(t);
          }
        }
        for (std::int32_t t : s.topics) s.mark[static_cast<std::size_t>(t)] = 0;
        std::sort(s.topics.begin(), s.topics.end());
      }
      s.counts.resize(s.topics.size());
      for (std::size_t j = 0; j < s.topics.size(); ++j) s.counts[j] = row[s.topics[j]];
      const auto len = static_cast<std::int32_t>(s.topics.size());
      bin_len_[static_cast<std::size_t>(w)] = len;
      if (len > 0)
        gibbs_build_alias(s.topics, s.counts, n_w_[static_cast<std::size_t>(w)],
                          std::span<GibbsAliasBin>(bins, static_cast<std::size_t>(len)), s.alias_scratch);
    }
  };
  const auto n = static_cast<Index>(words.size());
  if (threads_ == 1 || n < 64) {
    body(0, n);
  } else {
    impl_->arena.execute([&] {
      tbb::parallel_for(tbb::blocked_range<Index>(0, n, 16), [&](const tbb::blocked_range<Index>& r) { body(r.begin(), r.end()); });
    });
  }
}

void GibbsSampler::rebuild_counts(const comm::Communicator& comm) {
  std::fill(n_kw_.begin(), n_kw_.end(), 0);
  std::fill(n_k_.begin(), n_k_.end(), 0);
  std::fill(n_w_.begin(), n_w_.end(), 0);
  // Every rank's (word, topic) pairs; word totals first: a word's count must fit the int32 table.
  std::vector<std::int64_t> all;
  if (comm.size() > 1) {
    std::vector<std::int64_t> pairs(words_.size());
    for (std::size_t i = 0; i < words_.size(); ++i) pairs[i] = static_cast<std::int64_t>(words_[i]) * k_ + topics_[i];
    all = comm.allgatherv(std::span<const std::int64_t>(pairs));
  }
  const bool local = comm.size() == 1;
  const std::size_t n = local ? words_.size() : all.size();
  const auto word_of = [&](std::size_t i) -> std::int64_t { return local ? words_[i] : all[i] / k_; };
  const auto topic_of = [&](std::size_t i) -> std::int64_t { return local ? topics_[i] : all[i] % k_; };
  for (std::size_t i = 0; i < n; ++i) ++n_w_[static_cast<std::size_t>(word_of(i))];
  std::int64_t max_w = 0;
  for (std::int64_t c : n_w_) max_w = std::max(max_w, c);
  if (max_w > std::numeric_limits<std::int32_t>::max())
    throw_usage(fmt::format("gibbs: a word occurs {} times; at most 2^31 - 1 per word are supported", max_w));
  for (std::size_t i = 0; i < n; ++i) {
    ++n_k_[static_cast<std::size_t>(topic_of(i))];
    ++n_kw_[static_cast<std::size_t>(word_of(i) * k_ + topic_of(i))];
  }
  for (Index t = 0; t < k_; ++t) n_k_veta_[static_cast<std::size_t>(t)] = static_cast<double>(n_k_[static_cast<std::size_t>(t)]) + static_cast<double>(v_) * eta_;
  // Alias capacity: a word has at most min(K, n_w) nonzero topics, for ever.
  std::vector<std::int32_t> present;
  for (Index w = 0; w < v_; ++w) {
    const std::int64_t cap = std::min<std::int64_t>(k_, n_w_[static_cast<std::size_t>(w)]);
    bin_ptr_[static_cast<std::size_t>(w) + 1] = bin_ptr_[static_cast<std::size_t>(w)] + cap;
    bin_len_[static_cast<std::size_t>(w)] = 0;
    if (cap > 0) present.push_back(static_cast<std::int32_t>(w));
  }
  bins_.assign(static_cast<std::size_t>(bin_ptr_[static_cast<std::size_t>(v_)]), GibbsAliasBin{0, 0, 0});
  rebuild_alias(present, nullptr, nullptr);
}

GibbsSweepStats GibbsSampler::sweep(const comm::Communicator& comm, std::uint64_t sweep) {
  const std::uint64_t prefix = CounterRng::prefix(seed_, RngPurpose::kGibbsSweep, sweep);
  const Index k = k_;
  const double alpha = alpha_, eta = eta_, k_alpha = static_cast<double>(k_) * alpha_, k_eta = static_cast<double>(k_) * eta_;
  const std::uint64_t* slots = impl_->slot_keys.data();
  const int steps = mh_steps_;
  for (Impl::Scratch& s : impl_->scratch) {
    s.changes.clear();
    s.proposals = s.accepted = 0;
  }
  const auto num_docs = static_cast<Index>(doc_ptr_.empty() ? 0 : doc_ptr_.size() - 1);
  const auto body = [&](Index lo, Index hi) {
    Impl::Scratch& s = impl_->scratch.local();
    if (static_cast<Index>(s.n_dk.size()) != k) s.n_dk.assign(static_cast<std::size_t>(k), 0);
    std::int32_t* nd = s.n_dk.data();
    std::int64_t proposals = 0, accepted = 0;
    for (Index d = lo; d < hi; ++d) {
      const std::int64_t b = doc_ptr_[static_cast<std::size_t>(d)], e = doc_ptr_[static_cast<std::size_t>(d) + 1];
      const std::int64_t len = e - b;
      if (len == 0) continue;
      s.z_old.assign(topics_.begin() + b, topics_.begin() + e);
      const std::int32_t* zo = s.z_old.data();
      for (std::int64_t i = 0; i < len; ++i) ++nd[zo[i]];
      const double p_uniform_doc = k_alpha / (static_cast<double>(len) + k_alpha);
      // Pass A: every proposal of every token of the document. Proposals do not depend on
      // the chain's state (both are independence proposals), so they are drawn first and
      // the n_kw cells the acceptances will read are prefetched: the misses of different
      // tokens overlap instead of stalling one after another.
      const auto per_token = static_cast<std::size_t>(2 * steps);
      if (s.props.size() < static_cast<std::size_t>(len) * per_token) s.props.resize(static_cast<std::size_t>(len) * per_token);
      if (s.keys.size() < static_cast<std::size_t>(len)) s.keys.resize(static_cast<std::size_t>(len));
      if (s.ys.size() < static_cast<std::size_t>(len) * static_cast<std::size_t>(steps))
        s.ys.resize(static_cast<std::size_t>(len) * static_cast<std::size_t>(steps));
      std::int32_t* props = s.props.data();
      std::int32_t* ys = s.ys.data();
      // A1: the draws; a word proposal from the alias table is stored as −1 − bin (its bin
      // prefetched) with its threshold draw in ys, resolved in A2.
      for (std::int64_t i = 0; i < len; ++i) {
        const std::int64_t t = b + i;
        const std::int32_t w = words_[static_cast<std::size_t>(t)];
        const auto nw = static_cast<std::uint64_t>(n_w_[static_cast<std::size_t>(w)]);
        const double p_alias = static_cast<double>(nw) / (static_cast<double>(nw) + k_eta);
        const GibbsAliasBin* bins = bins_.data() + bin_ptr_[static_cast<std::size_t>(w)];
        const auto nbins = static_cast<std::uint64_t>(bin_len_[static_cast<std::size_t>(w)]);
        const std::uint64_t key = mix64(prefix ^ static_cast<std::uint64_t>(first_token_ + t));
        s.keys[static_cast<std::size_t>(i)] = key;
        std::int32_t* pt = props + static_cast<std::size_t>(i) * per_token;
        for (int m = 0; m < steps; ++m) {
          const std::uint64_t* sk = slots + kSlotsPerStep * m;
          // Doc proposal: uniform with probability Kα / (n_d + Kα), else a random token's frozen topic.
          const std::uint64_t r1 = mix64(key ^ sk[1]);
          pt[2 * m] = to_uniform(mix64(key ^ sk[0])) < p_uniform_doc
                          ? static_cast<std::int32_t>(below_hi(r1, static_cast<std::uint64_t>(k)))
                          : zo[below_hi(r1, static_cast<std::uint64_t>(len))];
          // Word proposal: the alias table with probability n_w / (n_w + Kη), else uniform.
          const std::uint64_t r4 = mix64(key ^ sk[4]);
          if (to_uniform(mix64(key ^ sk[3])) < p_alias) {
            const std::uint64_t j = below_hi(r4, nbins);
            __builtin_prefetch(bins + j);
            pt[2 * m + 1] = -1 - static_cast<std::int32_t>(j);
            ys[static_cast<std::size_t>(i) * static_cast<std::size_t>(steps) + static_cast<std::size_t>(m)] =
                static_cast<std::int32_t>(below_lo(r4, nw));
          } else {
            pt[2 * m + 1] = static_cast<std::int32_t>(below_hi(r4, static_cast<std::uint64_t>(k)));
          }
        }
      }
      // A2: resolve the alias draws and prefetch the n_kw cells the chains will read.
      for (std::int64_t i = 0; i < len; ++i) {
        const std::int32_t w = words_[static_cast<std::size_t>(b + i)];
        const std::int32_t* row = n_kw_.data() + static_cast<std::size_t>(w) * static_cast<std::size_t>(k);
        const GibbsAliasBin* bins = bins_.data() + bin_ptr_[static_cast<std::size_t>(w)];
        std::int32_t* pt = props + static_cast<std::size_t>(i) * per_token;
        __builtin_prefetch(row + zo[i]);
        for (int m = 0; m < steps; ++m) {
          __builtin_prefetch(row + pt[2 * m]);
          std::int32_t& q = pt[2 * m + 1];
          if (q < 0) {
            const GibbsAliasBin& bin = bins[-1 - q];
            q = ys[static_cast<std::size_t>(i) * static_cast<std::size_t>(steps) + static_cast<std::size_t>(m)] < bin.threshold
                    ? bin.topic
                    : bin.alias;
          }
        }
      }
      // Pass B: the MH chains against the frozen counts: the doc steps, then the word steps
      // (which read only the token's own n_kw cell).
      GibbsTokenView view{nd, nullptr, n_k_veta_.data(), 0, alpha, eta};
      for (std::int64_t i = 0; i < len; ++i) {
        const std::int64_t t = b + i;
        const std::int32_t w = words_[static_cast<std::size_t>(t)];
        const std::int32_t self = zo[i];
        view.n_kw = n_kw_.data() + static_cast<std::size_t>(w) * static_cast<std::size_t>(k);
        view.self = self;
        const std::uint64_t key = s.keys[static_cast<std::size_t>(i)];
        const std::int32_t* pt = props + static_cast<std::size_t>(i) * per_token;
        std::int32_t cur = self;
        double num, den;
        for (int m = 0; m < steps; ++m) {
          const std::int32_t prop = pt[2 * m];
          if (prop != cur) {
            ++proposals;
            gibbs_doc_ratio(view, cur, prop, num, den);
            if (num >= den || to_uniform(mix64(key ^ slots[kSlotsPerStep * m + 2])) * den < num) {
              cur = prop;
              ++accepted;
            }
          }
        }
        for (int m = 0; m < steps; ++m) {
          const std::int32_t prop = pt[2 * m + 1];
          if (prop != cur) {
            ++proposals;
            gibbs_word_ratio(view, cur, prop, num, den);
            if (num >= den || to_uniform(mix64(key ^ slots[kSlotsPerStep * m + 5])) * den < num) {
              cur = prop;
              ++accepted;
            }
          }
        }
        if (cur != self) {
          topics_[static_cast<std::size_t>(t)] = cur;
          s.changes.push_back(w);
          s.changes.push_back(self);
          s.changes.push_back(cur);
        }
      }
      for (std::int64_t i = 0; i < len; ++i) nd[zo[i]] = 0;
    }
    s.proposals += proposals;
    s.accepted += accepted;
  };
  std::exception_ptr error;
  try {
    if (threads_ == 1) {
      body(0, num_docs);
    } else {
      impl_->arena.execute([&] {
        tbb::parallel_for(tbb::blocked_range<Index>(0, num_docs, 4), [&](const tbb::blocked_range<Index>& r) { body(r.begin(), r.end()); });
      });
    }
  } catch (...) {
    error = std::current_exception();
  }
  comm.agree(error);

  // The changes, from every rank; integer updates commute, so any order gives the same counts.
  std::vector<std::int64_t> local;
  std::int64_t sums[4] = {local_tokens(), 0, 0, 0};
  for (Impl::Scratch& s : impl_->scratch) {
    for (std::int32_t x : s.changes) local.push_back(x);
    sums[2] += s.proposals;
    sums[3] += s.accepted;
  }
  sums[1] = static_cast<std::int64_t>(local.size() / 3);
  comm.allreduce_sum(sums);
  std::vector<std::int64_t> all;
  if (comm.size() == 1) {
    all = std::move(local);
  } else if (static_cast<double>(v_) * static_cast<double>(k) * static_cast<double>(k) < 0x1.0p62) {
    // One int64 per change on the wire: (w K + from) K + to.
    std::vector<std::int64_t> packed(local.size() / 3);
    for (std::size_t i = 0; i < packed.size(); ++i) packed[i] = (local[3 * i] * k + local[3 * i + 1]) * k + local[3 * i + 2];
    local = {};
    const std::vector<std::int64_t> got = comm.allgatherv(std::span<const std::int64_t>(packed));
    all.resize(3 * got.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
      all[3 * i + 2] = got[i] % k;
      all[3 * i + 1] = got[i] / k % k;
      all[3 * i] = got[i] / k / k;
    }
  } else {
    all = comm.allgatherv(std::span<const std::int64_t>(local));
  }
  std::vector<std::uint8_t>& flag = impl_->word_flag;
  std::vector<std::int32_t> touched;
  std::vector<std::int64_t> added;  // (word, topic) cells that went from 0 to 1
  constexpr std::size_t kAhead = 16 * 3;
  for (std::size_t i = 0; i + 2 < all.size(); i += 3) {
    if (i + kAhead + 2 < all.size()) {
      __builtin_prefetch(n_kw_.data() + all[i + kAhead] * k + all[i + kAhead + 1]);
      __builtin_prefetch(n_kw_.data() + all[i + kAhead] * k + all[i + kAhead + 2]);
    }
    const std::int64_t w = all[i], from = all[i + 1], to = all[i + 2];
    n_kw_[static_cast<std::size_t>(w * k + from)] -= 1;
    if (++n_kw_[static_cast<std::size_t>(w * k + to)] == 1) {
      added.push_back(w);
      added.push_back(to);
    }
    --n_k_[static_cast<std::size_t>(from)];
    ++n_k_[static_cast<std::size_t>(to)];
    if (!flag[static_cast<std::size_t>(w)]) {
      flag[static_cast<std::size_t>(w)] = 1;
      touched.push_back(static_cast<std::int32_t>(w));
    }
  }
  for (std::int32_t w : touched) flag[static_cast<std::size_t>(w)] = 0;
  for (Index t = 0; t < k; ++t) n_k_veta_[static_cast<std::size_t>(t)] = static_cast<double>(n_k_[static_cast<std::size_t>(t)]) + static_cast<double>(v_) * eta_;
  std::sort(touched.begin(), touched.end());
  // The added topics grouped by touched word (a counting sort; order within a word does not matter).
  std::vector<std::int32_t>& slot = impl_->word_slot;
  for (std::size_t i = 0; i < touched.size(); ++i) slot[static_cast<std::size_t>(touched[i])] = static_cast<std::int32_t>(i);
  std::vector<std::int64_t> added_begin(touched.size() + 1, 0);
  for (std::size_t i = 0; i < added.size(); i += 2) ++added_begin[static_cast<std::size_t>(slot[static_cast<std::size_t>(added[i])]) + 1];
  for (std::size_t i = 0; i < touched.size(); ++i) added_begin[i + 1] += added_begin[i];
  std::vector<std::int64_t> fill(added_begin.begin(), added_begin.end() - 1);
  std::vector<std::int32_t> added_topics(added.size() / 2);
  for (std::size_t i = 0; i < added.size(); i += 2)
    added_topics[static_cast<std::size_t>(fill[static_cast<std::size_t>(slot[static_cast<std::size_t>(added[i])])]++)] =
        static_cast<std::int32_t>(added[i + 1]);
  for (std::int32_t w : touched) slot[static_cast<std::size_t>(w)] = -1;
  rebuild_alias(touched, added_begin.data(), added_topics.data());
  return GibbsSweepStats{sums[0], sums[1], sums[2], sums[3]};
}

double GibbsSampler::log_joint(const comm::Communicator& comm) const {
  const double lg_alpha = std::lgamma(alpha_), lg_eta = std::lgamma(eta_);
  const double k_alpha = static_cast<double>(k_) * alpha_, v_eta = static_cast<double>(v_) * eta_;
  const double lg_k_alpha = std::lgamma(k_alpha);
  struct Local {
    ExactSum sum{1};
    std::vector<std::int32_t> nd;
  };
  tbb::enumerable_thread_specific<Local> locals;
  const auto num_docs = static_cast<Index>(doc_ptr_.empty() ? 0 : doc_ptr_.size() - 1);
  const auto docs = [&](Index lo, Index hi) {
    Local& l = locals.local();
    l.nd.assign(static_cast<std::size_t>(k_), 0);
    for (Index d = lo; d < hi; ++d) {
      const std::int64_t b = doc_ptr_[static_cast<std::size_t>(d)], e = doc_ptr_[static_cast<std::size_t>(d) + 1];
      if (b == e) continue;
      double term = lg_k_alpha - std::lgamma(static_cast<double>(e - b) + k_alpha);
      for (std::int64_t i = b; i < e; ++i) ++l.nd[static_cast<std::size_t>(topics_[static_cast<std::size_t>(i)])];
      for (std::int64_t i = b; i < e; ++i) {
        std::int32_t& c = l.nd[static_cast<std::size_t>(topics_[static_cast<std::size_t>(i)])];
        if (c > 0) {
          term += std::lgamma(c + alpha_) - lg_alpha;
          c = 0;
        }
      }
      const double one[1] = {term};
      l.sum.add(one);
    }
  };
  const auto words = [&](Index lo, Index hi) {
    Local& l = locals.local();
    for (Index w = lo; w < hi; ++w) {
      if (n_w_[static_cast<std::size_t>(w)] == 0) continue;
      const std::int32_t* row = n_kw_.data() + static_cast<std::size_t>(w) * static_cast<std::size_t>(k_);
      // The nonzero cells are the topics of the word's alias bins (ascending, one per bin).
      const GibbsAliasBin* bins = bins_.data() + bin_ptr_[static_cast<std::size_t>(w)];
      double term = 0;
      for (std::int32_t j = 0; j < bin_len_[static_cast<std::size_t>(w)]; ++j)
        term += std::lgamma(row[bins[j].topic] + eta_) - lg_eta;
      const double one[1] = {term};
      l.sum.add(one);
    }
  };
  impl_->arena.execute([&] {
    tbb::parallel_for(tbb::blocked_range<Index>(0, num_docs, 64), [&](const tbb::blocked_range<Index>& r) { docs(r.begin(), r.end()); });
  });
  ExactSum doc_sum(1);
  for (Local& l : locals) {
    doc_sum.merge(l.sum);
    l.sum = ExactSum(1);
  }
  comm.allreduce(doc_sum);
  // The topic-word part is global: every rank computes it whole (exact sums: thread-count independent).
  impl_->arena.execute([&] {
    tbb::parallel_for(tbb::blocked_range<Index>(0, v_, 64), [&](const tbb::blocked_range<Index>& r) { words(r.begin(), r.end()); });
  });
  ExactSum word_sum(1);
  for (Local& l : locals) word_sum.merge(l.sum);
  double topics = 0;
  const double lg_v_eta = std::lgamma(v_eta);
  for (Index t = 0; t < k_; ++t) topics += lg_v_eta - std::lgamma(static_cast<double>(n_k_[static_cast<std::size_t>(t)]) + v_eta);
  return doc_sum.values()[0] + word_sum.values()[0] + topics;
}

}  // namespace latent::models
