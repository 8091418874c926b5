#include "latent/comm/communicator.hpp"
#include "latent/core/profile.hpp"

#include <mpi.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <limits>
#include <mutex>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>
#include <new>
#include <vector>

#include "latent/core/control.hpp"
#include "latent/core/error.hpp"

namespace latent::comm {
namespace {

void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) throw Error(ErrorKind::kInternal, std::string("MPI call failed: ") + what);
}

MPI_Datatype cell_type() {
  static MPI_Datatype type = [] {
    MPI_Datatype t;
    MPI_Type_contiguous(4, MPI_INT64_T, &t);
    MPI_Type_commit(&t);
    return t;
  }();
  return type;
}

void merge_cells(void* in, void* inout, int* len, MPI_Datatype*) {
  auto* a = static_cast<const ExactCell*>(in);
  auto* b = static_cast<ExactCell*>(inout);
  for (int i = 0; i < *len; ++i) exact_merge(b[i], a[i]);
}

MPI_Op merge_op() {
  static MPI_Op op = [] {
    MPI_Op o;
    MPI_Op_create(&merge_cells, /*commute=*/1, &o);
    return o;
  }();
  return op;
}

// ---- Which rank stalled: the watchdog's arrival check --------------------------------
//
// A rank's watchdog only sees its own heartbeat. When one rank stops (SIGSTOP, a frozen
// node, a hung file system), the others wait in the next collective and their heartbeats
// stop too, so each of them would blame itself. With a watchdog armed, every collective
// therefore begins with an arrival check on a private communicator: a non-blocking barrier
// that the main thread polls (MPI_THREAD_FUNNELED: only it calls MPI). While it polls, it
// answers queries from other ranks with the number of the collective it waits in. When a
// waiting rank's heartbeat is older than the limit, it asks every other rank where it is:
// the ranks that do not answer within a few seconds have not reached the collective, and
// those are the ranks named. Rank 0 asks first; the others wait a grace period longer, so
// one message names the stalled rank unless rank 0 itself is the one that stopped.

constexpr int kQueryTag = 1, kReplyTag = 2;

enum class Phase : int { kOutside = 0, kArriving = 1, kInside = 2 };

struct Guard {
  MPI_Comm comm = MPI_COMM_NULL;      // MPI_Comm_dup of WORLD, made by MpiSession
  std::atomic<double> limit{0};       // --watchdog-seconds of the armed watchdog (0: none)
  std::atomic<const void*> owner{nullptr};
  std::atomic<Phase> phase{Phase::kOutside};
  std::atomic<std::int64_t> seq{0};   // collectives entered so far (the same on every rank)
  std::atomic<const char*> op{""};
  std::atomic<std::int64_t> arriving_since_ns{0};  // when this rank began to wait at the arrival check
  std::atomic<std::int64_t> inside_since_ns{0};    // when every rank had arrived (the collective proper began)
};

