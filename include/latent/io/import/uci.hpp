#pragma once
/// \file UCI bag-of-words (https://archive.ics.uci.edu/dataset/164/bag+of+words: NYTimes,
/// PubMed, KOS, NIPS, Enron), gzipped or plain: `docword.NAME.txt` holds three header
/// lines D (documents), W (words), NNZ (entries), then NNZ lines `docID wordID count`
/// (1-based ids, grouped by document in ascending order; a document without lines is
/// empty); `vocab.NAME.txt` holds the W words, one per line (line v + 1 is word id v).
/// Blank lines are skipped; counts may be written as integral floats; zero counts are
/// dropped. One pass; memory: the vocabulary and one document.
#include <string>

#include "latent/comm/communicator.hpp"
#include "latent/io/import/reader.hpp"

namespace latent::io::importers {

/// Opens `input` (a docword file) with the vocabulary `vocab`, or, if `vocab` is empty, the
/// `vocab.NAME.txt` (or `.txt.gz`) beside a `docword.NAME.txt[.gz]`. Corpus::total is D.
/// Throws Error(kNoInput) for a missing input or vocabulary, Error(kUsage) if `vocab` is
/// empty and the name is not docword.NAME.txt[.gz], Error(kInput) for a vocabulary whose
/// size is not W, and (here or from the reader) Error(kInput) "input PATH, line L: ..." for
/// a malformed header or entry, an id outside the header's ranges, entries out of document
/// order, or more or fewer entries than NNZ.
/// With `comm` (collective; a parallel import): every rank reads the header, the entry
/// lines are cut into byte ranges (a document cut between ranks goes to the later one; a
/// gzipped file is read by rank 0); Corpus::local_documents is this rank's share and
/// Corpus::total is D. Errors are agreed.
Corpus open_uci(const std::string& input, const std::string& vocab, const comm::Communicator* comm = nullptr);

}  // namespace latent::io::importers
