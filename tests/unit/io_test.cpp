#include <gtest/gtest.h>
#include <hdf5.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <thread>

#include "../support/fixtures.hpp"
#include "latent/comm/communicator.hpp"
#include "latent/core/error.hpp"
#include "latent/core/huge_pages.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/io/block_source.hpp"
#include "latent/io/block_stream.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/io/dense_dataset.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/io/shard_files.hpp"
#include "latent/io/text_file.hpp"
#include "latent/train/block_reduce.hpp"
#include "latent/train/data_summary.hpp"

namespace latent::io {
namespace {

using latent::testing::TempDir;

// Runs fn and returns the Error it throws (fails the test if none).
template <class Fn>
Error error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "expected latent::Error";
  return Error(ErrorKind::kInternal, "");
}

void expect_mentions(const Error& e, std::initializer_list<const char*> parts) {
  for (const char* p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << " lacks " << p;
}

TEST(BlockPlan, FixedBlocksWithinShardsAndContiguousRankRanges) {
  DenseDatasetInfo info;
  info.shards = {ShardInfo{"a", 10}, ShardInfo{"b", 3}, ShardInfo{"c", 8}};
  const auto plan = make_block_plan(info, 4);
  ASSERT_EQ(plan.size(), 3u + 1u + 2u);
  EXPECT_EQ(plan[2].num_rows, 2);   // shard a: 4, 4, 2
  EXPECT_EQ(plan[3].shard, 1);
  EXPECT_EQ(plan[3].global_row_begin, 10);
  EXPECT_EQ(plan[5].row_begin, 4);
  EXPECT_EQ(plan[5].global_row_begin, 17);
  for (int p = 1; p <= 7; ++p) {
    Index covered = 0;
    for (int r = 0; r < p; ++r) {
      const auto range = rank_block_range(6, r, p);
      EXPECT_EQ(range.first, covered);
      covered = range.last;
    }
    EXPECT_EQ(covered, 6);
  }
  // rank_blocks: the ranks' shares concatenate to the plan (or to a sub-range of it), in
  // order; num_rows adds their rows.
  for (int p = 1; p <= 7; ++p) {
    std::vector<BlockRef> joined, joined_tail;
    for (int r = 0; r < p; ++r) {
      const auto mine = rank_blocks(plan, r, p);
      joined.insert(joined.end(), mine.begin(), mine.end());
      const auto tail = rank_blocks(plan, 2, 5, r, p);
      joined_tail.insert(joined_tail.end(), tail.begin(), tail.end());
    }
    ASSERT_EQ(joined.size(), plan.size());
    for (std::size_t b = 0; b < plan.size(); ++b) EXPECT_EQ(joined[b].id, plan[b].id);
    ASSERT_EQ(joined_tail.size(), 3u);
    for (std::size_t b = 0; b < 3; ++b) EXPECT_EQ(joined_tail[b].id, plan[2 + b].id);
  }
  EXPECT_EQ(num_rows(plan), 21);
  EXPECT_EQ(num_rows(rank_blocks(plan, 2, 5, 0, 1)), 2 + 3 + 4);
}

// A block that counts the live copies of itself.
struct CountedBlock {
  static inline std::atomic<int> live{0};
  Index id = -1;
  explicit CountedBlock(Index i) : id(i) { ++live; }
  CountedBlock(const CountedBlock& o) : id(o.id) { ++live; }
  ~CountedBlock() { --live; }
};

// The prefetch queue with its low-water refill: every block arrives once and in order
// whichever side is slower, at most prefetch + 2 blocks exist at once (queue, the one the
// reader holds, the one the consumer holds), a reader error arrives after the blocks before
// it, and a pass cancelled half-way stops the reader.
TEST(BlockStream, InOrderBoundedWhicheverSideIsSlower) {
  constexpr Index kBlocks = 40;
  std::vector<BlockRef> refs(kBlocks);
  for (Index i = 0; i < kBlocks; ++i) refs[static_cast<std::size_t>(i)].id = i;
  for (int prefetch : {1, 2, 3, 8}) {
    for (bool slow_reader : {false, true}) {
      std::atomic<int> most{0};
      BlockStream<CountedBlock> stream(
          refs,
          [&] {
            return [&](const BlockRef& r) {
              if (slow_reader) std::this_thread::sleep_for(std::chrono::microseconds(200));
              CountedBlock b(r.id);
              most = std::max(most.load(), CountedBlock::live.load());
              return b;
            };
          },
          prefetch, false);
      stream.start_pass();
      Index expect = 0;
      while (auto b = stream.next()) {
        EXPECT_EQ(b->id, expect++);
        most = std::max(most.load(), CountedBlock::live.load());
        if (!slow_reader) std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
      EXPECT_EQ(expect, kBlocks) << "prefetch " << prefetch;
      EXPECT_LE(most.load(), prefetch + 2) << "prefetch " << prefetch << (slow_reader ? ", slow reader" : "");
      // Cancelled half-way: the reader stops, every block is released.
      stream.start_pass();
      for (Index i = 0; i < kBlocks / 2; ++i) ASSERT_EQ(stream.next()->id, i);
      stream.cancel_pass();
      EXPECT_EQ(CountedBlock::live.load(), 0);
    }
  }
  BlockStream<CountedBlock> failing(
      refs,
      [] {
        return [](const BlockRef& r) {
          if (r.id == 7) throw std::runtime_error("disk error at block 7");
          return CountedBlock(r.id);
        };
      },
      2, false);
  failing.start_pass();
  for (Index i = 0; i < 7; ++i) ASSERT_EQ(failing.next()->id, i);
  EXPECT_THROW(failing.next(), std::runtime_error);
}

// ReadMode::kCaller: next() reads each block on the calling thread, in order, with no
// read-ahead (one block alive besides the one the consumer holds); a read error ends the
// pass after the blocks before it and the next pass starts afresh; a cached stream fills its
// cache on a caller pass and then reads nothing.
TEST(BlockStream, CallerModeReadsInNextInOrderWithoutReadAhead) {
  constexpr Index kBlocks = 12;
  std::vector<BlockRef> refs(kBlocks);
  for (Index i = 0; i < kBlocks; ++i) refs[static_cast<std::size_t>(i)].id = i;
  std::atomic<int> reads{0};
  std::thread::id reader_thread;
  Index fail_at = -1;
  auto factory = [&] {
    return [&](const BlockRef& r) {
      if (r.id == fail_at) throw std::runtime_error("disk error");
      reader_thread = std::this_thread::get_id();
      ++reads;
      return CountedBlock(r.id);
    };
  };
  for (bool cache : {false, true}) {
    BlockStream<CountedBlock> stream(refs, factory, 4, cache);
    reads = 0;
    for (int pass = 0; pass < 3; ++pass) {
      stream.start_pass(ReadMode::kCaller);
      Index expect = 0;
      while (auto b = stream.next()) {
        EXPECT_EQ(b->id, expect++);
        EXPECT_EQ(reader_thread, std::this_thread::get_id());
        // Without a cache only the block in hand is alive; a cache holds those read so far.
        EXPECT_LE(CountedBlock::live.load(), !cache ? 1 : pass == 0 ? static_cast<int>(expect) : kBlocks);
      }
      EXPECT_EQ(expect, kBlocks);
      EXPECT_EQ(stream.cached(), cache);
    }
    EXPECT_EQ(reads.load(), cache ? kBlocks : 3 * kBlocks);
  }
  EXPECT_EQ(CountedBlock::live.load(), 0);
  BlockStream<CountedBlock> failing(refs, factory, 4, true);
  fail_at = 5;
  failing.start_pass(ReadMode::kCaller);
  for (Index i = 0; i < 5; ++i) ASSERT_EQ(failing.next()->id, i);
  EXPECT_THROW(failing.next(), std::runtime_error);
  EXPECT_EQ(failing.next(), nullptr);  // the pass ended with the error
  EXPECT_FALSE(failing.cached());
  EXPECT_EQ(CountedBlock::live.load(), 0);  // the partial cache was dropped
  fail_at = -1;
  failing.start_pass(ReadMode::kCaller);
  Index n = 0;
  while (failing.next()) ++n;
  EXPECT_EQ(n, kBlocks);
  EXPECT_TRUE(failing.cached());
}

// rows × cols values 0, 1, 2, ... (row-major), written as shards of `sizes` rows in `dir`.
RowMatrix write_counting_shards(const std::string& dir, Index rows, Index cols, const std::vector<Index>& sizes) {
  RowMatrix x(rows, cols);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<double>(i);
  latent::testing::write_shards(dir, x, sizes);
  return x;
}

TEST(DenseDataset, ReadsBlocksInOrderWithPrefetchAndCache) {
  TempDir dir("io");
  const RowMatrix x = write_counting_shards(dir / "d", 25, 3, {10, 15});
  auto info = open_dense_dataset(dir / "d");
  EXPECT_EQ(info.num_rows, 25);
  EXPECT_EQ(info.num_features, 3);
  auto plan = make_block_plan(info, 4);
  BlockSourceOptions o;
  o.prefetch_blocks = 1;
  o.cache_bytes = 1 << 20;
  BlockSource src(info, plan, o);
  for (int pass = 0; pass < 3; ++pass) {
    src.start_pass();
    Index row = 0;
    while (auto b = src.next()) {
      EXPECT_EQ(b->ref.global_row_begin, row);
      EXPECT_EQ(b->x, x.middleRows(row, b->x.rows()));
      row += b->x.rows();
    }
    EXPECT_EQ(row, 25);
    EXPECT_EQ(src.cached(), true) << "pass " << pass;
  }
}

// The VmFlags of the mapping of /proc/self/smaps that holds address p ("" if none).
std::string vm_flags_at(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    std::uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
      inside = lo <= a && a < hi;
    } else if (inside && line.rfind("VmFlags:", 0) == 0) {
      return line.substr(8) + " ";
    }
  }
  return "";
}

bool thp_available() { return std::filesystem::exists("/sys/kernel/mm/transparent_hugepage/enabled"); }

// huge_pages: a buffer of 4 MiB and more is 2 MiB aligned and its mapping advised for huge
// pages (VmFlags "hg"); advise() on a range without a whole 2 MiB page, or on nullptr, does
// nothing and does not fail.
TEST(HugePages, LargeBuffersAreAlignedAndAdvised) {
  if (!thp_available()) GTEST_SKIP() << "this kernel has no transparent huge pages";
  constexpr std::size_t kMiB = std::size_t{1} << 20;
  void* p = huge_pages::allocate(5 * kMiB);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % (2 * kMiB), 0u);
  EXPECT_NE(vm_flags_at(p).find(" hg "), std::string::npos) << vm_flags_at(p);
  static_cast<char*>(p)[5 * kMiB - 1] = 1;  // the whole rounded-up buffer is ours
  std::free(p);
  void* small = huge_pages::allocate(100);
  ASSERT_NE(small, nullptr);
  std::free(small);
  huge_pages::advise(nullptr, 8 * kMiB);
  char c[64];
  huge_pages::advise(c, sizeof c);
  EXPECT_EQ(vm_flags_at(c).find(" hg "), std::string::npos);
}