Guard& guard() {
  static Guard g;
  return g;
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Seconds a querying rank waits for answers, and the extra delay of ranks other than 0.
double reply_seconds(double limit) { return std::clamp(limit / 10.0, 1.0, 10.0); }
double grace_seconds(double limit) { return reply_seconds(limit) + 2.0; }

int world_rank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

[[noreturn]] void abort_job(const std::string& message) {
  std::fprintf(stderr, "latent: watchdog: %s; aborting the job\n", message.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, Watchdog::kExitCode);
  std::_Exit(Watchdog::kExitCode);
}

std::string rank_list(const std::vector<int>& ranks) {
  std::string s;
  for (std::size_t i = 0; i < ranks.size(); ++i)
    s += (i == 0 ? "" : i + 1 == ranks.size() ? " and " : ", ") + std::to_string(ranks[i]);
  return s;
}

// Answers other ranks' queries (the number of the collective this rank waits in) and
// drops answers that arrive after this rank stopped asking. Main thread, while arriving.
void serve_queries() {
  Guard& g = guard();
  for (int tag : {kQueryTag, kReplyTag}) {
    for (;;) {
      int flag = 0;
      MPI_Status status;
      MPI_Iprobe(MPI_ANY_SOURCE, tag, g.comm, &flag, &status);
      if (!flag) break;
      std::int64_t value = 0;
      MPI_Recv(&value, 1, MPI_INT64_T, status.MPI_SOURCE, tag, g.comm, MPI_STATUS_IGNORE);
      if (tag == kQueryTag) {  // the asker has posted the receive: this send completes
        const std::int64_t answer = g.seq.load();
        MPI_Send(&answer, 1, MPI_INT64_T, status.MPI_SOURCE, kReplyTag, g.comm);
      }
    }
  }
}

// Asks every other rank which collective it waits in; names those that do not answer in
// time (they have not reached this collective) and aborts the job. Returns if the arrival
// barrier completes meanwhile (the job moved on) or if every rank answered.
void diagnose(MPI_Request& arrival, double limit, double waited) {
  Guard& g = guard();
  int rank = 0, size = 1;
  MPI_Comm_rank(g.comm, &rank);
  MPI_Comm_size(g.comm, &size);
  static std::int64_t mine;  // the queries' buffer outlives this call (their requests are freed)
  mine = g.seq.load();
  std::vector<std::int64_t> where(static_cast<std::size_t>(size), -1);
  std::vector<MPI_Request> replies(static_cast<std::size_t>(size), MPI_REQUEST_NULL),
      queries(static_cast<std::size_t>(size), MPI_REQUEST_NULL);
  for (int q = 0; q < size; ++q) {
    if (q == rank) continue;
    MPI_Irecv(&where[static_cast<std::size_t>(q)], 1, MPI_INT64_T, q, kReplyTag, g.comm,
              &replies[static_cast<std::size_t>(q)]);
    MPI_Isend(&mine, 1, MPI_INT64_T, q, kQueryTag, g.comm, &queries[static_cast<std::size_t>(q)]);
  }
  const std::int64_t deadline = now_ns() + static_cast<std::int64_t>(reply_seconds(limit) * 1e9);
  bool moved_on = false;
  for (;;) {
    // One by one: MPI_Testall leaves every request as it was unless all completed.
    bool all = true;
    for (MPI_Request& r : replies) {
      int got = 0;
      if (r != MPI_REQUEST_NULL) MPI_Test(&r, &got, MPI_STATUS_IGNORE);
      all = all && r == MPI_REQUEST_NULL;
    }
    int done = 0;
    MPI_Test(&arrival, &done, MPI_STATUS_IGNORE);
    if (done) moved_on = true;
    if (all || done || now_ns() > deadline) break;
    serve_queries();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::vector<int> missing, elsewhere;
  for (int q = 0; q < size; ++q) {
    MPI_Request& r = replies[static_cast<std::size_t>(q)];
    if (q == rank) continue;
    if (r != MPI_REQUEST_NULL) {
      missing.push_back(q);
      MPI_Cancel(&r);
      MPI_Wait(&r, MPI_STATUS_IGNORE);
    } else if (where[static_cast<std::size_t>(q)] != mine) {
      elsewhere.push_back(q);
    }
    MPI_Request& s = queries[static_cast<std::size_t>(q)];
    if (s != MPI_REQUEST_NULL) MPI_Request_free(&s);  // eager; completes on its own
  }
  if (moved_on) return;
  const std::string at = "collective #" + std::to_string(mine) + " (" + g.op.load() + ")";
  std::string text;
  if (!missing.empty())
    text = (missing.size() == 1 ? "rank " : "ranks ") + rank_list(missing) + " stalled: " +
           (missing.size() == 1 ? "it has" : "they have") + " not reached " + at + ", where rank " +
           std::to_string(rank) + " has waited for " + (missing.size() == 1 ? "it" : "them") + " for " +
           std::to_string(static_cast<long>(waited)) + " s (limit --watchdog-seconds " +
           std::to_string(static_cast<long>(limit)) + ")";
  for (int q : elsewhere)
    text += (text.empty() ? "" : "; ") + std::string("rank ") + std::to_string(q) + " waits in collective #" +
            std::to_string(where[static_cast<std::size_t>(q)]) + " while rank " + std::to_string(rank) + " waits in " +
            at + " (the ranks disagree on the sequence of collectives: a bug)";
  if (!text.empty()) abort_job(text);
  // Every rank answered from this collective: the barrier completes; the watchdog thread
  // aborts the job if it does not.
}

// Polls the arrival barrier of a collective. Main thread; only with a watchdog armed.
void arrive() {
  Guard& g = guard();
  const double limit = g.limit.load();
  const double first_query = limit + (world_rank() == 0 ? 0.0 : grace_seconds(limit));
  MPI_Request arrival = MPI_REQUEST_NULL;
  MPI_Ibarrier(g.comm, &arrival);
  const std::int64_t start = now_ns();
  g.arriving_since_ns = start;
  g.phase = Phase::kArriving;
  bool asked = false;
  for (;;) {
    int done = 0;
    MPI_Test(&arrival, &done, MPI_STATUS_IGNORE);
    if (done) break;
    serve_queries();
    // Asks once this rank has itself been waiting here longer than the limit (a rank that
    // arrives late after being stopped must not blame the ranks that waited for it).
    const double waited = static_cast<double>(now_ns() - start) * 1e-9;
    if (!asked && waited > first_query && seconds_since_heartbeat() > first_query) {
      asked = true;
      diagnose(arrival, limit, waited);
      if (arrival == MPI_REQUEST_NULL) break;  // completed during the diagnosis
    }
    // Spin for the first 10 ms (collectives are usually short), then sleep briefly.
    if (now_ns() - start > 10'000'000) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

// One collective: counted for --profile (payload bytes and, on destruction, its time),
// numbered, and with a watchdog armed preceded by the arrival check. Main thread.
struct Collective {
  Collective(const char* op, std::size_t bytes) {
    profile::add(profile::Counter::kCommBytes, static_cast<double>(bytes));
    profile::add(profile::Counter::kCollectives, 1);
    Guard& g = guard();
    g.seq.fetch_add(1);
    g.op = op;
    if (g.limit.load() > 0 && g.comm != MPI_COMM_NULL) arrive();
    g.inside_since_ns = now_ns();
    g.phase = Phase::kInside;
  }
  ~Collective() { guard().phase = Phase::kOutside; }
  Collective(const Collective&) = delete;
  Collective& operator=(const Collective&) = delete;
  profile::ScopedTimer timer{profile::Counter::kCommSeconds};
};

// MPI counts are int: split large buffers into pieces.
constexpr std::size_t kMaxChunk = std::size_t{1} << 28;

template <class T>
void allreduce_chunked(T* data, std::size_t n, MPI_Datatype type, MPI_Op op) {
  const Collective collective("allreduce", n * sizeof(T));
  for (std::size_t off = 0; off < n; off += kMaxChunk) {
    const auto count = static_cast<int>(std::min(kMaxChunk, n - off));
    check(MPI_Allreduce(MPI_IN_PLACE, data + off, count, type, op, MPI_COMM_WORLD), "MPI_Allreduce");
  }
}

template <class T>
std::vector<T> allgatherv_impl(std::span<const T> local, MPI_Datatype type, int size) {
  if (size == 1) return {local.begin(), local.end()};
  const auto n = static_cast<long long>(local.size());
  if (n > std::numeric_limits<int>::max()) throw Error(ErrorKind::kInternal, "allgatherv: too many elements");
  const Collective collective("allgather", local.size() * sizeof(T));
  int mine = static_cast<int>(n);
  std::vector<int> counts(static_cast<std::size_t>(size)), displs(static_cast<std::size_t>(size));
  check(MPI_Allgather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, MPI_COMM_WORLD), "MPI_Allgather");
  long long total = 0;
  for (int r = 0; r < size; ++r) {
    displs[static_cast<std::size_t>(r)] = static_cast<int>(total);
    total += counts[static_cast<std::size_t>(r)];
  }
  if (total > std::numeric_limits<int>::max()) throw Error(ErrorKind::kInternal, "allgatherv: too many elements");
  std::vector<T> out(static_cast<std::size_t>(total));
  check(MPI_Allgatherv(local.data(), mine, type, out.data(), counts.data(), displs.data(), type,
                       MPI_COMM_WORLD),
        "MPI_Allgatherv");
  return out;
}

}  // namespace

MpiSession::MpiSession(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    // A process started without mpirun or srun is an MPI singleton, for which Open MPI
    // forks a daemon (orted) that only serves MPI_Comm_spawn and name publishing, neither
    // used here. Isolated, it starts without one: `latent --version` 0.42 -> 0.28 s on the
    // AMD EPYC family 26, every single-process command as much. The parameter is read only
    // by Open MPI's singleton component (ignored under a launcher, and by other MPIs); a
    // value the user set is kept.
    ::setenv("OMPI_MCA_ess_singleton_isolated", "1", 0);
    // A singleton is the whole job, so the only messages are to itself: Open MPI's ob1
    // (shared memory and self) serves it, and choosing it skips probing the other
    // messaging layers (UCX, libfabric), 0.2 s: `latent --version` 0.28 -> 0.08 s on the
    // AMD EPYC family 26. Only where no launcher started the process (mpirun sets
    // OMPI_COMM_WORLD_SIZE, srun PMIX_RANK or PMI_RANK): ranks of a job keep Open MPI's
    // choice (UCX on InfiniBand). A value the user set is kept.
    const bool launched = std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMIX_RANK") != nullptr ||
                          std::getenv("PMI_RANK") != nullptr || std::getenv("PMI_FD") != nullptr;
    if (!launched) ::setenv("OMPI_MCA_pml", "ob1", 0);
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  }
  if (guard().comm == MPI_COMM_NULL) MPI_Comm_dup(MPI_COMM_WORLD, &guard().comm);
}

MpiSession::~MpiSession() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (guard().comm != MPI_COMM_NULL) MPI_Comm_free(&guard().comm);
  MPI_Finalize();
}

