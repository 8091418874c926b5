// Fuzzes the count-data (CSR) validator and block reader: arbitrary bytes as the one shard
// of a count dataset, with a vocabulary file sized by the shard's own vocab_size
// attribute (bounded) so that reading reaches the CSR checks.
#include <filesystem>
#include <fstream>
#include <new>

#include "fuzz_common.hpp"
#include "latent/core/error.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/io/h5_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string dir = latent::fuzz::scratch_dir() + "/counts";
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/part-00000.h5";
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    std::int64_t vocab = 1;
    {
      const latent::io::H5Reader r(path);
      if (r.has_attr("/", "vocab_size")) vocab = r.attr_int("/", "vocab_size");
    }
    if (vocab < 1 || vocab > 100000) vocab = 1;
    {
      std::ofstream v(dir + "/vocabulary.txt", std::ios::trunc);
      for (std::int64_t i = 0; i < vocab; ++i) v << 'w' << i << '\n';
    }
    const auto info = latent::io::open_counts_dataset(dir);
    if (info.num_rows > (1 << 20) || info.num_nonzeros > (1 << 22)) return 0;  // sizes are checked; reading is bounded here
    for (const auto& ref : latent::io::make_block_plan(info.shard_rows(), 64))
      latent::io::read_csr_block(info, ref, info.has_labels);
  } catch (const latent::Error&) {
  } catch (const std::bad_alloc&) {
  }
  return 0;
}
