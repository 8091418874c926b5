// Fuzzes `latent import counts` (the UCI, LDA-C, svmlight, Matrix Market and text parsers
// and the CountsWriter behind them). The first byte picks the format, the second a set of
// options; the rest is the input file (for text in directory mode: files separated by NUL).
// Errors are reported through the exit code; a crash or a sanitizer report is the finding.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "latent/cli/cli.hpp"
#include "latent/comm/communicator.hpp"

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

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  static latent::comm::MpiSession session(argc, argv);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  static const char* formats[] = {"uci", "ldac", "libsvm", "mm", "text"};
  const std::string format = formats[data[0] % 5];
  const std::uint8_t flags = data[1];
  const std::string_view body(reinterpret_cast<const char*>(data + 2), size - 2);
  if (has_long_number(body)) return 0;

  namespace fs = std::filesystem;
  const std::string scratch = latent::fuzz::scratch_dir();
  const std::string output = scratch + "/out";
  const std::string docs_dir = scratch + "/docs";
  fs::remove_all(output);
  fs::remove_all(docs_dir);
  std::vector<std::string> args{"import", "counts", "--format", format, "--output", output, "--docs-per-shard", "64"};
  std::string input;
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
      args.insert(args.end(), {"--labels", write_text("labels.txt", labels), "--include", "d1[0-9]+"});
    }
  } else {
    input = write_text("input." + format, body);
  }
  args.insert(args.end(), {"--input", input});
  if ((flags & 0x01) != 0) args.insert(args.end(), {"--holdout-fraction", "0.5", "--seed", "3"});
  if (format == "libsvm" && (flags & 0x06) != 0)
    args.insert(args.end(), {"--zero-based", (flags & 0x02) != 0 ? "true" : "false"});
  if (format == "mm" && (flags & 0x02) != 0) args.insert(args.end(), {"--mm-layout", "words-by-docs"});
  if (format == "text") {
    if ((flags & 0x02) != 0) args.insert(args.end(), {"--tag-separator", "/"});
    if ((flags & 0x04) != 0) args.insert(args.end(), {"--stop-words", "english", "--min-df", "2", "--max-df", "0.9"});
    if ((flags & 0x20) != 0) args.insert(args.end(), {"--max-features", "5", "--lowercase", "false"});
  }

  std::ostringstream out, err;
  const int code = latent::cli::run(args, out, err);
  fs::remove_all(output);
  fs::remove_all(docs_dir);
  // Exit code 1 is an exception other than latent::Error: a bug, unless memory ran out.
  if (code == 1 && err.str().find("out of memory") == std::string::npos) {
    std::fprintf(stderr, "import counts --format %s: internal error: %s\n", format.c_str(), err.str().c_str());
    std::abort();
  }
  return 0;
}
