// `latent import counts` (every input format, holdout split, text pruning, errors) and
// io::CountsWriter, run in-process; shards are read back with io::H5Reader and compared
// with hand-computed CSR.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "../support/fixtures.hpp"
#include "latent/cli/cli.hpp"
#include "latent/core/error.hpp"
#include "latent/core/rng.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/io/h5_file.hpp"

namespace latent {
namespace {

namespace fs = std::filesystem;
using latent::testing::TempDir;
using latent::testing::write_file;
using latent::testing::write_gz;
using I64 = std::vector<std::int64_t>;
using F64 = std::vector<double>;
using Words = std::vector<std::string>;

struct Result {
  int code;
  std::string out, err;
};

Result run_cli(std::vector<std::string> args) {
  std::ostringstream out, err;
  const int code = cli::run(args, out, err);
  return {code, out.str(), err.str()};
}

Result import(const std::string& format, const std::string& input, const std::string& output,
              std::vector<std::string> extra = {}) {
  std::vector<std::string> args{"import", "counts", "--format", format, "--input", input, "--output", output};
  args.insert(args.end(), extra.begin(), extra.end());
  return run_cli(args);
}

Words read_lines(const std::string& path) {
  std::ifstream f(path);
  Words lines;
  for (std::string line; std::getline(f, line);) lines.push_back(line);
  return lines;
}

// A whole count dataset, shards concatenated (indptr made global).
struct Counts {
  I64 indptr{0}, indices, labels;
  F64 counts;
  Words vocabulary;
  std::int64_t vocab_size = -1;
  int shards = 0;
  bool has_labels = false;
};

Counts read_counts(const std::string& dir) {
  Counts c;
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".h5") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  for (const auto& file : files) {
    io::H5Reader r(file);
    EXPECT_EQ(r.attr_int("/", "format_version"), 1) << file;
    EXPECT_EQ(r.attr_string("/", "kind"), "counts") << file;
    const std::int64_t v = r.attr_int("/", "vocab_size");
    if (c.vocab_size >= 0) {
      EXPECT_EQ(v, c.vocab_size) << file;
    }
    c.vocab_size = v;
    const I64 indptr = r.read_int64("indptr");
    EXPECT_FALSE(indptr.empty());
    EXPECT_EQ(indptr.front(), 0);
    const std::int64_t base = c.indptr.back();
    for (std::size_t i = 1; i < indptr.size(); ++i) c.indptr.push_back(base + indptr[i]);
    const I64 indices = r.read_int64("indices");
    const F64 counts = r.read_doubles("data");
    EXPECT_EQ(static_cast<std::int64_t>(indices.size()), indptr.back());
    EXPECT_EQ(counts.size(), indices.size());
    c.indices.insert(c.indices.end(), indices.begin(), indices.end());
    c.counts.insert(c.counts.end(), counts.begin(), counts.end());
    if (r.has("labels")) {
      const I64 labels = r.read_int64("labels");
      EXPECT_EQ(labels.size(), indptr.size() - 1);
      c.labels.insert(c.labels.end(), labels.begin(), labels.end());
      c.has_labels = true;
    }
    ++c.shards;
  }
  c.vocabulary = read_lines(dir + "/vocabulary.txt");
  EXPECT_EQ(static_cast<std::int64_t>(c.vocabulary.size()), c.vocab_size) << dir;
  return c;
}

Words id_words(int n) {
  Words w;
  for (int i = 0; i < n; ++i) w.push_back(std::to_string(i));
  return w;
}

// Nothing but `keep` is left in `dir` (no temporary directories after a failed import).
void expect_only(const std::string& dir, std::vector<std::string> keep) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  std::sort(keep.begin(), keep.end());
  EXPECT_EQ(names, keep) << dir;
}

const char* kUciDocword =
    "4\n5\n5\n"
    "1 5 1\n"  // words of a document need not be sorted
    "1 2 3\n"
    "3 1 2\n"
    "3 2 1\n"
    "3 4 4\n";  // document 2 and 4 are empty
const char* kUciVocab = "alpha\nbeta\ngamma\ndelta\nepsilon\n";

void expect_uci(const Counts& c) {
  EXPECT_EQ(c.indptr, (I64{0, 2, 2, 5, 5}));
  EXPECT_EQ(c.indices, (I64{1, 4, 0, 1, 3}));
  EXPECT_EQ(c.counts, (F64{3, 1, 2, 1, 4}));
  EXPECT_EQ(c.vocabulary, (Words{"alpha", "beta", "gamma", "delta", "epsilon"}));
  EXPECT_FALSE(c.has_labels);
}

