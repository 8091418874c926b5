// The O(1)-per-token MH collapsed Gibbs sampler (WarpLDA's proposals with delayed updates):
// see include/latent/models/lda/lda_gibbs.hpp.
#include "latent/models/lda/lda_gibbs.hpp"

#include <fmt/format.h>
#include <oneapi/tbb/enumerable_thread_specific.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <new>

#include "latent/core/control.hpp"
#include "latent/core/error.hpp"
#include "latent/core/exact_sum.hpp"
#include "latent/core/huge_pages.hpp"
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

void* gibbs_huge_alloc(std::size_t bytes) { return huge_pages::allocate(bytes); }

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
  if (v_ < 1 || v_ > std::numeric_limits<std::int32_t>::max()) throw_usage("gibbs: the vocabulary must have 1 to 2^31 - 1 words");
  if (!(alpha > 0) || !(eta > 0) || !std::isfinite(alpha) || !std::isfinite(eta))
    throw_usage("gibbs: --doc-topic-prior and --topic-word-prior must be positive");
  if (mh_steps < 1) throw_usage("--mh-steps must be at least 1");
  n_k_.assign(static_cast<std::size_t>(k_), 0);
  n_w_.assign(static_cast<std::size_t>(v_), 0);
  n_k_veta_.assign(static_cast<std::size_t>(k_), static_cast<double>(v_) * eta_);
  bin_off_.assign(static_cast<std::size_t>(v_) + 1, 0);
  impl_->word_flag.assign(static_cast<std::size_t>(v_), 0);
  impl_->word_slot.assign(static_cast<std::size_t>(v_), -1);
  for (int c = 0; c < kSlotsPerStep * mh_steps_; ++c) impl_->slot_keys.push_back(mix64(static_cast<std::uint64_t>(c)));
}

GibbsSampler::~GibbsSampler() = default;

