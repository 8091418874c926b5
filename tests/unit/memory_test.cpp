#include <gtest/gtest.h>

#include <string>

#include "latent/core/error.hpp"
#include "latent/train/memory.hpp"

namespace {

using latent::Error;
using latent::ErrorKind;
using latent::train::check_memory;
using latent::train::gib_text;
using latent::train::MemoryEstimate;

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

TEST(Memory, GibTextKeepsThreeSignificantDigits) {
  EXPECT_EQ(gib_text(12.34 * kGiB), "12.3");
  EXPECT_EQ(gib_text(1.234 * kGiB), "1.23");
  EXPECT_EQ(gib_text(0.0523 * kGiB), "0.0523");
  EXPECT_EQ(gib_text(0.05 * kGiB), "0.0500");
  EXPECT_EQ(gib_text(1234.0 * kGiB), "1234.0");
  EXPECT_EQ(gib_text(0.0), "0.0");
}

// A need just above a small budget reads as larger than the budget (it printed "needs about
// 0.1 GiB ... but only 0.1 GiB are available" for --memory-budget 0.05).
TEST(Memory, RefusalShowsANeedAboveTheBudgetAsLarger) {
  MemoryEstimate need;
  need.bytes = 0.0523 * kGiB;
  need.breakdown = "model 0.05 GiB";
  EXPECT_NO_THROW(check_memory(need, 0.06 * kGiB, "advice"));
  try {
    check_memory(need, 0.05 * kGiB, "use more ranks");
    FAIL() << "no refusal";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUsage);
    const std::string m = e.what();
    EXPECT_NE(m.find("needs about 0.0523 GiB per rank (model 0.05 GiB)"), std::string::npos) << m;
    EXPECT_NE(m.find("only 0.0500 GiB are available per rank; use more ranks"), std::string::npos) << m;
  }
}

// State kept per local row (k-means' distance bounds) is counted, capped, and named.
TEST(Memory, RowStateIsCountedAndNamed) {
  latent::train::EmMemoryInputs in;
  in.num_features = 10;
  in.block_rows = 100;
  const MemoryEstimate base = latent::train::estimate_em_memory(in);
  in.row_state_bytes = 0.25 * kGiB;
  const MemoryEstimate with = latent::train::estimate_em_memory(in);
  EXPECT_DOUBLE_EQ(with.bytes - base.bytes, 0.25 * kGiB);
  EXPECT_EQ(base.breakdown.find("row state"), std::string::npos) << base.breakdown;
  EXPECT_NE(with.breakdown.find(", row state 0.25 GiB"), std::string::npos) << with.breakdown;
}

}  // namespace