TEST(ImportCounts, UciWithEmptyDocumentsAndShards) {
  TempDir dir("counts");
  write_file(dir / "docword.test.txt", kUciDocword);
  write_file(dir / "vocab.test.txt", kUciVocab);
  const auto r = import("uci", dir / "docword.test.txt", dir / "out", {"--docs-per-shard", "3"});
  ASSERT_EQ(r.code, 0) << r.err;
  const Counts c = read_counts(dir / "out");
  expect_uci(c);
  EXPECT_EQ(c.shards, 2);
  EXPECT_NE(r.err.find("imported 4 documents, vocabulary of 5 words, 11 tokens, 2 empty documents, 2 shard(s)"),
            std::string::npos)
      << r.err;
  expect_only(dir.path(), {"docword.test.txt", "vocab.test.txt", "out"});
}

TEST(ImportCounts, UciGzippedWithItsVocabularyBeside) {
  TempDir dir("counts");
  write_gz(dir / "docword.test.txt.gz", kUciDocword);
  write_file(dir / "vocab.test.txt", kUciVocab);
  const auto r = import("uci", dir / "docword.test.txt.gz", dir / "out");
  ASSERT_EQ(r.code, 0) << r.err;
  const Counts c = read_counts(dir / "out");
  expect_uci(c);
  EXPECT_EQ(c.shards, 1);

  // An explicit --vocab wins; its size must match W.
  write_file(dir / "four.txt", "a\nb\nc\nd\n");
  const auto bad = import("uci", dir / "docword.test.txt.gz", dir / "out2", {"--vocab", dir / "four.txt"});
  EXPECT_EQ(bad.code, 65) << bad.err;
  EXPECT_NE(bad.err.find("W = 5"), std::string::npos) << bad.err;
  EXPECT_FALSE(fs::exists(dir / "out2"));
}

TEST(ImportCounts, UciTruncatedGzipIsAnInputError) {
  TempDir dir("counts");
  std::string big = "300\n50\n3000\n";
  for (int d = 1; d <= 300; ++d)
    for (int w = 1; w <= 10; ++w) big += std::to_string(d) + " " + std::to_string(w * 5) + " 1\n";
  write_gz(dir / "docword.big.txt.gz", big);
  std::string vocab;
  for (int w = 0; w < 50; ++w) vocab += "w" + std::to_string(w) + "\n";
  write_file(dir / "vocab.big.txt", vocab);
  ASSERT_EQ(import("uci", dir / "docword.big.txt.gz", dir / "whole").code, 0);
  EXPECT_EQ(read_counts(dir / "whole").indptr.back(), 3000);
  const auto size = fs::file_size(dir / "docword.big.txt.gz");
  fs::resize_file(dir / "docword.big.txt.gz", size / 2);
  const auto r = import("uci", dir / "docword.big.txt.gz", dir / "out");
  EXPECT_EQ(r.code, 65) << r.err;
  EXPECT_NE(r.err.find("docword.big.txt.gz"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "out"));
}

TEST(ImportCounts, LdacMergesRepeatedTermsAndSizesTheVocabulary) {
  TempDir dir("counts");
  write_file(dir / "corpus.ldac", "2 0:1 3:2\n0\n3 2:1 0:4 2:2\n");
  auto r = import("ldac", dir / "corpus.ldac", dir / "out");
  ASSERT_EQ(r.code, 0) << r.err;
  Counts c = read_counts(dir / "out");
  EXPECT_EQ(c.indptr, (I64{0, 2, 2, 4}));
  EXPECT_EQ(c.indices, (I64{0, 3, 0, 2}));
  EXPECT_EQ(c.counts, (F64{1, 2, 4, 3}));
  EXPECT_EQ(c.vocabulary, id_words(4));

  write_file(dir / "vocab.txt", "v0\nv1\nv2\nv3\nv4\n");
  r = import("ldac", dir / "corpus.ldac", dir / "out5", {"--vocab", dir / "vocab.txt"});
  ASSERT_EQ(r.code, 0) << r.err;
  c = read_counts(dir / "out5");
  EXPECT_EQ(c.vocab_size, 5);
  EXPECT_EQ(c.vocabulary, (Words{"v0", "v1", "v2", "v3", "v4"}));
  EXPECT_EQ(c.indices, (I64{0, 3, 0, 2}));

  write_file(dir / "small.txt", "v0\nv1\nv2\n");
  r = import("ldac", dir / "corpus.ldac", dir / "out3", {"--vocab", dir / "small.txt"});
  EXPECT_EQ(r.code, 65);
  EXPECT_NE(r.err.find("corpus.ldac, line 1"), std::string::npos) << r.err;
}