void MpiSession::abort(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::abort();
}

struct Watchdog::State {
  std::mutex mutex;
  std::condition_variable cv;
  bool stop = false;
  std::thread thread;
};

Watchdog::Watchdog(double seconds) {
  if (seconds <= 0) return;
  state_ = std::make_unique<State>();
  heartbeat();
  guard().owner = this;
  guard().limit = seconds;
  State* st = state_.get();
  st->thread = std::thread([st, seconds] {
    const int rank = world_rank();
    const std::string limit = "limit --watchdog-seconds " + std::to_string(static_cast<long>(seconds));
    std::unique_lock lock(st->mutex);
    while (!st->cv.wait_for(lock, std::chrono::milliseconds(500), [st] { return st->stop; })) {
      const double idle = seconds_since_heartbeat();
      if (idle <= seconds) continue;
      const Guard& g = guard();
      const std::string at = "collective #" + std::to_string(g.seq.load()) + " (" + g.op.load() + ")";
      const std::string for_s = " for " + std::to_string(static_cast<long>(idle)) + " s";
      switch (g.phase.load()) {
        case Phase::kOutside:  // this rank is stuck computing or reading: it is the one
          abort_job("rank " + std::to_string(rank) + " made no progress" + for_s +
                    ", outside any collective (computing, reading or writing; " + limit + ")");
        case Phase::kArriving: {  // the main thread asks the others and names the stalled rank;
          // this is the fallback if it cannot
          const double waited = static_cast<double>(now_ns() - g.arriving_since_ns.load()) * 1e-9;
          if (waited > seconds + 2 * grace_seconds(seconds) + 5)
            abort_job("rank " + std::to_string(rank) + " has waited for " + std::to_string(static_cast<long>(waited)) +
                      " s to enter " + at +
                      "; the ranks that have not reached it could not be determined (" + limit + ")");
          break;
        }
        case Phase::kInside: {  // every rank had arrived; something stalled inside MPI
          const double inside = static_cast<double>(now_ns() - g.inside_since_ns.load()) * 1e-9;
          if (std::min(idle, inside) > seconds + grace_seconds(seconds))
            abort_job("rank " + std::to_string(rank) + " made no progress" + for_s + " inside " + at +
                      ", which every rank had reached (a rank or the network stalled inside it; " + limit + ")");
          break;
        }
      }
    }
  });
}

