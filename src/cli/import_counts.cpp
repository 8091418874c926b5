// `latent import counts`: bag-of-words corpora (UCI docword, LDA-C, svmlight/libsvm, Matrix
// Market, raw text) into a count dataset directory (include/latent/io/counts_dataset.hpp).
// The formats are read by the library (include/latent/io/import/); this file parses the
// options, splits off the holdout documents and writes the output. Streaming: one document
// at a time is parsed and at most one shard is buffered by the writer; besides that,
// memory is vocabulary-sized (and, for text, the words seen in pass 1). Everything is
// written below a temporary directory beside the output that is renamed into place only
// when the whole import succeeded (io::ShardDirectory).
//
// Under mpirun every rank reads its part of the input (the openers, given the
// communicator: split.hpp) and writes its documents with io::CountsPartWriter; document i
// (global index) decides its shard and, with --holdout-fraction, its split, so the output
// is the same bytes for any number of ranks. Rank 0 writes vocabulary.txt and labels.txt.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <regex>

#include "common.hpp"
#include "latent/core/control.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/core/error.hpp"
#include "latent/core/rng.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/io/shard_directory.hpp"
#include "latent/io/import/ldac.hpp"
#include "latent/io/import/libsvm.hpp"
#include "latent/io/import/mtx.hpp"
#include "latent/io/import/text.hpp"
#include "latent/io/import/uci.hpp"

namespace latent::cli {
namespace {

namespace fs = std::filesystem;
namespace imp = io::importers;

struct Options {
  std::string format, input, output, vocab, zero_based, mm_layout, include, tag_separator, stop_words, min_df, max_df,
      labels;
  Index docs_per_shard = 65536;
  double holdout = 0;
  std::uint64_t seed = 0;
  bool lowercase = true;
  Index max_features = 0;  // 0: no limit
};

// Every format is read in parallel (each rank its part: `comm`; a gzipped input by rank 0).
imp::Corpus open_corpus(const Options& o, const Logger& log, const comm::Communicator* comm) {
  if (o.format == "uci") return imp::open_uci(o.input, o.vocab, comm);
  if (o.format == "mm")
    return imp::open_mtx(o.input, o.vocab,
                         o.mm_layout == "words-by-docs" ? imp::MtxLayout::kWordsByDocs : imp::MtxLayout::kDocsByWords,
                         comm);
  if (o.format == "ldac") return imp::open_ldac(o.input, o.vocab, comm);
  if (o.format == "libsvm")
    return imp::open_libsvm(o.input, o.vocab,
                            o.zero_based == "true"    ? imp::IndexBase::kZero
                            : o.zero_based == "false" ? imp::IndexBase::kOne
                                                      : imp::IndexBase::kAuto,
                            log, comm);
  imp::TextOptions t;
  t.vocab = o.vocab;
  t.include = o.include;
  t.tag_separator = o.tag_separator;
  t.lowercase = o.lowercase;
  t.stop_words = o.stop_words;
  t.min_df = o.min_df;
  t.max_df = o.max_df;
  t.max_features = o.max_features;
  t.labels = o.labels;
  return imp::open_text(o.input, t, comm);
}

// ---------------------------------------------------------------------------------------
// Output.

void write_lines(const std::string& path, const std::vector<std::string>& lines) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) throw_output("output " + path + ": cannot create");
  bool ok = true;
  for (const auto& l : lines) ok = ok && std::fwrite(l.data(), 1, l.size(), f) == l.size() && std::fputc('\n', f) != EOF;
  ok = std::fflush(f) == 0 && ok;
  ok = ::fsync(::fileno(f)) == 0 && ok;
  ok = std::fclose(f) == 0 && ok;
  if (!ok) throw Error(ErrorKind::kIo, "output " + path + ": write failed (disk full?)");
}

struct Summary {
  Index documents = 0, tokens = 0, empty = 0, shards = 0;
};

// Sums over the ranks. Collective.
Summary summary_of(const comm::Communicator& comm, const io::CountsPartWriter& w) {
  std::int64_t v[3] = {w.num_documents(), w.num_tokens(), w.num_empty_documents()};
  comm.allreduce_sum(v);
  return Summary{v[0], v[1], v[2], w.num_shards()};
}