TEST(ImportCounts, LibsvmOneBasedWithLabelsCommentsAndQid) {
  TempDir dir("counts");
  write_file(dir / "train.svm",
             "# a comment line\n"
             "1 1:2 3:1 # trailing comment\n"
             "-1 qid:3 2:4\n"
             "\n"
             "+2 4:1 5:0\n");
  const auto r = import("libsvm", dir / "train.svm", dir / "out");
  ASSERT_EQ(r.code, 0) << r.err;
  const Counts c = read_counts(dir / "out");
  EXPECT_EQ(c.indptr, (I64{0, 2, 3, 4}));
  EXPECT_EQ(c.indices, (I64{0, 2, 1, 3}));
  EXPECT_EQ(c.counts, (F64{2, 1, 4, 1}));
  EXPECT_EQ(c.vocabulary, id_words(5));  // index 5 occurs (with value 0): V = 5
  ASSERT_TRUE(c.has_labels);
  EXPECT_EQ(c.labels, (I64{1, -1, 2}));
}

TEST(ImportCounts, LibsvmZeroBasedAutoAndForcedAndFractionalLabels) {
  TempDir dir("counts");
  write_file(dir / "z.svm", "0.5 0:1 2:3.0\n1.5 1:2\n");
  auto r = import("libsvm", dir / "z.svm", dir / "auto");
  ASSERT_EQ(r.code, 0) << r.err;
  Counts c = read_counts(dir / "auto");
  EXPECT_EQ(c.indices, (I64{0, 2, 1}));
  EXPECT_EQ(c.counts, (F64{1, 3, 2}));
  EXPECT_EQ(c.vocab_size, 3);
  EXPECT_FALSE(c.has_labels);  // labels that are not integers are not stored

  r = import("libsvm", dir / "z.svm", dir / "one", {"--zero-based", "false"});
  EXPECT_EQ(r.code, 65);
  EXPECT_NE(r.err.find("z.svm, line 1"), std::string::npos) << r.err;

  write_file(dir / "o.svm", "3 1:1 2:2\n");
  r = import("libsvm", dir / "o.svm", dir / "forced", {"--zero-based", "true"});
  ASSERT_EQ(r.code, 0) << r.err;
  c = read_counts(dir / "forced");
  EXPECT_EQ(c.indices, (I64{1, 2}));
  EXPECT_EQ(c.vocab_size, 3);
  EXPECT_EQ(c.labels, (I64{3}));
}

TEST(ImportCounts, MatrixMarketBothLayouts) {
  TempDir dir("counts");
  write_file(dir / "docs.mtx",
             "%%MatrixMarket matrix coordinate integer general\n"
             "% documents x words\n"
             "3 4 4\n"
             "1 2 5\n"
             "1 1 1\n"
             "3 4 2\n"
             "3 3 1\n");
  auto r = import("mm", dir / "docs.mtx", dir / "out");
  ASSERT_EQ(r.code, 0) << r.err;
  Counts c = read_counts(dir / "out");
  EXPECT_EQ(c.indptr, (I64{0, 2, 2, 4}));
  EXPECT_EQ(c.indices, (I64{0, 1, 2, 3}));
  EXPECT_EQ(c.counts, (F64{1, 5, 1, 2}));
  EXPECT_EQ(c.vocabulary, id_words(4));

  write_file(dir / "words.mtx",
             "%%MatrixMarket matrix coordinate real general\n"
             "4 3 4\n"
             "2 1 5.0\n"
             "1 1 1\n"
             "4 3 2e0\n"
             "3 3 1\n");
  r = import("mm", dir / "words.mtx", dir / "t", {"--mm-layout", "words-by-docs"});
  ASSERT_EQ(r.code, 0) << r.err;
  const Counts t = read_counts(dir / "t");
  EXPECT_EQ(t.indptr, c.indptr);
  EXPECT_EQ(t.indices, c.indices);
  EXPECT_EQ(t.counts, c.counts);
}