// A cached source's blocks (kept for every pass) lie in mappings advised for huge pages,
// float32 and double alike, with the same rows as read.
TEST(DenseDataset, CachedBlocksAreAdvisedForHugePages) {
  if (!thp_available()) GTEST_SKIP() << "this kernel has no transparent huge pages";
  TempDir dir("huge");
  RowMatrix x(1536, 1024);  // 6 MiB as float32, 12 MiB as double: each has a whole 2 MiB page
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<double>(i % 1000);
  std::filesystem::create_directories(dir / "d");
  latent::testing::write_shard(dir / "d/part-00000.h5", x, {}, DType::kFloat32);
  auto info = open_dense_dataset(dir / "d");
  const auto plan = make_block_plan(info, 1536);
  for (const bool f32 : {true, false}) {
    BlockSourceOptions o;
    o.cache_bytes = std::size_t{64} << 20;
    o.float32 = f32;
    BlockSource src(info, plan, o);
    const BlockSource::Float32Scope scope(src, f32);
    src.start_pass();
    auto b = src.next();
    ASSERT_TRUE(b);
    ASSERT_EQ(b->is_float32(), f32);
    const void* data = f32 ? static_cast<const void*>(b->xf.data()) : static_cast<const void*>(b->x.data());
    const auto at = (reinterpret_cast<std::uintptr_t>(data) + (std::uintptr_t{2} << 20) - 1) >> 21 << 21;
    EXPECT_NE(vm_flags_at(reinterpret_cast<const void*>(at)).find(" hg "), std::string::npos) << "float32 " << f32;
    EXPECT_EQ(f32 ? RowMatrix(b->xf.cast<double>()) : b->x, x);
    EXPECT_FALSE(src.next());
    EXPECT_TRUE(src.cached());
  }
}