void check_options(const Options& o, const po::variables_map& vm) {
  static const std::vector<std::string> formats{"uci", "ldac", "libsvm", "mm", "text"};
  if (std::find(formats.begin(), formats.end(), o.format) == formats.end())
    throw_usage("unknown --format '" + o.format + "' (choose uci, ldac, libsvm, mm or text)");
  if (o.docs_per_shard < 1) throw_usage("--docs-per-shard must be at least 1");
  if (!(o.holdout >= 0 && o.holdout < 1)) throw_usage("--holdout-fraction must be in [0, 1)");
  if (o.zero_based != "auto" && o.zero_based != "true" && o.zero_based != "false")
    throw_usage("--zero-based must be auto, true or false");
  if (o.mm_layout != "docs-by-words" && o.mm_layout != "words-by-docs")
    throw_usage("--mm-layout must be docs-by-words or words-by-docs");
  if (vm.count("max-features") && o.max_features < 1) throw_usage("--max-features must be at least 1");
  imp::parse_doc_frequency(o.min_df, "--min-df");
  imp::parse_doc_frequency(o.max_df, "--max-df");
  if (!o.include.empty()) {
    try {
      std::regex check(o.include);
    } catch (const std::regex_error& e) {
      throw_usage("--include '" + o.include + "' is not a valid regular expression: " + e.what());
    }
  }
  // Options that only one format reads are refused elsewhere rather than silently ignored.
  const auto only = [&](const char* option, std::initializer_list<const char*> allowed) {
    if (vm.count(option) == 0 || vm[option].defaulted()) return;
    for (const char* f : allowed)
      if (o.format == f) return;
    std::string list;
    for (const char* f : allowed) list += (list.empty() ? "" : " or ") + std::string(f);
    throw_usage(fmt::format("--{} applies to --format {} only", option, list));
  };
  only("zero-based", {"libsvm"});
  only("mm-layout", {"mm"});
  for (const char* text_option : {"include", "tag-separator", "lowercase", "stop-words", "min-df", "max-df",
                                  "max-features", "labels"})
    only(text_option, {"text"});
  if (o.format == "text" && !o.vocab.empty())
    for (const char* pruning : {"min-df", "max-df", "max-features"})
      if (vm.count(pruning) && !vm[pruning].defaulted())
        throw_usage(fmt::format("--{} prunes a vocabulary built from the corpus; it cannot be combined with --vocab", pruning));
  if (o.tag_separator.find_first_of(" \t\n\r\v\f") != std::string::npos)
    throw_usage("--tag-separator must not contain whitespace");
}

}  // namespace

