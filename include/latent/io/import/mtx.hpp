#pragma once
/// \file Matrix Market coordinate files (https://math.nist.gov/MatrixMarket/formats.html;
/// gensim's MmCorpus), gzipped or plain: the banner `%%MatrixMarket matrix coordinate
/// integer|real|double|pattern general`, % comment lines, the size line `rows columns
/// entries`, then one entry `row column [value]` per line (1-based; pattern entries count
/// 1), sorted by document. Values must be non-negative integers (integral floats accepted;
/// zeros dropped). One pass; memory: the vocabulary and one document.
#include <string>

#include "latent/comm/communicator.hpp"
#include "latent/io/import/reader.hpp"

namespace latent::io::importers {

/// Which dimension holds the documents.
enum class MtxLayout {
  kDocsByWords,  ///< rows are documents (as gensim writes)
  kWordsByDocs,  ///< the transpose
};

/// Opens `input`; the vocabulary is read from `vocab` (one word per line, as many as the
/// words dimension), or is the ids "0", "1", ... if `vocab` is empty. Corpus::total is the
/// number of documents. Throws Error(kNoInput) for a missing file, Error(kInput) for a
/// vocabulary of the wrong size, and (here or from the reader) Error(kInput) "input PATH,
/// line L: ..." for a malformed banner, size line or entry, an id outside the size line's
/// ranges, entries not sorted by document (with a `sort` hint) or a wrong entry count.
/// With `comm`: in parallel, as open_uci.
Corpus open_mtx(const std::string& input, const std::string& vocab, MtxLayout layout,
                const comm::Communicator* comm = nullptr);

}  // namespace latent::io::importers
