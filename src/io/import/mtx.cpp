#include "latent/io/import/mtx.hpp"

#include <fmt/format.h>

#include "coordinate.hpp"
#include "fields.hpp"
#include "latent/core/error.hpp"

namespace latent::io::importers {

Corpus open_mtx(const std::string& input, const std::string& vocab, MtxLayout layout) {
  Corpus plan;
  const bool words_by_docs = layout == MtxLayout::kWordsByDocs;
  auto reader = std::make_unique<CoordinateReader>(input, CoordinateReader::Kind::kMatrixMarket, words_by_docs);
  plan.vocabulary = vocab.empty() ? id_words(reader->num_words()) : read_word_list(vocab, "vocabulary", false);
  if (static_cast<Index>(plan.vocabulary.size()) != reader->num_words())
    throw_input(fmt::format("vocabulary {} has {} words but {} has {} words ({})", vocab, plan.vocabulary.size(), input,
                            reader->num_words(), words_by_docs ? "rows" : "columns"));
  plan.total = reader->num_documents();
  plan.reader = std::move(reader);
  return plan;
}

}  // namespace latent::io::importers
