// Fuzzes the importers (our own IDX, NPY and CSV parsers): the first byte picks the format.
#include <filesystem>
#include <sstream>

#include "fuzz_common.hpp"
#include "latent/cli/cli.hpp"
#include "latent/comm/communicator.hpp"

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  static latent::comm::MpiSession session(argc, argv);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  static const char* formats[] = {"idx", "npy", "csv"};
  const std::string format = formats[data[0] % 3];
  const std::string input = latent::fuzz::write_input(data + 1, size - 1, "input." + format);
  const std::string output = latent::fuzz::scratch_dir() + "/out";
  std::filesystem::remove_all(output);
  std::ostringstream out, err;
  // Errors are reported through the exit code; a crash is the finding.
  latent::cli::run({"import", "dense", "--format", format, "--input", input, "--output", output, "--rows-per-shard", "64"},
                   out, err);
  std::filesystem::remove_all(output);
  return 0;
}
