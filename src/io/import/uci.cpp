#include "latent/io/import/uci.hpp"

#include <fmt/format.h>

#include <filesystem>
#include <regex>

#include "coordinate.hpp"
#include "fields.hpp"
#include "latent/core/error.hpp"
#include "latent/io/import/split.hpp"

namespace latent::io::importers {

namespace fs = std::filesystem;

Corpus open_uci(const std::string& input, const std::string& vocab_path, const comm::Communicator* comm) {
  Corpus plan;
  std::string vocab = vocab_path;
  std::unique_ptr<CoordinateReader> reader;
  Index local = -1, words = 0;
  comm::run_agreed(comm, [&] {
  std::error_code ec;
  if (!fs::exists(input, ec)) throw Error(ErrorKind::kNoInput, "input " + input + ": does not exist");
  if (vocab.empty()) {
    const fs::path in(input);
    std::smatch m;
    const std::string name = in.filename().string();
    if (!std::regex_match(name, m, std::regex(R"(docword\.(.+)\.txt(\.gz)?)")))
      throw_usage("--format uci: cannot find the vocabulary of " + input +
                  " (expected a file named docword.NAME.txt[.gz] beside vocab.NAME.txt); pass --vocab FILE");
    const fs::path plain = in.parent_path() / ("vocab." + m[1].str() + ".txt");
    fs::path gz = plain;
    gz += ".gz";
    vocab = fs::exists(plain, ec) || !fs::exists(gz, ec) ? plain.string() : gz.string();
    if (!fs::exists(vocab, ec))
      throw Error(ErrorKind::kNoInput,
                  "vocabulary " + plain.string() + " (beside the input) does not exist; pass --vocab FILE");
  }
  });
  if (comm == nullptr) {
    reader = std::make_unique<CoordinateReader>(input, CoordinateReader::Kind::kUci, false);
    words = reader->num_words();
    plan.total = reader->num_documents();
  } else {
    reader = open_coordinate_part(*comm, input, CoordinateReader::Kind::kUci, false, local, words);
    exclusive_prefix(*comm, local, &plan.total);
  }
  comm::run_agreed(comm, [&] {
    plan.vocabulary = read_word_list(vocab, "vocabulary", false);
    if (static_cast<Index>(plan.vocabulary.size()) != words)
      throw_input(fmt::format("vocabulary {} has {} words but the header of {} declares W = {}", vocab,
                              plan.vocabulary.size(), input, words));
  });
  plan.local_documents = local;
  plan.reader = std::move(reader);
  return plan;
}

}  // namespace latent::io::importers
