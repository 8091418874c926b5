#pragma once
/// \file Blei's LDA-C format (lda-c, gensim's BleiCorpus), gzipped or plain: one document
/// per line, `M term:count ... term:count` with M the number of pairs and 0-based term ids
/// (an empty document is the line `0`; a term may repeat, its counts add up). Counts may be
/// integral floats; zeros are dropped. Memory: the vocabulary and one document.
#include <string>

#include "latent/io/import/reader.hpp"

namespace latent::io::importers {

/// Opens `input`. With a `vocab` file (one word per line) term ids must be below its size
/// (one pass); without, the vocabulary is the ids "0" ... "max id" and the file is read
/// twice (the first pass sizes it and checks every line; Corpus::total is then known).
/// Throws Error(kNoInput) for a missing file and Error(kInput) "input PATH, line L: ..." for
/// an empty line, a wrong pair count, a malformed pair, a term id outside [0, 2^31 - 2] or
/// the vocabulary, or a count that is not a non-negative integer.
Corpus open_ldac(const std::string& input, const std::string& vocab);

}  // namespace latent::io::importers
