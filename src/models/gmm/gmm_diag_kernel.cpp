// Picks the variant of the GMM diagonal kernels (gmm_diag_kernel.hpp) from kernel::active().
#include "latent/models/gmm/gmm_diag_kernel.hpp"

#include "latent/core/kernel.hpp"

namespace latent::models::gmm_kernel {
namespace {
const Variant& active() {
  return kernel::active() >= kernel::Variant::kAvx512 ? avx512::variant() : avx2::variant();
}
}  // namespace

bool convert(const double* x, std::ptrdiff_t rows, std::ptrdiff_t ld, std::ptrdiff_t d, const double* c, float* out,
             std::ptrdiff_t dp) {
  return active().convert_double(x, rows, ld, d, c, out, dp);
}

bool convert(const float* x, std::ptrdiff_t rows, std::ptrdiff_t ld, std::ptrdiff_t d, const double* c, float* out,
             std::ptrdiff_t dp, const float* neg_c32) {
  return active().convert_float(x, rows, ld, d, c, out, dp, neg_c32);
}

std::vector<float> negated_float(const double* c, std::ptrdiff_t d) {
  std::vector<float> out(static_cast<std::size_t>(d));
  for (std::ptrdiff_t j = 0; j < d; ++j) {
    const auto f = static_cast<float>(c[j]);
    if (static_cast<double>(f) != c[j]) return {};
    out[static_cast<std::size_t>(j)] = -f;
  }
  return out;
}

bool convert_pairs(const double* x, std::ptrdiff_t rows, std::ptrdiff_t ld, std::ptrdiff_t d, const double* c,
                   float* out, std::ptrdiff_t dp, const float* t, const std::int32_t* comps, float* q) {
  return active().convert_pairs_double(x, rows, ld, d, c, out, dp, t, comps, q);
}

bool convert_pairs(const float* x, std::ptrdiff_t rows, std::ptrdiff_t ld, std::ptrdiff_t d, const double* c,
                   float* out, std::ptrdiff_t dp, const float* t, const std::int32_t* comps, float* q,
                   const float* neg_c32) {
  return active().convert_pairs_float(x, rows, ld, d, c, out, dp, t, comps, q, neg_c32);
}

void quadratic(const float* x, std::ptrdiff_t rows, std::ptrdiff_t dp, const float* s, const float* t, std::ptrdiff_t k,
               float* q, PrefetchRange& prefetch) {
  active().quadratic(x, rows, dp, s, t, k, q, prefetch);
}

void quadratic_unit(const float* x, std::ptrdiff_t rows, std::ptrdiff_t dp, const float* t, std::ptrdiff_t k, float* q,
                    PrefetchRange& prefetch) {
  active().quadratic_unit(x, rows, dp, t, k, q, prefetch);
}

void moments(const float* x, std::ptrdiff_t rows, std::ptrdiff_t dp, std::ptrdiff_t d, const float* r, std::ptrdiff_t k,
             double* first, double* second, PrefetchRange& prefetch) {
  active().moments(x, rows, dp, d, r, k, first, second, prefetch);
}

}  // namespace latent::models::gmm_kernel