Watchdog::~Watchdog() {
  if (!state_) return;
  const void* self = this;
  if (guard().owner.compare_exchange_strong(self, nullptr)) guard().limit = 0;
  {
    std::lock_guard lock(state_->mutex);
    state_->stop = true;
  }
  state_->cv.notify_all();
  state_->thread.join();
}

Communicator Communicator::world() {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return Communicator(rank, size);
}

void Communicator::allreduce(ExactSum& sum) const {
  if (size_ == 1) return;
  auto cells = sum.cells();
  allreduce_chunked(cells.data(), cells.size(), cell_type(), merge_op());
}

void Communicator::allreduce_sum(std::span<std::int64_t> values) const {
  if (size_ > 1) allreduce_chunked(values.data(), values.size(), MPI_INT64_T, MPI_SUM);
}
void Communicator::allreduce_sum_by_slices(std::span<std::int64_t> values) const {
  if (size_ <= 1) return;
  const auto n = static_cast<std::int64_t>(values.size());
  if (n / size_ > std::numeric_limits<int>::max() / 2) {  // counts are ints in MPI-3
    allreduce_sum(values);
    return;
  }
  std::vector<int> counts(static_cast<std::size_t>(size_)), displs(static_cast<std::size_t>(size_));
  for (int r = 0; r < size_; ++r) {
    displs[static_cast<std::size_t>(r)] = static_cast<int>(n * r / size_);
    counts[static_cast<std::size_t>(r)] = static_cast<int>(n * (r + 1) / size_ - n * r / size_);
  }
  std::vector<std::int64_t> slice(static_cast<std::size_t>(counts[static_cast<std::size_t>(rank_)]));
  const Collective collective("reduce-scatter and allgather", values.size() * sizeof(std::int64_t));
  check(MPI_Reduce_scatter(values.data(), slice.data(), counts.data(), MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD),
        "MPI_Reduce_scatter");
  check(MPI_Allgatherv(slice.data(), counts[static_cast<std::size_t>(rank_)], MPI_INT64_T, values.data(), counts.data(),
                       displs.data(), MPI_INT64_T, MPI_COMM_WORLD),
        "MPI_Allgatherv");
}
void Communicator::allreduce_max(std::span<double> values) const {
  if (size_ > 1) allreduce_chunked(values.data(), values.size(), MPI_DOUBLE, MPI_MAX);
}
void Communicator::allreduce_min(std::span<double> values) const {
  if (size_ > 1) allreduce_chunked(values.data(), values.size(), MPI_DOUBLE, MPI_MIN);
}

