#pragma once
/// \file Typed collectives over MPI_COMM_WORLD (the only place that sees <mpi.h>).
/// Every member function is collective over all ranks unless marked "local" or
/// "point-to-point"; all ranks must call it in the same order with matching sizes.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "latent/core/exact_sum.hpp"

namespace latent::comm {

/// Initialises MPI (MPI_THREAD_FUNNELED: only the main thread calls MPI) for the lifetime
/// of the object and finalises it on destruction. Works with and without mpirun/srun
/// (singleton start). Create exactly one, in main() or a test main. Also duplicates
/// MPI_COMM_WORLD (collectively) for the watchdog's arrival checks.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  /// Ends the whole job at once with `code` on every rank (MPI_Abort). For what cannot be
  /// agreed, such as a stalled collective.
  [[noreturn]] static void abort(int code);
};

/// The MPI library's version line (MPI_Get_library_version: "Open MPI v4.1.4, ..."), its
/// first line only. Local; needs no initialised MPI.
std::string mpi_library_version();

class Communicator {
 public:
  /// The world communicator. Requires a live MpiSession. Local.
  static Communicator world();
  /// One process without MPI (rank 0 of 1): every collective is local and makes no MPI
  /// call, so it needs no MpiSession (the Python module's in-process fits, docs/PYTHON.md).
  /// Local.
  static Communicator single_process() noexcept { return Communicator(0, 1); }

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  bool is_root() const noexcept { return rank_ == 0; }

  /// Order-independent exact sum of ExactCell vectors: the reduction that makes results
  /// identical for any number of ranks (docs/ARCHITECTURE.md §5.3).
  void allreduce(ExactSum& sum) const;
  /// Integer sums, exact.
  void allreduce_sum(std::span<std::int64_t> values) const;
  /// The same result by reduce-scatter (rank r sums slice r) then allgather: the
  /// decomposition of a sliced M-step; `latent bench-allreduce` compares the two.
  void allreduce_sum_by_slices(std::span<std::int64_t> values) const;
  /// Elementwise max / min of doubles (exact, order-independent).
  void allreduce_max(std::span<double> values) const;
  void allreduce_min(std::span<double> values) const;

  /// Broadcasts bytes from `root`; on other ranks `data` is replaced.
  void broadcast(std::string& data, int root) const;
  /// Gathers every rank's bytes on `root`: there, element r is rank r's `local`; elsewhere
  /// the result is empty. The total must stay below 2 GiB (Error kInternal otherwise).
  std::vector<std::string> gather(const std::string& local, int root) const;
  /// Concatenates every rank's vector in rank order, on every rank.
  std::vector<double> allgatherv(std::span<const double> local) const;
  std::vector<std::int64_t> allgatherv(std::span<const std::int64_t> local) const;

  /// Personalised all-to-all: `local` holds the elements for rank 0, then rank 1, ...
  /// (`counts_to[r]` of them for rank r; size() entries). Returns what every rank sent to
  /// this one, concatenated in source-rank order. Counts per pair must stay below 2^31
  /// elements (Error kInternal otherwise).
  std::vector<std::int64_t> alltoallv(std::span<const std::int64_t> local, std::span<const std::int64_t> counts_to) const;
  /// One step of a pairwise exchange: sends `send` to rank `dest` and returns what rank
  /// `source` sends to this one in the same step (any length; the count travels first).
  /// Every rank takes part in the step with its own (dest, source), as in a shift schedule
  /// (dest = rank + s, source = rank − s, mod size); dest == source == rank() copies. At
  /// most 2^31 − 1 elements per message (Error kInternal otherwise). Collective over the
  /// pairs of the schedule.
  std::vector<std::int64_t> sendrecv(std::span<const std::int64_t> send, int dest, int source) const;
  /// Ring shift in place: `data` goes to rank + 1 (mod size) and is replaced by the bytes of
  /// rank − 1, in pieces of at most `chunk_bytes` (so that MPI's temporary buffer stays
  /// that small: MPI_Sendrecv_replace). Every rank passes the same size. Collective.
  void ring_shift(std::span<std::byte> data, std::size_t chunk_bytes) const;

  void barrier() const;

  /// Fail-together consensus (docs/ARCHITECTURE.md §6 rule 1). Every rank passes its pending
  /// exception (or null). If any rank failed, every rank throws the same latent::Error:
  /// kind and message of the lowest failing rank, prefixed with "rank R: " when the job
  /// has more than one rank. Returns normally only when every rank is fine.
  void agree(std::exception_ptr local_error) const;

