# libcsv (Debian libcsv-dev) as the imported target latent_csv::csv; used by the build and
# by latent's installed CMake package (latentConfig.cmake), whose static engine links it.
if(NOT TARGET latent_csv::csv)
  find_path(LATENT_CSV_INCLUDE_DIR csv.h REQUIRED)
  find_library(LATENT_CSV_LIBRARY csv REQUIRED)
  add_library(latent_csv::csv UNKNOWN IMPORTED)
  set_target_properties(latent_csv::csv PROPERTIES IMPORTED_LOCATION "${LATENT_CSV_LIBRARY}"
                                                   INTERFACE_INCLUDE_DIRECTORIES "${LATENT_CSV_INCLUDE_DIR}")
endif()
