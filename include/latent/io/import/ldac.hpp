#pragma once
/// \file Blei's LDA-C format (lda-c, gensim's BleiCorpus), gzipped or plain: one document
/// per line, `M term:count ... term:count` with M the number of pairs and 0-based term ids
/// (an empty document is the line `0`; a term may repeat, its counts add up). Counts may be
/// integral floats; zeros are dropped. Memory: the vocabulary and one document.
#include <string>

#include "latent/comm/communicator.hpp"
#include "latent/io/import/reader.hpp"

namespace latent::io::importers {

/// Opens `input`. With a `vocab` file (one word per line) term ids must be below its size;
/// without, the vocabulary is the ids "0" ... "max id". The file is read twice (the first
/// pass counts the documents, sizes the vocabulary and checks every line).
/// Throws Error(kNoInput) for a missing file and Error(kInput) "input PATH, line L: ..." for
/// an empty line, a wrong pair count, a malformed pair, a term id outside [0, 2^31 - 2] or
/// the vocabulary, or a count that is not a non-negative integer.
/// With `comm` (collective; a parallel import): each rank reads the lines of its byte range
/// (split.hpp; a gzipped file on rank 0), the vocabulary size is the largest term id over
/// all ranks + 1, and the reader yields this rank's documents (Corpus::local_documents;
/// Corpus::total is global). Errors are agreed and name the line of the whole file.
Corpus open_ldac(const std::string& input, const std::string& vocab, const comm::Communicator* comm = nullptr);

}  // namespace latent::io::importers
