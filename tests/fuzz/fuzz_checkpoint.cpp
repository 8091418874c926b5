// Fuzzes the checkpoint reader: arbitrary bytes as a checkpoint file.
#include <new>

#include "fuzz_common.hpp"
#include "latent/core/error.hpp"
#include "latent/train/checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = latent::fuzz::write_input(data, size, "ckpt-000-000001.h5");
  static const latent::train::CheckpointStore store({latent::fuzz::scratch_dir(), 1, 0, true, 3}, "gmm", "{}", "{}");
  try {
    store.read(path);
    store.find_latest(latent::Logger::silent());
  } catch (const latent::Error&) {
  } catch (const std::bad_alloc&) {
  }
  return 0;
}
