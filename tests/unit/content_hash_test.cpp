// Shard content hashes (latent/train/content_hash.hpp): independent of how rows are split
// into blocks and of the order blocks arrive in; sensitive to a changed value, to the order
// of rows within a shard, and to which shard a row is in.
#include "latent/train/content_hash.hpp"

#include <gtest/gtest.h>

#include "latent/io/block_source.hpp"

#include <random>

namespace latent::train {
namespace {

RowMatrix rows(Index n, Index d, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> g;
  RowMatrix x(n, d);
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < d; ++j) x(i, j) = g(gen);
  return x;
}

std::vector<std::uint64_t> hash_in_blocks(const RowMatrix& x, Index block, bool reverse) {
  ContentHasher h(2);
  std::vector<Index> starts;
  for (Index b = 0; b < x.rows(); b += block) starts.push_back(b);
  if (reverse) std::reverse(starts.begin(), starts.end());
  for (Index b : starts) h.add_dense(1, b, x.middleRows(b, std::min(block, x.rows() - b)));
  return h.global(comm::Communicator::world());
}

TEST(ContentHash, IndependentOfBlocksAndOrder) {
  const RowMatrix x = rows(101, 4, 1);
  const auto a = hash_in_blocks(x, 101, false);
  EXPECT_EQ(a[0], 0u);  // nothing added to shard 0
  EXPECT_NE(a[1], 0u);
  EXPECT_EQ(a, hash_in_blocks(x, 7, false));
  EXPECT_EQ(a, hash_in_blocks(x, 10, true));
}

TEST(ContentHash, SeesAChangedValueSwappedRowsAndAnotherShard) {
  const RowMatrix x = rows(50, 3, 2);
  const auto a = hash_in_blocks(x, 8, false);
  RowMatrix y = x;
  y(17, 1) = std::nextafter(y(17, 1), 1e300);  // one ulp
  EXPECT_NE(a, hash_in_blocks(y, 8, false));
  RowMatrix z = x;
  z.row(3).swap(z.row(4));
  EXPECT_NE(a, hash_in_blocks(z, 8, false));
  ContentHasher other(2);
  other.add_dense(0, 0, x);
  const auto b = other.global(comm::Communicator::world());
  EXPECT_EQ(b[0], a[1]);
  EXPECT_EQ(b[1], 0u);
}

// A float32 block hashes as its rows widened to double, whatever the tile boundaries
// (add_dense_float32 widens 64 rows at a time), and a double block as add_dense does.
TEST(ContentHash, Float32BlocksHashAsTheirWidenedRows) {
  const RowMatrixF xf = rows(150, 5, 3).cast<float>();
  const RowMatrix widened = xf.cast<double>();
  const auto expected = hash_in_blocks(widened, 150, false);
  for (const Index block : {Index{150}, Index{64}, Index{65}, Index{1}}) {
    ContentHasher h(2);
    for (Index b = 0; b < xf.rows(); b += block) {
      io::DenseBlock db;
      db.ref.shard = 1;
      db.ref.row_begin = b;
      db.xf = xf.middleRows(b, std::min(block, xf.rows() - b));
      ASSERT_TRUE(db.is_float32());
      h.add(db);
    }
    EXPECT_EQ(h.global(comm::Communicator::world()), expected) << "blocks of " << block;
  }
  io::DenseBlock db;
  db.ref.shard = 1;
  db.x = widened;
  ContentHasher h(2);
  h.add(db);
  EXPECT_EQ(h.global(comm::Communicator::world()), expected);
}

TEST(ContentHash, CountsAndTheDifferenceMessage) {
  io::CsrBlock block;
  block.ref.shard = 0;
  block.indptr = {0, 2, 3};
  block.indices = {1, 4, 2};
  block.counts = {1, 2, 5};
  ContentHasher h(1);
  h.add_counts(block);
  const auto a = h.global(comm::Communicator::world());
  block.counts[2] = 6;
  ContentHasher g(1);
  g.add_counts(block);
  const auto b = g.global(comm::Communicator::world());
  EXPECT_NE(a, b);
  const std::string ja = content_json({"/x/part-00000.h5"}, a), jb = content_json({"/y/part-00000.h5"}, b);
  EXPECT_EQ(content_difference(ja, ja), "");
  EXPECT_EQ(content_difference(ja, content_json({"/elsewhere/part-00000.h5"}, a)), "");  // the directory does not matter
  EXPECT_NE(content_difference(ja, jb).find("part-00000.h5 differ"), std::string::npos);
  const std::string two = content_json({"/x/part-00000.h5", "/x/part-00001.h5"}, {a[0], 5});
  EXPECT_NE(content_difference(two, ja).find("part-00001.h5 are missing"), std::string::npos);
}

}  // namespace
}  // namespace latent::train
