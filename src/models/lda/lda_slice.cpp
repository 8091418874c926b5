#include "latent/models/lda/lda_slice.hpp"

#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <iterator>
#include <new>

#include "latent/core/control.hpp"
#include "latent/core/error.hpp"

namespace latent::models {
namespace {

constexpr Index kChunk = Lda::kChunkRows;

Index num_chunks(Index v) noexcept { return (v + kChunk - 1) / kChunk; }

double log_gamma(double x) noexcept {
  int sign = 0;
  return lgamma_r(x, &sign);
}

}  // namespace

void gather_slices_to_root(const comm::Communicator& comm, Index rows, std::size_t row_bytes,
                           const std::function<Index(int)>& first_row,
                           const std::function<std::string(Index, Index)>& local,
                           const std::function<void(Index, Index, const std::string&)>& piece) {
  const Index piece_rows = std::max<Index>(1, static_cast<Index>((std::size_t{64} << 20) / std::max<std::size_t>(1, row_bytes)));
  std::exception_ptr error;  // rank 0's
  for (int s = 0; s < comm.size(); ++s) {
    const Index lo = first_row(s), hi = std::min(rows, first_row(s + 1));
    for (Index a = lo; a < hi; a += piece_rows) {
      const Index b = std::min(hi, a + piece_rows);
      std::string bytes;
      if (comm.rank() == s) bytes = local(a, b);
      std::string got;
      if (comm.size() == 1) {
        got = std::move(bytes);
      } else {
        std::vector<std::string> all = comm.gather(bytes, 0);
        if (comm.is_root()) got = std::move(all[static_cast<std::size_t>(s)]);
      }
      heartbeat();
      if (comm.is_root() && !error) {
        try {
          piece(a, b, got);
        } catch (...) {
          error = std::current_exception();
        }
      }
    }
  }
  comm.agree(error);
}

LdaSliceStats::LdaSliceStats(Index rows, Index num_topics)
    : k_(num_topics), cells_(static_cast<std::size_t>(rows * num_topics), 0), touched_(static_cast<std::size_t>(rows), 0) {}

void LdaSliceStats::add(Index row, const std::int64_t* values) {
  if (!touched_[static_cast<std::size_t>(row)]) {
    touched_[static_cast<std::size_t>(row)] = 1;
    touched_list_.push_back(static_cast<std::int32_t>(row));
  }
  std::int64_t* cell = cells_.data() + static_cast<std::size_t>(row * k_);
  for (Index t = 0; t < k_; ++t) cell[t] += values[t];
}

void LdaSliceStats::add_rows(std::span<const std::int32_t> rows, const std::int64_t* values) {
  for (const std::int32_t r : rows)
    if (!touched_[static_cast<std::size_t>(r)]) {
      touched_[static_cast<std::size_t>(r)] = 1;
      touched_list_.push_back(r);
    }
  const auto k = static_cast<std::size_t>(k_);
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, rows.size(), 256), [&](const tbb::blocked_range<std::size_t>& range) {
    for (std::size_t i = range.begin(); i < range.end(); ++i) {
      std::int64_t* cell = cells_.data() + static_cast<std::size_t>(rows[i]) * k;
      const std::int64_t* v = values + i * k;
      for (std::size_t t = 0; t < k; ++t) cell[t] += v[t];
    }
  });
}

void LdaSliceStats::clear() {
  for (std::int32_t r : touched_list_) {
    std::fill_n(cells_.begin() + static_cast<std::ptrdiff_t>(static_cast<Index>(r) * k_), k_, 0);
    touched_[static_cast<std::size_t>(r)] = 0;
  }
  touched_list_.clear();
}

Index LdaSlice::slice_begin(Index vocab_size, int parts, int s) noexcept {
  const Index c = num_chunks(vocab_size);
  return std::min(vocab_size, c * s / parts * kChunk);
}

