#pragma once
// Private to src/models/lda: what LDA's own tasks (lda_tasks.cpp) share with its export
// (lda_export.cpp).
#include <string>
#include <vector>

#include "latent/io/counts_dataset.hpp"
#include "latent/models/lda/lda.hpp"
#include "latent/models/registry.hpp"
#include "latent/train/task_run.hpp"

namespace latent::models {

/// --max-doc-update-iter and --mean-change-tol (the E-step of transform and score).
std::vector<OptionSpec> lda_e_step_options();
LdaEStepOptions lda_e_step(const OptionValues& o);

/// Loads the model named by --model (its /vocabulary into `vocabulary` when not null;
/// empty if the file has none) and opens the count dataset of --data on every rank,
/// checking that the vocabulary sizes agree (Error(kInput) naming both). Returns the model
/// refreshed for the run's threads. Collective (errors agreed).
Lda load_lda_and_corpus(train::TaskRun& run, io::CountsDatasetInfo& info, std::vector<std::string>* vocabulary = nullptr);

/// `latent export` of an LDA model (lda_export.cpp).
TaskSpec lda_export_task();

}  // namespace latent::models