void Communicator::broadcast(std::string& data, int root) const {
  if (size_ == 1) return;
  const Collective collective("broadcast", data.size());
  long long n = static_cast<long long>(data.size());
  check(MPI_Bcast(&n, 1, MPI_LONG_LONG, root, MPI_COMM_WORLD), "MPI_Bcast");
  data.resize(static_cast<std::size_t>(n));
  check(MPI_Bcast(data.data(), static_cast<int>(n), MPI_CHAR, root, MPI_COMM_WORLD), "MPI_Bcast");
}

std::vector<std::string> Communicator::gather(const std::string& local, int root) const {
  if (size_ == 1) return {local};
  if (local.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()))
    throw Error(ErrorKind::kInternal, "gather: more than 2 GiB from one rank");
  const Collective collective("gather", local.size());
  int mine = static_cast<int>(local.size());
  std::vector<int> counts(static_cast<std::size_t>(size_)), displs(static_cast<std::size_t>(size_));
  check(MPI_Gather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, root, MPI_COMM_WORLD), "MPI_Gather");
  long long total = 0;
  if (rank_ == root)
    for (int r = 0; r < size_; ++r) {
      displs[static_cast<std::size_t>(r)] = static_cast<int>(std::min<long long>(total, std::numeric_limits<int>::max()));
      total += counts[static_cast<std::size_t>(r)];
    }
  // Every rank must learn whether the root can take it, or the Gatherv would hang some.
  long long agreed = total;
  check(MPI_Bcast(&agreed, 1, MPI_LONG_LONG, root, MPI_COMM_WORLD), "MPI_Bcast");
  if (agreed > std::numeric_limits<int>::max())
    throw Error(ErrorKind::kInternal, "gather: more than 2 GiB in total");
  std::string all(rank_ == root ? static_cast<std::size_t>(total) : 0, '\0');
  check(MPI_Gatherv(local.data(), mine, MPI_CHAR, all.data(), counts.data(), displs.data(), MPI_CHAR, root,
                    MPI_COMM_WORLD),
        "MPI_Gatherv");
  std::vector<std::string> out;
  if (rank_ == root)
    for (int r = 0; r < size_; ++r)
      out.push_back(all.substr(static_cast<std::size_t>(displs[static_cast<std::size_t>(r)]),
                               static_cast<std::size_t>(counts[static_cast<std::size_t>(r)])));
  return out;
}