LdaSlice::LdaSlice(const comm::Communicator& comm, Index num_topics, Index vocab_size, Vector alpha, double eta)
    : v_(vocab_size), rank_(comm.rank()), parts_(comm.size()), alpha_(std::move(alpha)), eta_(eta) {
  if (alpha_.size() != num_topics) throw_usage("doc_topic_prior must have one entry per topic");
  begin_ = slice_begin(v_, parts_, rank_);
  end_ = slice_begin(v_, parts_, rank_ + 1);
  own_lambda_ = RowMatrix::Zero(end_ - begin_, num_topics);
  point_at(own_lambda_.data(), end_ - begin_);
}

LdaSlice::~LdaSlice() = default;

void LdaSlice::point_at(double* data, Index rows) {
  new (&lambda_) Eigen::Map<RowMatrix>(data, rows, alpha_.size());  // Eigen's way to re-seat a Map
}

bool LdaSlice::share_node_memory(const comm::Communicator& comm) {
  const auto k = static_cast<std::size_t>(num_topics());
  shared_lambda_ = comm::NodeSharedMemory::create(comm, static_cast<std::size_t>(rows()) * k * sizeof(double));
  if (!shared_lambda_) return false;
  auto* mine = reinterpret_cast<double*>(shared_lambda_->segment(rank_));
  std::copy(own_lambda_.data(), own_lambda_.data() + own_lambda_.size(), mine);
  own_lambda_ = RowMatrix();
  point_at(mine, end_ - begin_);
  shared_lambda_->fence(comm);
  return true;
}

void LdaSlice::unshare(const comm::Communicator& comm) {
  if (!shared_lambda_) return;
  own_lambda_ = lambda_;
  point_at(own_lambda_.data(), end_ - begin_);
  comm.barrier();  // nobody reads a slice after its owner frees it
  shared_stats_.reset();
  shared_lambda_.reset();
}

void LdaSlice::init_lambda(std::uint64_t seed) {
  for (Index w = begin_; w < end_; ++w)
    for (Index t = 0; t < num_topics(); ++t) lambda_(w - begin_, t) = Lda::initial_lambda(seed, t, w);
}

void LdaSlice::refresh_totals(const comm::Communicator& comm, int threads) {
  const Index k = num_topics();
  Vector running = Vector::Zero(k);
  for (int s = 0; s < parts_; ++s) {
    const Index lo = slice_begin(v_, parts_, s), hi = slice_begin(v_, parts_, s + 1);
    if (lo == hi) continue;
    if (s == rank_) {
      // Lda::refresh_totals's chunk partials for this slice's chunks, added in chunk order.
      const Index chunks = (hi - lo + kChunk - 1) / kChunk;
      RowMatrix partial = RowMatrix::Zero(chunks, k);
      tbb::task_arena arena(std::max(1, threads));
      arena.execute([&] {
        tbb::parallel_for(Index{0}, chunks, [&](Index c) {
          for (Index w = lo + c * kChunk; w < std::min(hi, lo + (c + 1) * kChunk); ++w) partial.row(c) += lambda_.row(w - lo);
        });
      });
      for (Index c = 0; c < chunks; ++c) running += partial.row(c).transpose();
    }
    if (parts_ > 1) {
      std::string bytes;
      if (s == rank_) bytes.assign(reinterpret_cast<const char*>(running.data()), static_cast<std::size_t>(k) * sizeof(double));
      comm.broadcast(bytes, s);
      std::memcpy(running.data(), bytes.data(), static_cast<std::size_t>(k) * sizeof(double));
    }
  }
  if (shared_lambda_) shared_lambda_->fence(comm);  // λ's writes before this call, other ranks' reads after it
  totals_ = running;
  digamma_total_.resize(k);
  for (Index t = 0; t < k; ++t) digamma_total_(t) = digamma(totals_(t));
  const Index kp = (k + 15) / 16 * 16;
  digamma_total_f_.setZero(kp);
  digamma_total_f_.head(k) = digamma_total_.cast<float>();
}

