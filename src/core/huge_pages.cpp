#include "latent/core/huge_pages.hpp"

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <new>

namespace latent::huge_pages {

namespace {
constexpr std::uintptr_t kHuge = std::uintptr_t{2} << 20;
}  // namespace

void advise(void* p, std::size_t bytes) noexcept {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t lo = (a + kHuge - 1) / kHuge * kHuge, hi = (a + bytes) / kHuge * kHuge;
  if (p != nullptr && hi > lo) (void)madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
}

void* allocate(std::size_t bytes) {
  if (bytes < 2 * kHuge) {
    void* p = std::malloc(bytes == 0 ? 1 : bytes);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  const std::size_t rounded = (bytes + kHuge - 1) / kHuge * kHuge;
  void* p = std::aligned_alloc(kHuge, rounded);
  if (p == nullptr) throw std::bad_alloc();
  advise(p, rounded);
  return p;
}

}  // namespace latent::huge_pages
