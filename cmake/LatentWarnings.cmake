# latent_abi: what a consumer of the engine must compile with too (exported as latent::abi):
# the -march latent was built for (Eigen's vector layout depends on it) and Eigen's
# single-threaded products. latent_options: latent's own warnings, not exported.
add_library(latent_abi INTERFACE)
set_target_properties(latent_abi PROPERTIES EXPORT_NAME abi)
if(LATENT_MARCH)
  target_compile_options(latent_abi INTERFACE -march=${LATENT_MARCH})
endif()
# Eigen must never split a product across threads: per-block kernels stay deterministic.
# Eigen's heap blocks start on 64-byte cache lines (its default is the widest packet, 32
# bytes in the x86-64-v3 build, and glibc then puts every block at 32 mod 64, so each zmm
# load of a row read two lines). A line is also a packet boundary, so which entries
# Eigen's vectorised loops peel does not change, nor the bits.
target_compile_definitions(latent_abi INTERFACE EIGEN_DONT_PARALLELIZE EIGEN_MAX_ALIGN_BYTES=64)
set(LATENT_WARNING_FLAGS -Wall -Wextra -Wpedantic -Wshadow
  -Wnon-virtual-dtor -Wcast-align -Woverloaded-virtual -Wno-psabi
  # GCC 12 reports false positives inside its own AVX-512 intrinsics as used by Eigen.
  # Same for -Wuninitialized (GCC bug 105593) and -Wrestrict in std::string (GCC bug 105651).
  $<$<CXX_COMPILER_ID:GNU>:-Wno-maybe-uninitialized -Wno-uninitialized -Wno-restrict>)
if(LATENT_WERROR)
  list(APPEND LATENT_WARNING_FLAGS -Werror)
endif()
add_library(latent_options INTERFACE)
target_link_libraries(latent_options INTERFACE latent_abi)
target_compile_options(latent_options INTERFACE ${LATENT_WARNING_FLAGS})