namespace {

// Lda's chunked_sum over this slice's chunks, then every chunk's partial in chunk order
// (slices are whole chunks in rank order, so the gather is in chunk order).
template <class F>
double chunked_sum_sliced(const comm::Communicator& comm, Index lo, Index hi, int threads, F&& f) {
  const Index chunks = (hi - lo + kChunk - 1) / kChunk;
  std::vector<double> partial(static_cast<std::size_t>(chunks), 0.0);
  tbb::task_arena arena(std::max(1, threads));
  arena.execute([&] {
    tbb::parallel_for(Index{0}, chunks, [&](Index c) {
      partial[static_cast<std::size_t>(c)] = f(lo + c * kChunk, std::min(hi, lo + (c + 1) * kChunk));
    });
  });
  const std::vector<double> all = comm.size() > 1 ? comm.allgatherv(std::span<const double>(partial)) : partial;
  double total = 0;
  for (double p : all) total += p;
  return total;
}

}  // namespace

double LdaSlice::topic_term(const comm::Communicator& comm, int threads) const {
  const Index k = num_topics();
  const double lg_eta = log_gamma(eta_);
  double total = chunked_sum_sliced(comm, begin_, end_, threads, [&](Index first, Index last) {
    double s = 0;
    for (Index w = first; w < last; ++w)
      for (Index t = 0; t < k; ++t) {
        const double l = lambda_(w - begin_, t);
        s += (eta_ - l) * (digamma(l) - digamma_total_(t)) + log_gamma(l) - lg_eta;
      }
    return s;
  });
  for (Index t = 0; t < k; ++t) total += log_gamma(static_cast<double>(v_) * eta_) - log_gamma(totals_(t));
  return total;
}

double LdaSlice::sum_elog_beta(const comm::Communicator& comm, int threads) const {
  const Index k = num_topics();
  return chunked_sum_sliced(comm, begin_, end_, threads, [&](Index first, Index last) {
    double s = 0;
    for (Index w = first; w < last; ++w)
      for (Index t = 0; t < k; ++t) s += digamma(lambda_(w - begin_, t)) - digamma_total_(t);
    return s;
  });
}

namespace {

// A rank's statistics segment when the slices share a node: the header (64 bytes: the
// round's word count m, then u, the count of this slice's words that any rank's round
// holds), the round's counts (m × K integers), its words (m), then at 64-byte boundaries
// the u words of the slice (ascending) and their rows of exp(E[log β]) (u × padded K
// floats). Offsets in bytes; a reader knows m and u from the header.
struct StatsLayout {
  std::size_t counts, words, slice_words, rows, end;
};

StatsLayout stats_layout(std::size_t m, std::size_t u, Index k) {
  const auto up = [](std::size_t b) { return (b + 63) / 64 * 64; };
  const auto kp = static_cast<std::size_t>((k + 15) / 16 * 16);
  StatsLayout l{};
  l.counts = 64;
  l.words = l.counts + m * static_cast<std::size_t>(k) * sizeof(std::int64_t);
  l.slice_words = up(l.words + m * sizeof(std::int32_t));
  l.rows = up(l.slice_words + u * sizeof(std::int32_t));
  l.end = l.rows + u * kp * sizeof(float);
  return l;
}

std::int64_t header_field(const std::byte* segment, int field) {
  std::int64_t v = 0;
  std::memcpy(&v, segment + static_cast<std::size_t>(field) * sizeof v, sizeof v);
  return v;
}

// Offsets of each owner's words in the sorted list: words [first[s], first[s + 1]) belong
// to slice s.
std::vector<std::size_t> owner_ranges(std::span<const std::int32_t> words, Index v, int parts) {
  std::vector<std::size_t> first(static_cast<std::size_t>(parts) + 1);
  for (int s = 0; s <= parts; ++s)
    first[static_cast<std::size_t>(s)] = static_cast<std::size_t>(
        std::lower_bound(words.begin(), words.end(), LdaSlice::slice_begin(v, parts, s)) - words.begin());
  first[static_cast<std::size_t>(parts)] = words.size();
  return first;
}

}  // namespace

