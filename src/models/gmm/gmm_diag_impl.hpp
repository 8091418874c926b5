// The GMM diagonal kernels, written once over a 16-float vector type V that each variant's
// translation unit defines (gmm_diag_avx2.cpp: two __m256; gmm_diag_avx512.cpp: one __m512)
// together with the register blocking it affords. Included only by those two files, inside
// their own namespace; it instantiates no template with external linkage (no std:: or
// Eigen), so no AVX-512 code can be merged into code the avx2 variant runs.
//
// Needs, before inclusion: struct V; V vzero(); V vload(const float*); V vset1(float);
// V vfma(V a, V b, V c) (a·b + c, one rounding); V vmul(V, V); V vadd(V, V); void vstore(float*, V);
// __m256 vfold8(V) (lanes i + (i + 8)); constants kQuadRows, kQuadComps, kMomWidth, kSparseWidth,
// kMomComps. Defines the including namespace's `const Variant& variant()`.

namespace {

using I = std::ptrdiff_t;

// The fixed tree of gmm_diag_kernel.hpp: lanes i and i+8, then i and i+4, i and i+2, i and i+1.
inline float vsum(V a) {
  const __m256 t8 = vfold8(a);
  const __m128 t4 = _mm_add_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps(t8, 1));
  const __m128 t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
  return _mm_cvtss_f32(_mm_add_ss(t2, _mm_shuffle_ps(t2, t2, 0x55)));
}

// pf.lines cache lines of the range asked for (into L2), spread over the loops of both
// kernels so the next tile's reads overlap this tile's arithmetic at the pace memory delivers.
using Prefetch = PrefetchRange;
inline void step(Prefetch& pf) {
  for (int l = 0; l < pf.lines && pf.next < pf.end; ++l) {
    _mm_prefetch(pf.next, _MM_HINT_T1);
    pf.next += 64;
  }
}

