#include <iostream>

#include "latent/cli/cli.hpp"
#include "latent/comm/communicator.hpp"

int main(int argc, char** argv) {
  latent::comm::MpiSession session(&argc, &argv);
  std::vector<std::string> args(argv + 1, argv + argc);
  return latent::cli::run(args, std::cout, std::cerr);
}