void LdaSlice::fetch_rows(const comm::Communicator& comm, std::span<const std::int32_t> words, RowMatrixF& rows,
                          std::vector<std::vector<std::int32_t>>& requests) const {
  const Index k = num_topics(), kp = (k + 15) / 16 * 16;
  const auto half = static_cast<std::size_t>(kp / 2);  // float32 rows packed two floats per integer
  rows.resize(static_cast<Index>(words.size()), kp);
  requests.assign(static_cast<std::size_t>(parts_), {});
  // Lda::refresh_row of owned word w into out (kp floats).
  const auto exp_elog_beta_row = [&](std::int32_t w, float* out) {
    exp_digamma_minus({lambda_.row(w - begin_).data(), static_cast<std::size_t>(k)},
                      {digamma_total_f_.data(), static_cast<std::size_t>(kp)}, {out, static_cast<std::size_t>(kp)});
  };
  if (parts_ == 1) {  // every word is this rank's: its rows computed in place, no exchange
    std::vector<std::int32_t>& mine = requests[0];
    mine.assign(words.begin(), words.end());
    for (const std::int32_t w : mine)
      if (w < begin_ || w >= end_) throw Error(ErrorKind::kInternal, "fetch_rows: a word outside the slice");
    tbb::parallel_for(std::size_t{0}, mine.size(),
                      [&](std::size_t i) { exp_elog_beta_row(mine[i], rows.row(static_cast<Index>(i)).data()); });
    return;
  }
  const auto first = owner_ranges(words, v_, parts_);
  if (shared_lambda_) {
    // Each owner computes the rows of its slice's words that any rank's round holds, once,
    // into its statistics segment; every rank copies its rows from there. (Each rank
    // computing its own rows from the owner's λ in place costs Σ_r m_r rows a round
    // against |∪_r words_r|: a frequent word is in every rank's documents.)
    if (!shared_stats_) throw Error(ErrorKind::kInternal, "fetch_rows: stats_buffer was not called this round");
    const std::size_t m = words.size();
    std::byte* own = shared_stats_->segment(rank_);
    const StatsLayout mine = stats_layout(m, 0, k);
    if (mine.slice_words > stats_bytes_)
      throw Error(ErrorKind::kInternal, "fetch_rows: the round's words exceed the segment");
    const auto m64 = static_cast<std::int64_t>(m);
    std::memcpy(own, &m64, sizeof m64);
    if (m > 0) std::memcpy(own + mine.words, words.data(), m * sizeof(std::int32_t));
    shared_stats_->fence(comm);
    // 1. This slice's words in any rank's round: the union of P sorted ranges.
    std::vector<std::int32_t> slice_words, merged;
    for (int r = 0; r < parts_; ++r) {
      const std::byte* in = shared_stats_->segment(r);
      const auto mr = static_cast<std::size_t>(header_field(in, 0));
      const auto* w = reinterpret_cast<const std::int32_t*>(in + stats_layout(mr, 0, k).words);
      const auto range = owner_ranges({w, mr}, v_, parts_);
      const std::int32_t* a = w + range[static_cast<std::size_t>(rank_)];
      const std::int32_t* b = w + range[static_cast<std::size_t>(rank_) + 1];
      merged.clear();
      std::set_union(slice_words.begin(), slice_words.end(), a, b, std::back_inserter(merged));
      slice_words.swap(merged);
    }
    const std::size_t u = slice_words.size();
    const StatsLayout full = stats_layout(m, u, k);
    if (full.end > stats_bytes_) throw Error(ErrorKind::kInternal, "fetch_rows: the slice's rows exceed the segment");
    const auto u64 = static_cast<std::int64_t>(u);
    std::memcpy(own + sizeof(std::int64_t), &u64, sizeof u64);
    if (u > 0) std::memcpy(own + full.slice_words, slice_words.data(), u * sizeof(std::int32_t));
    auto* out = reinterpret_cast<float*>(own + full.rows);
    tbb::parallel_for(std::size_t{0}, u,
                      [&](std::size_t i) { exp_elog_beta_row(slice_words[i], out + i * static_cast<std::size_t>(kp)); });
    shared_stats_->fence(comm);
    // 2. This rank's rows from their owners' segments: both word lists ascending, so a
    // search per range of rows and a merge walk within it.
    for (int s = 0; s < parts_; ++s) {
      const std::byte* in = shared_stats_->segment(s);
      const auto us = static_cast<std::size_t>(header_field(in, 1));
      const StatsLayout theirs = stats_layout(static_cast<std::size_t>(header_field(in, 0)), us, k);
      const auto* sw = reinterpret_cast<const std::int32_t*>(in + theirs.slice_words);
      const auto* sr = reinterpret_cast<const float*>(in + theirs.rows);
      const tbb::blocked_range<std::size_t> mine_of_s(first[static_cast<std::size_t>(s)],
                                                      first[static_cast<std::size_t>(s) + 1], 256);
      tbb::parallel_for(mine_of_s, [&](const tbb::blocked_range<std::size_t>& range) {
        const std::int32_t* p = std::lower_bound(sw, sw + us, words[range.begin()]);
        for (std::size_t i = range.begin(); i < range.end(); ++i) {
          while (p != sw + us && *p < words[i]) ++p;
          if (p == sw + us || *p != words[i])
            throw Error(ErrorKind::kInternal, "fetch_rows: a word missing from its owner's rows");
          const float* row = sr + static_cast<std::size_t>(p - sw) * static_cast<std::size_t>(kp);
          std::memcpy(rows.row(static_cast<Index>(i)).data(), row, static_cast<std::size_t>(kp) * sizeof(float));
        }
      });
    }
    return;
  }
  // 1. Every rank's asks for this slice's words.
  std::vector<std::int64_t> ask;
  for (int step = 0; step < parts_; ++step) {
    const int dest = (rank_ + step) % parts_, src = (rank_ - step + parts_) % parts_;
    const std::size_t a = first[static_cast<std::size_t>(dest)], b = first[static_cast<std::size_t>(dest) + 1];
    ask.assign(words.begin() + static_cast<std::ptrdiff_t>(a), words.begin() + static_cast<std::ptrdiff_t>(b));
    const std::vector<std::int64_t> asked = comm.sendrecv(ask, dest, src);
    std::vector<std::int32_t>& mine = requests[static_cast<std::size_t>(src)];
    mine.resize(asked.size());
    for (std::size_t i = 0; i < asked.size(); ++i) {
      if (asked[i] < begin_ || asked[i] >= end_) throw Error(ErrorKind::kInternal, "fetch_rows: a word outside the slice");
      mine[i] = static_cast<std::int32_t>(asked[i]);
    }
  }
  // 2. Lda::refresh_row once for each word asked by any rank (a frequent word is in every
  // rank's documents: computed once per rank that asked, it cost the owner that many
  // times; the rows are elementwise in λ, so the same bits either way).
  std::vector<std::int32_t> position(static_cast<std::size_t>(end_ - begin_), -1);
  std::vector<std::int32_t> distinct;
  for (const auto& mine : requests)
    for (const std::int32_t w : mine) {
      std::int32_t& p = position[static_cast<std::size_t>(w - begin_)];
      if (p < 0) {
        p = static_cast<std::int32_t>(distinct.size());
        distinct.push_back(w);
      }
    }
  std::vector<std::int64_t> values(distinct.size() * half);
  tbb::parallel_for(std::size_t{0}, distinct.size(), [&](std::size_t i) {
    exp_elog_beta_row(distinct[i], reinterpret_cast<float*>(values.data() + i * half));
  });
  // 3. The replies.
  std::vector<std::int64_t> reply;
  for (int step = 0; step < parts_; ++step) {
    const int dest = (rank_ + step) % parts_, src = (rank_ - step + parts_) % parts_;
    const std::size_t a = first[static_cast<std::size_t>(dest)], b = first[static_cast<std::size_t>(dest) + 1];
    const std::vector<std::int32_t>& mine = requests[static_cast<std::size_t>(src)];
    reply.resize(mine.size() * half);
    for (std::size_t i = 0; i < mine.size(); ++i) {
      const auto p = static_cast<std::size_t>(position[static_cast<std::size_t>(mine[i] - begin_)]);
      std::memcpy(reply.data() + i * half, values.data() + p * half, half * sizeof(std::int64_t));
    }
    const std::vector<std::int64_t> got = comm.sendrecv(reply, src, dest);
    if (got.size() != (b - a) * half) throw Error(ErrorKind::kInternal, "fetch_rows: short reply");
    if (!got.empty()) std::memcpy(rows.row(static_cast<Index>(a)).data(), got.data(), got.size() * sizeof(std::int64_t));
  }
}

