#pragma once
/// \file The streaming machinery shared by every block type (dense rows, CSR documents):
/// one I/O thread per pass reads a rank's blocks in order into a bounded prefetch queue,
/// so reading overlaps compute and memory stays at a few blocks, plus an optional cache
/// that keeps every block after the first pass when the rank's data fits a byte budget.
/// A pass may instead read each block in the consumer's next() (ReadMode::kCaller): the
/// block pipelines of latent/train/block_reduce.hpp do so with two or more threads, where
/// another thread computes while one reads, and an I/O thread would be one thread more
/// than the cores asked for (docs/PERFORMANCE.md §1, Zen 4: "Streaming with two threads").
#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "latent/core/control.hpp"
#include "latent/core/profile.hpp"
#include "latent/io/block_plan.hpp"

namespace latent::io {

/// Where a pass reads its blocks.
enum class ReadMode {
  kIoThread,  ///< a pass's own I/O thread reads ahead into the prefetch queue
  kCaller,    ///< next() reads the block on the calling thread (no read-ahead, no extra thread)
};

template <class Block>
class BlockStream {
 public:
  /// Reads one block; created once per pass and used only on that pass's I/O thread.
  using Reader = std::function<Block(const BlockRef&)>;
  using ReaderFactory = std::function<Reader()>;

  /// `blocks`: this rank's blocks in order. `cache`: keep the blocks of the first complete
  /// pass in memory and serve later passes from there. Local.
  BlockStream(std::vector<BlockRef> blocks, ReaderFactory factory, int prefetch_blocks, bool cache)
      : blocks_(std::move(blocks)), factory_(std::move(factory)),
        prefetch_(prefetch_blocks < 1 ? 1 : prefetch_blocks), cache_enabled_(cache) {}
  ~BlockStream() = default;
  BlockStream(const BlockStream&) = delete;
  BlockStream& operator=(const BlockStream&) = delete;

  /// Starts a pass over the blocks (stops any unfinished pass), read as `mode` says (a
  /// cached stream reads nothing). Local.
  void start_pass(ReadMode mode = ReadMode::kIoThread) {
    pass_.reset();
    caller_reader_ = nullptr;
    idle_readers_.clear();
    cache_cursor_ = 0;
    if (cache_complete_) return;
    if (cache_enabled_) cache_.clear();
    if (mode == ReadMode::kCaller) {
      caller_reader_ = factory_();
      caller_cursor_ = 0;
      return;
    }
    pass_ = std::make_unique<Pass>();
    Pass* pass = pass_.get();
    pass->thread = std::thread([this, pass] {
      try {
        Reader read = factory_();
        for (const auto& ref : blocks_) {
          std::shared_ptr<const Block> block;
          {
            const profile::ScopedTimer timer(profile::Counter::kReadSeconds);
            block = std::make_shared<const Block>(read(ref));
          }
          std::unique_lock lock(pass->mutex);
          if (pass->queue.size() >= static_cast<std::size_t>(prefetch_)) {
            // Full: sleep until the consumer has drained it to the low-water mark.
            pass->reader_waiting = true;
            pass->space.wait(lock, [&] { return pass->stop || pass->queue.size() <= low_water(); });
            pass->reader_waiting = false;
          }
          if (pass->stop) return;
          pass->queue.push_back(std::move(block));
          const bool wake = pass->consumer_waiting;
          lock.unlock();  // notified after unlocking, so the woken thread does not block on the mutex
          if (wake) pass->ready.notify_one();
        }
      } catch (...) {
        std::lock_guard lock(pass->mutex);
        pass->error = std::current_exception();
      }
      std::lock_guard lock(pass->mutex);
      pass->done = true;
      pass->ready.notify_one();
    });
    // Named for top -H, perf and gdb (at most 15 characters); no result depends on it.
    pthread_setname_np(pass->thread.native_handle(), kIoThreadName);
  }

  /// The name of a pass's I/O thread (/proc/PID/task/TID/comm).
  static constexpr const char* kIoThreadName = "latent-io";

  /// The next block of the pass, or null at its end. Rethrows the reader's error (from the
  /// I/O thread, or thrown here in ReadMode::kCaller). Call from one thread at a time, each
  /// call ordered after the previous one (any thread of the pass may make it).
  std::shared_ptr<const Block> next() {
    stop_point();  // a stop signal ends commands other than fit here (latent/core/control.hpp)
    if (cache_complete_) return cache_cursor_ < cache_.size() ? cache_[cache_cursor_++] : nullptr;
    if (caller_reader_) return next_read_here();
    if (!pass_) return nullptr;
    Pass* pass = pass_.get();
    std::unique_lock lock(pass->mutex);
    if (pass->queue.empty() && !pass->done) {
      const profile::ScopedTimer timer(profile::Counter::kReadWaitSeconds);
      pass->consumer_waiting = true;
      pass->ready.wait(lock, [&] { return !pass->queue.empty() || pass->done; });
      pass->consumer_waiting = false;
    }
    if (!pass->queue.empty()) {
      auto block = std::move(pass->queue.front());
      pass->queue.pop_front();
      const bool wake = pass->reader_waiting && pass->queue.size() <= low_water();
      lock.unlock();
      if (wake) pass->space.notify_one();
      if (cache_enabled_) cache_.push_back(block);
      return block;
    }
    const std::exception_ptr error = pass->error;
    lock.unlock();
    pass_.reset();
    if (error) {
      cache_.clear();
      std::rethrow_exception(error);
    }
    if (cache_enabled_) cache_complete_ = cache_.size() == blocks_.size();
    return nullptr;
  }

