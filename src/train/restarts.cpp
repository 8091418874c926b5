#include "latent/train/restarts.hpp"

#include "latent/core/rng.hpp"

namespace latent::train {

std::uint64_t restart_seed(std::uint64_t seed, int run) {
  return run == 0 ? seed : CounterRng(seed, RngPurpose::kNInit, 0, static_cast<std::uint64_t>(run)).next_u64();
}

}  // namespace latent::train
