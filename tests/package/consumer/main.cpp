// Fits LDA through the library API of an installed latent: a generated corpus, the batch
// variational EM, the bound perplexity printed as JSON. Usage: consumer WORK_DIR
#include <cmath>
#include <iostream>

#include "latent/comm/communicator.hpp"
#include "latent/core/error.hpp"
#include "latent/core/log.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/models/lda/lda_fit.hpp"
#include "latent/models/lda/lda_generate.hpp"
#include "latent/models/registry.hpp"

int main(int argc, char** argv) try {
  latent::comm::MpiSession session(&argc, &argv);
  if (argc != 2) return 64;
  const latent::comm::Communicator comm = latent::comm::Communicator::world();
  const std::string corpus = std::string(argv[1]) + "/corpus";
  if (comm.is_root()) latent::models::generate_lda(300, 40, 3, 30, 0.2, 0.1, 7, 100, corpus, "");
  comm.barrier();
  const latent::io::CountsDatasetInfo info = latent::io::open_counts_dataset(corpus);
  latent::models::LdaConfig config;
  config.n_topics = 3;
  config.max_iter = 5;
  const latent::models::LdaFitResult fit =
      latent::models::fit_lda(comm, info, config, latent::Logger::silent(), {}, nullptr);
  if (comm.is_root())
    std::cout << "{\"models\": " << latent::models::registry().size() << ", \"documents\": " << fit.num_documents
              << ", \"bound_perplexity\": " << fit.bound_perplexity << "}\n";
  return std::isfinite(fit.bound_perplexity) && fit.bound_perplexity > 1 ? 0 : 1;
} catch (const latent::Error& e) {
  std::cerr << "consumer: " << e.what() << '\n';
  return e.exit_code();
}