// The data summary reads a float32 source's blocks as stored (no widened copy) and gives
// the bits of the same data read as double: means, variances, extremes, observed counts,
// duplicate rows and the shards' content hashes (which model files and resume compare),
// with 1 and 2 threads, with and without NaN (the NaN path widens the block).
TEST(DenseDataset, SummaryOfFloat32BlocksIsTheSummaryOfTheirDoubles) {
  const auto comm = comm::Communicator::world();
  for (const bool nan : {false, true}) {
    SCOPED_TRACE(nan ? "with NaN" : "finite");
    TempDir dir("sumf32");
    RowMatrix x(57, 5);
    for (Index i = 0; i < x.rows(); ++i)
      for (Index j = 0; j < x.cols(); ++j)
        x(i, j) = std::sin(0.37 * static_cast<double>(i * 5 + j)) * std::exp2(static_cast<int>(j) * 3 - 4) + 0.1 * j;
    x.row(40) = x.row(3);  // a duplicate row
    if (nan) {
      x(7, 2) = std::numeric_limits<double>::quiet_NaN();
      x(50, 0) = std::numeric_limits<double>::quiet_NaN();
    }
    std::filesystem::create_directories(dir / "d");
    latent::testing::write_shard(dir / "d/part-00000.h5", x.topRows(30), {}, DType::kFloat32);
    latent::testing::write_shard(dir / "d/part-00001.h5", x.bottomRows(27), {}, DType::kFloat32);
    const auto info = open_dense_dataset(dir / "d");
    const auto plan = make_block_plan(info, 8);
    BlockSourceOptions o;
    o.allow_nan = nan;
    BlockSource plain(info, plan, o);
    const train::DataSummary want = train::summarize(comm, plain, 1);
    ASSERT_EQ(want.num_duplicate_rows, 1);
    ASSERT_EQ(want.num_missing, nan ? 2 : 0);
    const auto bits = [](const RowVector& v) {
      std::vector<std::uint64_t> out;
      for (Index j = 0; j < v.size(); ++j) out.push_back(std::bit_cast<std::uint64_t>(v[j]));
      return out;
    };
    for (const int threads : {1, 2}) {
      o.float32 = true;
      BlockSource f32(info, plan, o);
      const train::DataSummary got = train::summarize(comm, f32, threads);
      EXPECT_EQ(got.num_samples, want.num_samples);
      EXPECT_EQ(bits(got.mean), bits(want.mean)) << threads;
      EXPECT_EQ(bits(got.variance), bits(want.variance)) << threads;
      EXPECT_EQ(bits(got.min), bits(want.min)) << threads;
      EXPECT_EQ(bits(got.max), bits(want.max)) << threads;
      EXPECT_EQ(bits(got.observed), bits(want.observed)) << threads;
      EXPECT_EQ(got.num_missing, want.num_missing);
      EXPECT_EQ(got.num_duplicate_rows, want.num_duplicate_rows);
      EXPECT_EQ(got.shard_hashes, want.shard_hashes) << threads;
    }
  }
}

