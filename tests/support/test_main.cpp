// gtest main for every test binary: one MPI session, and failures printed by every rank
// (by default only rank 0 prints, so a failure on rank 1 would be invisible).
#include <gtest/gtest.h>
#include <malloc.h>

#include <iostream>

#include "latent/comm/communicator.hpp"

namespace {

class AllRanksFailurePrinter : public testing::EmptyTestEventListener {
 public:
  explicit AllRanksFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const testing::TestPartResult& r) override {
    if (r.failed())
      std::cerr << "[rank " << rank_ << "] FAILURE " << (r.file_name() ? r.file_name() : "?") << ":" << r.line_number()
                << "\n" << r.summary() << std::endl;
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  latent::comm::MpiSession session(&argc, &argv);
  testing::InitGoogleTest(&argc, argv);
  const auto comm = latent::comm::Communicator::world();
  auto& listeners = testing::UnitTest::GetInstance()->listeners();
  if (comm.rank() != 0) delete listeners.Release(listeners.default_result_printer());
  if (comm.size() > 1) listeners.Append(new AllRanksFailurePrinter(comm.rank()));
  const int local = RUN_ALL_TESTS();
  // Every rank must agree on success, or ctest would trust rank 0 alone.
  std::vector<std::int64_t> failed{local != 0 ? 1 : 0};
  comm.allreduce_sum(failed);
  return failed[0] != 0 ? 1 : 0;
}