int cmd_import_counts(const std::vector<std::string>& args, const Context& ctx) {
  Options o;
  po::options_description desc("latent import counts options");
  desc.add_options()
      ("format", po::value(&o.format)->required(),
       "uci (UCI bag-of-words docword.NAME.txt[.gz]) | ldac (Blei's LDA-C) | libsvm (svmlight) | "
       "mm (Matrix Market coordinate) | text (raw text)")
      ("input", po::value(&o.input)->required(),
       "input file (gzipped or plain); for --format text also a directory with one file per document")
      ("output", po::value(&o.output)->required(), "count dataset directory to create (must not exist)")
      ("vocab", po::value(&o.vocab)->default_value(""),
       "vocabulary file, one word per line (line v+1 is word id v). uci: default vocab.NAME.txt beside the input; "
       "ldac/libsvm/mm: default the ids \"0\", \"1\", ...; text: a fixed vocabulary in this order (no pruning)")
      ("docs-per-shard", po::value(&o.docs_per_shard)->default_value(65536), "documents per shard file")
      ("holdout-fraction", po::value(&o.holdout)->default_value(0.0),
       "if > 0: write OUTPUT/train and OUTPUT/test; document i goes to test with this probability "
       "(a counter-based draw from --seed and i, so the split is reproducible)")
      ("seed", po::value(&o.seed)->default_value(0), "random seed of the holdout split")
      ("zero-based", po::value(&o.zero_based)->default_value("auto"),
       "libsvm: feature indices start at 0 (true) or 1 (false); auto: 0-based iff some index is 0 "
       "(as scikit-learn's load_svmlight_file)")
      ("mm-layout", po::value(&o.mm_layout)->default_value("docs-by-words"),
       "mm: docs-by-words (rows are documents, as gensim's MmCorpus writes) | words-by-docs (the transpose)")
      ("include", po::value(&o.include)->default_value(""),
       "text, directory input: only files whose whole name matches this regular expression (ECMAScript)")
      ("tag-separator", po::value(&o.tag_separator)->default_value(""),
       "text: tokens are word<SEP>tag; the part before the last SEP is kept (the Brown corpus: /)")
      ("lowercase", po::value(&o.lowercase)->default_value(true, "true"), "text: lowercase (ASCII) before tokenising: true|false")
      ("stop-words", po::value(&o.stop_words)->default_value(""),
       "text: 'english' (scikit-learn's list) or a file with one stop word per line")
      ("min-df", po::value(&o.min_df)->default_value("1"),
       "text: ignore words in fewer documents than this (integer: a count; float in (0, 1]: a proportion)")
      ("max-df", po::value(&o.max_df)->default_value("1.0"),
       "text: ignore words in more documents than this (integer: a count; float in (0, 1]: a proportion)")
      ("max-features", po::value(&o.max_features),
       "text: keep only the N most frequent words (by corpus count; ties by word)")
      ("labels", po::value(&o.labels)->default_value(""),
       "text, directory input: file of 'name label' lines (as the Brown corpus' cats.txt); writes /labels "
       "(label ids in alphabetical order of the label names) and labels.txt");
  po::variables_map vm;
  if (!parse(args, desc, vm, ctx, "latent import counts --format FMT --input PATH --output DIR [options]")) return 0;
  check_options(o, vm);
  while (o.output.size() > 1 && o.output.back() == '/') o.output.pop_back();
  const bool holdout = o.holdout > 0;

  Summary all, train, test;
  const comm::Communicator& comm = ctx.comm;
  const bool parallel = true;  // every format; a gzipped input is read by rank 0 inside the opener
  comm::run_agreed(comm, [&] {
    if (!comm.is_root()) return;
    std::error_code ec;
    if (fs::exists(o.output, ec) || fs::is_symlink(o.output, ec))
      throw_output("output " + o.output + ": already exists; choose another name");
    const fs::path parent = fs::absolute(fs::path(o.output)).parent_path();
    if (!fs::is_directory(parent, ec)) throw_output("output " + o.output + ": directory " + parent.string() + " does not exist");
  });

  // Every rank learns its documents; the formats read in parallel agree on their errors
  // inside open_corpus, the others are opened by rank 0 alone.
  imp::Corpus plan;
  if (parallel) {
    plan = open_corpus(o, ctx.log, &comm);
  } else {
    comm::run_agreed(comm, [&] {
      if (comm.is_root()) plan = open_corpus(o, ctx.log, nullptr);
    });
    if (!comm.is_root()) plan.local_documents = 0;
  }
  // The global facts every rank needs: total documents, vocabulary size, labels, text.
  std::int64_t facts[4] = {0, 0, 0, 0};
  if (comm.is_root())
    facts[0] = plan.total, facts[1] = static_cast<std::int64_t>(plan.vocabulary.size()), facts[2] = plan.with_labels,
    facts[3] = plan.text;
  {
    std::string bytes(reinterpret_cast<const char*>(facts), sizeof facts);
    comm.broadcast(bytes, 0);
    std::memcpy(facts, bytes.data(), sizeof facts);
  }
  const Index vocab_size = facts[1];
  const bool with_labels = facts[2] != 0, text = facts[3] != 0;
  comm::run_agreed(comm, [&] {
    if (!comm.is_root()) return;
    if (plan.total == 0) throw_input("input " + o.input + ": has no documents");
    if (vocab_size == 0) throw_input("input " + o.input + ": the vocabulary is empty (no word ids occur)");
    if (plan.local_documents < 0) plan.local_documents = plan.total;
  });

  // Which documents go to the test set: a draw from (seed, global document index), so the
  // split is the same for any number of ranks.
  Index first = 0, local_total = 0;
  {
    const std::int64_t mine = plan.local_documents;
    const auto all_docs = comm.allgatherv(std::span<const std::int64_t>(&mine, 1));
    for (int r = 0; r < comm.rank(); ++r) first += all_docs[static_cast<std::size_t>(r)];
    local_total = plan.local_documents;
  }
  const auto to_test = [&](Index i) {
    return holdout && CounterRng(o.seed, RngPurpose::kHoldout, 0, static_cast<std::uint64_t>(i)).next_uniform() < o.holdout;
  };
  Index local_test = 0;
  for (Index i = first; holdout && i < first + local_total; ++i) local_test += to_test(i) ? 1 : 0;

  io::ShardDirectory out(comm, o.output, "");
  std::vector<std::string> dirs = holdout ? std::vector<std::string>{out.tmp() + "/train", out.tmp() + "/test"}
                                          : std::vector<std::string>{out.tmp()};
  comm::run_agreed(comm, [&] {
    if (!comm.is_root() || !holdout) return;
    for (const auto& d : dirs)
      if (!fs::create_directory(d)) throw_output("output " + o.output + ": cannot create " + d);
  });
  std::vector<std::unique_ptr<io::CountsPartWriter>> writers;
  writers.push_back(std::make_unique<io::CountsPartWriter>(comm, dirs[0], vocab_size, o.docs_per_shard, with_labels,
                                                           local_total - local_test));
  if (holdout)
    writers.push_back(
        std::make_unique<io::CountsPartWriter>(comm, dirs[1], vocab_size, o.docs_per_shard, with_labels, local_test));

  comm::run_agreed(comm, [&] {
    Progress progress(ctx.err, comm.is_root() && stderr_is_tty(), "import", local_total, "documents");
    imp::Document doc;
    Index i = 0;
    while (plan.reader && plan.reader->next(doc)) {
      if ((i & 1023) == 0) stop_point();  // SIGTERM/SIGUSR1: exit 75, the temporary directory removed
      if (i >= local_total)
        throw_input(fmt::format("input {}: changed while being imported (more documents than the first pass)", o.input));
      writers[to_test(first + i) ? 1 : 0]->add_document(doc.ids, doc.counts, doc.label);
      ++i;
      if ((i & 1023) == 0) progress.update(i);
    }
    progress.finish();
    if (i != local_total)
      throw_input(fmt::format("input {}: changed while being imported ({} documents in the first pass, {} now)", o.input,
                              local_total, i));
  });
  for (auto& w : writers) w->finish();
  comm::run_agreed(comm, [&] {
    if (!comm.is_root()) return;
    for (const auto& d : dirs) {
      io::write_vocabulary(d, plan.vocabulary);
      if (!plan.label_names.empty()) write_lines(d + "/labels.txt", plan.label_names);
    }
  });
  out.publish();

  train = summary_of(comm, *writers[0]);
  all = train;
  if (holdout) {
    test = summary_of(comm, *writers[1]);
    all.documents += test.documents;
    all.tokens += test.tokens;
    all.empty += test.empty;
    all.shards += test.shards;
  }
  if (text && all.empty > 0)
    ctx.log.warn(fmt::format("{} of {} documents are empty after tokenisation and pruning (kept as empty rows)",
                             all.empty, all.documents));
  ctx.log.info(fmt::format("imported {} documents, vocabulary of {} words, {} tokens, {} empty documents, {} shard(s) "
                           "into {}",
                           all.documents, vocab_size, all.tokens, all.empty, all.shards, o.output));
  if (holdout) {
    ctx.log.info(fmt::format("holdout (fraction {}, seed {}): train {} documents ({} tokens) in {}/train, test {} "
                             "documents ({} tokens) in {}/test",
                             o.holdout, o.seed, train.documents, train.tokens, o.output, test.documents, test.tokens,
                             o.output));
    if (train.documents == 0 || test.documents == 0)
      ctx.log.warn(fmt::format("the {} set is empty", train.documents == 0 ? "training" : "test"));
  }
  return 0;
}

}  // namespace latent::cli