// BlockSourceOptions::float32: a float32 shard's rows stay float32 in the stream and the
// cache (half the bytes), are handed out as stored inside a Float32Scope and widened (the
// same doubles as a plain source) outside it; a float64 shard is read as double; bad
// values are still named; nan_fill turns it off.
TEST(DenseDataset, Float32BlocksStayFloat32WhereAccepted) {
  TempDir dir("f32");
  RowMatrix x(25, 3);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = 0.1 * static_cast<double>(i) + 1e3;
  const RowMatrix xr = x.cast<float>().cast<double>();  // what a float32 shard holds
  std::filesystem::create_directories(dir / "d");
  latent::testing::write_shard(dir / "d/part-00000.h5", x.topRows(10), {}, DType::kFloat32);
  latent::testing::write_shard(dir / "d/part-00001.h5", xr.bottomRows(15), {}, DType::kFloat64);
  auto info = open_dense_dataset(dir / "d");
  const auto plan = make_block_plan(info, 4);
  BlockSourceOptions o;
  o.prefetch_blocks = 1;
  o.cache_bytes = 1 << 20;
  BlockSource plain(info, plan, o);
  o.float32 = true;
  BlockSource f32(info, plan, o);
  EXPECT_EQ(plain.local_bytes(), 25u * 3u * 8u);
  EXPECT_EQ(f32.local_bytes(), 10u * 3u * 4u + 15u * 3u * 8u);
  for (int pass = 0; pass < 4; ++pass) {
    const bool accept = pass % 2 == 1;
    const BlockSource::Float32Scope scope(f32, accept);
    f32.start_pass();
    Index row = 0, floats = 0;
    while (auto b = f32.next()) {
      const bool first_shard = b->ref.shard == 0;
      ASSERT_EQ(b->is_float32(), accept && first_shard) << "pass " << pass << " row " << row;
      const RowMatrix got = b->is_float32() ? RowMatrix(b->xf.cast<double>()) : b->x;
      EXPECT_EQ(got, xr.middleRows(row, got.rows()));
      floats += b->is_float32() ? 1 : 0;
      row += got.rows();
    }
    EXPECT_EQ(row, 25);
    EXPECT_EQ(floats, accept ? 3 : 0);  // blocks of 4, 4, 2 rows in the float32 shard
    EXPECT_TRUE(f32.cached());
  }
  // A plain pass outside any scope equals the plain source's.
  plain.start_pass();
  f32.start_pass();
  while (auto a = plain.next()) {
    auto b = f32.next();
    ASSERT_TRUE(b);
    EXPECT_FALSE(b->is_float32());
    EXPECT_EQ(a->x, b->x);
  }
  // nan_fill (the k-means seeding's source) reads double.
  auto filled = f32.with_nan_fill(std::vector<double>(3, 0.0));
  const BlockSource::Float32Scope scope(*filled, true);
  filled->start_pass();
  while (auto b = filled->next()) EXPECT_FALSE(b->is_float32());
  // An infinite value in a float32 shard is named as in a double one.
  RowMatrix bad = x.topRows(6);
  bad(4, 1) = std::numeric_limits<double>::infinity();
  std::filesystem::create_directories(dir / "bad");
  latent::testing::write_shard(dir / "bad/part-00000.h5", bad, {}, DType::kFloat32);
  auto binfo = open_dense_dataset(dir / "bad");
  BlockSource bsrc(binfo, make_block_plan(binfo, 4), o);
  const Error e = error_of([&] {
    const BlockSource::Float32Scope s2(bsrc, true);
    bsrc.start_pass();
    while (bsrc.next()) {
    }
  });
  EXPECT_EQ(e.kind(), ErrorKind::kInput);
  expect_mentions(e, {"part-00000.h5", "dataset /data", "row 4", "column 1", "infinite"});
}

// A contiguous dataset is read and checked in pieces of about 256 KiB (ShardReader::
// read_checked): a block of many pieces arrives whole, in both precisions, and a value in
// its last piece is named by its own row and column, within the shard and the dataset.
TEST(DenseDataset, BlocksOfManyPiecesArriveWholeAndNameTheirBadRow) {
  TempDir dir("pieces");
  const Index d = 300, n0 = 100, n1 = 700;  // 1,200 / 2,400 bytes a row: 218 / 109 rows a piece
  RowMatrix x(n0 + n1, d);
  for (Index i = 0; i < x.rows(); ++i)
    for (Index j = 0; j < d; ++j) x(i, j) = static_cast<double>((i * 31 + j * 7) % 1009) / 16.0;  // exact in float32
  for (DType dtype : {DType::kFloat64, DType::kFloat32}) {
    const std::string sub = dtype == DType::kFloat32 ? "f32" : "f64";
    std::filesystem::create_directories(dir / sub);
    latent::testing::write_shard(dir / (sub + "/part-00000.h5"), x.topRows(n0), {}, dtype);
    latent::testing::write_shard(dir / (sub + "/part-00001.h5"), x.bottomRows(n1), {}, dtype);
    auto info = open_dense_dataset(dir / sub);
    BlockSourceOptions o;
    o.float32 = true;
    BlockSource src(info, make_block_plan(info, n1), o);
    const BlockSource::Float32Scope scope(src, true);
    src.start_pass();
    Index row = 0;
    while (auto b = src.next()) {
      EXPECT_EQ(b->is_float32(), dtype == DType::kFloat32);
      const RowMatrix got = b->is_float32() ? RowMatrix(b->xf.cast<double>()) : b->x;
      EXPECT_EQ(got, x.middleRows(row, got.rows())) << sub << " block at row " << row;
      row += got.rows();
    }
    EXPECT_EQ(row, n0 + n1);
    // An infinite value in the last piece of shard 1's block, and a NaN in its first piece
    // with allow_nan (missing values pass; the infinity is still named).
    RowMatrix bad = x.bottomRows(n1);
    bad(650, 7) = std::numeric_limits<double>::infinity();
    bad(3, 2) = std::nan("");
    latent::testing::write_shard(dir / (sub + "/part-00001.h5"), bad, {}, dtype);
    for (bool allow_nan : {false, true}) {
      BlockSourceOptions ob = o;
      ob.allow_nan = allow_nan;
      auto binfo = open_dense_dataset(dir / sub);
      BlockSource bsrc(binfo, make_block_plan(binfo, n1), ob);
      const Error e = error_of([&] {
        const BlockSource::Float32Scope s2(bsrc, true);
        bsrc.start_pass();
        while (bsrc.next()) {
        }
      });
      EXPECT_EQ(e.kind(), ErrorKind::kInput);
      if (allow_nan)
        expect_mentions(e, {"part-00001.h5", "dataset /data", "row 650", "column 7", "infinite", "dataset row 750"});
      else
        expect_mentions(e, {"part-00001.h5", "dataset /data", "row 3", "column 2", "NaN", "dataset row 103"});
    }
  }
}

