#pragma once
/// \file Basic types shared by every layer. Symbols: N samples, D features, K components,
/// B rows in a block. Matrices are row-major, one sample per row (NumPy's layout).
#include <Eigen/Core>
#include <cstdint>
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
/// Doubles on a boundary of Eigen's widest packet (EIGEN_MAX_ALIGN_BYTES: 32 bytes in the
/// default x86-64-v3 build, 64 with AVX-512). Buffers that kernels fill through Eigen maps must be
/// aligned the same way on every rank and run: Eigen's vectorised reductions peel a
/// number of scalars that depends on the destination's alignment, and peeled and packet
/// lanes sum in different orders, so a heap-dependent alignment changes the last bits.
using AlignedDoubles = std::vector<double, Eigen::aligned_allocator<double>>;

}  // namespace latent
