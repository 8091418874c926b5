#pragma once
/// \file Basic types shared by every layer. Symbols: N samples, D features, K components,
/// B rows in a block. Matrices are row-major, one sample per row (NumPy's layout).
#include <Eigen/Core>
#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

namespace latent {

/// Signed index for rows, columns and counts (64-bit: datasets exceed 2^31 rows).
using Index = std::int64_t;
/// Row-major dense matrix of doubles: samples are rows.
using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
/// Row-major float32 matrix, the on-disk precision of most shards.
using RowMatrixF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Vector = Eigen::VectorXd;
using RowVector = Eigen::RowVectorXd;
/// Doubles on a boundary of Eigen's widest packet (EIGEN_MAX_ALIGN_BYTES, which the build
/// sets to 64, a cache line: cmake/LatentWarnings.cmake). Buffers that kernels fill through Eigen maps must be
/// aligned the same way on every rank and run: Eigen's vectorised reductions peel a
/// number of scalars that depends on the destination's alignment, and peeled and packet
/// lanes sum in different orders, so a heap-dependent alignment changes the last bits.
using AlignedDoubles = std::vector<double, Eigen::aligned_allocator<double>>;

/// Allocator of storage that starts on a 64-byte cache line, whatever EIGEN_MAX_ALIGN_BYTES
/// a consumer builds with. With Eigen's default for x86-64-v3 (32 bytes) glibc's heap placed
/// every block at 32 mod 64: each 64-byte row of an AMX tile load or an AVX-512 load of such
/// a buffer spanned two cache lines. On the Intel Xeon (family 6 model 167) that halved
/// the AMX bfloat16 products' rate (docs/PERFORMANCE.md, "Packed operands on cache lines").
/// Throws std::bad_alloc.
template <class T>
struct CacheLineAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlign{64};
  CacheLineAllocator() noexcept = default;
  template <class U>
  CacheLineAllocator(const CacheLineAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlign)); }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, kAlign); }
  template <class U>
  bool operator==(const CacheLineAllocator<U>&) const noexcept { return true; }
};
/// float32 buffers that vector kernels read 64 bytes at a time (see CacheLineAllocator).
using LineFloats = std::vector<float, CacheLineAllocator<float>>;

}  // namespace latent
