#pragma once
/// \file Raw text corpora (`latent import counts --format text`), gzipped or plain: a file
/// with one document per line, or a directory with one file per document (its regular
/// files in byte order of name). Words come from tokenizer.hpp. Without a fixed vocabulary
/// the input is read twice: pass 1 counts every word's document frequency and corpus count
/// and builds the vocabulary (pruned by min/max document frequency and max features, then
/// sorted), pass 2 (Corpus::reader) yields each document's words. Memory: the distinct
/// words of the corpus (pass 1), then the vocabulary.
#include <cstdint>
#include <string>

#include "latent/comm/communicator.hpp"
#include "latent/io/import/reader.hpp"

namespace latent::io::importers {

/// What open_text takes besides the input (the `latent import counts` text options).
struct TextOptions {
  std::string vocab{};          ///< a fixed vocabulary, one word per line, in this order (no pruning, one pass)
  std::string include{};        ///< directory input: only files whose whole name matches (ECMAScript regex,
                                ///< which must be valid: std::regex_error otherwise)
  std::string tag_separator{};  ///< tokens are word<SEP>tag; "" none
  bool lowercase = true;        ///< ASCII lowercasing before tokenising
  std::string stop_words{};     ///< "english" (scikit-learn's list), a file of one word per line, or ""
  std::string min_df = "1";     ///< as parse_doc_frequency
  std::string max_df = "1.0";   ///< as parse_doc_frequency
  Index max_features = 0;       ///< keep the N most frequent words (corpus count; ties by word); 0: all
  std::string labels{};         ///< directory input: 'name label' lines (as the Brown corpus' cats.txt)
};

/// --min-df / --max-df as scikit-learn: an integer is a document count, a float a proportion.
struct DocFrequency {
  bool proportion = false;
  double value = 1;
  double documents(Index num_docs) const { return proportion ? value * static_cast<double>(num_docs) : value; }
};
/// Parses an integer >= 1 (a document count) or a float in (0, 1] (a proportion); throws
/// Error(kUsage) naming `option` otherwise.
DocFrequency parse_doc_frequency(const std::string& text, const char* option);

/// Opens the corpus `input` (a file or directory) and, without `o.vocab`, reads it once to
/// build the vocabulary. With `o.labels` documents carry label ids in alphabetical order of
/// the label names (Corpus::label_names). Corpus::text is set; Corpus::total is the number
/// of documents when pass 1 ran. Throws Error(kNoInput) for a missing input, Error(kUsage)
/// for --labels or --include without a directory, for inconsistent or impossible pruning
/// ("no words remain"), Error(kInput) for a directory without (matching) files, a
/// malformed labels or vocabulary line (naming file and line), a document without a
/// label, a corpus without documents or words, more than 2^31 - 1 words, and (from the
/// reader) for an input that changed between the passes.
///
/// With `comm` (collective; a parallel import): each rank reads its part (split.hpp: a
/// contiguous run of the directory's files, or a byte range of the file; a gzipped file on
/// rank 0), counts its words, and rank 0 sums the document frequencies and counts of all
/// ranks exactly (a gather of the local word tables: its memory is the sum of the ranks'
/// distinct words), prunes and sorts; every rank gets the vocabulary. The reader then yields
/// this rank's documents (Corpus::local_documents); Corpus::total is global. Errors are
/// agreed: every rank throws the lowest failing rank's Error.
Corpus open_text(const std::string& input, const TextOptions& o, const comm::Communicator* comm = nullptr);

}  // namespace latent::io::importers