TEST(ImportCounts, MatrixMarketUnsortedIsRefusedWithAHint) {
  TempDir dir("counts");
  write_file(dir / "u.mtx",
             "%%MatrixMarket matrix coordinate integer general\n"
             "3 4 3\n"
             "2 1 1\n"
             "1 2 1\n"
             "3 3 1\n");
  const auto r = import("mm", dir / "u.mtx", dir / "out");
  EXPECT_EQ(r.code, 65);
  EXPECT_NE(r.err.find("u.mtx, line 4"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("sort"), std::string::npos) << r.err;
  expect_only(dir.path(), {"u.mtx"});
}

// d0..d3 below: document frequencies the 2, cat 3, dog 2, every other word 1; corpus counts
// the 4, cat 3, dog 2. "a", "x", "s" (from cat's) are single characters and never words.
const char* kCorpus =
    "The cat sat on the mat.\n"
    "The dog ate the cat's food!\n"
    "A dog, a cat, and a bird.\n"
    "x y z\n";

Counts import_corpus(const TempDir& dir, const std::string& name, std::vector<std::string> extra) {
  const auto r = import("text", dir / "corpus.txt", dir / name, extra);
  EXPECT_EQ(r.code, 0) << r.err;
  return r.code == 0 ? read_counts(dir / name) : Counts{};
}

TEST(ImportCounts, TextTokenisesLikeCountVectorizer) {
  TempDir dir("counts");
  write_file(dir / "corpus.txt", kCorpus);
  const auto r = import("text", dir / "corpus.txt", dir / "all");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("1 of 4 documents are empty"), std::string::npos) << r.err;
  const Counts c = read_counts(dir / "all");
  EXPECT_EQ(c.vocabulary, (Words{"and", "ate", "bird", "cat", "dog", "food", "mat", "on", "sat", "the"}));
  EXPECT_EQ(c.indptr, (I64{0, 5, 10, 14, 14}));
  EXPECT_EQ(c.indices, (I64{3, 6, 7, 8, 9, 1, 3, 4, 5, 9, 0, 2, 3, 4}));
  EXPECT_EQ(c.counts, (F64{1, 1, 1, 1, 2, 1, 1, 1, 1, 2, 1, 1, 1, 1}));

  const Counts upper = import_corpus(dir, "upper", {"--lowercase", "false"});
  EXPECT_EQ(upper.vocabulary,
            (Words{"The", "and", "ate", "bird", "cat", "dog", "food", "mat", "on", "sat", "the"}));
}

TEST(ImportCounts, TextMinDfMaxDfMaxFeaturesAndStopWords) {
  TempDir dir("counts");
  write_file(dir / "corpus.txt", kCorpus);
  Counts c = import_corpus(dir, "min2", {"--min-df", "2"});
  EXPECT_EQ(c.vocabulary, (Words{"cat", "dog", "the"}));
  EXPECT_EQ(c.indptr, (I64{0, 2, 5, 7, 7}));
  EXPECT_EQ(c.indices, (I64{0, 2, 0, 1, 2, 0, 1}));
  EXPECT_EQ(c.counts, (F64{1, 2, 1, 1, 2, 1, 1}));

  // A float is a proportion: 0.5 x 4 documents = at most 2 documents (drops "cat").
  c = import_corpus(dir, "max05", {"--max-df", "0.5"});
  EXPECT_EQ(c.vocabulary, (Words{"and", "ate", "bird", "dog", "food", "mat", "on", "sat", "the"}));
  // An integer is a document count.
  c = import_corpus(dir, "exact2", {"--min-df", "2", "--max-df", "2"});
  EXPECT_EQ(c.vocabulary, (Words{"dog", "the"}));
  c = import_corpus(dir, "minprop", {"--min-df", "0.75"});
  EXPECT_EQ(c.vocabulary, (Words{"cat"}));

  c = import_corpus(dir, "top3", {"--max-features", "3"});
  EXPECT_EQ(c.vocabulary, (Words{"cat", "dog", "the"}));
  c = import_corpus(dir, "top4", {"--max-features", "4"});  // ties among count-1 words: alphabetical
  EXPECT_EQ(c.vocabulary, (Words{"and", "cat", "dog", "the"}));

  c = import_corpus(dir, "stop", {"--stop-words", "english"});
  EXPECT_EQ(c.vocabulary, (Words{"ate", "bird", "cat", "dog", "food", "mat", "sat"}));
  EXPECT_EQ(c.indptr, (I64{0, 3, 7, 10, 10}));

  write_file(dir / "stop.txt", "cat\n\n  dog  \n");
  c = import_corpus(dir, "stopfile", {"--stop-words", dir / "stop.txt", "--min-df", "2"});
  EXPECT_EQ(c.vocabulary, (Words{"the"}));

  auto r = import("text", dir / "corpus.txt", dir / "none", {"--min-df", "4"});
  EXPECT_EQ(r.code, 64) << r.err;
  EXPECT_NE(r.err.find("no words remain"), std::string::npos) << r.err;
  r = import("text", dir / "corpus.txt", dir / "none", {"--min-df", "3", "--max-df", "2"});
  EXPECT_EQ(r.code, 64) << r.err;
  r = import("text", dir / "corpus.txt", dir / "none", {"--max-df", "1.5"});
  EXPECT_EQ(r.code, 64) << r.err;
  EXPECT_FALSE(fs::exists(dir / "none"));
}

