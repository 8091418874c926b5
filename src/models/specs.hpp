#pragma once
// The spec of every model (each defined in the model's folder, in <name>_spec.cpp), listed
// once in registry() (registry.cpp). Private to the engine.
#include "latent/models/registry.hpp"

// Specs list their options with designated initializers that leave the rest of an
// OptionSpec at its defaults, on purpose.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace latent::models {

ModelSpec gmm_spec();     // gmm/gmm_spec.cpp
ModelSpec bgmm_spec();    // gmm/gmm_spec.cpp
ModelSpec kmeans_spec();  // kmeans/kmeans_spec.cpp
ModelSpec bmm_spec();     // mixture/discrete_spec.cpp
ModelSpec mmm_spec();     // mixture/discrete_spec.cpp
ModelSpec ppca_spec();    // factor/factor_spec.cpp
ModelSpec fa_spec();      // factor/factor_spec.cpp
ModelSpec mfa_spec();     // mfa/mfa_spec.cpp
ModelSpec lda_spec();     // lda/lda_spec.cpp
ModelSpec vae_spec();     // vae/vae_spec.cpp

// Bytes per local row that a fit's k-means initialisation keeps between its passes
// (KmeansLloyd's bounds and its blocks' sums, at most KmeansLloyd::kMaxBoundBytes per rank)
// when --init-params is kmeans, for K = --n-components, D features and blocks of
// `block_rows`; else 0. For the mixtures' MemoryNeeds.
std::int64_t kmeans_init_row_state(const OptionValues& o, std::int64_t d, std::int64_t block_rows);  // kmeans/kmeans_spec.cpp

// The tasks served by a model's own code and its `latent info` text.
std::vector<TaskSpec> gmm_own_tasks();  // gmm/gmm_tasks.cpp
std::vector<TaskSpec> lda_own_tasks();  // lda/lda_tasks.cpp
std::string describe_lda_file(const std::string& path, int top_words);
std::vector<TaskSpec> vae_own_tasks();  // vae/vae_tasks.cpp
std::string describe_vae_file(const std::string& path);
std::vector<TaskSpec> mmm_own_tasks();  // mixture/mmm_tasks.cpp
std::string describe_mmm_file(const std::string& path, int top_words);

}  // namespace latent::models