  /// ReadMode::kCaller, as an alternative to next(): claims the pass's next block without
  /// reading it, returning its index, or -1 at the end of the pass (or when the cache
  /// serves the pass: use next() then). Called as next() is (one call at a time, in order);
  /// the claimed blocks are then read by read_claimed() on any threads, concurrently. Local.
  std::ptrdiff_t claim() {
    stop_point();
    if (!caller_reader_ || caller_cursor_ == blocks_.size()) return -1;
    if (caller_cursor_ == 0 && cache_enabled_) {
      cache_.assign(blocks_.size(), nullptr);
      claimed_reads_ = 0;
    }
    return static_cast<std::ptrdiff_t>(caller_cursor_++);
  }

  /// Reads block i (from claim()) on the calling thread: thread-safe, each concurrent call
  /// with a reader of its own from the factory (kept for the pass). A read error throws
  /// here; the pass's partial cache is then dropped at the next start_pass(). Local.
  std::shared_ptr<const Block> read_claimed(std::size_t i) {
    Reader reader;
    {
      std::lock_guard lock(readers_mutex_);
      if (!idle_readers_.empty()) {
        reader = std::move(idle_readers_.back());
        idle_readers_.pop_back();
      }
    }
    if (!reader) reader = factory_();
    std::shared_ptr<const Block> block;
    {
      const profile::ScopedTimer timer(profile::Counter::kReadSeconds);
      block = std::make_shared<const Block>(reader(blocks_.at(i)));
    }
    {
      std::lock_guard lock(readers_mutex_);
      idle_readers_.push_back(std::move(reader));
      if (cache_enabled_) {
        cache_[i] = block;
        if (++claimed_reads_ == blocks_.size()) cache_complete_ = true;
      }
    }
    return block;
  }

  /// Stops the current pass early and joins the I/O thread.
  void cancel_pass() {
    pass_.reset();
    caller_reader_ = nullptr;
    idle_readers_.clear();
  }

  std::span<const BlockRef> blocks() const noexcept { return blocks_; }
  /// True once every block is held in memory.
  bool cached() const noexcept { return cache_complete_; }

 private:
  // The queue is refilled from the low-water mark (half the prefetch depth) up to full, so
  // the I/O thread is woken once per prefetch/2 blocks rather than once per block (each
  // wake-up of a sleeping thread costs a system call and, on a VM, an interrupt).
  std::size_t low_water() const noexcept { return static_cast<std::size_t>(prefetch_ / 2); }

  // ReadMode::kCaller: the next block read on this thread, or null (and the pass over) at
  // the end; a read error ends the pass and drops a partial cache, as on the I/O thread.
  std::shared_ptr<const Block> next_read_here() {
    if (caller_cursor_ == blocks_.size()) {
      caller_reader_ = nullptr;
      if (cache_enabled_) cache_complete_ = cache_.size() == blocks_.size();
      return nullptr;
    }
    std::shared_ptr<const Block> block;
    try {
      const profile::ScopedTimer timer(profile::Counter::kReadSeconds);
      block = std::make_shared<const Block>(caller_reader_(blocks_[caller_cursor_]));
    } catch (...) {
      caller_reader_ = nullptr;
      cache_.clear();
      throw;
    }
    ++caller_cursor_;
    if (cache_enabled_) cache_.push_back(block);
    return block;
  }

  struct Pass {
    std::mutex mutex;
    std::condition_variable ready, space;  // a block was queued (or done); room below the low-water mark
    std::deque<std::shared_ptr<const Block>> queue;
    std::exception_ptr error;
    bool done = false, consumer_waiting = false, reader_waiting = false;
    std::atomic<bool> stop{false};
    std::thread thread;
    ~Pass() {
      {
        std::lock_guard lock(mutex);
        stop = true;
      }
      space.notify_all();
      if (thread.joinable()) thread.join();
    }
  };

  std::vector<BlockRef> blocks_;
  ReaderFactory factory_;
  int prefetch_;
  bool cache_enabled_;
  bool cache_complete_ = false;
  std::size_t cache_cursor_ = 0;
  std::vector<std::shared_ptr<const Block>> cache_;
  std::unique_ptr<Pass> pass_;
  Reader caller_reader_;  // set during a ReadMode::kCaller pass
  std::size_t caller_cursor_ = 0;
  // read_claimed(): readers not in use, and the blocks read into the cache this pass.
  std::mutex readers_mutex_;
  std::vector<Reader> idle_readers_;
  std::size_t claimed_reads_ = 0;
};

}  // namespace latent::io
