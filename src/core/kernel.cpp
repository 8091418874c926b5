#include "latent/core/kernel.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <cpuid.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string_view>

#include <Eigen/Core>

#include "latent/core/error.hpp"

namespace latent::kernel {
namespace {

// Eigen sizes the blocks of its matrix products from the cache sizes it reads with CPUID at
// first use, and the depth of a block decides where a long sum over k is split (and the
// row blocks which micro-kernel takes a row): two CPUs with different caches would sum in
// different orders and disagree in the last bits (seen under qemu's Haswell, whose caches
// differ from this machine's: tests/cli/isa_qemu_test.py). Fixed sizes, set before main()
// and before any product, make Eigen's products the same bits on every node. The values are
// those of a common server core (32 KiB L1d, 1 MiB L2, 32 MiB L3); they only move the block
// boundaries, and so cost a little speed where the caches are larger.
constexpr std::ptrdiff_t kL1 = 32 * 1024, kL2 = 1024 * 1024, kL3 = 32 * 1024 * 1024;
[[maybe_unused]] const bool g_fixed_blocking = [] {
  Eigen::setCpuCacheSizes(kL1, kL2, kL3);
  return true;
}();

// -1 until chosen; then the Variant's value.
std::atomic<int> g_active{-1};
std::mutex g_choose;

// AMX-TILE and AMX-BF16 (CPUID leaf 7: EDX bits 24 and 22), and Linux's leave to use the
// 8 KiB tile data (arch_prctl ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA, Linux 5.16 and
// later): granted to the whole process, once, before any thread runs a tile instruction.
bool amx_permitted() noexcept {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return false;
  if ((edx & (1u << 24)) == 0 || (edx & (1u << 22)) == 0) return false;
  constexpr int kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
}

std::string names() {
  std::string s;
  for (Variant v : all_variants()) s += (s.empty() ? "" : ", ") + to_string(v);
  return s;
}

std::string supported_names() {
  std::string s;
  for (Variant v : all_variants())
    if (supported(v)) s += (s.empty() ? "" : ", ") + to_string(v);
  return s.empty() ? "none" : s;
}

}  // namespace

std::vector<Variant> all_variants() { return {Variant::kAvx2, Variant::kAvx512, Variant::kAvx512Bf16, Variant::kAmxBf16}; }

std::string to_string(Variant v) {
  switch (v) {
    case Variant::kAvx2: return "avx2";
    case Variant::kAvx512: return "avx512";
    case Variant::kAvx512Bf16: return "avx512bf16";
    case Variant::kAmxBf16: return "amxbf16";
  }
  return "unknown";
}

std::optional<Variant> parse(std::string_view s) {
  for (Variant v : all_variants())
    if (s == to_string(v)) return v;
  return std::nullopt;
}

bool supported(Variant v) noexcept {
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  static const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  static const bool bf16 = avx512 && __builtin_cpu_supports("avx512bf16");
  static const bool amx = bf16 && amx_permitted();
  switch (v) {
    case Variant::kAvx2: return avx2;
    case Variant::kAvx512: return avx512;
    case Variant::kAvx512Bf16: return bf16;
    case Variant::kAmxBf16: return amx;
  }
  return false;
}

std::optional<Variant> best_supported() noexcept {
  std::optional<Variant> best;
  for (Variant v : all_variants())
    if (supported(v)) best = v;
  return best;
}

Variant local_choice() {
  const char* env = std::getenv("LATENT_KERNEL");
  if (env != nullptr && *env != '\0') {
    const std::optional<Variant> v = parse(env);
    if (!v) throw_usage("LATENT_KERNEL='" + std::string(env) + "' names no kernel variant; use one of " + names());
    if (!supported(*v))
      throw_usage("LATENT_KERNEL=" + std::string(env) + ": this CPU lacks the instructions of that kernel variant (it runs: " +
                  supported_names() + ")");
    return *v;
  }
  const std::optional<Variant> best = best_supported();
  if (!best)
    throw_usage("this CPU lacks AVX2 and FMA, which latent's kernels need (x86-64-v3: Intel Haswell, AMD Zen and later)");
  return *best;
}

Variant active() {
  const int v = g_active.load(std::memory_order_acquire);
  if (v >= 0) return static_cast<Variant>(v);
  const std::lock_guard lock(g_choose);
  if (g_active.load(std::memory_order_relaxed) < 0) g_active.store(static_cast<int>(local_choice()), std::memory_order_release);
  return static_cast<Variant>(g_active.load(std::memory_order_relaxed));
}

void set_active(Variant v) {
  if (!supported(v))
    throw_usage("kernel variant " + to_string(v) + ": this CPU lacks its instructions (it runs: " + supported_names() + ")");
  g_active.store(static_cast<int>(v), std::memory_order_release);
}

bool tile_prefetch() noexcept {
  static const bool on = [] {
    if (const char* e = std::getenv("LATENT_TILE_PREFETCH"); e != nullptr && *e != '\0') return std::string_view(e) != "0";
    __builtin_cpu_init();
    if (__builtin_cpu_is("intel") != 0) return true;
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__builtin_cpu_is("amd") == 0 || __get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0) return false;
    const unsigned family = ((eax >> 8) & 0xf) + ((eax >> 20) & 0xff);  // base + extended family
    return family == 25;
  }();
  return on;
}

}  // namespace latent::kernel