// A shard written with libhdf5's C API: /data of `file_type` (its bytes as stored), chunked
// by `chunk_rows` with deflate if > 0, else contiguous; the root attributes of a dense shard.
void write_raw_shard(const std::string& path, const RowMatrix& x, hid_t file_type, hsize_t chunk_rows) {
  const hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  const hid_t scalar = H5Screate(H5S_SCALAR);
  const hid_t va = H5Acreate2(f, "format_version", H5T_STD_I64LE, scalar, H5P_DEFAULT, H5P_DEFAULT);
  const std::int64_t version = kDataFormatVersion;
  H5Awrite(va, H5T_NATIVE_INT64, &version);
  H5Aclose(va);
  const hid_t st = H5Tcopy(H5T_C_S1);
  H5Tset_size(st, 5);
  const hid_t ka = H5Acreate2(f, "kind", st, scalar, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(ka, st, "dense");
  H5Aclose(ka);
  H5Tclose(st);
  H5Sclose(scalar);
  const hsize_t dims[2] = {static_cast<hsize_t>(x.rows()), static_cast<hsize_t>(x.cols())};
  const hid_t space = H5Screate_simple(2, dims, nullptr);
  const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (chunk_rows > 0) {
    const hsize_t chunk[2] = {chunk_rows, dims[1]};
    H5Pset_chunk(dcpl, 2, chunk);
    H5Pset_deflate(dcpl, 4);
  }
  const hid_t d = H5Dcreate2(f, kDataDataset, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  ASSERT_GE(d, 0);
  ASSERT_GE(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x.data()), 0);
  H5Dclose(d);
  H5Pclose(dcpl);
  H5Sclose(space);
  H5Fclose(f);
}

// Rows of contiguous native float32/float64 shards are read straight from the file
// (ShardInfo::data_offset: pread, outside libhdf5's lock); chunked and big-endian shards
// through libhdf5. Every route gives the same rows, in one thread's pass (the I/O thread)
// and in two threads' (the blocks claimed in order and read concurrently,
// BlockSource::claim/read_claimed), with and without the cache, whose second pass hands
// out the same blocks, and with one thread and no I/O thread (BlockSourceOptions::io_thread).
TEST(DenseDataset, DirectAndLibhdf5ReadsGiveTheSameRowsInEveryThreadCount) {
  TempDir dir("direct");
  const Index d = 37, n = 1000;
  RowMatrix x(n, d);
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < d; ++j) x(i, j) = static_cast<double>((i * 13 + j * 5) % 701) / 8.0 - 40.0;  // float32-exact
  struct Case {
    const char* name;
    hid_t type;
    hsize_t chunk_rows;
    bool direct;
  };
  const std::vector<Case> cases = {{"f32", H5T_IEEE_F32LE, 0, true},
                                   {"f64", H5T_IEEE_F64LE, 0, true},
                                   {"f32-chunked", H5T_IEEE_F32LE, 128, false},
                                   {"f64-big-endian", H5T_IEEE_F64BE, 0, false}};
  for (const Case& c : cases) {
    const std::string sub = dir / c.name;
    std::filesystem::create_directories(sub);
    write_raw_shard(sub + "/part-00000.h5", x.topRows(400), c.type, c.chunk_rows);
    write_raw_shard(sub + "/part-00001.h5", x.bottomRows(600), c.type, c.chunk_rows);
    const auto info = open_dense_dataset(sub);
    for (const ShardInfo& sh : info.shards) {
      EXPECT_EQ(sh.data_offset >= 0, c.direct) << c.name;
      if (c.direct) {
        EXPECT_EQ(sh.file_bytes, static_cast<std::int64_t>(std::filesystem::file_size(sh.path)));
      }
    }
    for (int threads : {1, 2}) {
      for (bool cache : {false, true}) {
        BlockSourceOptions o;
        o.float32 = true;
        o.cache_bytes = cache ? (std::size_t{1} << 24) : 0;
        o.io_thread = threads == 1 && !cache;  // one thread without the cache: reads in the pipeline
        BlockSource src(info, make_block_plan(info, 96), o);
        const BlockSource::Float32Scope scope(src, true);
        for (int pass = 0; pass < 2; ++pass) {
          std::vector<int> seen(static_cast<std::size_t>(n), 0);
          std::atomic<int> mismatches{0};
          latent::train::for_each_block(src, threads, [&](const DenseBlock& b) {
            const RowMatrix got = b.is_float32() ? RowMatrix(b.xf.cast<double>()) : b.x;
            if (got != x.middleRows(b.ref.global_row_begin, got.rows())) ++mismatches;
            for (Index i = 0; i < got.rows(); ++i) ++seen[static_cast<std::size_t>(b.ref.global_row_begin + i)];
          });
          EXPECT_EQ(mismatches.load(), 0) << c.name << ", " << threads << " threads, pass " << pass;
          EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), n) << c.name << ": each row once";
          EXPECT_EQ(src.cached(), cache) << c.name << ", " << threads << " threads, pass " << pass;
        }
      }
    }
  }
}

// The I/O threads of this process (by name, /proc/self/task/TID/comm).
int io_threads() {
  int n = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    std::getline(comm, name);
    n += name == BlockStream<DenseBlock>::kIoThreadName ? 1 : 0;
  }
  return n;
}

// BlockSourceOptions::io_thread = false: a pass reads every block in next(), on the
// calling thread (no I/O thread is started, whatever mode the pass asks for), the same
// blocks in the same order as a pass read ahead by an I/O thread (one, while the pass runs).
TEST(BlockSource, WithoutAnIoThreadAPassReadsInTheCaller) {
  TempDir dir("no-io-thread");
  const RowMatrix x = write_counting_shards(dir / "d", 300, 5, {120, 180});
  const auto info = open_dense_dataset(dir / "d");
  for (bool io_thread : {true, false}) {
    BlockSourceOptions o;
    o.io_thread = io_thread;
    BlockSource src(info, make_block_plan(info, 50), o);
    for (int pass = 0; pass < 2; ++pass) {
      EXPECT_EQ(io_threads(), 0);
      src.start_pass();
      EXPECT_EQ(io_threads(), io_thread ? 1 : 0) << "io_thread " << io_thread;
      Index row = 0;
      while (auto b = src.next()) {
        EXPECT_EQ(b->ref.global_row_begin, row);
        EXPECT_EQ(b->x, x.middleRows(row, b->rows()));
        row += b->rows();
      }
      EXPECT_EQ(row, 300);
    }
  }
}

