add_library(latent_options INTERFACE)
target_compile_options(latent_options INTERFACE -Wall -Wextra -Wpedantic -Wshadow
  -Wnon-virtual-dtor -Wcast-align -Woverloaded-virtual -Wno-psabi
  # GCC 12 reports false positives inside its own AVX-512 intrinsics as used by Eigen.
  # Same for -Wuninitialized (GCC bug 105593) and -Wrestrict in std::string (GCC bug 105651).
  $<$<CXX_COMPILER_ID:GNU>:-Wno-maybe-uninitialized -Wno-uninitialized -Wno-restrict>)
if(LATENT_WERROR)
  target_compile_options(latent_options INTERFACE -Werror)
endif()
if(LATENT_MARCH)
  target_compile_options(latent_options INTERFACE -march=${LATENT_MARCH})
endif()
# Eigen must never split a product across threads: per-block kernels stay deterministic.
target_compile_definitions(latent_options INTERFACE EIGEN_DONT_PARALLELIZE)