double LdaSlice::stats_need(std::size_t words) const {
  if (!shared_lambda_ || parts_ == 1) return 0;
  // stats_layout of this round's words with room for the rows of the largest slice's words
  // in every rank's round (each rank at most as many as the largest round).
  Index largest = 0;
  for (int s = 0; s < parts_; ++s) largest = std::max(largest, slice_begin(v_, parts_, s + 1) - slice_begin(v_, parts_, s));
  const std::size_t u = std::min(static_cast<std::size_t>(largest), static_cast<std::size_t>(parts_) * words);
  return static_cast<double>(stats_layout(words, u, num_topics()).end);
}

void LdaSlice::stats_sync() const {
  if (shared_stats_) shared_stats_->sync();
}

std::span<std::int64_t> LdaSlice::stats_buffer(const comm::Communicator& comm, std::size_t words,
                                               std::vector<std::int64_t>& own, double agreed_need) {
  const auto cells = words * static_cast<std::size_t>(num_topics());
  if (!shared_lambda_) {
    own.resize(cells);
    return own;
  }
  if (agreed_need < stats_need(words))
    throw Error(ErrorKind::kInternal, "stats_buffer: the agreed size is below this rank's need");
  if (static_cast<std::size_t>(agreed_need) > stats_bytes_) {  // the same decision on every rank
    shared_stats_.reset();
    stats_bytes_ = (static_cast<std::size_t>(agreed_need) * 5 / 4 + 4095) / 4096 * 4096;  // room to vary
    shared_stats_ = comm::NodeSharedMemory::create(comm, stats_bytes_);
    if (!shared_stats_)  // every rank: the same decision
      throw Error(ErrorKind::kIo, "the node's shared memory (/dev/shm, or OMPI_MCA_osc_sm_backing_directory) has no room "
                                  "left for a round's expected counts (" + std::to_string(stats_bytes_) +
                                  " bytes a rank); free it, or run with LATENT_NODE_SHARED=0");
  }
  own = std::vector<std::int64_t>();
  return {reinterpret_cast<std::int64_t*>(shared_stats_->segment(rank_) + 64), cells};
}