// A shard cut short after the scan: the read stops with Error(kIo) naming the file and
// the rows it could not read (not a signal, as a mapping of the file would give), in one
// thread's pass and in two threads'.
TEST(DenseDataset, AShardTruncatedDuringTheFitIsAnIoErrorNamingIt) {
  TempDir dir("cut");
  const Index d = 20, n = 3000;
  RowMatrix x(n, d);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<double>(i % 977) / 4.0;
  std::filesystem::create_directories(dir / "d");
  latent::testing::write_shard(dir / "d/part-00000.h5", x, {}, DType::kFloat32);
  for (int threads : {1, 2}) {
    const auto info = open_dense_dataset(dir / "d");
    ASSERT_GE(info.shards[0].data_offset, 0);
    BlockSourceOptions o;
    o.float32 = true;
    o.prefetch_blocks = 1;  // blocks 4-11 are read after the cut, whichever thread runs first
    BlockSource src(info, make_block_plan(info, 250), o);
    const BlockSource::Float32Scope scope(src, true);
    const std::string path = info.shards[0].path;
    std::atomic<bool> cut{false};
    const Error e = error_of([&] {
      latent::train::for_each_block(src, threads, [&](const DenseBlock&) {
        // After the first block: the file loses its last 2000 rows (8 bytes short of them).
        if (!cut.exchange(true))
          std::filesystem::resize_file(path, static_cast<std::uintmax_t>(info.shards[0].data_offset) + 1000 * d * 4 + 8);
      });
    });
    EXPECT_EQ(e.kind(), ErrorKind::kIo) << e.what();
    expect_mentions(e, {"part-00000.h5", "dataset /data", "read failed"});
    // One thread: the I/O thread's reader opened the shard before the cut, so its direct
    // read meets the short file. Two: a reader opened after it finds the size changed and
    // reads through libhdf5, whose read fails as well.
    if (threads == 1) expect_mentions(e, {"ended early"});
    latent::testing::write_shard(dir / "d/part-00000.h5", x, {}, DType::kFloat32);
  }
}

TEST(DenseDataset, NaNNamesFileDatasetRowAndColumn) {
  TempDir dir("nan");
  RowMatrix x = RowMatrix::Zero(12, 4);
  x(9, 2) = std::nan("");
  latent::testing::write_shards(dir / "d", x, {5, 7});
  auto info = open_dense_dataset(dir / "d");
  BlockSource src(info, make_block_plan(info, 3), {});
  const Error e = error_of([&] {
    src.start_pass();
    while (src.next()) {
    }
  });
  EXPECT_EQ(e.kind(), ErrorKind::kInput);
  expect_mentions(e, {"part-00001.h5", "dataset /data", "row 4", "column 2", "NaN", "dataset row 9"});
}

// A block pipeline on two threads reads in its first stage (ReadMode::kCaller): every
// block arrives once, and bad data still stops the pass with the file, dataset and row.
TEST(DenseDataset, TwoThreadPipelineReadsEveryBlockAndNamesBadRows) {
  TempDir dir("pipe");
  RowMatrix x = write_counting_shards(dir / "d", 40, 3, {17, 23});
  auto info = open_dense_dataset(dir / "d");
  const auto plan = make_block_plan(info, 4);
  for (int threads : {1, 2}) {
    BlockSource src(info, plan, {});
    std::vector<std::atomic<int>> seen(plan.size());
    std::atomic<Index> rows{0};
    latent::train::for_each_block(src, threads, [&](const DenseBlock& b) {
      ++seen[static_cast<std::size_t>(b.ref.id)];
      EXPECT_EQ(b.x, x.middleRows(b.ref.global_row_begin, b.x.rows()));
      rows += b.x.rows();
    });
    EXPECT_EQ(rows.load(), 40) << threads << " threads";
    for (auto& s : seen) EXPECT_EQ(s.load(), 1);
  }
  x(30, 1) = std::numeric_limits<double>::infinity();
  latent::testing::write_shards(dir / "bad", x, {17, 23});
  auto bad = open_dense_dataset(dir / "bad");
  BlockSource src(bad, make_block_plan(bad, 4), {});
  const Error e = error_of([&] { latent::train::for_each_block(src, 2, [](const DenseBlock&) {}); });
  EXPECT_EQ(e.kind(), ErrorKind::kInput);
  expect_mentions(e, {"part-00001.h5", "dataset /data", "row 13", "column 1", "dataset row 30"});
}

// Rows in memory (the Python module's fit on an array) give the blocks a one-shard file of
// the same rows gives, and are validated the same way.
TEST(DenseDataset, RowsInMemoryReadLikeAShard) {
  TempDir dir("mem");
  RowMatrix x(23, 3);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = 0.5 * static_cast<double>(i) - 7.0;
  latent::testing::write_shards(dir / "d", x, {23});
  const auto file = open_dense_dataset(dir / "d");
  auto rows = std::make_shared<MemoryRows>();
  rows->data = x.data();
  const auto mem = memory_dense_dataset(rows, 23, 3, "<memory>");
  EXPECT_EQ(mem.num_rows, 23);
  EXPECT_EQ(mem.num_features, 3);
  EXPECT_EQ(make_block_plan(mem, 5).size(), make_block_plan(file, 5).size());
  BlockSource a(file, make_block_plan(file, 5), {}), b(mem, make_block_plan(mem, 5), {});
  a.start_pass();
  b.start_pass();
  Index blocks = 0;
  for (auto ba = a.next(), bb = b.next(); ba || bb; ba = a.next(), bb = b.next(), ++blocks) {
    ASSERT_TRUE(ba && bb);
    EXPECT_EQ(ba->ref.global_row_begin, bb->ref.global_row_begin);
    EXPECT_EQ(ba->x, bb->x);
  }
  EXPECT_EQ(blocks, 5);
  x(17, 1) = std::numeric_limits<double>::infinity();
  BlockSource bad(mem, make_block_plan(mem, 5), {});
  const Error e = error_of([&] {
    bad.start_pass();
    while (bad.next()) {
    }
  });
  EXPECT_EQ(e.kind(), ErrorKind::kInput);
  expect_mentions(e, {"<memory>", "row 17", "column 1", "infinite"});
  EXPECT_EQ(error_of([&] { memory_dense_dataset(rows, 0, 3, "<memory>"); }).kind(), ErrorKind::kInput);
}

