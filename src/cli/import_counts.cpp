// `latent import counts`: bag-of-words corpora (UCI docword, LDA-C, svmlight/libsvm, Matrix
// Market, raw text) into a count dataset directory (include/latent/io/counts_dataset.hpp).
// The formats are read by the library (include/latent/io/import/); this file parses the
// options, splits off the holdout documents and writes the output. Streaming: one document
// at a time is parsed and at most one shard is buffered by the writer; besides that,
// memory is vocabulary-sized (and, for text, the words seen in pass 1). Everything is
// written below a temporary directory beside the output that is renamed into place only
// when the whole import succeeded.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <regex>

#include "common.hpp"
#include "latent/core/control.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/core/error.hpp"
#include "latent/core/rng.hpp"
#include "latent/io/counts_dataset.hpp"
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

imp::Corpus open_corpus(const Options& o, const Logger& log) {
  if (o.format == "uci") return imp::open_uci(o.input, o.vocab);
  if (o.format == "mm")
    return imp::open_mtx(o.input, o.vocab,
                         o.mm_layout == "words-by-docs" ? imp::MtxLayout::kWordsByDocs : imp::MtxLayout::kDocsByWords);
  if (o.format == "ldac") return imp::open_ldac(o.input, o.vocab);
  if (o.format == "libsvm")
    return imp::open_libsvm(o.input, o.vocab,
                            o.zero_based == "true"    ? imp::IndexBase::kZero
                            : o.zero_based == "false" ? imp::IndexBase::kOne
                                                      : imp::IndexBase::kAuto,
                            log);
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
  return imp::open_text(o.input, t);
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

Summary summary_of(const io::CountsWriter& w, Index docs_per_shard) {
  Summary s;
  s.documents = w.num_documents();
  s.tokens = w.num_tokens();
  s.empty = w.num_empty_documents();
  s.shards = std::max<Index>(1, (s.documents + docs_per_shard - 1) / docs_per_shard);
  return s;
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
  Index vocab_size = 0;
  comm::run_agreed(ctx.comm, [&] {
    if (!ctx.comm.is_root()) return;
    std::error_code ec;
    if (fs::exists(o.output, ec) || fs::is_symlink(o.output, ec))
      throw_output("output " + o.output + ": already exists; choose another name");
    const fs::path parent = fs::absolute(fs::path(o.output)).parent_path();
    if (!fs::is_directory(parent, ec)) throw_output("output " + o.output + ": directory " + parent.string() + " does not exist");

    imp::Corpus plan = open_corpus(o, ctx.log);
    vocab_size = static_cast<Index>(plan.vocabulary.size());
    if (plan.total == 0) throw_input("input " + o.input + ": has no documents");
    if (vocab_size == 0) throw_input("input " + o.input + ": the vocabulary is empty (no word ids occur)");

    io::sweep_stale_temporaries(fs::absolute(o.output).parent_path().string());
    const std::string tmp = o.output + io::temp_suffix();
    fs::remove_all(tmp, ec);  // only a dead process with our pid can have left it
    if (!fs::create_directory(tmp, ec) || ec) throw_output("output " + o.output + ": cannot create " + tmp);
    struct Cleanup {
      std::string path;
      ~Cleanup() {
        std::error_code ignored;
        fs::remove_all(path, ignored);
      }
    } cleanup{tmp};

    std::vector<std::string> dirs = holdout ? std::vector<std::string>{tmp + "/train", tmp + "/test"}
                                            : std::vector<std::string>{tmp + "/data"};
    std::vector<std::unique_ptr<io::CountsWriter>> writers;
    for (const auto& d : dirs)
      writers.push_back(std::make_unique<io::CountsWriter>(d, vocab_size, o.docs_per_shard, plan.with_labels));

    Progress progress(ctx.err, ctx.comm.is_root() && stderr_is_tty(), "import", plan.total, "documents");
    imp::Document doc;
    Index i = 0;
    while (plan.reader->next(doc)) {
      if ((i & 1023) == 0) stop_point();  // SIGTERM/SIGUSR1: exit 75, the temporary directory removed
      const bool to_test =
          holdout && CounterRng(o.seed, RngPurpose::kHoldout, 0, static_cast<std::uint64_t>(i)).next_uniform() < o.holdout;
      writers[to_test ? 1 : 0]->add_document(doc.ids, doc.counts, doc.label);
      ++i;
      if ((i & 1023) == 0) progress.update(i);
    }
    progress.finish();
    if (i == 0) throw_input("input " + o.input + ": has no documents");

    for (std::size_t w = 0; w < writers.size(); ++w) {
      writers[w]->commit(plan.vocabulary);
      if (!plan.label_names.empty()) write_lines(dirs[w] + "/labels.txt", plan.label_names);
    }
    if (fs::exists(o.output, ec) || fs::is_symlink(o.output, ec))
      throw_output("output " + o.output + ": was created by someone else during the import");
    fs::rename(holdout ? tmp : dirs[0], o.output, ec);
    if (ec) throw_output("output " + o.output + ": cannot rename the finished import into place: " + ec.message());
    if (!holdout) fs::remove_all(tmp, ec);

    train = summary_of(*writers[0], o.docs_per_shard);
    all = train;
    if (holdout) {
      test = summary_of(*writers[1], o.docs_per_shard);
      all.documents += test.documents;
      all.tokens += test.tokens;
      all.empty += test.empty;
      all.shards += test.shards;
    }
    if (plan.text && all.empty > 0)
      ctx.log.warn(fmt::format("{} of {} documents are empty after tokenisation and pruning (kept as empty rows)",
                               all.empty, all.documents));
  });
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
