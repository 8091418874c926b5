#include "latent/comm/communicator.hpp"
#include "latent/core/profile.hpp"

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <limits>
#include <mutex>
#include <thread>
#include <new>

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

// Counts one collective for --profile: its payload bytes and, on destruction, its time.
struct Traffic {
  explicit Traffic(std::size_t bytes) noexcept {
    profile::add(profile::Counter::kCommBytes, static_cast<double>(bytes));
    profile::add(profile::Counter::kCollectives, 1);
  }
  profile::ScopedTimer timer{profile::Counter::kCommSeconds};
};

// MPI counts are int: split large buffers into pieces.
constexpr std::size_t kMaxChunk = std::size_t{1} << 28;

template <class T>
void allreduce_chunked(T* data, std::size_t n, MPI_Datatype type, MPI_Op op) {
  const Traffic traffic(n * sizeof(T));
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
  const Traffic traffic(local.size() * sizeof(T));
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
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  }
}

MpiSession::~MpiSession() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
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
  State* st = state_.get();
  st->thread = std::thread([st, seconds] {
    std::unique_lock lock(st->mutex);
    while (!st->cv.wait_for(lock, std::chrono::milliseconds(500), [st] { return st->stop; })) {
      const double idle = seconds_since_heartbeat();
      if (idle > seconds) {
        int rank = 0;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        std::fprintf(stderr, "latent: watchdog: rank %d made no progress for %.0f s (limit --watchdog-seconds %.0f); aborting the job\n",
                     rank, idle, seconds);
        std::fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, kExitCode);
        std::_Exit(kExitCode);
      }
    }
  });
}

Watchdog::~Watchdog() {
  if (!state_) return;
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
  const Traffic traffic(values.size() * sizeof(std::int64_t));
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
  const Traffic traffic(data.size());
  long long n = static_cast<long long>(data.size());
  check(MPI_Bcast(&n, 1, MPI_LONG_LONG, root, MPI_COMM_WORLD), "MPI_Bcast");
  data.resize(static_cast<std::size_t>(n));
  check(MPI_Bcast(data.data(), static_cast<int>(n), MPI_CHAR, root, MPI_COMM_WORLD), "MPI_Bcast");
}

std::vector<double> Communicator::allgatherv(std::span<const double> local) const {
  return allgatherv_impl(local, MPI_DOUBLE, size_);
}
std::vector<std::int64_t> Communicator::allgatherv(std::span<const std::int64_t> local) const {
  return allgatherv_impl(local, MPI_INT64_T, size_);
}

void Communicator::barrier() const {
  if (size_ == 1) return;
  const Traffic traffic(0);
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

}  // namespace latent::comm
