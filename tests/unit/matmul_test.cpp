// Packed products (latent/core/matmul.hpp): every operand orientation and edge shape against
// a double-precision reference of the (rounded) operands, bfloat16 rounding, the agreement
// of the vector and scalar packers, and a row's result not depending on its neighbours.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <tuple>
#include <utility>
#include <vector>

#include "latent/core/error.hpp"
#include "latent/core/gemm_f64.hpp"
#include "latent/core/kernel.hpp"
#include "latent/core/matmul.hpp"

namespace latent::matmul {
namespace {

RowMatrixF random_matrix(Index r, Index c, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  RowMatrixF m(r, c);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = n(gen);
  return m;
}

float rounded(Precision p, float x) { return p == Precision::kMedium ? from_bfloat16(to_bfloat16(x)) : x; }

std::vector<Precision> precisions() {
  std::vector<Precision> out;
  for (Precision p : {Precision::kHighest, Precision::kMedium})
    if (available(p)) out.push_back(p);
  return out;
}

// C = A B with A and B read in every orientation; each entry within the float32 summation
// bound (K · 2^-23 · Σ|a||b|) of the double sum of the rounded operands. A packer that
// truncated instead of rounding, or dropped a pair, misses by ~2^-9 Σ|a||b| or more.
void check_product(Precision p, Index m, Index n, Index k) {
  const RowMatrixF a = random_matrix(m, k, 1), b = random_matrix(k, n, 2);
  const RowMatrixF at = a.transpose(), bt = b.transpose();
  for (bool a_trans : {false, true})
    for (bool b_trans : {false, true}) {
      Packed pa, pb;
      if (a_trans) pa.pack_a(p, at.data(), m, k, 1, m);  // A(i, l) = at[l][i]
      else pa.pack_a(p, a.data(), m, k, k, 1);
      if (b_trans) pb.pack_b(p, bt.data(), k, n, 1, k);  // B(l, j) = bt[j][l]
      else pb.pack_b(p, b.data(), k, n, n, 1);
      RowMatrixF c = RowMatrixF::Constant(m, n, 0.5f);
      multiply(pa, pb, c.data(), n, /*accumulate=*/true);
      for (Index i = 0; i < m; ++i)
        for (Index j = 0; j < n; ++j) {
          double ref = 0, mag = 0;
          for (Index l = 0; l < k; ++l) {
            const double t = static_cast<double>(rounded(p, a(i, l))) * static_cast<double>(rounded(p, b(l, j)));
            ref += t;
            mag += std::abs(t);
          }
          ASSERT_NEAR(c(i, j), ref + 0.5, static_cast<double>(k + 2) * 0x1p-23 * (mag + 0.5))
              << to_string(p) << " " << m << "x" << n << "x" << k << " A" << (a_trans ? "t" : "") << " B"
              << (b_trans ? "t" : "") << " at (" << i << ", " << j << ")";
        }
    }
}

TEST(Matmul, EveryOrientationAndEdgeShape) {
  for (kernel::Variant v : kernel::all_variants()) {  // each variant this CPU runs
    if (!kernel::supported(v)) continue;
    const kernel::ScopedVariant scope(v);
    for (Precision p : precisions()) {
      SCOPED_TRACE(kernel::to_string(v));
      check_product(p, 1, 1, 1);
      check_product(p, 13, 37, 19);   // partial panels in M and N, odd K
      check_product(p, 8, 32, 32);    // exact panels
      check_product(p, 17, 33, 48);   // one row and one column past a panel
      check_product(p, 64, 80, 70);   // 16 × 16 transpose blocks with tails
    }
  }
}

// The float32 products of every kernel variant (the AVX2 + FMA tile in avx2, the AVX-512
// tile and packers in the others) are the same bits, accumulating or not, with the same
// largest magnitude: a job's result must not depend on the variant its ranks agreed on.
// Shapes with partial panels in both directions and the 16 x 16 transposing packer.
TEST(Matmul, EveryKernelVariantGivesTheSameFloat32Bits) {
  struct Run {
    RowMatrixF c;
    float max;
  };
  for (const auto& [m, n, k] : std::vector<std::tuple<Index, Index, Index>>{{1, 1, 1}, {13, 37, 19}, {64, 80, 70}, {9, 33, 300}}) {
    const RowMatrixF a = random_matrix(m, k, 11), b = random_matrix(k, n, 12), at = a.transpose();
    std::vector<Run> runs;
    for (kernel::Variant v : kernel::all_variants()) {
      if (!kernel::supported(v)) continue;
      const kernel::ScopedVariant scope(v);
      for (bool a_trans : {false, true}) {
        Packed pa, pb;
        if (a_trans) pa.pack_a(Precision::kHighest, at.data(), m, k, 1, m);
        else pa.pack_a(Precision::kHighest, a.data(), m, k, k, 1);
        pb.pack_b(Precision::kHighest, b.data(), k, n, n, 1);
        RowMatrixF c = random_matrix(m, n, 13);
        float mx = 0.25f;
        multiply(pa, pb, c.data(), n, /*accumulate=*/true, &mx);
        runs.push_back({c, mx});
      }
    }
    ASSERT_GE(runs.size(), 2u);
    for (std::size_t r = 1; r < runs.size(); ++r) {
      ASSERT_EQ(std::bit_cast<std::uint32_t>(runs[r].max), std::bit_cast<std::uint32_t>(runs[0].max)) << m << "x" << n << "x" << k;
      EXPECT_EQ(runs[r].max, runs[0].c.cwiseAbs().maxCoeff());
      for (Index i = 0; i < runs[0].c.size(); ++i)
        ASSERT_EQ(std::bit_cast<std::uint32_t>(runs[r].c.data()[i]), std::bit_cast<std::uint32_t>(runs[0].c.data()[i]))
            << "run " << r << ", " << m << "x" << n << "x" << k << " entry " << i;
    }
  }
}

// The variant decides what is available: float32 products in every variant, bfloat16
// products only in avx512bf16 and amxbf16 (refused with a message naming the variant otherwise).
TEST(Matmul, MediumPrecisionOnlyInTheBf16Variant) {
  for (kernel::Variant v : kernel::all_variants()) {
    if (!kernel::supported(v)) continue;
    const kernel::ScopedVariant scope(v);
    EXPECT_TRUE(available(Precision::kHighest));
    EXPECT_EQ(available(Precision::kMedium), v >= kernel::Variant::kAvx512Bf16) << kernel::to_string(v);
    if (v < kernel::Variant::kAvx512Bf16) {
      try {
        require(Precision::kMedium);
        ADD_FAILURE() << "medium accepted in " << kernel::to_string(v);
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::kUsage);
        EXPECT_NE(std::string(e.what()).find("--matmul-precision highest"), std::string::npos) << e.what();
        if (kernel::supported(kernel::Variant::kAvx512Bf16)) {
          EXPECT_NE(std::string(e.what()).find("this run uses " + kernel::to_string(v)), std::string::npos) << e.what();
        }
      }
    }
  }
}

TEST(Matmul, MediumIsCoarserThanHighest) {
  if (!available(Precision::kMedium)) GTEST_SKIP() << "this CPU lacks AVX512_BF16";
  // The same product in both precisions: medium differs from highest by about 2^-8 of the
  // scale (so it really rounds the operands), highest by about 2^-23.
  const Index m = 16, n = 32, k = 64;
  const RowMatrixF a = random_matrix(m, k, 3), b = random_matrix(k, n, 4);
  const RowMatrix exact = a.cast<double>() * b.cast<double>();
  double err[2] = {0, 0};
  int idx = 0;
  for (Precision p : {Precision::kHighest, Precision::kMedium}) {
    Packed pa, pb;
    pa.pack_a(p, a.data(), m, k, k, 1);
    pb.pack_b(p, b.data(), k, n, n, 1);
    RowMatrixF c(m, n);
    multiply(pa, pb, c.data(), n);
    err[idx++] = (c.cast<double>() - exact).cwiseAbs().maxCoeff();
  }
  EXPECT_LT(err[0], 1e-4);
  EXPECT_GT(err[1], 1e-3);
  EXPECT_LT(err[1], 0.2);
}

TEST(Matmul, BfloatRoundsToNearestEven) {
  EXPECT_EQ(to_bfloat16(1.0f), 0x3f80);
  EXPECT_EQ(to_bfloat16(1.0f + 1.0f / 256), 0x3f80);  // tie: to even (down)
  EXPECT_EQ(to_bfloat16(1.0f + 3.0f / 256), 0x3f82);  // tie: to even (up)
  EXPECT_EQ(to_bfloat16(1.0f + 1.5f / 256), 0x3f81);  // above the tie: up
  EXPECT_EQ(to_bfloat16(-2.0f), 0xc000);
  EXPECT_EQ(to_bfloat16(std::numeric_limits<float>::max()), 0x7f80);  // overflows to +inf
  EXPECT_EQ(to_bfloat16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(to_bfloat16(std::bit_cast<float>(0x000ae398u)), 0x0000);  // subnormal: +0
  EXPECT_EQ(to_bfloat16(std::bit_cast<float>(0x800ae398u)), 0x8000);  // subnormal: −0
  EXPECT_TRUE(std::isnan(from_bfloat16(to_bfloat16(std::bit_cast<float>(0x7f800001u)))));  // sNaN stays NaN
  EXPECT_EQ(from_bfloat16(0x3f82), 1.0f + 2.0f / 128);
}

TEST(Matmul, VectorAndScalarPackersAgree) {
  // The same matrix packed from a contiguous copy (the vector paths) and from a strided one
  // (the scalar path) gives the same words, including ties, subnormals and infinities; in
  // every variant this CPU runs (amxbf16 packs A in rows of pairs, with its own packers).
  for (kernel::Variant v : kernel::all_variants()) {
  if (!kernel::supported(v)) continue;
  const kernel::ScopedVariant scope(v);
  for (Precision p : precisions()) {
    const Index rows = 19, depth = 37;
    RowMatrixF a = random_matrix(rows, depth, 5);
    a(0, 0) = 1.0f + 1.0f / 256;
    a(0, 1) = 1.0f + 3.0f / 256;
    a(1, 2) = std::bit_cast<float>(0x000ae398u);
    a(2, 3) = -std::numeric_limits<float>::infinity();
    RowMatrixF wide = RowMatrixF::Zero(rows, 2 * depth);  // every other column: depth_stride 2
    for (Index i = 0; i < rows; ++i)
      for (Index l = 0; l < depth; ++l) wide(i, 2 * l) = a(i, l);
    const RowMatrixF at = a.transpose();
    for (bool as_b : {false, true}) {
      Packed fast, slow, rowwise;
      if (as_b) {  // B(l, j) = a[j][l]
        fast.pack_b(p, a.data(), depth, rows, 1, depth);
        slow.pack_b(p, wide.data(), depth, rows, 2, 2 * depth);
        rowwise.pack_b(p, at.data(), depth, rows, rows, 1);
      } else {
        fast.pack_a(p, a.data(), rows, depth, depth, 1);
        slow.pack_a(p, wide.data(), rows, depth, 2 * depth, 2);
        rowwise.pack_a(p, at.data(), rows, depth, 1, rows);
      }
      const auto words = static_cast<Index>(fast.words());
      ASSERT_EQ(slow.words(), fast.words());
      ASSERT_EQ(rowwise.words(), fast.words());
      for (Index w = 0; w < words; ++w) {
        ASSERT_EQ(fast.panel(0)[w], slow.panel(0)[w]) << to_string(p) << (as_b ? " B" : " A") << " word " << w;
        ASSERT_EQ(fast.panel(0)[w], rowwise.panel(0)[w]) << to_string(p) << (as_b ? " B" : " A") << " word " << w;
      }
    }
  }
  }
}

TEST(Matmul, ARowsResultDoesNotDependOnTheOtherRows) {
  // docs/ARCHITECTURE.md §5: a row's products must be the same bits whatever micro-batch it is in.
  // K = 300 (150 bfloat16 steps): 21 rows take the products in slices along K, one row
  // whole (matmul.cpp, tiles()).
  for (kernel::Variant v : kernel::all_variants()) {
  if (!kernel::supported(v)) continue;
  const kernel::ScopedVariant scope(v);
  for (Precision p : precisions()) {
    const Index k = 300, n = 50;
    const RowMatrixF a = random_matrix(21, k, 6), b = random_matrix(k, n, 7);
    Packed pa, pb, pr;
    pa.pack_a(p, a.data(), 21, k, k, 1);
    pb.pack_b(p, b.data(), k, n, n, 1);
    RowMatrixF all(21, n), one(1, n);
    multiply(pa, pb, all.data(), n);
    for (Index i : {0, 7, 8, 20}) {
      pr.pack_a(p, a.data() + i * k, 1, k, k, 1);
      multiply(pr, pb, one.data(), n);
      for (Index j = 0; j < n; ++j)
        ASSERT_EQ(all(i, j), one(0, j)) << kernel::to_string(v) << " " << to_string(p) << " row " << i << " col " << j;
    }
  }
  }
}

// multiply_lower_tn: every entry on and below the diagonal has the bits of the whole
// product Uᵀ V, above the diagonal blocks nothing is written, in every variant, for d
// with a partial block and a depth that is no multiple of anything.
TEST(Matmul, LowerBlocksOfATransposedProductHaveTheWholeProductsBits) {
  for (kernel::Variant v : kernel::all_variants()) {
    if (!kernel::supported(v)) continue;
    const kernel::ScopedVariant scope(v);
    for (const Index d : {1, 31, 32, 77}) {
      const Index n = 45;
      const RowMatrixF u = random_matrix(n, d, 8), w = random_matrix(n, d, 9);
      Packed pa, pb;
      pa.pack_a(Precision::kHighest, u.data(), d, n, 1, d);
      pb.pack_b(Precision::kHighest, w.data(), n, d, d, 1);
      RowMatrixF whole(d, d), lower = RowMatrixF::Constant(d, d, -7.0f);
      multiply(pa, pb, whole.data(), d);
      std::vector<Packed> sa, sb;
      multiply_lower_tn(Precision::kHighest, u.data(), w.data(), n, d, d, lower.data(), sa, sb);
      for (Index i = 0; i < d; ++i)
        for (Index j = 0; j < d; ++j) {
          if (j / kLowerBlock <= i / kLowerBlock)
            ASSERT_EQ(lower(i, j), whole(i, j)) << kernel::to_string(v) << " d " << d << " at " << i << ", " << j;
          else
            ASSERT_EQ(lower(i, j), -7.0f) << kernel::to_string(v) << " d " << d << " at " << i << ", " << j;
        }
    }
  }
}

// The operands a producer writes itself: Packed::shape() + panel_words() with the words
// pack_a/pack_b would write give multiply_lower_packed the same lower blocks as
// multiply_lower_tn. d with a partial block and panel,
// depths not a multiple of anything, every variant; shape() zeroes the padding of a reused
// buffer (filled with NaN before), as pack_a/pack_b do.
TEST(Matmul, OperandsWrittenInPlaceEqualFreshPacks) {
  for (kernel::Variant v : kernel::all_variants()) {
    if (!kernel::supported(v)) continue;
    const kernel::ScopedVariant scope(v);
    for (const Index d : {5, 32, 45, 77}) {
      const Index n = 37, blocks = (d + kLowerBlock - 1) / kLowerBlock;
      const RowMatrixF u = random_matrix(n, d, 11), w = random_matrix(n, d, 12);
      RowMatrixF want(d, d), got(d, d);
      want.setConstant(-7.0f);
      got.setConstant(-7.0f);
      std::vector<Packed> sa, sb, pa(static_cast<std::size_t>(blocks)), pb(static_cast<std::size_t>(blocks));
      multiply_lower_tn(Precision::kHighest, u.data(), w.data(), n, d, d, want.data(), sa, sb);
      for (Index q = 0; q < blocks; ++q) {
        const Index f0 = q * kLowerBlock, wb = std::min(kLowerBlock, d - f0);
        auto& a = pa[static_cast<std::size_t>(q)];
        auto& b = pb[static_cast<std::size_t>(q)];
        for (Packed* p : {&a, &b}) {  // a stale buffer: NaN everywhere, padding included
          const std::vector<float> nan(static_cast<std::size_t>(64 * n), std::numeric_limits<float>::quiet_NaN());
          p->pack_a(Precision::kHighest, nan.data(), 64, n, n, 1);
        }
        a.shape(wb, n, true);
        b.shape(wb, n, false);
        {  // a shaped operand has no source layout to repack from
          const std::vector<float> src(static_cast<std::size_t>(64 * n), 0.0f);
          EXPECT_THROW(a.repack(src.data(), 0, wb, 0, n), std::invalid_argument);
          EXPECT_THROW(b.repack(src.data(), 0, wb, 0, n), std::invalid_argument);
        }
        const Index last_a = (wb - 1) / Packed::kMr, rows_a = wb - last_a * Packed::kMr;
        for (Index i = 0; i < n; ++i) {
          for (Index t = rows_a; t < Packed::kMr; ++t) ASSERT_EQ(a.panel_words(last_a)[i * Packed::kMr + t], 0u) << d;
          for (Index t = wb; t < Packed::kNr; ++t) ASSERT_EQ(b.panel_words(0)[i * Packed::kNr + t], 0u) << d;
        }
        for (Index i = 0; i < n; ++i)
          for (Index t = 0; t < wb; ++t) {
            a.panel_words(t / Packed::kMr)[i * Packed::kMr + t % Packed::kMr] = std::bit_cast<std::uint32_t>(u(i, f0 + t));
            b.panel_words(0)[i * Packed::kNr + t] = std::bit_cast<std::uint32_t>(w(i, f0 + t));
          }
      }
      multiply_lower_packed(pa, pb, d, got.data());
      for (Index i = 0; i < d; ++i)
        for (Index j = 0; j < d; ++j)
          ASSERT_EQ(std::bit_cast<std::uint32_t>(got(i, j)), std::bit_cast<std::uint32_t>(want(i, j)))
              << kernel::to_string(v) << " d " << d << " at " << i << ", " << j;
    }
  }
}

TEST(Matmul, UpperTriangularProductHasTheWholeProductsBits) {
  for (kernel::Variant v : kernel::all_variants()) {
    if (!kernel::supported(v)) continue;
    const kernel::ScopedVariant scope(v);
    for (Precision p : precisions()) {
      for (const Index d : {5, 32, 45, 64, 77}) {
        const Index m = 21;
        const RowMatrixF a = random_matrix(m, d, 21);
        RowMatrixF u = random_matrix(d, d, 22), full_u = u;
        for (Index i = 0; i < d; ++i)
          for (Index j = 0; j < i; ++j) u(i, j) = 0.0f;
        Packed pa, pu, pfull;
        pa.pack_a(p, a.data(), m, d, d, 1);
        pu.pack_b(p, u.data(), d, d, d, 1);
        pfull.pack_b(p, full_u.data(), d, d, d, 1);
        RowMatrixF want(m, d), got(m, d), dense(m, d), skipped(m, d);
        multiply(pa, pu, want.data(), d);
        multiply_upper(pa, pu, got.data(), d);
        for (Index i = 0; i < m; ++i)
          for (Index j = 0; j < d; ++j)
            ASSERT_EQ(std::bit_cast<std::uint32_t>(got(i, j)), std::bit_cast<std::uint32_t>(want(i, j)))
                << kernel::to_string(v) << " " << to_string(p) << " d " << d << " at " << i << ", " << j;
        multiply(pa, pfull, dense.data(), d);
        multiply_upper(pa, pfull, skipped.data(), d);
        if (pa.amx_rows()) EXPECT_EQ(dense, skipped) << "d " << d << ": AMX tiles run every step";
        else if (d > kLowerBlock) EXPECT_NE(dense, skipped) << "d " << d << ": every step was run";
        else EXPECT_EQ(dense, skipped) << "d " << d << ": one panel runs its whole depth";
        if (p != Precision::kHighest) continue;
        // multiply_upper_minus: (A − 1 mᵀ) U from A's packing, against packing the differences.
        const RowMatrixF shift = random_matrix(1, d, 23);
        RowMatrixF diff = a;
        for (Index i = 0; i < m; ++i)
          for (Index j = 0; j < d; ++j) diff(i, j) = a(i, j) - shift(0, j);
        Packed pdiff;
        pdiff.pack_a(p, diff.data(), m, d, d, 1);
        RowMatrixF want_minus(m, d), got_minus(m, d);
        multiply_upper(pdiff, pu, want_minus.data(), d);
        multiply_upper_minus(pa, shift.data(), pu, got_minus.data(), d);
        for (Index i = 0; i < m; ++i)
          for (Index j = 0; j < d; ++j)
            ASSERT_EQ(std::bit_cast<std::uint32_t>(got_minus(i, j)), std::bit_cast<std::uint32_t>(want_minus(i, j)))
                << kernel::to_string(v) << " minus, d " << d << " at " << i << ", " << j;
      }
    }
  }
}

TEST(Matmul, RepackOfChangedRowsEqualsAFreshPack) {
  // The trainer rebuilds a weight pack 32 rows at a time as Adam updates them: after the
  // source changes in a range, repacking that range must give the words of a fresh pack, in
  // both orientations of a weight matrix (rows along the panels, rows along K).
  for (Precision p : precisions()) {
    const Index out = 75, in = 37;  // a partial last panel, odd K
    RowMatrixF w = random_matrix(out, in, 9);
    Packed fwd, bwd;
    fwd.pack_b(p, w.data(), in, out, 1, in);  // B(k, j) = W[j][k]
    bwd.pack_b(p, w.data(), out, in, in, 1);  // B(k, j) = W[k][j]
    for (Index r0 = 0; r0 < out; r0 += 32) {
      const Index r1 = std::min(out, r0 + 32);
      for (Index r = r0; r < r1; ++r)
        for (Index c = 0; c < in; ++c) w(r, c) = 2.0f * w(r, c) + 1.0f;
      fwd.repack(w.data(), r0, r1, 0, in);
      bwd.repack(w.data(), 0, in, r0, r1);
    }
    Packed fwd_fresh, bwd_fresh;
    fwd_fresh.pack_b(p, w.data(), in, out, 1, in);
    bwd_fresh.pack_b(p, w.data(), out, in, in, 1);
    const Index fwd_words = (out + 31) / 32 * 32 * fwd.stride(), bwd_words = (in + 31) / 32 * 32 * bwd.stride();
    for (Index i = 0; i < fwd_words; ++i) ASSERT_EQ(fwd.panel(0)[i], fwd_fresh.panel(0)[i]) << to_string(p) << " fwd " << i;
    for (Index i = 0; i < bwd_words; ++i) ASSERT_EQ(bwd.panel(0)[i], bwd_fresh.panel(0)[i]) << to_string(p) << " bwd " << i;
    // A range that does not start a panel (or a step pair, in bfloat16) is refused.
    EXPECT_THROW(fwd.repack(w.data(), 16, 32, 0, in), std::invalid_argument);
    if (p == Precision::kMedium) {
      EXPECT_THROW(bwd.repack(w.data(), 0, in, 3, 9), std::invalid_argument);
    }
    EXPECT_THROW(bwd.repack(w.data(), 0, in, 0, out + 1), std::invalid_argument);
  }
}

TEST(Matmul, PlacedPacksAreReadAndRepackedWhereTheyWerePlaced) {
  // Ranks on one node share one copy of the VAE's packed weights (Packed::place): a placed
  // pack multiplies from the caller's storage, repacks into it, a copy owns its words, and
  // own() and the next pack leave the storage untouched from then on.
  for (Precision p : precisions()) {
    const Index out = 75, in = 37, rows = 9;
    RowMatrixF w = random_matrix(out, in, 11);
    const RowMatrixF x = random_matrix(rows, in, 12);
    Packed pa, fwd, fresh;
    pa.pack_a(p, x.data(), rows, in, in, 1);
    fwd.pack_b(p, w.data(), in, out, 1, in);
    const std::size_t words = fwd.words();
    ASSERT_EQ(words, static_cast<std::size_t>((out + 31) / 32 * 32 * fwd.stride()));
    std::vector<std::uint32_t, Eigen::aligned_allocator<std::uint32_t>> storage(words + 16, 0xdeadbeefu);
    fwd.place(storage.data(), true);
    EXPECT_EQ(fwd.panel(0), storage.data());
    EXPECT_EQ(storage[words], 0xdeadbeefu);  // nothing written past the pack
    RowMatrixF c(rows, out), c_ref(rows, out);
    multiply(pa, fwd, c.data(), out);
    // Rows 32-63 change; the repack writes into the storage, and the product follows it.
    for (Index r = 32; r < 64; ++r)
      for (Index k = 0; k < in; ++k) w(r, k) = -w(r, k) + 0.25f;
    fwd.repack(w.data(), 32, 64, 0, in);
    fresh.pack_b(p, w.data(), in, out, 1, in);
    for (std::size_t i = 0; i < words; ++i) ASSERT_EQ(storage[i], fresh.panel(0)[i]) << to_string(p) << " word " << i;
    multiply(pa, fwd, c.data(), out);
    multiply(pa, fresh, c_ref.data(), out);
    EXPECT_EQ(c, c_ref);
    const Packed copy = fwd;  // owns its words
    EXPECT_NE(copy.panel(0), storage.data());
    fwd.own();
    std::fill(storage.begin(), storage.end(), 0u);
    for (const Packed* pk : {&copy, static_cast<const Packed*>(&fwd)}) {
      multiply(pa, *pk, c.data(), out);
      EXPECT_EQ(c, c_ref) << to_string(p);
    }
    // A new pack of a placed operand goes back to owned words.
    fwd.place(storage.data(), true);
    fwd.pack_b(p, w.data(), in, out, 1, in);
    EXPECT_NE(fwd.panel(0), storage.data());
  }
}

TEST(Matmul, PackedWordsStartOnCacheLines) {
  // A 64-byte row of an AMX tile load, or a zmm load of a B panel, that starts off a cache
  // line reads two lines: the AMX products ran at half their rate when the words sat 32
  // bytes past a line, as Eigen's allocator left them in the x86-64-v3 build. Every B
  // panel (32 columns) and every AMX A panel (32 rows × a multiple of 16 steps) is a whole
  // number of lines, so each starts on a line if the first does.
  const auto on_line = [](const void* w) { return reinterpret_cast<std::uintptr_t>(w) % 64 == 0; };
  for (kernel::Variant v : kernel::all_variants()) {
    if (!kernel::supported(v)) continue;
    const kernel::ScopedVariant scope(v);
    for (Precision p : precisions())
      for (const auto& [rows, depth] : std::vector<std::pair<Index, Index>>{{1, 1}, {9, 37}, {75, 300}, {130, 784}}) {
        const RowMatrixF x = random_matrix(rows, depth, 5);
        std::vector<Packed> keep;  // live packs, so each allocation lands somewhere new
        for (int round = 0; round < 4; ++round) {
          Packed pa, pb;
          pa.pack_a(p, x.data(), rows, depth, depth, 1);
          pb.pack_b(p, x.data(), depth, rows, 1, depth);
          EXPECT_TRUE(on_line(pa.panel(0))) << kernel::to_string(v) << " " << to_string(p) << " " << rows << "x" << depth;
          for (Index q = 0; q < (rows + Packed::kNr - 1) / Packed::kNr; ++q)
            EXPECT_TRUE(on_line(pb.panel(q))) << kernel::to_string(v) << " " << to_string(p) << " B panel " << q;
          if (pa.amx_rows()) {
            for (Index q = 0; q < (rows + Packed::kAmxRows - 1) / Packed::kAmxRows; ++q)
              EXPECT_TRUE(on_line(pa.panel(q))) << "AMX A panel " << q;
          }
          const Packed copy = pb;
          EXPECT_TRUE(on_line(copy.panel(0)));
          keep.push_back(std::move(pa));
        }
      }
  }
  for (std::size_t n : {1u, 3u, 17u, 1000u, 100000u}) {
    const LineFloats f(n, 1.0f);
    EXPECT_TRUE(on_line(f.data())) << n;
  }
}

TEST(Matmul, AbsMaxIsTheLargestMagnitudeStoredAndFlagsNonFinite) {
  // The trainer's grid needs max |gradient|; multiply finds it while storing C.
  for (Precision p : precisions()) {
    const Index m = 13, n = 45, k = 20;  // partial tiles in both directions
    RowMatrixF a = random_matrix(m, k, 10), b = random_matrix(k, n, 11);
    Packed pa, pb;
    pa.pack_a(p, a.data(), m, k, k, 1);
    pb.pack_b(p, b.data(), k, n, n, 1);
    RowMatrixF c = RowMatrixF::Constant(m, n + 3, 1e30f);  // columns past n are not C
    float mx = 0.25f;
    multiply(pa, pb, c.data(), n + 3, false, &mx);
    EXPECT_EQ(mx, c.leftCols(n).cwiseAbs().maxCoeff()) << to_string(p);
    float small = 1e30f;  // larger than every entry: stays
    multiply(pa, pb, c.data(), n + 3, false, &small);
    EXPECT_EQ(small, 1e30f);
    a(5, 3) = std::numeric_limits<float>::infinity();
    pa.pack_a(p, a.data(), m, k, k, 1);
    mx = 0;
    multiply(pa, pb, c.data(), n + 3, false, &mx);
    EXPECT_FALSE(std::isfinite(mx)) << to_string(p);
    a(5, 3) = std::numeric_limits<float>::quiet_NaN();
    pa.pack_a(p, a.data(), m, k, k, 1);
    mx = 0;
    multiply(pa, pb, c.data(), n + 3, false, &mx);
    EXPECT_TRUE(std::isnan(mx)) << to_string(p);
  }
}

TEST(Matmul, ParsesPrecisionsAndRefusesOthers) {
  EXPECT_EQ(parse_precision("highest"), Precision::kHighest);
  EXPECT_EQ(parse_precision("medium"), Precision::kMedium);
  EXPECT_THROW(parse_precision("high"), Error);
  Packed a, b;
  const RowMatrixF m = random_matrix(4, 4, 8);
  a.pack_a(Precision::kHighest, m.data(), 4, 4, 4, 1);
  b.pack_b(Precision::kHighest, m.data(), 3, 4, 4, 1);
  RowMatrixF c(4, 4);
  EXPECT_THROW(multiply(a, b, c.data(), 4), std::invalid_argument);  // depths differ
}

// multiply_f64: every entry the reference's chain of fused multiply-adds, bit for bit, in
// every kernel variant this CPU runs, over shapes that cover each tile's row and column
// edges (4-row groups; 8-column AVX2 tiles; 56-column AVX-512 tiles with a masked last
// vector), strided operands, and a C whose entries past n must stay untouched. Values of
// mixed signs and scales, so that a different order or an unfused product would show.
TEST(MatmulF64, EveryEntryIsTheReferenceChainInEveryVariant) {
  std::mt19937_64 gen(7);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  const std::vector<std::tuple<Index, Index, Index>> shapes = {
      {1, 1, 1}, {3, 5, 7}, {4, 9, 8}, {5, 300, 9}, {7, 64, 50}, {9, 33, 56}, {6, 17, 57}, {13, 40, 113}, {2, 0, 5}};
  for (const auto& [m, k, n] : shapes) {
    const Index lda = k + 3, ldb = n + 2, ldc = n + 5;
    std::vector<double> a(static_cast<std::size_t>(m * lda)), b(static_cast<std::size_t>(std::max<Index>(k, 1) * ldb));
    for (double& x : a) x = u(gen) * std::exp2(static_cast<int>(u(gen) * 20));
    for (double& x : b) x = u(gen) * std::exp2(static_cast<int>(u(gen) * 20));
    std::vector<double> want(static_cast<std::size_t>(m * ldc), -7.0);
    multiply_f64_reference(a.data(), lda, b.data(), ldb, want.data(), ldc, m, k, n);
    // The reference is the chain written out: c = fma(a_ik, b_kj, c) from +0.
    double first = 0.0;
    for (Index p = 0; p < k; ++p) first = std::fma(a[static_cast<std::size_t>(p)], b[static_cast<std::size_t>(p * ldb)], first);
    ASSERT_EQ(std::bit_cast<std::uint64_t>(want[0]), std::bit_cast<std::uint64_t>(first));
    int variants = 0;
    for (kernel::Variant v : kernel::all_variants()) {
      if (!kernel::supported(v)) continue;
      ++variants;
      const kernel::ScopedVariant scope(v);
      SCOPED_TRACE(kernel::to_string(v) + " m=" + std::to_string(m) + " k=" + std::to_string(k) + " n=" + std::to_string(n));
      std::vector<double> got(static_cast<std::size_t>(m * ldc), -7.0);
      multiply_f64(a.data(), lda, b.data(), ldb, got.data(), ldc, m, k, n);
      for (Index i = 0; i < m; ++i)
        for (Index j = 0; j < ldc; ++j) {
          const auto at = static_cast<std::size_t>(i * ldc + j);
          ASSERT_EQ(std::bit_cast<std::uint64_t>(got[at]), std::bit_cast<std::uint64_t>(want[at])) << "entry " << i << ", " << j;
        }
    }
    EXPECT_GE(variants, 1);
  }
}

// The chain is not Eigen's order: on the same operands a plain sum of rounded products
// differs in the last bits somewhere, so the test above would catch a kernel that summed
// in another order (a check that the operands are hard enough).
TEST(MatmulF64, OperandsTellOrdersApart) {
  std::mt19937_64 gen(11);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  const Index k = 300;
  std::vector<double> a(static_cast<std::size_t>(k)), b(static_cast<std::size_t>(k));
  int differ = 0;
  for (int t = 0; t < 50; ++t) {
    for (double& x : a) x = u(gen) * std::exp2(static_cast<int>(u(gen) * 20));
    for (double& x : b) x = u(gen) * std::exp2(static_cast<int>(u(gen) * 20));
    double fused = 0.0;
    multiply_f64(a.data(), k, b.data(), 1, &fused, 1, 1, k, 1);
    double backwards = 0.0;
    for (Index p = k - 1; p >= 0; --p) backwards = std::fma(a[static_cast<std::size_t>(p)], b[static_cast<std::size_t>(p)], backwards);
    differ += fused != backwards ? 1 : 0;
  }
  EXPECT_GT(differ, 25);
}

}  // namespace
}  // namespace latent::matmul