// Documents in memory: blocks that span the whole corpus, CSR validated as a file's.
TEST(CountsDataset, DocumentsInMemoryValidatedLikeAShard) {
  std::vector<std::int64_t> indptr{0, 2, 2, 5}, indices{0, 3, 1, 2, 3};
  std::vector<double> counts{1, 2, 3, 1, 4};
  auto csr = std::make_shared<MemoryCsr>();
  csr->indptr = indptr.data();
  csr->indices = indices.data();
  csr->counts = counts.data();
  const auto info = memory_counts_dataset(csr, 3, 4, "<memory>");
  EXPECT_EQ(info.num_nonzeros, 5);
  CountsSource src(info, make_block_plan(info.shard_rows(), 2), {});
  src.start_pass();
  auto b0 = src.next();
  ASSERT_TRUE(b0);
  EXPECT_EQ(b0->indptr, (std::vector<std::int64_t>{0, 2, 2}));
  auto b1 = src.next();
  ASSERT_TRUE(b1);
  EXPECT_EQ(b1->indptr, (std::vector<std::int64_t>{0, 3}));
  EXPECT_EQ(b1->indices, (std::vector<std::int32_t>{1, 2, 3}));
  EXPECT_EQ(b1->counts, (std::vector<double>{3, 1, 4}));
  EXPECT_FALSE(src.next());
  counts[3] = 0.5;  // a fractional count in document 2
  CountsSource bad(info, make_block_plan(info.shard_rows(), 2), {});
  const Error e = error_of([&] {
    bad.start_pass();
    while (bad.next()) {
    }
  });
  EXPECT_EQ(e.kind(), ErrorKind::kInput);
  expect_mentions(e, {"<memory>", "row 2", "not a positive integer"});
  EXPECT_EQ(error_of([&] { memory_counts_dataset(csr, 3, 0, "<memory>"); }).kind(), ErrorKind::kInput);
}

TEST(DenseDataset, SchemaErrorsAreClear) {
  TempDir dir("schema");
  std::filesystem::create_directories(dir / "mismatch");
  latent::testing::write_shard(dir / "mismatch/part-0.h5", RowMatrix::Zero(3, 4));
  latent::testing::write_shard(dir / "mismatch/part-1.h5", RowMatrix::Zero(3, 5));
  expect_mentions(error_of([&] { open_dense_dataset(dir / "mismatch"); }), {"part-1.h5", "5 features", "4"});

  {  // integer dtype
    H5Writer w(dir / "int.h5", false);
    w.attr("/", "format_version", std::int64_t{1});
    w.attr("/", "kind", std::string("dense"));
    w.create("data", DType::kInt64, 3, 1);
    w.commit();
  }
  const Error dtype = error_of([&] { open_dense_dataset(dir / "int.h5"); });
  expect_mentions(dtype, {"int.h5", "/data", "64-bit integer", "float32, float64"});
  {  // missing dataset
    H5Writer w(dir / "missing.h5", false);
    w.attr("/", "format_version", std::int64_t{1});
    w.attr("/", "kind", std::string("dense"));
    w.write("other", std::vector<double>{1.0});
    w.commit();
  }
  expect_mentions(error_of([&] { open_dense_dataset(dir / "missing.h5"); }), {"missing.h5", "/data", "missing"});
  // Not HDF5, truncated, and absent files.
  std::ofstream(dir / "text.h5") << "hello";
  expect_mentions(error_of([&] { open_dense_dataset(dir / "text.h5"); }), {"text.h5", "not an HDF5 file"});
  latent::testing::write_shard(dir / "full.h5", RowMatrix::Ones(2000, 8));
  std::filesystem::copy_file(dir / "full.h5", dir / "cut.h5");
  std::filesystem::resize_file(dir / "cut.h5", std::filesystem::file_size(dir / "full.h5") / 2);
  const Error cut = error_of([&] {
    auto info = open_dense_dataset(dir / "cut.h5");
    BlockSource src(info, make_block_plan(info, 500), {});
    src.start_pass();
    while (src.next()) {
    }
  });
  expect_mentions(cut, {"cut.h5"});
  EXPECT_EQ(error_of([&] { open_dense_dataset(dir / "absent"); }).kind(), ErrorKind::kNoInput);
}