TEST(ImportCounts, TextDirectoryWithTagsIncludeAndLabels) {
  TempDir dir("counts");
  fs::create_directories(dir / "brown");
  write_file(dir / "brown/ca01", "\n\tThe/at Fulton/np-tl County/nn-tl said/vbd ./.\n\tthe/at jury/nn said/vbd\n");
  write_file(dir / "brown/ca02", "The/at jury/nn New/York/np\n");
  write_file(dir / "brown/cb01", "Grand/jj jury/nn\n");
  write_file(dir / "brown/README", "not/a document/at all/of this/corpus\n");
  write_file(dir / "brown/cats.txt", "ca01 news\nca02 news\ncb01 editorial\n");
  const auto r = import("text", dir / "brown", dir / "out",
                        {"--include", "c[a-r][0-9]{2}", "--tag-separator", "/", "--labels", dir / "brown/cats.txt"});
  ASSERT_EQ(r.code, 0) << r.err;
  const Counts c = read_counts(dir / "out");
  EXPECT_EQ(c.vocabulary, (Words{"county", "fulton", "grand", "jury", "new", "said", "the", "york"}));
  EXPECT_EQ(c.indptr, (I64{0, 5, 9, 11}));
  EXPECT_EQ(c.indices, (I64{0, 1, 3, 5, 6, 3, 4, 6, 7, 2, 3}));
  EXPECT_EQ(c.counts, (F64{1, 1, 1, 2, 2, 1, 1, 1, 1, 1, 1}));
  ASSERT_TRUE(c.has_labels);
  EXPECT_EQ(c.labels, (I64{1, 1, 0}));
  EXPECT_EQ(read_lines(dir / "out/labels.txt"), (Words{"editorial", "news"}));

  // Without the separator the tags are words too.
  const auto tags = import("text", dir / "brown", dir / "tags", {"--include", "c[a-r][0-9]{2}"});
  ASSERT_EQ(tags.code, 0) << tags.err;
  const Counts t = read_counts(dir / "tags");
  EXPECT_NE(std::find(t.vocabulary.begin(), t.vocabulary.end(), "vbd"), t.vocabulary.end());
  EXPECT_EQ(std::find(t.vocabulary.begin(), t.vocabulary.end(), "corpus"), t.vocabulary.end());  // README excluded
}