// R rows × C components of q, over the whole padded row. kUnit: s is all ones and not
// read; y = x + t, which is fma(x, 1, t) bit for bit (one rounding of the same exact sum),
// on the adders instead of the FMA units (k-means: half the FMAs; gmm_diag_kernel.hpp
// has the times measured).
template <int R, int C, bool kUnit>
inline void quad_block(const float* x, I dp, const float* s, const float* t, I k, float* q, Prefetch& pf) {
  V acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = vzero();
  for (I j = 0; j < dp; j += 16) {
    step(pf);
    V xv[R];
    for (int r = 0; r < R; ++r) xv[r] = vload(x + r * dp + j);
    for (int c = 0; c < C; ++c) {
      const V tv = vload(t + c * dp + j);
      if constexpr (kUnit) {
        for (int r = 0; r < R; ++r) {
          const V y = vadd(xv[r], tv);
          acc[r][c] = vfma(y, y, acc[r][c]);
        }
      } else {
        const V sv = vload(s + c * dp + j);
        for (int r = 0; r < R; ++r) {
          const V y = vfma(xv[r], sv, tv);
          acc[r][c] = vfma(y, y, acc[r][c]);
        }
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) q[r * k + c] = vsum(acc[r][c]);
}

// C components for all rows: the components' operands (C × dp × 2 floats) stay in L1
// while the rows stream from L2.
template <int C, bool kUnit>
inline void quad_comps(const float* x, I rows, I dp, const float* s, const float* t, I k, float* q, Prefetch& pf) {
  I i = 0;
  for (; i + kQuadRows <= rows; i += kQuadRows)
    quad_block<kQuadRows, C, kUnit>(x + i * dp, dp, s, t, k, q + i * k, pf);
  for (; i < rows; ++i) quad_block<1, C, kUnit>(x + i * dp, dp, s, t, k, q + i * k, pf);
}

// C components × W lane groups of the moments over all rows; sums land in f and f2
// (C × W·16 floats, row stride W·16).
template <int W, int C>
inline void mom_block(const float* x, I rows, I dp, const float* r, I k, float* f, float* f2, Prefetch& pf) {
  V a1[C][W], a2[C][W];
  for (int c = 0; c < C; ++c)
    for (int w = 0; w < W; ++w) a1[c][w] = a2[c][w] = vzero();
  for (I i = 0; i < rows; ++i) {
    step(pf);
    V xv[W], x2[W];
    for (int w = 0; w < W; ++w) {
      xv[w] = vload(x + i * dp + 16 * w);
      x2[w] = vmul(xv[w], xv[w]);
    }
    for (int c = 0; c < C; ++c) {
      const V rv = vset1(r[i * k + c]);
      for (int w = 0; w < W; ++w) {
        a1[c][w] = vfma(rv, xv[w], a1[c][w]);
        a2[c][w] = vfma(rv, x2[w], a2[c][w]);
      }
    }
  }
  for (int c = 0; c < C; ++c)
    for (int w = 0; w < W; ++w) {
      vstore(f + c * W * 16 + 16 * w, a1[c][w]);
      vstore(f2 + c * W * 16 + 16 * w, a2[c][w]);
    }
}

// Adds C × (W·16) float sums to the double statistics of components c0.. at column j0.
inline void add_sums(const float* f, const float* f2, int cs, int width, I c0, I j0, I d, double* first, double* second) {
  const I n = d - j0 < width ? d - j0 : width;
  for (int c = 0; c < cs; ++c) {
    double* o1 = first + (c0 + c) * d + j0;
    double* o2 = second + (c0 + c) * d + j0;
    for (I j = 0; j < n; ++j) {
      o1[j] += static_cast<double>(f[c * width + j]);
      o2[j] += static_cast<double>(f2[c * width + j]);
    }
  }
}

template <int W>
inline void mom_columns(const float* x, I rows, I dp, I d, const float* r, I k, I j0, double* first, double* second,
                        Prefetch& pf) {
  alignas(64) float f[kMomComps * W * 16], f2[kMomComps * W * 16];
  I c0 = 0;
  for (; c0 + kMomComps <= k; c0 += kMomComps) {
    mom_block<W, kMomComps>(x + j0, rows, dp, r + c0, k, f, f2, pf);
    add_sums(f, f2, kMomComps, W * 16, c0, j0, d, first, second);
  }
  const int rest = static_cast<int>(k - c0);
  switch (rest) {
    case 0: return;
    case 1: mom_block<W, 1>(x + j0, rows, dp, r + c0, k, f, f2, pf); break;
    case 2: mom_block<W, 2>(x + j0, rows, dp, r + c0, k, f, f2, pf); break;
    case 3: mom_block<W, 3>(x + j0, rows, dp, r + c0, k, f, f2, pf); break;
    default: mom_block<W, 4>(x + j0, rows, dp, r + c0, k, f, f2, pf); break;  // kMomComps ≤ 5
  }
  add_sums(f, f2, rest, W * 16, c0, j0, d, first, second);
}

// The moments of one component over the rows idx[0..m) of the tile, in that (ascending)
// order, for W lane groups: the FMA chain of mom_block() without its terms whose
// responsibility is exactly zero. Each such term is fma(+0, x, a) = a + (±0) = a (for x and
// x² finite: a float32 row whose square overflows gave NaN sums in the dense blocks; a sum
// that is still ±0 stays a zero and adds nothing to the doubles), so the sums have the bits
// of mom_block()'s. Sums land in f and f2 (W·16 floats each).
template <int W>
inline void mom_sparse(const float* x, const std::int16_t* idx, int m, I dp, const float* r, I k, float* f, float* f2,
                       Prefetch& pf) {
  V a1[W], a2[W];
  for (int w = 0; w < W; ++w) a1[w] = a2[w] = vzero();
  for (int t = 0; t < m; ++t) {
    step(pf);
    const I i = idx[t];
    const V rv = vset1(r[i * k]);
    for (int w = 0; w < W; ++w) {
      const V xv = vload(x + i * dp + 16 * w);
      a1[w] = vfma(rv, xv, a1[w]);
      a2[w] = vfma(rv, vmul(xv, xv), a2[w]);
    }
  }
  for (int w = 0; w < W; ++w) {
    vstore(f + 16 * w, a1[w]);
    vstore(f2 + 16 * w, a2[w]);
  }
}

// Tiles of at most this many rows may take the sparse moments (their row lists are on the stack).
constexpr I kSparseMaxRows = 256;

// moments() when most responsibilities are exactly zero (a float32 responsibility below
// 2⁻¹⁵⁰ rounds to zero; in many dimensions nearly every row belongs to one component: 89 %
// of Fashion-MNIST's with K = 10): per component, the list of its rows with r ≠ 0, then
// mom_sparse() over each lane-group panel. Work ∝ the non-zeros instead of rows × K; the
// same bits as the dense blocks.
void moments_sparse(const float* x, I rows, I dp, I d, const float* r, I k, I nonzero, double* first, double* second,
                    Prefetch& pf) {
  std::int16_t idx[kSparseMaxRows];
  alignas(64) float f[kSparseWidth * 16], f2[kSparseWidth * 16];
  // The dense blocks take a step per row, component block and panel; this path takes one
  // per non-zero and panel, so it asks for more lines per step to bring in as much of the
  // next tile (no result depends on it).
  const int lines = pf.lines;
  if (pf.next < pf.end && nonzero > 0) {
    const I steps = nonzero * ((dp + kSparseWidth * 16 - 1) / (kSparseWidth * 16));
    const I left = (pf.end - pf.next + 63) / 64;
    const I want = (left + steps - 1) / steps;  // (no std::max: no shared template here)
    pf.lines = want > lines ? static_cast<int>(want) : lines;
  }
  for (I c = 0; c < k; ++c) {
    int m = 0;
    for (I i = 0; i < rows; ++i) {  // branch-free: the zeros fall in no pattern
      idx[m] = static_cast<std::int16_t>(i);
      m += r[i * k + c] != 0.0f;
    }
    I j0 = 0;
    for (; j0 + kSparseWidth * 16 <= dp; j0 += kSparseWidth * 16) {
      mom_sparse<kSparseWidth>(x + j0, idx, m, dp, r + c, k, f, f2, pf);
      add_sums(f, f2, 1, kSparseWidth * 16, c, j0, d, first, second);
    }
    for (; j0 < dp; j0 += 16) {
      mom_sparse<1>(x + j0, idx, m, dp, r + c, k, f, f2, pf);
      add_sums(f, f2, 1, 16, c, j0, d, first, second);
    }
  }
  pf.lines = lines;
}

// How far ahead convert_impl() asks for the rows: the hardware prefetcher stops at 4 KiB
// page boundaries, and reading the rows is a large share of the float32 pass.
constexpr I kPrefetchBytes = 4096;

inline __m256d load4(const double* p) { return _mm256_loadu_pd(p); }
inline __m256d load4(const float* p) { return _mm256_cvtps_pd(_mm_loadu_ps(p)); }
#ifdef __AVX512F__
inline __m512d load8(const double* p) { return _mm512_loadu_pd(p); }
inline __m512d load8(const float* p) { return _mm512_cvtps_pd(_mm256_loadu_ps(p)); }
#endif

// The row loop of both conversions below: per row, wide(src, dst, j) over kWide values at a
// time where the variant has 512-bit registers, narrow() over kNarrow at a time, then one()
// per remaining value; a prefetch kPrefetchBytes ahead once per 64-byte line of the rows.
template <I kWide, I kNarrow, class T, class Wide, class Narrow, class One>
inline void convert_loop(const T* x, I rows, I ld, I d, float* out, I dp, Wide&& wide, Narrow&& narrow, One&& one) {
  constexpr I kPerLine = 64 / sizeof(T);
  for (I i = 0; i < rows; ++i) {
    const T* row = x + i * ld;
    float* o = out + i * dp;
    I j = 0;
#ifdef __AVX512F__
    for (; j + kWide <= d; j += kWide) {
      if (j % kPerLine == 0) _mm_prefetch(reinterpret_cast<const char*>(row + j) + kPrefetchBytes, _MM_HINT_T0);
      wide(row + j, o + j, j);
    }
#else
    (void)wide;
#endif
    for (; j + kNarrow <= d; j += kNarrow) {
      if (j % kPerLine == 0) _mm_prefetch(reinterpret_cast<const char*>(row + j) + kPrefetchBytes, _MM_HINT_T0);
      narrow(row + j, o + j, j);
    }
    for (; j < d; ++j) one(row[j], o + j, j);
  }
}

// out[i·dp + j] = float(double(x[i·ld + j]) − c[j]) for j < d (one rounding; from float32
// rows the bits of the same rows widened to double); true if any x is NaN. Eight at a time
// where the variant has 512-bit registers: the same operations per value (widen, subtract
// in double, round once), so the same bits as four at a time.
template <class T>
bool convert_impl(const T* x, I rows, I ld, I d, const double* c, float* out, I dp) {
  __m256d bad = _mm256_setzero_pd();
  bool bad_tail = false;
#ifdef __AVX512F__
  __mmask8 bad8 = 0;
  const auto wide = [&](const T* r, float* o, I j) {
    const __m512d v = load8(r);
    bad8 = static_cast<__mmask8>(bad8 | _mm512_cmp_pd_mask(v, v, _CMP_UNORD_Q));
    _mm256_storeu_ps(o, _mm512_cvtpd_ps(_mm512_sub_pd(v, _mm512_loadu_pd(c + j))));
  };
#else
  const auto wide = [](const T*, float*, I) {};
#endif
  convert_loop<8, 4>(
      x, rows, ld, d, out, dp, wide,
      [&](const T* r, float* o, I j) {
        const __m256d v = load4(r);
        bad = _mm256_or_pd(bad, _mm256_cmp_pd(v, v, _CMP_UNORD_Q));
        _mm_storeu_ps(o, _mm256_cvtpd_ps(_mm256_sub_pd(v, _mm256_loadu_pd(c + j))));
      },
      [&](T v, float* o, I j) {
        bad_tail |= v != v;
        *o = static_cast<float>(static_cast<double>(v) - c[j]);
      });
#ifdef __AVX512F__
  bad_tail |= bad8 != 0;
#endif
  return bad_tail || _mm256_movemask_pd(bad) != 0;
}

// The float32 rows' conversion where every c_j is itself a float (the k-means frame's
// origin): out = x + (−c) in float32, the bits of convert_impl()'s route through double.
// That route rounds the exact difference of two floats to double and then to float, and a
// double (53 bits) has at least 2·24 + 2 bits, so the second rounding gives the correctly
// rounded float of the exact difference, which is what the float32 subtraction gives
// (S. A. Figueroa, "When is double rounding innocuous?", SIGNUM Newsletter 30(3), 1995).
// One load, compare, add and store per 16 values instead of widening, subtracting in
// double and narrowing. nc: −c as floats (d values). True if any x is NaN.
inline bool convert_float_origin(const float* x, I rows, I ld, I d, const float* nc, float* out, I dp) {
  __m256 bad = _mm256_setzero_ps();
  bool bad_tail = false;
#ifdef __AVX512F__
  __mmask16 bad16 = 0;
  const auto wide = [&](const float* r, float* o, I j) {
    const __m512 v = _mm512_loadu_ps(r);
    bad16 = static_cast<__mmask16>(bad16 | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q));
    _mm512_storeu_ps(o, _mm512_add_ps(v, _mm512_loadu_ps(nc + j)));
  };
#else
  const auto wide = [](const float*, float*, I) {};
#endif
  convert_loop<16, 8>(
      x, rows, ld, d, out, dp, wide,
      [&](const float* r, float* o, I j) {
        const __m256 v = _mm256_loadu_ps(r);
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        _mm256_storeu_ps(o, _mm256_add_ps(v, _mm256_loadu_ps(nc + j)));
      },
      [&](float v, float* o, I j) {
        bad_tail |= v != v;
        *o = v + nc[j];
      });
#ifdef __AVX512F__
  bad_tail |= bad16 != 0;
#endif
  return bad_tail || _mm256_movemask_ps(bad) != 0;
}

// convert_float_origin() where nc (−c as floats) is given and the rows are float32, else
// convert_impl(): the same bits.
template <class T>
bool convert_rows(const T* x, I rows, I ld, I d, const double* c, const float* nc, float* out, I dp) {
  if constexpr (sizeof(T) == sizeof(float))
    if (nc != nullptr) return convert_float_origin(x, rows, ld, d, nc, out, dp);
  return convert_impl(x, rows, ld, d, c, out, dp);
}

template <bool kUnit>
void quadratic_of(const float* x, I rows, I dp, const float* s, const float* t, I k, float* q, Prefetch& pf) {
  I c0 = 0;
  const auto at = [&](I c) { return kUnit ? s : s + c * dp; };
  for (; c0 + kQuadComps <= k; c0 += kQuadComps)
    quad_comps<kQuadComps, kUnit>(x, rows, dp, at(c0), t + c0 * dp, k, q + c0, pf);
  switch (k - c0) {
    case 0: break;
    case 1: quad_comps<1, kUnit>(x, rows, dp, at(c0), t + c0 * dp, k, q + c0, pf); break;
    case 2: quad_comps<2, kUnit>(x, rows, dp, at(c0), t + c0 * dp, k, q + c0, pf); break;
    case 3: quad_comps<3, kUnit>(x, rows, dp, at(c0), t + c0 * dp, k, q + c0, pf); break;
    default: quad_comps<4, kUnit>(x, rows, dp, at(c0), t + c0 * dp, k, q + c0, pf); break;  // kQuadComps ≤ 5
  }
}

void quadratic_impl(const float* x, I rows, I dp, const float* s, const float* t, I k, float* q, Prefetch& pf) {
  quadratic_of<false>(x, rows, dp, s, t, k, q, pf);
}

void quadratic_unit_impl(const float* x, I rows, I dp, const float* t, I k, float* q, Prefetch& pf) {
  quadratic_of<true>(x, rows, dp, nullptr, t, k, q, pf);
}

// convert_impl() of the rows, four at a time, and each row's distance to its component
// while the four are in L1: quad_block()'s chain for one (row, component) pair, four
// chains at once.
template <class T>
bool convert_pairs_impl(const T* x, I rows, I ld, I d, const double* c, const float* nc, float* out, I dp,
                        const float* t, const std::int32_t* comps, float* q) {
  constexpr I P = 4;
  bool bad = false;
  for (I i0 = 0; i0 < rows; i0 += P) {
    const I n = rows - i0 < P ? rows - i0 : P;
    bad = convert_rows(x + i0 * ld, n, ld, d, c, nc, out + i0 * dp, dp) || bad;
    V acc[P];
    const float* tr[P];
    for (I p = 0; p < P; ++p) {
      acc[p] = vzero();
      tr[p] = t + comps[i0 + (p < n ? p : 0)] * dp;  // past the last row: a repeat, not stored
    }
    const float* o = out + i0 * dp;
    for (I j = 0; j < dp; j += 16)
      for (I p = 0; p < P; ++p) {
        const V y = vadd(vload(o + (p < n ? p : 0) * dp + j), vload(tr[p] + j));
        acc[p] = vfma(y, y, acc[p]);
      }
    for (I p = 0; p < n; ++p) q[i0 + p] = vsum(acc[p]);
  }
  return bad;
}
bool convert_pairs_double(const double* x, I rows, I ld, I d, const double* c, float* out, I dp, const float* t,
                          const std::int32_t* comps, float* q) {
  return convert_pairs_impl(x, rows, ld, d, c, nullptr, out, dp, t, comps, q);
}
bool convert_pairs_float(const float* x, I rows, I ld, I d, const double* c, float* out, I dp, const float* t,
                         const std::int32_t* comps, float* q, const float* nc) {
  return convert_pairs_impl(x, rows, ld, d, c, nc, out, dp, t, comps, q);
}

void moments_impl(const float* x, I rows, I dp, I d, const float* r, I k, double* first, double* second, Prefetch& pf) {
  if (rows <= kSparseMaxRows) {
    // Sparse where fewer than half the responsibilities are non-zero: a non-zero there
    // costs about 1.4 times its share of a dense block (its row's loads and squares are
    // not shared by the block's other components). Either way the same bits.
    I nonzero = 0;
    for (I e = 0; e < rows * k; ++e) nonzero += r[e] != 0.0f;
    if (2 * nonzero < rows * k) {
      moments_sparse(x, rows, dp, d, r, k, nonzero, first, second, pf);
      return;
    }
  }
  I j0 = 0;
  for (; j0 + kMomWidth * 16 <= dp; j0 += kMomWidth * 16)
    mom_columns<kMomWidth>(x, rows, dp, d, r, k, j0, first, second, pf);
  for (; j0 < dp; j0 += 16) mom_columns<1>(x, rows, dp, d, r, k, j0, first, second, pf);
}

bool convert_double(const double* x, I rows, I ld, I d, const double* c, float* out, I dp) {
  return convert_impl(x, rows, ld, d, c, out, dp);
}
bool convert_float(const float* x, I rows, I ld, I d, const double* c, float* out, I dp, const float* nc) {
  return convert_rows(x, rows, ld, d, c, nc, out, dp);
}

}  // namespace

const Variant& variant() {
  static constexpr Variant kTable{&convert_double,      &convert_float,        &convert_pairs_double,
                                  &convert_pairs_float, &quadratic_impl,       &quadratic_unit_impl,
                                  &moments_impl};
  return kTable;
}
