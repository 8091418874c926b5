#include <malloc.h>

#include <iostream>

#include "latent/cli/cli.hpp"
#include "latent/comm/communicator.hpp"
#include "latent/core/control.hpp"

int main(int argc, char** argv) {
  // Blocks are tens of MiB; without this glibc maps and unmaps them on every block, and
  // page faults cost more than the E-step itself.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  // Before MPI_Init (which can take a while): a SIGTERM then is honoured at the first stop
  // point or iteration boundary instead of killing the process.
  latent::install_stop_signal_handlers();
  latent::comm::MpiSession session(&argc, &argv);
  std::vector<std::string> args(argv + 1, argv + argc);
  return latent::cli::run(args, std::cout, std::cerr);
}
