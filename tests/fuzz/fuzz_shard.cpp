// Fuzzes the shard validator and block reader: arbitrary bytes as a data shard.
#include <new>

#include "fuzz_common.hpp"
#include "latent/core/error.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/io/block_source.hpp"
#include "latent/io/dense_dataset.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = latent::fuzz::write_input(data, size, "shard.h5");
  try {
    const auto info = latent::io::open_dense_dataset(path);
    if (info.num_rows > (1 << 20) / info.num_features) return 0;  // sizes are checked; reading is bounded here
    for (const auto& ref : latent::io::make_block_plan(info, 256)) latent::io::read_block(info, ref, info.has_labels, false);
  } catch (const latent::Error&) {
  } catch (const std::bad_alloc&) {
  }
  return 0;
}
