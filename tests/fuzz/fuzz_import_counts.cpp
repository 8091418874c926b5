// Fuzzes the count importers (the library's UCI, LDA-C, svmlight, Matrix Market and text
// readers, include/latent/io/import/) and the io::CountsWriter their documents go to, as
// `latent import counts` uses them. The first byte picks the format, the second a set of
// options; the rest is the input file (for text in directory mode: files separated by NUL).
// The code under test must either succeed or throw latent::Error (or run out of memory); a
// crash or a sanitizer report is the finding.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "latent/core/error.hpp"
#include "latent/core/log.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/io/import/ldac.hpp"
#include "latent/io/import/libsvm.hpp"
#include "latent/io/import/mtx.hpp"
#include "latent/io/import/text.hpp"
#include "latent/io/import/uci.hpp"

namespace {

// Headers and ids are trusted only as far as the parsers check them; a legitimate header of
// a million documents or words only makes the work (empty documents, id words) larger, so
// numbers of five or more digits are left out to keep every run short. The parsers' range
// and overflow checks are covered by the unit tests.
bool has_long_number(std::string_view s) {
  int run = 0;
  for (const char c : s) {
    run = (c >= '0' && c <= '9') ? run + 1 : 0;
    if (run >= 5) return true;
  }
  return false;
}

// The W of a UCI header (its second non-blank line), so that vocab.fuzz.txt can match it.
long uci_words(std::string_view s) {
  int line = 0;
  std::size_t i = 0;
  while (i < s.size()) {
    const std::size_t end = std::min(s.find('\n', i), s.size());
    const std::string_view l = s.substr(i, end - i);
    if (l.find_first_not_of(" \t\r") != std::string_view::npos && ++line == 2) {
      try {
        return std::stol(std::string(l));
      } catch (...) {
        return 3;
      }
    }
    i = end + 1;
  }
  return 3;
}

// Writes `text` as `name` in the scratch directory; returns its path.
std::string write_text(const std::string& name, std::string_view text) {
  return latent::fuzz::write_input(reinterpret_cast<const std::uint8_t*>(text.data()), text.size(), name);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  static const char* formats[] = {"uci", "ldac", "libsvm", "mm", "text"};
  const std::string format = formats[data[0] % 5];
  const std::uint8_t flags = data[1];
  const std::string_view body(reinterpret_cast<const char*>(data + 2), size - 2);
  if (has_long_number(body)) return 0;

  namespace fs = std::filesystem;
  namespace imp = latent::io::importers;
  const std::string scratch = latent::fuzz::scratch_dir();
  const std::string output = scratch + "/out";
  const std::string docs_dir = scratch + "/docs";
  fs::remove_all(output);
  fs::remove_all(docs_dir);
  std::string input;
  imp::TextOptions text;
  if (format == "uci") {
    input = write_text("docword.fuzz.txt", body);
    const long words = uci_words(body);
    std::string vocab;
    for (long w = 0; w < words && w < 10000; ++w) vocab += "w" + std::to_string(w) + "\n";
    write_text("vocab.fuzz.txt", vocab);
  } else if (format == "text" && (flags & 0x08) != 0) {
    // Directory mode: NUL-separated files, with labels for every other file.
    fs::create_directories(docs_dir);
    std::string labels;
    std::size_t i = 0;
    for (int file = 0; file < 16 && i <= body.size(); ++file) {
      const std::size_t end = std::min(body.find('\0', i), body.size());
      const std::string name = "d" + std::to_string(100 + file);
      const std::string_view part = body.substr(i, end - i);
      std::FILE* f = std::fopen((docs_dir + "/" + name).c_str(), "wb");
      if (f != nullptr) {
        std::fwrite(part.data(), 1, part.size(), f);
        std::fclose(f);
      }
      labels += name + " " + (file % 2 == 0 ? "even" : "odd") + "\n";
      i = end + 1;
    }
    input = docs_dir;
    if ((flags & 0x10) != 0) {
      text.labels = write_text("labels.txt", labels);
      text.include = "d1[0-9]+";
    }
  } else {
    input = write_text("input." + format, body);
  }
  if (format == "text") {
    if ((flags & 0x02) != 0) text.tag_separator = "/";
    if ((flags & 0x04) != 0) text.stop_words = "english", text.min_df = "2", text.max_df = "0.9";
    if ((flags & 0x20) != 0) text.max_features = 5, text.lowercase = false;
  }

  try {
    imp::Corpus corpus =
        format == "uci"    ? imp::open_uci(input, "")
        : format == "ldac" ? imp::open_ldac(input, "")
        : format == "mm"   ? imp::open_mtx(input, "", (flags & 0x02) != 0 ? imp::MtxLayout::kWordsByDocs
                                                                           : imp::MtxLayout::kDocsByWords)
        : format == "libsvm"
            ? imp::open_libsvm(input, "",
                               (flags & 0x06) == 0     ? imp::IndexBase::kAuto
                               : (flags & 0x02) != 0   ? imp::IndexBase::kZero
                                                       : imp::IndexBase::kOne,
                               latent::Logger::silent())
            : imp::open_text(input, text);
    latent::io::CountsWriter writer(output, static_cast<latent::Index>(corpus.vocabulary.size()), 64,
                                    corpus.with_labels);
    imp::Document doc;
    while (corpus.reader->next(doc)) writer.add_document(doc.ids, doc.counts, doc.label);
    writer.commit(corpus.vocabulary);
  } catch (const latent::Error&) {
  } catch (const std::bad_alloc&) {
  }
  fs::remove_all(output);
  fs::remove_all(docs_dir);
  return 0;
}