// What a shard is (list_shard_files): a regular file, or a symbolic link to one, named
// *.h5 and not hidden. Other entries named like a shard are refused (exit 66), never skipped.
TEST(ShardFiles, OnlyRegularFilesNamedLikeShardsAndOddEntriesRefused) {
  namespace fs = std::filesystem;
  TempDir dir("shards");
  const std::string d = dir / "d";
  latent::testing::write_shards(d, RowMatrix::Ones(6, 2), {3, 3});
  latent::testing::write_shard(dir / "outside.h5", RowMatrix::Ones(4, 2));
  fs::copy_file(d + "/part-00000.h5", d + "/.part-00000.h5");  // hidden: ignored
  std::ofstream(d + "/vocabulary.txt") << "a\n";                 // not *.h5: ignored
  std::ofstream(d + "/part-00001.h5.tmp-7") << "x";              // a temporary: ignored
  fs::create_symlink(dir / "outside.h5", d + "/part-00002.h5");  // a link to a regular file: a shard
  fs::create_symlink(dir / "absent.h5", d + "/.hidden-dangling.h5");  // hidden: ignored, even broken
  EXPECT_EQ(list_shard_files(d), (std::vector<std::string>{d + "/part-00000.h5", d + "/part-00001.h5",
                                                           d + "/part-00002.h5"}));
  const auto info = open_dense_dataset(d);
  EXPECT_EQ(info.num_rows, 10);
  EXPECT_EQ(info.shards.size(), 3u);

  struct Odd {
    const char* name;
    std::function<void(const std::string&)> make;
    const char* says;
  };
  const std::vector<Odd> odd = {
      {"part-00009.h5", [&](const std::string& p) { fs::create_symlink(dir / "absent.h5", p); }, "dangling symbolic link"},
      {"part-00008.h5", [&](const std::string& p) { fs::create_symlink(p, p); }, "symbolic link loop"},
      {"part-00007.h5", [&](const std::string& p) { ASSERT_EQ(::mkfifo(p.c_str(), 0600), 0); }, "is a FIFO"},
      {"part-00006.h5", [&](const std::string& p) { fs::create_directory(p); }, "is a directory"},
      {"part-00005.h5", [&](const std::string& p) { fs::create_symlink("/dev/null", p); }, "character device"},
  };
  for (const Odd& o : odd) {
    const std::string p = d + "/" + o.name;
    o.make(p);
    const Error e = error_of([&] { list_shard_files(d); });
    EXPECT_EQ(e.kind(), ErrorKind::kNoInput) << e.what();
    EXPECT_EQ(e.exit_code(), 66);
    expect_mentions(e, {o.name, o.says});
    const Error opened = error_of([&] { open_dense_dataset(d); });
    EXPECT_EQ(opened.kind(), ErrorKind::kNoInput) << opened.what();
    fs::remove(p);
  }
  EXPECT_EQ(list_shard_files(d).size(), 3u);
  // The same rule for a file given directly, and for any file opened for reading.
  ASSERT_EQ(::mkfifo((dir / "fifo.h5").c_str(), 0600), 0);
  expect_mentions(error_of([&] { open_dense_dataset(dir / "fifo.h5"); }), {"fifo.h5", "FIFO"});
  EXPECT_EQ(error_of([&] { H5Reader r(dir / "fifo.h5"); }).kind(), ErrorKind::kNoInput);
}

// The root attributes format_version and kind are checked: exit 65 naming file and attribute.
TEST(DenseDataset, ShardAttributesAreChecked) {
  TempDir dir("attrs");
  const auto write = [&](const std::string& name, std::optional<std::int64_t> version, std::optional<std::string> kind) {
    H5Writer w(dir / name, false);
    if (version) w.attr("/", "format_version", *version);
    if (kind) w.attr("/", "kind", *kind);
    w.write("data", RowMatrix::Ones(3, 2));
    w.commit();
  };
  write("ok.h5", 1, "dense");
  EXPECT_EQ(open_dense_dataset(dir / "ok.h5").num_rows, 3);
  write("none.h5", std::nullopt, std::nullopt);
  write("v2.h5", 2, "dense");
  write("nokind.h5", 1, std::nullopt);
  write("counts.h5", 1, "counts");
  for (const auto& [name, says] : std::vector<std::pair<std::string, std::string>>{
           {"none.h5", "attribute format_version: missing"},
           {"v2.h5", "attribute format_version: 2 is not supported"},
           {"nokind.h5", "attribute kind: missing"},
           {"counts.h5", "attribute kind: is \"counts\""}}) {
    const Error e = error_of([&] { open_dense_dataset(dir / name); });
    EXPECT_EQ(e.exit_code(), 65) << e.what();
    expect_mentions(e, {name.c_str(), says.c_str()});
  }
}

TEST(H5Writer, AtomicCommitAndNoTemporaryLeftBehind) {
  TempDir dir("w");
  {
    H5Writer w(dir / "m.h5", false);
    w.write("x", std::vector<double>{1, 2});
    EXPECT_FALSE(std::filesystem::exists(dir / "m.h5"));  // only the temporary exists
  }  // not committed
  EXPECT_FALSE(std::filesystem::exists(dir / "m.h5"));
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
  {
    H5Writer w(dir / "m.h5", false);
    w.write("x", std::vector<double>{1, 2});
    w.attr("/", "s", std::string("hello"));
    w.commit();
  }
  H5Reader r(dir / "m.h5");
  EXPECT_EQ(r.read_doubles("x"), (std::vector<double>{1, 2}));
  EXPECT_EQ(r.attr_string("/", "s"), "hello");
  EXPECT_EQ(error_of([&] { H5Writer w(dir / "m.h5", false); }).kind(), ErrorKind::kOutput);
  EXPECT_EQ(error_of([&] { H5Writer w(dir / "nodir/m.h5", false); }).kind(), ErrorKind::kOutput);
}

TEST(TextWriter, AtomicCommitOverwriteAndNoTemporaryLeftBehind) {
  TempDir dir("t");
  const auto read = [](const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  {
    TextWriter w(dir / "a.json", false);
    w.write("{\"x\":");
    EXPECT_FALSE(std::filesystem::exists(dir / "a.json"));  // only the temporary exists
    EXPECT_TRUE(std::filesystem::exists(w.temporary_path()));
  }  // not committed
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
  {
    TextWriter w(dir / "a.json", false);
    w.write("{\"x\":");
    w.write("1}\n");
    w.commit();
  }
  EXPECT_EQ(read(dir / "a.json"), "{\"x\":1}\n");
  EXPECT_EQ(error_of([&] { TextWriter w(dir / "a.json", false); }).kind(), ErrorKind::kOutput);
  EXPECT_EQ(read(dir / "a.json"), "{\"x\":1}\n");  // a refused writer leaves the output alone
  {
    TextWriter w(dir / "a.json", true);
    w.write("2\n");
    w.commit();
  }
  EXPECT_EQ(read(dir / "a.json"), "2\n");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1);
  EXPECT_EQ(error_of([&] { TextWriter w(dir / "nodir/a.json", false); }).kind(), ErrorKind::kOutput);
}

}  // namespace
}  // namespace latent::io