double LdaSlice::send_stats(const comm::Communicator& comm, std::span<const std::int32_t> words,
                            std::span<const std::int64_t> stats, const std::vector<std::vector<std::int32_t>>& requests,
                            LdaSliceStats& into) {
  const Index k = num_topics();
  if (parts_ == 1) {  // the round's words (distinct) are this slice's, in requests[0]'s order; begin_ is 0
    const std::vector<std::int32_t>& mine = requests[0];
    if (stats.size() != mine.size() * static_cast<std::size_t>(k)) throw Error(ErrorKind::kInternal, "send_stats: wrong size");
    into.add_rows(mine, stats.data());
    return 0;
  }
  if (shared_lambda_) {
    // This rank's counts are in its segment already (stats_buffer), the word count and the
    // words too (fetch_rows). After the barrier each owner adds the rows of its words from
    // every rank's segment; the next round's opening collective (bracketed by stats_sync)
    // orders these reads before the segment is written again.
    const std::byte* out = shared_stats_->segment(rank_);
    if (reinterpret_cast<const std::byte*>(stats.data()) != out + 64 ||
        header_field(out, 0) != static_cast<std::int64_t>(words.size()))
      throw Error(ErrorKind::kInternal,
                  "send_stats: the counts are not in stats_buffer() or fetch_rows did not run this round");
    shared_stats_->fence(comm);
    std::vector<std::int32_t> local;
    for (int r = 0; r < parts_; ++r) {
      const std::byte* in = shared_stats_->segment(r);
      const std::int64_t mr = header_field(in, 0);
      const StatsLayout layout = stats_layout(static_cast<std::size_t>(mr), 0, k);
      const auto* counts = reinterpret_cast<const std::int64_t*>(in + layout.counts);
      const auto* w = reinterpret_cast<const std::int32_t*>(in + layout.words);
      const auto first = owner_ranges({w, static_cast<std::size_t>(mr)}, v_, parts_);
      const auto* a = w + first[static_cast<std::size_t>(rank_)];
      const auto* b = w + first[static_cast<std::size_t>(rank_) + 1];
      local.resize(static_cast<std::size_t>(b - a));
      for (std::size_t i = 0; i < local.size(); ++i) local[i] = a[i] - static_cast<std::int32_t>(begin_);
      into.add_rows(local, counts + static_cast<std::size_t>(a - w) * static_cast<std::size_t>(k));
    }
    return 0;
  }
  const auto first = owner_ranges(words, v_, parts_);
  double sent = 0;
  for (int step = 0; step < parts_; ++step) {
    const int dest = (rank_ + step) % parts_, src = (rank_ - step + parts_) % parts_;
    const std::size_t a = first[static_cast<std::size_t>(dest)], b = first[static_cast<std::size_t>(dest) + 1];
    const std::span<const std::int64_t> out = stats.subspan(a * static_cast<std::size_t>(k), (b - a) * static_cast<std::size_t>(k));
    const std::vector<std::int64_t> got = comm.sendrecv(out, dest, src);
    if (dest != rank_) sent += static_cast<double>(out.size() * sizeof(std::int64_t));
    const std::vector<std::int32_t>& asked = requests[static_cast<std::size_t>(src)];
    if (got.size() != asked.size() * static_cast<std::size_t>(k)) throw Error(ErrorKind::kInternal, "send_stats: wrong size");
    for (std::size_t i = 0; i < asked.size(); ++i) into.add(asked[i] - begin_, got.data() + i * static_cast<std::size_t>(k));
  }
  return sent;
}