std::vector<double> Communicator::allgatherv(std::span<const double> local) const {
  return allgatherv_impl(local, MPI_DOUBLE, size_);
}
std::vector<std::int64_t> Communicator::allgatherv(std::span<const std::int64_t> local) const {
  return allgatherv_impl(local, MPI_INT64_T, size_);
}

std::vector<std::int64_t> Communicator::alltoallv(std::span<const std::int64_t> local,
                                                 std::span<const std::int64_t> counts_to) const {
  if (static_cast<int>(counts_to.size()) != size_) throw Error(ErrorKind::kInternal, "alltoallv: one count per rank");
  if (size_ == 1) return {local.begin(), local.end()};
  const auto n = static_cast<std::size_t>(size_);
  std::vector<int> send(n), sdispl(n), recv(n), rdispl(n);
  long long total = 0;
  for (std::size_t r = 0; r < n; ++r) {
    if (counts_to[r] < 0 || counts_to[r] > std::numeric_limits<int>::max() || total > std::numeric_limits<int>::max())
      throw Error(ErrorKind::kInternal, "alltoallv: more than 2^31 elements");
    send[r] = static_cast<int>(counts_to[r]);
    sdispl[r] = static_cast<int>(total);
    total += counts_to[r];
  }
  if (total != static_cast<long long>(local.size())) throw Error(ErrorKind::kInternal, "alltoallv: counts do not add up");
  const Collective collective("all-to-all", local.size() * sizeof(std::int64_t));
  check(MPI_Alltoall(send.data(), 1, MPI_INT, recv.data(), 1, MPI_INT, MPI_COMM_WORLD), "MPI_Alltoall");
  long long got = 0;
  for (std::size_t r = 0; r < n; ++r) {
    rdispl[r] = static_cast<int>(std::min<long long>(got, std::numeric_limits<int>::max()));
    got += recv[r];
  }
  // Every rank must agree to go on, or the Alltoallv would hang the others.
  long long too_many = got > std::numeric_limits<int>::max() ? 1 : 0;
  check(MPI_Allreduce(MPI_IN_PLACE, &too_many, 1, MPI_LONG_LONG, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce");
  if (too_many != 0) throw Error(ErrorKind::kInternal, "alltoallv: more than 2^31 elements to one rank");
  std::vector<std::int64_t> out(static_cast<std::size_t>(got));
  check(MPI_Alltoallv(local.data(), send.data(), sdispl.data(), MPI_INT64_T, out.data(), recv.data(), rdispl.data(),
                      MPI_INT64_T, MPI_COMM_WORLD),
        "MPI_Alltoallv");
  return out;
}

std::vector<std::int64_t> Communicator::sendrecv(std::span<const std::int64_t> send, int dest, int source) const {
  if (dest == rank_ && source == rank_) return {send.begin(), send.end()};
  if (send.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()))
    throw Error(ErrorKind::kInternal, "sendrecv: more than 2^31 elements");
  const Collective collective("send-receive", send.size() * sizeof(std::int64_t));
  long long mine = static_cast<long long>(send.size()), theirs = 0;
  check(MPI_Sendrecv(&mine, 1, MPI_LONG_LONG, dest, 11, &theirs, 1, MPI_LONG_LONG, source, 11, MPI_COMM_WORLD,
                     MPI_STATUS_IGNORE),
        "MPI_Sendrecv");
  if (theirs < 0 || theirs > std::numeric_limits<int>::max())
    throw Error(ErrorKind::kInternal, "sendrecv: more than 2^31 elements");
  std::vector<std::int64_t> out(static_cast<std::size_t>(theirs));
  check(MPI_Sendrecv(send.data(), static_cast<int>(mine), MPI_INT64_T, dest, 12, out.data(), static_cast<int>(theirs),
                     MPI_INT64_T, source, 12, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
        "MPI_Sendrecv");
  return out;
}

void Communicator::ring_shift(std::span<std::byte> data, std::size_t chunk_bytes) const {
  if (size_ == 1 || data.empty()) return;
  const std::size_t chunk = std::clamp<std::size_t>(chunk_bytes, 1, std::size_t{1} << 30);
  const int next = (rank_ + 1) % size_, prev = (rank_ + size_ - 1) % size_;
  const Collective collective("ring shift", data.size());
  for (std::size_t off = 0; off < data.size(); off += chunk) {
    const auto len = static_cast<int>(std::min(chunk, data.size() - off));
    check(MPI_Sendrecv_replace(data.data() + off, len, MPI_BYTE, next, 7, prev, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
          "MPI_Sendrecv_replace");
  }
}

void Communicator::barrier() const {
  if (size_ == 1) return;
  const Collective collective("barrier", 0);
  check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
}

void Communicator::agree(std::exception_ptr local_error) const {
  ErrorKind kind = ErrorKind::kInternal;
  std::string message;
  if (local_error) {
    try {
      std::rethrow_exception(local_error);
    } catch (const Error& e) {
      kind = e.kind();
      message = e.what();
    } catch (const std::bad_alloc&) {
      message = "out of memory (std::bad_alloc); lower --block-rows or use more ranks";
    } catch (const std::exception& e) {
      message = e.what();
    } catch (...) {
      message = "unknown exception";
    }
  }
  if (size_ == 1) {
    if (local_error) throw Error(kind, message);
    return;
  }
  double first_failing = local_error ? rank_ : size_;
  allreduce_chunked(&first_failing, 1, MPI_DOUBLE, MPI_MIN);
  const int root = static_cast<int>(first_failing);
  if (root == size_) return;
  std::string payload;
  if (rank_ == root) payload = std::string(1, static_cast<char>(kind)) + message;
  broadcast(payload, root);
  const auto agreed_kind = static_cast<ErrorKind>(payload.empty() ? 0 : payload[0]);
  throw Error(agreed_kind, "rank " + std::to_string(root) + ": " + payload.substr(1));
}

struct NodeSharedMemory::Handles {
  MPI_Comm node = MPI_COMM_NULL;
  MPI_Win win = MPI_WIN_NULL;
};

std::unique_ptr<NodeSharedMemory> NodeSharedMemory::create(const Communicator& comm, std::size_t bytes) {
  if (comm.size() == 1) return nullptr;
  // The same decision on every rank: LATENT_NODE_SHARED=0 anywhere, or a node that does not
  // hold the whole job, turns it off everywhere.
  const char* env = std::getenv("LATENT_NODE_SHARED");
  bool wanted = env == nullptr || std::string_view(env) != "0";
  // The window is a file in Open MPI's backing directory (/dev/shm unless
  // OMPI_MCA_osc_sm_backing_directory says otherwise), whose pages are only claimed when
  // touched: a tmpfs too small for it (a container's 64 MiB /dev/shm) would end the job with
  // SIGBUS mid-fit. So the node's total, with room to spare, must be free there now. (This
  // sum is the first collective: a rank that never arrives is named here by the Watchdog,
  // not in the raw MPI calls below.)
  std::vector<std::int64_t> total{static_cast<std::int64_t>(std::min<std::size_t>(bytes, std::size_t{1} << 60))};
  comm.allreduce_sum(total);
  const char* dir = std::getenv("OMPI_MCA_osc_sm_backing_directory");
  struct statvfs fs {};
  if (statvfs(dir != nullptr && *dir != '\0' ? dir : "/dev/shm", &fs) != 0 ||
      static_cast<double>(fs.f_bavail) * static_cast<double>(fs.f_frsize) <
          1.25 * static_cast<double>(total[0]) + 8.0 * 1048576.0)
    wanted = false;
  auto handles = std::make_unique<Handles>();
  check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &handles->node),
        "MPI_Comm_split_type");
  int node_size = 0;
  MPI_Comm_size(handles->node, &node_size);
  std::vector<double> ok{wanted && node_size == comm.size() ? 1.0 : 0.0};
  comm.allreduce_min(ok);
  if (ok[0] == 0.0) {
    MPI_Comm_free(&handles->node);
    return nullptr;
  }
  constexpr std::size_t kAlign = 64;
  std::unique_ptr<NodeSharedMemory> shared(new NodeSharedMemory());
  MPI_Info info = MPI_INFO_NULL;
  MPI_Info_create(&info);
  MPI_Info_set(info, "alloc_shared_noncontig", "true");  // segments need not be adjacent
  void* base = nullptr;
  // Open MPI places segments after a header, so each is aligned here (by the same offset in
  // every process: a mapping keeps the offset within its pages).
  const int rc = MPI_Win_allocate_shared(static_cast<MPI_Aint>(bytes + kAlign), 1, info, handles->node, &base,
                                         &handles->win);
  MPI_Info_free(&info);
  if (rc != MPI_SUCCESS) {
    MPI_Comm_free(&handles->node);
    throw Error(ErrorKind::kInternal, "MPI_Win_allocate_shared failed for " + std::to_string(bytes) + " bytes a rank");
  }
  MPI_Win_lock_all(MPI_MODE_NOCHECK, handles->win);  // a passive epoch for MPI_Win_sync
  shared->handles_ = std::move(handles);  // from here the destructor frees the window
  // The node communicator holds every rank, ranked as in the world (key 0, ties by rank).
  shared->segments_.resize(static_cast<std::size_t>(comm.size()));
  for (int r = 0; r < comm.size(); ++r) {
    MPI_Aint size = 0;
    int unit = 0;
    void* p = nullptr;
    MPI_Win_shared_query(shared->handles_->win, r, &size, &unit, &p);
    const auto at = reinterpret_cast<std::uintptr_t>(p);
    shared->segments_[static_cast<std::size_t>(r)] = static_cast<std::byte*>(p) + (kAlign - at % kAlign) % kAlign;
  }
  return shared;
}

NodeSharedMemory::~NodeSharedMemory() {
  if (!handles_) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (handles_->win != MPI_WIN_NULL) {
    MPI_Win_unlock_all(handles_->win);
    MPI_Win_free(&handles_->win);
  }
  if (handles_->node != MPI_COMM_NULL) MPI_Comm_free(&handles_->node);
}

void NodeSharedMemory::sync() const { MPI_Win_sync(handles_->win); }

void NodeSharedMemory::fence(const Communicator& comm) const {
  sync();
  comm.barrier();
  sync();
}

std::string mpi_library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING] = {};
  int length = 0;
  MPI_Get_library_version(text, &length);
  std::string out(text, static_cast<std::size_t>(std::max(length, 0)));
  const auto eol = out.find_first_of("\n,");
  return out.substr(0, eol);
}

}  // namespace latent::comm
