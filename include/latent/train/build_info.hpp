#pragma once
/// \file What a binary was built with and runs on (`latent --version`): for a program that
/// promises the same bits everywhere, the compiler, the target ISA and the libraries matter.
#include <string>
#include <utility>
#include <vector>

namespace latent::train {

/// (name, value) pairs, in print order: latent, compiler, target ISA (-march), MPI, HDF5,
/// oneTBB, Eigen. Local. (`latent --version` adds the kernel variants: core/kernel.hpp.)
std::vector<std::pair<std::string, std::string>> build_info();

}  // namespace latent::train
