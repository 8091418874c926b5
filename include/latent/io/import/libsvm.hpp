#pragma once
/// \file svmlight / libsvm (scikit-learn's load_svmlight_file), gzipped or plain:
/// `label [qid:Q] index:value ... # comment`, one document per line; blank and
/// comment-only lines are skipped. Values are counts (non-negative integers, integral floats
/// accepted; zeros dropped). Labels are finite numbers; they are kept (Corpus::with_labels)
/// only if all are integers. Multi-label files are not supported. The file is read twice:
/// the first pass finds the index base, the largest index and whether the labels are
/// integers, and checks the syntax. Memory: the vocabulary and one document.
#include <string>

#include "latent/core/log.hpp"
#include "latent/comm/communicator.hpp"
#include "latent/io/import/reader.hpp"

namespace latent::io::importers {

/// Where feature indices start.
enum class IndexBase {
  kAuto,  ///< 0-based iff index 0 occurs (as scikit-learn)
  kZero,
  kOne,
};

/// Opens `input`. The vocabulary is `vocab` (one word per line), else the ids "0" ... up to
/// the largest word id. With kAuto the base chosen is logged (info) to `log`; labels that
/// are not all integers are warned about and dropped. Throws Error(kNoInput) for a missing
/// file and Error(kInput) "input PATH, line L: ..." for a label that is not a finite number,
/// a malformed index:value, an index outside [0, 2^31 - 2] or the vocabulary, index 0 in a
/// 1-based file, or a value that is not a count.
/// With `comm` (collective; a parallel import): each rank scans the lines of its byte range
/// (split.hpp; a gzipped file on rank 0); the index base, largest index and label check
/// are decided over all ranks; the reader yields this rank's documents
/// (Corpus::local_documents; Corpus::total is global). Errors are agreed and name the
/// line of the whole file.
Corpus open_libsvm(const std::string& input, const std::string& vocab, IndexBase base, const Logger& log,
                   const comm::Communicator* comm = nullptr);

}  // namespace latent::io::importers