TEST(ImportCounts, HoldoutSplitIsDeterministicAndComplete) {
  TempDir dir("counts");
  const int n = 200;
  std::string corpus;
  for (int i = 0; i < n; ++i) corpus += "1 " + std::to_string(i % 7) + ":" + std::to_string(i % 5 + 1) + "\n";
  write_file(dir / "c.ldac", corpus);
  const double fraction = 0.3;
  const std::uint64_t seed = 7;
  auto r = import("ldac", dir / "c.ldac", dir / "split", {"--holdout-fraction", "0.3", "--seed", "7", "--docs-per-shard", "16"});
  ASSERT_EQ(r.code, 0) << r.err;
  expect_only(dir / "split", {"train", "test"});
  const Counts train = read_counts(dir / "split/train"), test = read_counts(dir / "split/test");
  EXPECT_EQ(train.vocabulary, id_words(7));
  EXPECT_EQ(test.vocabulary, train.vocabulary);
  EXPECT_EQ(read_lines(dir / "split/train/vocabulary.txt"), read_lines(dir / "split/test/vocabulary.txt"));

  I64 want_train_idx, want_test_idx;
  F64 want_train_counts, want_test_counts;
  for (int i = 0; i < n; ++i) {
    const bool to_test =
        CounterRng(seed, RngPurpose::kHoldout, 0, static_cast<std::uint64_t>(i)).next_uniform() < fraction;
    (to_test ? want_test_idx : want_train_idx).push_back(i % 7);
    (to_test ? want_test_counts : want_train_counts).push_back(i % 5 + 1);
  }
  EXPECT_EQ(train.indices, want_train_idx);
  EXPECT_EQ(test.indices, want_test_idx);
  EXPECT_EQ(train.counts, want_train_counts);
  EXPECT_EQ(test.counts, want_test_counts);
  const auto n_test = static_cast<int>(want_test_idx.size());
  EXPECT_EQ(static_cast<int>(test.indptr.size()) - 1, n_test);
  EXPECT_EQ(static_cast<int>(train.indptr.size()) - 1 + n_test, n);
  EXPECT_GT(n_test, 30);
  EXPECT_LT(n_test, 90);
  EXPECT_NE(r.err.find("train " + std::to_string(n - n_test) + " documents"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("test " + std::to_string(n_test) + " documents"), std::string::npos) << r.err;

  // The same seed gives the same split; another seed another one.
  r = import("ldac", dir / "c.ldac", dir / "again", {"--holdout-fraction", "0.3", "--seed", "7"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_counts(dir / "again/test").indices, test.indices);
  r = import("ldac", dir / "c.ldac", dir / "other", {"--holdout-fraction", "0.3", "--seed", "8"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(read_counts(dir / "other/test").indices, test.indices);
}

// Which line of which file is wrong is checked for every format at the reader
// (import_readers_test.cpp, CountReaders.MalformedLinesNameFileAndLine); here: the command
// reports it with exit code 65 and leaves neither the output nor a temporary directory.
TEST(ImportCounts, MalformedInputExits65AndLeavesNothing) {
  TempDir dir("counts");
  struct Case {
    std::string format, file, content, where;
    std::vector<std::string> extra;
  };
  fs::create_directories(dir / "docs");
  write_file(dir / "docs/d1", "hello world\n");
  write_file(dir / "docs/d2", "hello again\n");
  write_file(dir / "cats.txt", "d1 greeting\nd2\n");
  write_file(dir / "holes.txt", "a\n\nc\n");
  const std::vector<Case> cases{
      {"uci", "docword.bad.txt", "2\n3\n2\n1 1 1\n2 x 1\n", "docword.bad.txt, line 5", {}},
      {"ldac", "bad.ldac", "1 0:1\n2 0:1\n", "bad.ldac, line 2", {}},
      {"ldac", "ok.ldac", "1 0:1\n", "holes.txt, line 2", {"--vocab", dir / "holes.txt"}},
      {"libsvm", "bad.svm", "1 1:1\n\n1 3:abc\n", "bad.svm, line 3", {}},
      {"mm", "bad.mtx", "%%MatrixMarket matrix coordinate integer general\n2 2 2\n1 1 1\n1 x 2\n", "bad.mtx, line 4", {}},
      {"text", "docs", "", "cats.txt, line 2", {"--labels", dir / "cats.txt"}},
  };
  for (const auto& c : cases) {
    if (!c.content.empty()) write_file(dir / c.file, c.content);
    if (c.format == "uci") write_file(dir / "vocab.bad.txt", "a\nb\nc\n");
    const auto r = import(c.format, dir / c.file, dir / "out", c.extra);
    EXPECT_EQ(r.code, 65) << c.file << ": " << r.err;
    EXPECT_NE(r.err.find(c.where), std::string::npos) << c.file << ": " << r.err;
    EXPECT_FALSE(fs::exists(dir / "out")) << c.file;
  }
  for (const auto& e : fs::directory_iterator(dir.path()))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
}

TEST(ImportCounts, ExistingOutputMissingInputAndBadOptions) {
  TempDir dir("counts");
  write_file(dir / "c.ldac", "1 0:1\n");
  fs::create_directories(dir / "out");
  write_file(dir / "out/keep.txt", "precious");
  auto r = import("ldac", dir / "c.ldac", dir / "out");
  EXPECT_EQ(r.code, 73) << r.err;
  expect_only(dir / "out", {"keep.txt"});
  EXPECT_EQ(read_lines(dir / "out/keep.txt"), (Words{"precious"}));
  expect_only(dir.path(), {"c.ldac", "out"});

  r = import("ldac", dir / "missing.ldac", dir / "new");
  EXPECT_EQ(r.code, 66) << r.err;
  r = import("uci", dir / "docword.missing.txt", dir / "new");
  EXPECT_EQ(r.code, 66) << r.err;
  r = import("uci", dir / "c.ldac", dir / "new");  // no vocab.NAME.txt to derive
  EXPECT_EQ(r.code, 64) << r.err;
  EXPECT_EQ(import("csv", dir / "c.ldac", dir / "new").code, 64);
  EXPECT_EQ(import("ldac", dir / "c.ldac", dir / "new", {"--zero-based", "true"}).code, 64);
  EXPECT_EQ(import("ldac", dir / "c.ldac", dir / "new", {"--min-df", "2"}).code, 64);
  EXPECT_EQ(import("ldac", dir / "c.ldac", dir / "new", {"--holdout-fraction", "1"}).code, 64);
  EXPECT_EQ(import("ldac", dir / "c.ldac", dir / "new", {"--docs-per-shard", "0"}).code, 64);
  EXPECT_EQ(import("text", dir / "c.ldac", dir / "new", {"--include", "("}).code, 64);
  EXPECT_EQ(run_cli({"import", "counts", "--input", dir / "c.ldac"}).code, 64);
  EXPECT_EQ(run_cli({"import", "counts", "--help"}).code, 0);
  EXPECT_FALSE(fs::exists(dir / "new"));
}

TEST(CountsWriter, MergesValidatesAndCommitsAtomically) {
  TempDir dir("counts");
  const std::string out = dir / "ds";
  {
    io::CountsWriter w(out, 4, 2, true);
    const std::vector<std::int32_t> ids{3, 1, 3, 0};
    const std::vector<std::int64_t> counts{1, 2, 5, 1};
    w.add_document(ids, counts, 7);
    w.add_document({}, {}, 8);
    const std::vector<std::int32_t> bad_id{4};
    const std::vector<std::int64_t> one{1};
    try {
      w.add_document(bad_id, one);
      ADD_FAILURE() << "id 4 accepted with V = 4";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInput);
    }
    const std::vector<std::int32_t> id{2};
    const std::vector<std::int64_t> zero{0};
    EXPECT_THROW(w.add_document(id, zero), Error);
    w.add_document(id, one, 9);
    EXPECT_EQ(w.num_documents(), 3);
    EXPECT_EQ(w.num_tokens(), 10);
    EXPECT_EQ(w.num_empty_documents(), 1);
    EXPECT_FALSE(fs::exists(out));
    try {
      w.commit({"a", "b", "c"});
      ADD_FAILURE() << "a vocabulary of 3 words accepted with V = 4";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInput);
    }
    EXPECT_THROW(w.commit({"a", "b\tx", "c", "d"}), Error);
    w.commit({"a", "b", "c", "d"});
  }
  const Counts c = read_counts(out);
  EXPECT_EQ(c.indptr, (I64{0, 3, 3, 4}));
  EXPECT_EQ(c.indices, (I64{0, 1, 3, 2}));
  EXPECT_EQ(c.counts, (F64{1, 2, 6, 1}));
  EXPECT_EQ(c.labels, (I64{7, 8, 9}));
  EXPECT_EQ(c.shards, 2);
  EXPECT_EQ(c.vocabulary, (Words{"a", "b", "c", "d"}));

  // An existing directory is refused; an uncommitted writer leaves nothing behind.
  try {
    io::CountsWriter again(out, 4, 2, false);
    ADD_FAILURE() << "existing directory accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kOutput);
  }
  {
    io::CountsWriter abandoned(dir / "abandoned", 2, 1, false);
    const std::vector<std::int32_t> ids{0, 1};
    const std::vector<std::int64_t> counts{1, 1};
    for (int i = 0; i < 3; ++i) abandoned.add_document(ids, counts);
  }
  expect_only(dir.path(), {"ds"});
}

}  // namespace
}  // namespace latent