double GibbsSampler::predicted_bytes(Index num_topics, Index vocab_size, int parts, std::int64_t local_tokens,
                                     std::int64_t local_documents, std::int64_t all_tokens, int threads) {
  const double k = static_cast<double>(num_topics), v = static_cast<double>(vocab_size);
  const double rows = std::ceil(v / std::max(1, parts));
  const double counts = rows * (k + 1) * 4.0;
  const double bins = std::min(k * rows, static_cast<double>(all_tokens)) * static_cast<double>(sizeof(GibbsAliasBin));
  const double global = v * (8.0 + 8.0 + 1.0 + 4.0) + k * (8.0 + 8.0 + 8.0);  // n_w, bin_off, word flags and slots; n_k
  const double tokens = static_cast<double>(local_tokens) * (12.0 + 28.0) + static_cast<double>(local_documents) * 8.0;
  const double scratch = std::max(1, threads) * (k * (4.0 + 1.0 + 4.0 + 16.0) + 1048576.0);
  const double shift = parts > 1 ? static_cast<double>(kShiftChunkBytes) : 0.0;
  return counts + bins + global + tokens + scratch + shift;
}

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
  // Words of the home slice. The nonzero topics of word i of `words`: with `added` (topics
  // added[added_begin[i] .. added_begin[i + 1]) of word i went from 0 to nonzero), the
  // topics of its previous table still nonzero plus its added ones, O(nnz + changes);
  // without, a scan of the row, O(K). Either way sorted ascending, so a table is a function
  // of its row alone (a resumed fit rebuilds the same tables).
  const Index rows = home_end_ - home_begin_;
  std::int32_t* lens = counts_.data() + rows * k_;
  const auto body = [&](Index lo, Index hi) {
    Impl::Scratch& s = impl_->scratch.local();
    if (added_begin != nullptr && static_cast<Index>(s.mark.size()) != k_) s.mark.assign(static_cast<std::size_t>(k_), 0);
    for (Index i = lo; i < hi; ++i) {
      const std::int32_t w = words[static_cast<std::size_t>(i)];
      const Index r = w - home_begin_;
      const std::int32_t* row = counts_.data() + r * k_;
      GibbsAliasBin* bins = bins_.data() + bin_off_[static_cast<std::size_t>(w)];
      s.topics.clear();
      if (added_begin == nullptr) {
        for (Index t = 0; t < k_; ++t)
          if (row[t] != 0) s.topics.push_back(static_cast<std::int32_t>(t));
      } else {
        const std::int32_t old_len = lens[r];
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
      lens[r] = len;
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
  parts_ = comm.size();
  rank_ = comm.rank();
  home_begin_ = slice_begin(v_, parts_, rank_);
  home_end_ = slice_begin(v_, parts_, rank_ + 1);
  // n_w and n_k: this rank's counts, summed (integers: exact).
  std::fill(n_k_.begin(), n_k_.end(), 0);
  std::fill(n_w_.begin(), n_w_.end(), 0);
  for (std::size_t i = 0; i < words_.size(); ++i) {
    ++n_w_[static_cast<std::size_t>(words_[i])];
    ++n_k_[static_cast<std::size_t>(topics_[i])];
  }
  comm.allreduce_sum(n_w_);
  comm.allreduce_sum(n_k_);
  std::int64_t max_w = 0;
  for (std::int64_t c : n_w_) max_w = std::max(max_w, c);
  if (max_w > std::numeric_limits<std::int32_t>::max())
    throw_usage(fmt::format("gibbs: a word occurs {} times; at most 2^31 - 1 per word are supported", max_w));
  for (Index t = 0; t < k_; ++t) n_k_veta_[static_cast<std::size_t>(t)] = static_cast<double>(n_k_[static_cast<std::size_t>(t)]) + static_cast<double>(v_) * eta_;
  // Alias capacity: a word has at most min(K, n_w) nonzero topics, for ever. Offsets restart
  // at each slice; every buffer is as large as the largest slice's (the same on every rank).
  Index max_rows = 0;
  std::int64_t max_bins = 0;
  for (int s = 0; s < parts_; ++s) {
    const Index lo = slice_begin(v_, parts_, s), hi = slice_begin(v_, parts_, s + 1);
    std::int64_t off = 0;
    for (Index w = lo; w < hi; ++w) {
      bin_off_[static_cast<std::size_t>(w)] = off;
      off += std::min<std::int64_t>(k_, n_w_[static_cast<std::size_t>(w)]);
    }
    max_rows = std::max(max_rows, hi - lo);
    max_bins = std::max(max_bins, off);
  }
  bin_off_[static_cast<std::size_t>(v_)] = 0;
  counts_.assign(static_cast<std::size_t>(max_rows * (k_ + 1)), 0);
  bins_.assign(static_cast<std::size_t>(max_bins), GibbsAliasBin{0, 0, 0});
  // The home rows of n_kw from every rank's (word, topic) pairs.
  const auto add_pair = [&](std::int64_t w, std::int64_t t) { ++counts_[static_cast<std::size_t>((w - home_begin_) * k_ + t)]; };
  if (parts_ == 1) {
    for (std::size_t i = 0; i < words_.size(); ++i) add_pair(words_[i], topics_[i]);
  } else {
    std::vector<std::int64_t> counts_to(static_cast<std::size_t>(parts_), 0);
    for (std::int32_t w : words_) ++counts_to[static_cast<std::size_t>(slice_of(v_, parts_, w))];
    std::vector<std::int64_t> fill(static_cast<std::size_t>(parts_), 0);
    for (int s = 1; s < parts_; ++s) fill[static_cast<std::size_t>(s)] = fill[static_cast<std::size_t>(s) - 1] + counts_to[static_cast<std::size_t>(s) - 1];
    std::vector<std::int64_t> pairs(words_.size());
    for (std::size_t i = 0; i < words_.size(); ++i)
      pairs[static_cast<std::size_t>(fill[static_cast<std::size_t>(slice_of(v_, parts_, words_[i]))]++)] =
          static_cast<std::int64_t>(words_[i]) * k_ + topics_[i];
    const std::vector<std::int64_t> mine = comm.alltoallv(pairs, counts_to);
    pairs = {};
    for (std::int64_t p : mine) add_pair(p / k_, p % k_);
  }
  std::vector<std::int32_t> present;
  for (Index w = home_begin_; w < home_end_; ++w)
    if (n_w_[static_cast<std::size_t>(w)] > 0) present.push_back(static_cast<std::int32_t>(w));
  rebuild_alias(present, nullptr, nullptr);
}

void GibbsSampler::sample_slice(int slice, std::uint64_t prefix) {
  const Index k = k_;
  const double alpha = alpha_, eta = eta_, k_alpha = static_cast<double>(k_) * alpha_, k_eta = static_cast<double>(k_) * eta_;
  const std::uint64_t* slots = impl_->slot_keys.data();
  const int steps = mh_steps_;
  const Index lo_w = slice_begin(v_, parts_, slice), hi_w = slice_begin(v_, parts_, slice + 1);
  const bool whole = lo_w == 0 && hi_w == v_;
  // The slice held: n_kw rows from lo_w, then the rows' alias lengths; its alias bins.
  const std::int32_t* n_kw = counts_.data();                         // row w at (w − lo_w) K
  const std::int32_t* bin_len = counts_.data() + (hi_w - lo_w) * k;  // word w at w − lo_w
  const GibbsAliasBin* all_bins = bins_.data();
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
      // This slice's tokens of the document: its words are ascending, so a contiguous range.
      std::int64_t i0 = 0, i1 = len;
      if (!whole) {
        const std::int32_t* wb = words_.data() + b;
        i0 = std::lower_bound(wb, wb + len, static_cast<std::int32_t>(lo_w)) - wb;
        i1 = std::lower_bound(wb + i0, wb + len, hi_w) - wb;
        if (i0 == i1) continue;
      }
      const std::int64_t m_len = i1 - i0;
      const std::int32_t* zo = topics_.data() + b;  // frozen for the sweep
      for (std::int64_t i = 0; i < len; ++i) ++nd[zo[i]];
      const double p_uniform_doc = k_alpha / (static_cast<double>(len) + k_alpha);
      // Pass A: every proposal of every token of the range. Proposals do not depend on the
      // chain's state (both are independence proposals), so they are drawn first and the
      // n_kw cells the acceptances will read are prefetched: the misses of different tokens
      // overlap instead of stalling one after another.
      const auto per_token = static_cast<std::size_t>(2 * steps);
      if (s.props.size() < static_cast<std::size_t>(m_len) * per_token) s.props.resize(static_cast<std::size_t>(m_len) * per_token);
      if (s.keys.size() < static_cast<std::size_t>(m_len)) s.keys.resize(static_cast<std::size_t>(m_len));
      if (s.ys.size() < static_cast<std::size_t>(m_len) * static_cast<std::size_t>(steps))
        s.ys.resize(static_cast<std::size_t>(m_len) * static_cast<std::size_t>(steps));
      std::int32_t* props = s.props.data();
      std::int32_t* ys = s.ys.data();
      // A1: the draws; a word proposal from the alias table is stored as −1 − bin (its bin
      // prefetched) with its threshold draw in ys, resolved in A2.
      for (std::int64_t j = 0; j < m_len; ++j) {
        const std::int64_t t = b + i0 + j;
        const std::int32_t w = words_[static_cast<std::size_t>(t)];
        const auto nw = static_cast<std::uint64_t>(n_w_[static_cast<std::size_t>(w)]);
        const double p_alias = static_cast<double>(nw) / (static_cast<double>(nw) + k_eta);
        const GibbsAliasBin* bins = all_bins + bin_off_[static_cast<std::size_t>(w)];
        const auto nbins = static_cast<std::uint64_t>(bin_len[w - lo_w]);
        const std::uint64_t key = mix64(prefix ^ static_cast<std::uint64_t>(first_token_ + t));
        s.keys[static_cast<std::size_t>(j)] = key;
        std::int32_t* pt = props + static_cast<std::size_t>(j) * per_token;
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
            const std::uint64_t jb = below_hi(r4, nbins);
            __builtin_prefetch(bins + jb);
            pt[2 * m + 1] = -1 - static_cast<std::int32_t>(jb);
            ys[static_cast<std::size_t>(j) * static_cast<std::size_t>(steps) + static_cast<std::size_t>(m)] =
                static_cast<std::int32_t>(below_lo(r4, nw));
          } else {
            pt[2 * m + 1] = static_cast<std::int32_t>(below_hi(r4, static_cast<std::uint64_t>(k)));
          }
        }
      }
      // A2: resolve the alias draws and prefetch the n_kw cells the chains will read.
      for (std::int64_t j = 0; j < m_len; ++j) {
        const std::int32_t w = words_[static_cast<std::size_t>(b + i0 + j)];
        const std::int32_t* row = n_kw + (w - lo_w) * k;
        const GibbsAliasBin* bins = all_bins + bin_off_[static_cast<std::size_t>(w)];
        std::int32_t* pt = props + static_cast<std::size_t>(j) * per_token;
        __builtin_prefetch(row + zo[i0 + j]);
        for (int m = 0; m < steps; ++m) {
          __builtin_prefetch(row + pt[2 * m]);
          std::int32_t& q = pt[2 * m + 1];
          if (q < 0) {
            const GibbsAliasBin& bin = bins[-1 - q];
            q = ys[static_cast<std::size_t>(j) * static_cast<std::size_t>(steps) + static_cast<std::size_t>(m)] < bin.threshold
                    ? bin.topic
                    : bin.alias;
          }
        }
      }
      // Pass B: the MH chains against the frozen counts: the doc steps, then the word steps
      // (which read only the token's own n_kw cell).
      GibbsTokenView view{nd, nullptr, n_k_veta_.data(), 0, alpha, eta};
      for (std::int64_t j = 0; j < m_len; ++j) {
        const std::int64_t t = b + i0 + j;
        const std::int32_t w = words_[static_cast<std::size_t>(t)];
        const std::int32_t self = zo[i0 + j];
        view.n_kw = n_kw + (w - lo_w) * k;
        view.self = self;
        const std::uint64_t key = s.keys[static_cast<std::size_t>(j)];
        const std::int32_t* pt = props + static_cast<std::size_t>(j) * per_token;
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
          next_topics_[static_cast<std::size_t>(t)] = cur;
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
  if (threads_ == 1) {
    body(0, num_docs);
  } else {
    impl_->arena.execute([&] {
      tbb::parallel_for(tbb::blocked_range<Index>(0, num_docs, 4), [&](const tbb::blocked_range<Index>& r) { body(r.begin(), r.end()); });
    });
  }
}

GibbsSweepStats GibbsSampler::sweep(const comm::Communicator& comm, std::uint64_t sweep) {
  if (comm.size() != parts_ || comm.rank() != rank_) throw Error(ErrorKind::kInternal, "gibbs: sweep on another communicator than rebuild_counts");
  const std::uint64_t prefix = CounterRng::prefix(seed_, RngPurpose::kGibbsSweep, sweep);
  const Index k = k_;
  for (Impl::Scratch& s : impl_->scratch) {
    s.changes.clear();
    s.proposals = s.accepted = 0;
  }
  next_topics_ = topics_;
  // P rounds: sample against the slice held, then pass it on (it is home after P shifts).
  int held = rank_;
  for (int round = 0; round < parts_; ++round) {
    comm::run_agreed(comm, [&] { sample_slice(held, prefix); });
    heartbeat();
    if (parts_ > 1) {
      comm.ring_shift(std::as_writable_bytes(std::span<std::int32_t>(counts_.data(), counts_.size())), kShiftChunkBytes);
      comm.ring_shift(std::as_writable_bytes(std::span<GibbsAliasBin>(bins_.data(), bins_.size())), kShiftChunkBytes);
      held = (held + parts_ - 1) % parts_;
    }
  }
  topics_.swap(next_topics_);
  next_topics_ = {};

  // The changes, to the owners of their words; integer updates commute, so any order gives
  // the same counts. n_k by an allreduce of the changes' deltas, with the sweep's totals.
  std::vector<std::int64_t> sums(4 + static_cast<std::size_t>(k), 0);
  sums[0] = local_tokens();
  std::vector<std::int64_t> counts_to(static_cast<std::size_t>(parts_), 0);
  std::int64_t changes = 0;
  for (Impl::Scratch& s : impl_->scratch) {
    for (std::size_t i = 0; i + 2 < s.changes.size(); i += 3) {
      --sums[4 + static_cast<std::size_t>(s.changes[i + 1])];
      ++sums[4 + static_cast<std::size_t>(s.changes[i + 2])];
      ++counts_to[static_cast<std::size_t>(parts_ == 1 ? 0 : slice_of(v_, parts_, s.changes[i]))];
    }
    changes += static_cast<std::int64_t>(s.changes.size() / 3);
    sums[2] += s.proposals;
    sums[3] += s.accepted;
  }
  sums[1] = changes;
  comm.allreduce_sum(sums);
  const bool packed = static_cast<double>(v_) * static_cast<double>(k) * static_cast<double>(k) < 0x1.0p62;
  const std::int64_t width = packed ? 1 : 3;
  std::vector<std::int64_t> fill(static_cast<std::size_t>(parts_), 0);
  for (int s = 1; s < parts_; ++s)
    fill[static_cast<std::size_t>(s)] = fill[static_cast<std::size_t>(s) - 1] + width * counts_to[static_cast<std::size_t>(s) - 1];
  std::vector<std::int64_t> send(static_cast<std::size_t>(width * changes));
  for (Impl::Scratch& s : impl_->scratch) {
    for (std::size_t i = 0; i + 2 < s.changes.size(); i += 3) {
      const std::int64_t w = s.changes[i], from = s.changes[i + 1], to = s.changes[i + 2];
      std::int64_t& at = fill[static_cast<std::size_t>(parts_ == 1 ? 0 : slice_of(v_, parts_, w))];
      if (packed) {
        send[static_cast<std::size_t>(at++)] = (w * k + from) * k + to;
      } else {
        send[static_cast<std::size_t>(at++)] = w;
        send[static_cast<std::size_t>(at++)] = from;
        send[static_cast<std::size_t>(at++)] = to;
      }
    }
    s.changes.clear();
    s.changes.shrink_to_fit();
  }
  for (std::int64_t& c : counts_to) c *= width;
  std::vector<std::int64_t> all = parts_ == 1 ? std::move(send) : comm.alltoallv(send, counts_to);
  send = {};
  const auto n_all = static_cast<std::size_t>(all.size() / static_cast<std::size_t>(width));
  const auto change_at = [&](std::size_t i, std::int64_t& w, std::int64_t& from, std::int64_t& to) {
    if (packed) {
      const std::int64_t x = all[i];
      to = x % k;
      from = x / k % k;
      w = x / k / k;
    } else {
      w = all[3 * i];
      from = all[3 * i + 1];
      to = all[3 * i + 2];
    }
  };
  std::int32_t* n_kw = counts_.data();  // row w at (w − home_begin_) K
  std::vector<std::uint8_t>& flag = impl_->word_flag;
  std::vector<std::int32_t> touched;
  std::vector<std::int64_t> added;  // (word, topic) cells that went from 0 to 1
  constexpr std::size_t kAhead = 16;
  for (std::size_t i = 0; i < n_all; ++i) {
    std::int64_t w, from, to;
    if (i + kAhead < n_all) {
      change_at(i + kAhead, w, from, to);
      __builtin_prefetch(n_kw + (w - home_begin_) * k + from);
      __builtin_prefetch(n_kw + (w - home_begin_) * k + to);
    }
    change_at(i, w, from, to);
    n_kw[(w - home_begin_) * k + from] -= 1;
    if (++n_kw[(w - home_begin_) * k + to] == 1) {
      added.push_back(w);
      added.push_back(to);
    }
    if (!flag[static_cast<std::size_t>(w)]) {
      flag[static_cast<std::size_t>(w)] = 1;
      touched.push_back(static_cast<std::int32_t>(w));
    }
  }
  all = {};
  for (std::int32_t w : touched) flag[static_cast<std::size_t>(w)] = 0;
  for (Index t = 0; t < k; ++t) {
    n_k_[static_cast<std::size_t>(t)] += sums[4 + static_cast<std::size_t>(t)];
    n_k_veta_[static_cast<std::size_t>(t)] = static_cast<double>(n_k_[static_cast<std::size_t>(t)]) + static_cast<double>(v_) * eta_;
  }
  std::sort(touched.begin(), touched.end());
  // The added topics grouped by touched word (a counting sort; order within a word does not matter).
  std::vector<std::int32_t>& slot = impl_->word_slot;
  for (std::size_t i = 0; i < touched.size(); ++i) slot[static_cast<std::size_t>(touched[i])] = static_cast<std::int32_t>(i);
  std::vector<std::int64_t> added_begin(touched.size() + 1, 0);
  for (std::size_t i = 0; i < added.size(); i += 2) ++added_begin[static_cast<std::size_t>(slot[static_cast<std::size_t>(added[i])]) + 1];
  for (std::size_t i = 0; i < touched.size(); ++i) added_begin[i + 1] += added_begin[i];
  std::vector<std::int64_t> fill_added(added_begin.begin(), added_begin.end() - 1);
  std::vector<std::int32_t> added_topics(added.size() / 2);
  for (std::size_t i = 0; i < added.size(); i += 2)
    added_topics[static_cast<std::size_t>(fill_added[static_cast<std::size_t>(slot[static_cast<std::size_t>(added[i])])]++)] =
        static_cast<std::int32_t>(added[i + 1]);
  for (std::int32_t w : touched) slot[static_cast<std::size_t>(w)] = -1;
  rebuild_alias(touched, added_begin.data(), added_topics.data());
  return GibbsSweepStats{sums[0], sums[1], sums[2], sums[3]};
}

double gibbs_optimize_alpha(const GibbsAlphaStats& stats, Index num_topics, double alpha, int max_iter) {
  const auto k = static_cast<double>(num_topics);
  bool any = false;
  for (std::size_t n = 1; n < stats.length_hist.size(); ++n) any = any || stats.length_hist[n] > 0;
  if (!any) return alpha;
  for (int it = 0; it < max_iter; ++it) {
    double num = 0, den = 0, psi_a = 0, psi_ka = 0;  // ψ(n + a) − ψ(a) by the recurrence
    const std::size_t top = std::max(stats.count_hist.size(), stats.length_hist.size());
    for (std::size_t n = 1; n < top; ++n) {
      psi_a += 1.0 / (alpha + static_cast<double>(n - 1));
      psi_ka += 1.0 / (k * alpha + static_cast<double>(n - 1));
      if (n < stats.count_hist.size()) num += static_cast<double>(stats.count_hist[n]) * psi_a;
      if (n < stats.length_hist.size()) den += static_cast<double>(stats.length_hist[n]) * psi_ka;
    }
    const double next = alpha * num / (k * den);
    if (!(next > 0) || !std::isfinite(next)) break;
    const double change = std::abs(next - alpha) / alpha;
    alpha = next;
    if (change < 1e-12) break;
  }
  return alpha;
}

void GibbsSampler::set_alpha(double alpha) {
  if (!(alpha > 0) || !std::isfinite(alpha)) throw_usage("the doc-topic prior must be positive and finite");
  alpha_ = alpha;
}

GibbsAlphaStats GibbsSampler::alpha_statistics(const comm::Communicator& comm) const {
  const auto num_docs = static_cast<Index>(doc_ptr_.empty() ? 0 : doc_ptr_.size() - 1);
  double longest = 0;
  for (Index d = 0; d < num_docs; ++d)
    longest = std::max(longest, static_cast<double>(doc_ptr_[static_cast<std::size_t>(d) + 1] - doc_ptr_[static_cast<std::size_t>(d)]));
  comm.allreduce_max(std::span<double>(&longest, 1));
  const auto size = static_cast<std::size_t>(longest) + 1;
  struct Local {
    std::vector<std::int64_t> counts, lengths;
    std::vector<std::int32_t> nd;
  };
  tbb::enumerable_thread_specific<Local> locals;
  impl_->arena.execute([&] {
    tbb::parallel_for(tbb::blocked_range<Index>(0, num_docs, 64), [&](const tbb::blocked_range<Index>& r) {
      Local& l = locals.local();
      if (l.counts.empty()) {
        l.counts.assign(size, 0);
        l.lengths.assign(size, 0);
        l.nd.assign(static_cast<std::size_t>(k_), 0);
      }
      for (Index d = r.begin(); d < r.end(); ++d) {
        const std::int64_t b = doc_ptr_[static_cast<std::size_t>(d)], e = doc_ptr_[static_cast<std::size_t>(d) + 1];
        if (b == e) continue;
        ++l.lengths[static_cast<std::size_t>(e - b)];
        for (std::int64_t i = b; i < e; ++i) ++l.nd[static_cast<std::size_t>(topics_[static_cast<std::size_t>(i)])];
        for (std::int64_t i = b; i < e; ++i) {
          std::int32_t& c = l.nd[static_cast<std::size_t>(topics_[static_cast<std::size_t>(i)])];
          if (c > 0) {
            ++l.counts[static_cast<std::size_t>(c)];
            c = 0;
          }
        }
      }
    });
  });
  GibbsAlphaStats out{std::vector<std::int64_t>(size, 0), std::vector<std::int64_t>(size, 0)};
  for (const Local& l : locals)
    for (std::size_t n = 0; n < l.counts.size(); ++n) {
      out.count_hist[n] += l.counts[n];
      out.length_hist[n] += l.lengths[n];
    }
  comm.allreduce_sum(out.count_hist);
  comm.allreduce_sum(out.length_hist);
  return out;
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
  const Index rows = home_end_ - home_begin_;
  const std::int32_t* lens = counts_.data() + rows * k_;
  const auto words = [&](Index lo, Index hi) {
    Local& l = locals.local();
    for (Index w = lo; w < hi; ++w) {
      if (n_w_[static_cast<std::size_t>(w)] == 0) continue;
      const std::int32_t* row = counts_.data() + (w - home_begin_) * k_;
      // The nonzero cells are the topics of the word's alias bins (one per bin).
      const GibbsAliasBin* bins = bins_.data() + bin_off_[static_cast<std::size_t>(w)];
      double term = 0;
      for (std::int32_t j = 0; j < lens[w - home_begin_]; ++j) term += std::lgamma(row[bins[j].topic] + eta_) - lg_eta;
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
  // The topic-word part over the home slice, summed exactly across ranks.
  impl_->arena.execute([&] {
    tbb::parallel_for(tbb::blocked_range<Index>(home_begin_, home_end_, 64),
                      [&](const tbb::blocked_range<Index>& r) { words(r.begin(), r.end()); });
  });
  ExactSum word_sum(1);
  for (Local& l : locals) word_sum.merge(l.sum);
  comm.allreduce(word_sum);
  double topics = 0;
  const double lg_v_eta = std::lgamma(v_eta);
  for (Index t = 0; t < k_; ++t) topics += lg_v_eta - std::lgamma(static_cast<double>(n_k_[static_cast<std::size_t>(t)]) + v_eta);
  return doc_sum.values()[0] + word_sum.values()[0] + topics;
}

}  // namespace latent::models