void LdaSlice::gather_to_root(const comm::Communicator& comm,
                              const std::function<void(Index, Index, const RowMatrix&)>& piece) const {
  const Index k = num_topics();
  gather_slices_to_root(
      comm, v_, static_cast<std::size_t>(k) * sizeof(double), [&](int s) { return slice_begin(v_, parts_, s); },
      [&](Index a, Index b) {
        return std::string(reinterpret_cast<const char*>(lambda_.row(a - begin_).data()),
                           static_cast<std::size_t>((b - a) * k) * sizeof(double));
      },
      [&](Index a, Index b, const std::string& bytes) {
        RowMatrix block(k, b - a);  // topic-major
        for (Index j = 0; j < b - a; ++j)
          for (Index t = 0; t < k; ++t)
            std::memcpy(&block(t, j), bytes.data() + static_cast<std::size_t>(j * k + t) * sizeof(double), sizeof(double));
        piece(a, b, block);
      });
}

Lda LdaSlice::take_whole(int threads) {
  if (parts_ != 1) throw Error(ErrorKind::kInternal, "LdaSlice::take_whole on more than one rank");
  Lda model(num_topics(), v_, alpha_, eta_);
  model.lambda_vk() = std::move(own_lambda_);
  own_lambda_ = RowMatrix();
  point_at(nullptr, 0);
  model.refresh(threads);
  return model;
}

}  // namespace latent::models
