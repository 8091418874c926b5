#include "latent/io/import/mtx.hpp"

#include <fmt/format.h>

#include "coordinate.hpp"
#include "fields.hpp"
#include "latent/core/error.hpp"
#include "latent/io/import/split.hpp"

namespace latent::io::importers {

Corpus open_mtx(const std::string& input, const std::string& vocab, MtxLayout layout, const comm::Communicator* comm) {
  Corpus plan;
  const bool words_by_docs = layout == MtxLayout::kWordsByDocs;
  std::unique_ptr<CoordinateReader> reader;
  Index local = -1, words = 0;
  if (comm == nullptr) {
    reader = std::make_unique<CoordinateReader>(input, CoordinateReader::Kind::kMatrixMarket, words_by_docs);
    words = reader->num_words();
    plan.total = reader->num_documents();
  } else {
    reader = open_coordinate_part(*comm, input, CoordinateReader::Kind::kMatrixMarket, words_by_docs, local, words);
    exclusive_prefix(*comm, local, &plan.total);
  }
  const auto check = [&] {
    plan.vocabulary = vocab.empty() ? id_words(words) : read_word_list(vocab, "vocabulary", false);
    if (static_cast<Index>(plan.vocabulary.size()) != words)
      throw_input(fmt::format("vocabulary {} has {} words but {} has {} words ({})", vocab, plan.vocabulary.size(), input,
                              words, words_by_docs ? "rows" : "columns"));
  };
  if (comm == nullptr)
    check();
  else
    comm::run_agreed(*comm, check);
  plan.local_documents = local;
  plan.reader = std::move(reader);
  return plan;
}

}  // namespace latent::io::importers
