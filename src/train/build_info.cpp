#include "latent/train/build_info.hpp"

#include <oneapi/tbb/version.h>

#include <Eigen/Core>

#include "latent/comm/communicator.hpp"
#include "latent/io/h5_file.hpp"

#ifndef LATENT_VERSION
#define LATENT_VERSION "unknown"
#endif
#ifndef LATENT_MARCH
#define LATENT_MARCH ""
#endif

namespace latent::train {

std::vector<std::pair<std::string, std::string>> build_info() {
  const std::string march = LATENT_MARCH;
  return {
      {"latent", LATENT_VERSION},
      {"compiler", std::string("GCC ") + __VERSION__},
      {"target ISA", march.empty() ? "compiler default (-march not set)" : "-march=" + march},
      {"MPI", comm::mpi_library_version()},
      {"HDF5", io::hdf5_version()},
      {"oneTBB", std::string(TBB_runtime_version()) + " (built with " + TBB_VERSION_STRING + ")"},
      {"Eigen", std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) + "." +
                    std::to_string(EIGEN_MINOR_VERSION)},
  };
}

}  // namespace latent::train