 private:
  Communicator(int rank, int size) : rank_(rank), size_(size) {}
  int rank_;
  int size_;
};

/// Memory shared by the ranks of a job that runs on one node: an MPI-3 shared-memory window
/// (MPI_Win_allocate_shared), in which every rank writes its own segment and reads the
/// others' in place, for exchanges that need no copy and no reduction by MPI (the VAE's
/// micro-batch gradients and Adam's state, docs/ARCHITECTURE.md §5.10; the LDA's λ slices
/// and expected counts, §5.8). Used only when every rank of the job
/// is on one node (MPI_Comm_split_type with MPI_COMM_TYPE_SHARED gives the whole world) and
/// there are at least two; elsewhere callers keep their collectives. The environment
/// variable LATENT_NODE_SHARED=0 turns it off (the tests compare the two paths).
class NodeSharedMemory {
 public:
  /// Collective. Each rank passes the length of its own segment (ranks may differ; 0 is
  /// allowed); the segment is at least that long and starts on a 64-byte boundary. Returns
  /// null (the same decision on every rank) for one rank, for a job spread over several
  /// nodes, under LATENT_NODE_SHARED=0, or when the filesystem that backs the window (Open
  /// MPI's osc_sm_backing_directory, /dev/shm by default) has less than 1.25 times the
  /// node's total plus 8 MiB free on some rank (its pages are claimed only when touched, so
  /// a small tmpfs would otherwise end the job with SIGBUS). Throws Error(kInternal) when
  /// MPI cannot allocate the window.
  static std::unique_ptr<NodeSharedMemory> create(const Communicator& comm, std::size_t bytes);
  /// Frees the window: collective (every rank destroys it at the same point, as every rank
  /// unwinds from an agreed error together).
  ~NodeSharedMemory();
  NodeSharedMemory(const NodeSharedMemory&) = delete;
  NodeSharedMemory& operator=(const NodeSharedMemory&) = delete;

  /// Rank `rank`'s segment (any rank's, readable and writable from this one). Local.
  std::byte* segment(int rank) const { return segments_[static_cast<std::size_t>(rank)]; }
  /// A memory barrier for the window (MPI_Win_sync), local: call it after writing and before
  /// a collective that every rank enters after its writes (a barrier, an allreduce), and
  /// again after that collective before reading what the other ranks wrote. Together they
  /// make the writes before the collective visible to the reads after it (MPI-3.1 §11.5.4,
  /// the unified memory model's "Win_sync, barrier, Win_sync").
  void sync() const;
  /// Collective: sync(), comm.barrier(), sync(). Every rank's writes to the window before
  /// the call are visible to every rank's reads after it. `comm` is the communicator the
  /// window was created on.
  void fence(const Communicator& comm) const;

 private:
  struct Handles;
  NodeSharedMemory() = default;
  std::unique_ptr<Handles> handles_;
  std::vector<std::byte*> segments_;
};

/// Aborts the whole job (MPI_Abort, exit code 124) when this rank makes no progress
/// (no latent::heartbeat()) for `seconds`: a stalled collective or a hung rank must not
/// burn a day of cluster time. The message names the rank that stalled: this rank if it is
/// stuck outside any collective (its watchdog thread reports); while it waits for others,
/// the ranks that have not reached the collective. For the latter, while a watchdog is
/// armed every collective starts with an arrival check on a private communicator (a
/// non-blocking barrier polled by the main thread, which answers the other ranks' queries);
/// a rank that has waited there longer than `seconds` asks every other rank which
/// collective it is in and names those that do not answer (rank 0 first, the others after
/// a grace period). Construct and destroy at the same point of the collective sequence on
/// every rank (it changes what each collective does). Inactive if seconds <= 0. Stops on
/// destruction.
class Watchdog {
 public:
  explicit Watchdog(double seconds);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;
  static constexpr int kExitCode = 124;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

/// Runs `fn`, capturing any exception, then agrees across ranks (Communicator::agree).
template <class Fn>
void run_agreed(const Communicator& comm, Fn&& fn) {
  std::exception_ptr error;
  try {
    fn();
  } catch (...) {
    error = std::current_exception();
  }
  comm.agree(error);
}

/// The same where the communicator is optional (an importer run on one process without
/// MPI): `comm` null runs `fn` and lets its exception propagate.
template <class Fn>
void run_agreed(const Communicator* comm, Fn&& fn) {
  if (comm == nullptr)
    fn();
  else
    run_agreed(*comm, std::forward<Fn>(fn));
}

}  // namespace latent::comm
