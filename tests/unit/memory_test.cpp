#include <gtest/gtest.h>

#include <string>

#include "latent/core/error.hpp"
#include "latent/models/registry.hpp"
#include "latent/train/fit_run.hpp"
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

namespace {

// The per-row state is a cache that only saves time: a fit that fits without it is never
// refused for it, and the state gets what the budget leaves, at most what the model keeps
// (returned for FitCommon::row_state_bytes).
TEST(Memory, RowStateTakesWhatTheBudgetLeaves) {
  latent::models::ModelSpec spec;
  spec.memory = [](const latent::models::OptionValues&, std::int64_t, std::int64_t) {
    return latent::models::MemoryNeeds{10, 100, 100, 100, 1 << 20};  // 100 bytes a row, 1 MiB at most
  };
  const latent::models::OptionValues values;
  latent::train::FitCommon c;
  c.block_rows = 100;
  c.threads = 1;
  latent::train::EmMemoryInputs in;
  in.num_features = 10;
  in.block_rows = 100;
  in.prefetch = c.prefetch;
  in.threads = 1;
  in.num_stats = 10;
  in.parameter_doubles = 100;
  in.scratch_doubles = 100;
  const double base = latent::train::estimate_em_memory(in).bytes;
  using latent::train::check_fit_memory;
  EXPECT_DOUBLE_EQ(check_fit_memory(spec, values, c, 10, 10, 1000, 0, base + kGiB), 100000.0);  // all it wants
  EXPECT_DOUBLE_EQ(check_fit_memory(spec, values, c, 10, 10, 100000, 0, base + kGiB), 1 << 20);  // its cap
  EXPECT_DOUBLE_EQ(check_fit_memory(spec, values, c, 10, 10, 1000, 0, base + 40000), 40000.0);  // what is left
  EXPECT_DOUBLE_EQ(check_fit_memory(spec, values, c, 10, 10, 1000, 0, base), 0.0);  // nothing left: none
  EXPECT_THROW(check_fit_memory(spec, values, c, 10, 10, 1000, 0, base - 1), Error);  // the fit itself does not fit
}

}  // namespace
