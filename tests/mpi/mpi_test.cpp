// Tests run by ctest under mpiexec at 1, 2 and 4 ranks (and the invariance fits at 1-4).
#include <gtest/gtest.h>
#include <malloc.h>

#include "latent/core/matmul.hpp"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <limits>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "../support/fixtures.hpp"
#include "latent/cli/cli.hpp"
#include "latent/comm/communicator.hpp"
#include "latent/core/error.hpp"
#include "latent/core/rng.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/models/lda/lda_fit.hpp"
#include "latent/models/lda/lda_generate.hpp"
#include "latent/models/lda/lda_gibbs.hpp"
#include "latent/models/lda/lda_slice.hpp"

namespace latent {
namespace {

constexpr std::uint64_t kGibbsShardedFingerprint = 145345146504532050ULL;

double value_of(int rank, int i) { return std::ldexp(1.0 + 0.1 * i, (rank * 7 + i) % 60 - 30) * ((i % 3) ? 1 : -1); }

TEST(Communicator, ExactAllreduceEqualsTheSerialSumBitForBit) {
  const auto comm = comm::Communicator::world();
  constexpr int kN = 64;
  ExactSum mine(kN), serial(kN);
  for (int i = 0; i < kN; ++i) {
    std::vector<double> v(kN, 0.0);
    v[static_cast<std::size_t>(i)] = value_of(comm.rank(), i);
    mine.add(v);
  }
  for (int r = 0; r < comm.size(); ++r)
    for (int i = 0; i < kN; ++i) {
      std::vector<double> v(kN, 0.0);
      v[static_cast<std::size_t>(i)] = value_of(r, i);
      serial.add(v);
    }
  comm.allreduce(mine);
  EXPECT_EQ(mine.values(), serial.values());
}

TEST(Communicator, AgreeMakesEveryRankThrowTheSameError) {
  const auto comm = comm::Communicator::world();
  const int bad = comm.size() - 1;
  try {
    comm::run_agreed(comm, [&] {
      if (comm.rank() == bad) throw Error(ErrorKind::kInput, "file x.h5, row 3: broken");
    });
    FAIL() << "every rank must throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInput);
    EXPECT_EQ(std::string(e.what()), comm.size() > 1 ? "rank " + std::to_string(bad) + ": file x.h5, row 3: broken"
                                                     : std::string("file x.h5, row 3: broken"));
  }
  EXPECT_NO_THROW(comm::run_agreed(comm, [] {}));
}

TEST(Communicator, AllgathervConcatenatesInRankOrder) {
  const auto comm = comm::Communicator::world();
  std::vector<double> mine(static_cast<std::size_t>(comm.rank()), static_cast<double>(comm.rank()));
  const auto all = comm.allgatherv(mine);
  std::vector<double> expected;
  for (int r = 0; r < comm.size(); ++r) expected.insert(expected.end(), static_cast<std::size_t>(r), static_cast<double>(r));
  EXPECT_EQ(all, expected);
}

TEST(NodeSharedMemory, EveryRankReadsTheOthersSegmentsInPlace) {
  const auto comm = comm::Communicator::world();
  // Segments of different lengths (rank r: 1000 r + 8 bytes), as the VAE's rank 0 holds more.
  const std::size_t mine = 1000 * static_cast<std::size_t>(comm.rank()) + 8;
  auto shared = comm::NodeSharedMemory::create(comm, mine);
  if (comm.size() == 1) {
    EXPECT_EQ(shared, nullptr);  // one rank: nothing to share
    return;
  }
  ASSERT_NE(shared, nullptr);  // ctest's ranks run on one node
  auto* own = shared->segment(comm.rank());
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(own) % 64, 0u);
  for (std::size_t i = 0; i < mine; ++i) own[i] = static_cast<std::byte>((comm.rank() * 31 + static_cast<int>(i)) & 0xff);
  shared->sync();
  comm.barrier();
  shared->sync();
  for (int r = 0; r < comm.size(); ++r) {
    const auto* seg = shared->segment(r);
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < 1000 * static_cast<std::size_t>(r) + 8; ++i)
      wrong += seg[i] != static_cast<std::byte>((r * 31 + static_cast<int>(i)) & 0xff);
    EXPECT_EQ(wrong, 0u) << "segment of rank " << r;
  }
  comm.barrier();  // nobody frees the window while another still reads
  shared.reset();
  // Turned off by the environment: null on every rank.
  ASSERT_EQ(setenv("LATENT_NODE_SHARED", "0", 1), 0);
  EXPECT_EQ(comm::NodeSharedMemory::create(comm, 64), nullptr);
  ASSERT_EQ(unsetenv("LATENT_NODE_SHARED"), 0);
  // More than the backing filesystem has free (here 2^50 bytes on one rank): null on every
  // rank, before MPI is asked (a too-small /dev/shm would end the job with SIGBUS later).
  EXPECT_EQ(comm::NodeSharedMemory::create(comm, comm.rank() == 0 ? std::size_t{1} << 50 : 64), nullptr);
  EXPECT_NE(comm::NodeSharedMemory::create(comm, 64), nullptr);
}

TEST(Communicator, AlltoallvDeliversEachPairsElementsInSourceOrder) {
  const auto comm = comm::Communicator::world();
  // Rank r sends d + 1 elements r * 100 + d * 10 + j (j < d + 1) to rank d.
  std::vector<std::int64_t> data, counts;
  for (int d = 0; d < comm.size(); ++d) {
    counts.push_back(d + 1);
    for (int j = 0; j <= d; ++j) data.push_back(comm.rank() * 100 + d * 10 + j);
  }
  const auto got = comm.alltoallv(data, counts);
  std::vector<std::int64_t> want;
  for (int r = 0; r < comm.size(); ++r)
    for (int j = 0; j <= comm.rank(); ++j) want.push_back(r * 100 + comm.rank() * 10 + j);
  EXPECT_EQ(got, want);
}

TEST(Communicator, RingShiftPassesBytesToTheNextRankInPieces) {
  const auto comm = comm::Communicator::world();
  std::vector<std::byte> buf(1001);
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<std::byte>((comm.rank() * 31 + i) % 251);
  comm.ring_shift(buf, 64);  // 16 pieces, the last short
  const int from = (comm.rank() + comm.size() - 1) % comm.size();
  for (std::size_t i = 0; i < buf.size(); ++i) ASSERT_EQ(buf[i], static_cast<std::byte>((from * 31 + i) % 251)) << i;
}

// A generated LDA corpus (5 true topics, mean length 60, seed 9) written by rank 0 into a
// temporary directory, which `dir` keeps alive on rank 0, and opened on every rank.
io::CountsDatasetInfo generated_lda_corpus(const comm::Communicator& comm, const std::string& name, Index documents,
                                           Index vocab_size, Index docs_per_shard,
                                           std::unique_ptr<latent::testing::TempDir>& dir) {
  std::string root;
  if (comm.is_root()) {
    dir = std::make_unique<latent::testing::TempDir>(name);
    root = dir->path();
    models::generate_lda(documents, vocab_size, 5, 60, 0.3, 0.05, 9, docs_per_shard, root + "/corpus", "");
  }
  comm.broadcast(root, 0);
  return io::open_counts_dataset(root + "/corpus");
}

// The sharded sampler (issue 20 item 3): each rank's slice of n_kw and of the alias tables
// is exactly the count of every rank's topics, after every sweep, at any rank count; and
// the chain's topics do not depend on the rank count (a fixed fingerprint).
// Variational LDA with λ sharded by vocabulary slice (lda_slice.hpp): V = 2,500 words is 3
// chunks, so 2 and 3 ranks hold real slices and 4 ranks leave one empty. Every setting of
// ranks × threads × round size gives the bits of one process fitting alone (the reference,
// fitted on rank 0 with a single-process communicator), for batch and online, with both
// priors learned (Σ E[log β] and the topic totals cross the slices).
TEST(LdaSharded, SameBitsAsOneProcessForAnyRanksThreadsAndRounds) {
  const auto comm = comm::Communicator::world();
  std::unique_ptr<latent::testing::TempDir> dir;
  const io::CountsDatasetInfo info = generated_lda_corpus(comm, "lda-sharded", 240, 2500, 70, dir);
  ASSERT_EQ(info.vocab_size, 2500);
  // λ whole on rank 0 (word-major), from either kind of result.
  const auto whole = [&](models::LdaFitResult& fit) {
    if (!fit.slice) return fit.model.lambda_vk();
    EXPECT_EQ(fit.slice->begin(), models::LdaSlice::slice_begin(2500, comm.size(), comm.rank()));
    RowMatrix lambda;
    if (comm.is_root()) lambda.resize(2500, 5);
    fit.slice->gather_to_root(comm, [&](Index a, Index b, const RowMatrix& block) { lambda.middleRows(a, b - a) = block.transpose(); });
    return lambda;
  };
  for (const char* method : {"batch", "online"}) {
    models::LdaConfig c;
    c.n_topics = 5;
    c.method = method;
    c.max_iter = 3;
    c.batch_size = 50;
    c.block_rows = 64;
    c.learn_alpha = c.learn_eta = true;
    c.seed = 4;
    RowMatrix reference;
    Vector reference_alpha;
    if (comm.is_root()) {
      models::LdaFitResult one = models::fit_lda(comm::Communicator::single_process(), info, c, Logger::silent(), {}, nullptr);
      ASSERT_FALSE(one.slice);
      reference = one.model.lambda_vk();
      reference_alpha = one.model.alpha();
    }
    // Ranks on one node share λ and the counts in memory (LdaSlice::share_node_memory) unless
    // LATENT_NODE_SHARED=0 makes them exchange messages: both paths.
    for (const char* shared : {"1", "0"})
    for (int threads : {1, 2})
      for (Index round_cells : {Index{0}, Index{5 * 40}}) {  // 0: whole blocks; 40 words: many rounds per block
        c.threads = threads;
        c.round_cells = round_cells;
        ASSERT_EQ(setenv("LATENT_NODE_SHARED", shared, 1), 0);
        models::LdaFitResult fit = models::fit_lda(comm, info, c, Logger::silent(), {}, nullptr);
        ASSERT_EQ(unsetenv("LATENT_NODE_SHARED"), 0);
        EXPECT_EQ(static_cast<bool>(fit.slice), comm.size() > 1);
        const RowMatrix lambda = whole(fit);
        if (!comm.is_root()) continue;
        const Vector& alpha = fit.slice ? fit.slice->alpha() : fit.model.alpha();
        ASSERT_EQ(lambda.rows(), reference.rows());
        EXPECT_EQ(std::memcmp(lambda.data(), reference.data(), sizeof(double) * static_cast<std::size_t>(lambda.size())), 0)
            << method << " shared " << shared << " threads " << threads << " round cells " << round_cells << ": max |diff| "
            << (lambda - reference).cwiseAbs().maxCoeff();
        EXPECT_EQ(std::memcmp(alpha.data(), reference_alpha.data(), sizeof(double) * 5), 0) << method;
      }
  }
  comm.barrier();
}

// Bytes of a /proc/self/status line (kB there), -1 if absent.
double status_bytes(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field, 0) == 0) return 1024.0 * std::strtod(line.c_str() + std::strlen(field), nullptr);
  return -1;
}

// The peak of a variational fit stays within its own prediction (LdaFitResult::
// predicted_bytes, less the 64 MiB it allows for the libraries, which this process has
// loaded already). λ (V = 20,000 words × K = 1,000 topics, 8 bytes a cell) dominates: the
// slice's λ and its counts are the two slice-sized buffers the prediction counts; at the
// end λ is copied out of the node's shared memory (LdaSlice::unshare), or on one rank the
// whole model's rows refreshed, after the counts are freed (with them alive, the peak was
// 1.5 times the prediction). Growth = the peak resident set (VmHWM, reset through
// /proc/self/clear_refs, Linux 4.0 and later) less the resident set before the fit. While
// it runs, blocks of 4 MiB and more are mapped and unmapped on their own (test_main keeps
// them in the heap up to 1 GiB), so the resident set follows what is allocated.
TEST(LdaSharded, PeakMemoryStaysWithinThePrediction) {
  const auto comm = comm::Communicator::world();
  std::unique_ptr<latent::testing::TempDir> dir;
  const io::CountsDatasetInfo info = generated_lda_corpus(comm, "lda-memory", 200, 20000, 100, dir);
  models::LdaConfig c;
  c.n_topics = 1000;
  c.method = "online";
  c.max_iter = 1;
  c.batch_size = 200;
  c.round_cells = 20000;  // rounds of 20 words: the round's buffers are small beside λ
  c.threads = 1;
  c.seed = 4;
  bool reset = false;
  {
    std::ofstream clear("/proc/self/clear_refs");
    clear << "5";
    reset = static_cast<bool>(clear.flush());
  }
  const double before = status_bytes("VmRSS:");
  std::array<double, 1> ok{reset && before > 0 && status_bytes("VmHWM:") < before + 16.0 * 1048576 ? 1.0 : 0.0};
  comm.allreduce_min(ok);  // every rank skips, or none
  if (ok[0] == 0) GTEST_SKIP() << "cannot reset the peak resident set here (/proc/self/clear_refs)";
  double predicted = 0;
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  {
    models::LdaFitResult fit = models::fit_lda(comm, info, c, Logger::silent(), {}, nullptr);
    predicted = fit.predicted_bytes;
  }
  const double growth = status_bytes("VmHWM:") - before;
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  const double allowed = predicted - 64.0 * 1048576;
  EXPECT_GT(growth, 0.5 * allowed) << "the fit did not hold λ: the check below proves nothing";
  EXPECT_LE(growth, 1.1 * allowed) << "peak growth " << growth / 1048576 << " MiB against a prediction of "
                                   << allowed / 1048576 << " MiB (without the libraries) on rank " << comm.rank() << " of "
                                   << comm.size();
  comm.barrier();
}

TEST(GibbsSharded, SlicesHoldTheGlobalCountsAfterEverySweep) {
  const auto comm = comm::Communicator::world();
  const int k = 7, v = 23, docs = 60;
  // Document d: words (d * 3 + j * 5) % v for j < 4 + d % 9, ascending, with repeats.
  std::vector<std::int64_t> doc_ptr{0};
  std::vector<std::int32_t> words;
  std::int64_t first = 0;
  std::vector<std::int32_t> all_words;
  for (int d = 0; d < docs; ++d) {
    std::vector<std::int32_t> doc;
    for (int j = 0; j < 4 + d % 9; ++j) doc.push_back((d * 3 + j * 5) % v);
    std::sort(doc.begin(), doc.end());
    const bool mine = d * comm.size() / docs == comm.rank();
    if (d * comm.size() / docs < comm.rank()) first += static_cast<std::int64_t>(doc.size());
    if (mine) {
      words.insert(words.end(), doc.begin(), doc.end());
      doc_ptr.push_back(static_cast<std::int64_t>(words.size()));
    }
    all_words.insert(all_words.end(), doc.begin(), doc.end());
  }
  models::GibbsSampler s(k, v, 0.3, 0.05, 2, 11, 2);
  s.set_corpus(doc_ptr, words, first);
  s.init_topics();
  s.rebuild_counts(comm);
  EXPECT_EQ(s.home_begin(), models::GibbsSampler::slice_begin(v, comm.size(), comm.rank()));
  for (int sweep = 0; sweep < 12; ++sweep) {
    s.sweep(comm, static_cast<std::uint64_t>(sweep));
    std::vector<std::int64_t> mine(s.topics().begin(), s.topics().end());
    const std::vector<std::int64_t> z = comm.allgatherv(std::span<const std::int64_t>(mine));
    ASSERT_EQ(z.size(), all_words.size());
    std::vector<std::int64_t> n_kw(static_cast<std::size_t>(k * v), 0), n_k(static_cast<std::size_t>(k), 0);
    for (std::size_t i = 0; i < z.size(); ++i) {
      ++n_kw[static_cast<std::size_t>(all_words[i] * k + z[i])];
      ++n_k[static_cast<std::size_t>(z[i])];
    }
    for (Index w = s.home_begin(); w < s.home_end(); ++w) {
      std::int64_t nnz = 0;
      for (int t = 0; t < k; ++t) {
        ASSERT_EQ(s.n_kw()[static_cast<std::size_t>((w - s.home_begin()) * k + t)], n_kw[static_cast<std::size_t>(w * k + t)]);
        nnz += n_kw[static_cast<std::size_t>(w * k + t)] > 0;
      }
      ASSERT_EQ(static_cast<std::int64_t>(s.alias(w).size()), nnz);
    }
    ASSERT_EQ(s.n_k(), n_k);
    if (sweep == 11) {
      std::uint64_t h = 0;
      for (std::int64_t t : z) h = mix64(h ^ static_cast<std::uint64_t>(t));
      // Recorded at 1 rank; the same at 2 and 4 (the chain does not depend on P).
      EXPECT_EQ(h, kGibbsShardedFingerprint) << "topics fingerprint " << h;
    }
  }
}

// --- Rank/thread invariance at the level of the model file -------------------------------

std::string invariance_dir() {
  const char* d = std::getenv("LATENT_INVARIANCE_DIR");
  return d ? d : "";
}

int run_cli(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  const int code = cli::run(args, out, err);
  if (code != 0) ADD_FAILURE() << err.str();
  return code;
}

const std::vector<std::string> kCovarianceTypes = {"full", "tied", "diag", "spherical"};

TEST(Invariance, MakeData) {
  if (invariance_dir().empty()) GTEST_SKIP() << "LATENT_INVARIANCE_DIR not set";
  const auto comm = comm::Communicator::world();
  if (!comm.is_root()) return;
  std::filesystem::remove_all(invariance_dir());
  // Uneven shards so that block boundaries, short blocks and rank ranges all differ.
  const RowMatrix x = latent::testing::blobs(2600, 6, 4, 17, nullptr, 4.0, 1.5);
  latent::testing::write_shards(invariance_dir() + "/data", x, {900, 1, 1100, 599});
  // A corpus in uneven shards (250, 250, 200 documents) for LDA.
  run_cli({"generate", "lda", "--n-documents", "700", "--vocab-size", "120", "--n-topics", "4", "--doc-length", "40",
           "--docs-per-shard", "250", "--seed", "5", "--output", invariance_dir() + "/corpus"});
  ASSERT_TRUE(std::filesystem::exists(invariance_dir() + "/corpus/vocabulary.txt"));
  // A large vocabulary and small minibatches: the statistics travel as touched rows only.
  run_cli({"generate", "lda", "--n-documents", "300", "--vocab-size", "3000", "--n-topics", "5", "--doc-length", "20",
           "--docs-per-shard", "70", "--seed", "6", "--output", invariance_dir() + "/corpus-sparse"});
  ASSERT_TRUE(std::filesystem::exists(invariance_dir() + "/corpus-sparse/vocabulary.txt"));
  ASSERT_TRUE(std::filesystem::exists(invariance_dir() + "/data"));
  // The same rows with 10 % of the entries missing (NaN), for the missing-value EMs.
  RowMatrix xm = x;
  for (Index i = 0; i < xm.rows(); ++i)
    for (Index j = 0; j < xm.cols(); ++j)
      if (CounterRng(9, RngPurpose::kSample, 0, static_cast<std::uint64_t>(i * xm.cols() + j)).next_uniform() < 0.1)
        xm(i, j) = std::numeric_limits<double>::quiet_NaN();
  latent::testing::write_shards(invariance_dir() + "/data-missing", xm, {900, 1, 1100, 599});
  // Binary features (x > column mean) for the Bernoulli mixture.
  const RowVector mean = x.colwise().mean();
  RowMatrix xb(x.rows(), x.cols());
  for (Index i = 0; i < x.rows(); ++i)
    for (Index j = 0; j < x.cols(); ++j) xb(i, j) = x(i, j) > mean[j] ? 1.0 : 0.0;
  latent::testing::write_shards(invariance_dir() + "/data-binary", xb, {900, 1, 1100, 599});
}

TEST(Invariance, Fit) {
  if (invariance_dir().empty()) GTEST_SKIP() << "LATENT_INVARIANCE_DIR not set";
  const auto comm = comm::Communicator::world();
  const std::string dir = invariance_dir();
  for (const char* threads : {"1", "2"}) {
    const std::string tag = "n" + std::to_string(comm.size()) + "-t" + threads;
    for (const auto& type : kCovarianceTypes)
      run_cli({"fit", "gmm", "--data", dir + "/data", "--output", dir + "/" + tag + "-gmm-" + type + ".h5", "--overwrite",
               "--n-components", "4", "--covariance-type", type, "--threads", threads, "--block-rows", "128",
               "--tol", "1e-6", "--seed", "3"});
    run_cli({"fit", "gmm", "--data", dir + "/data", "--output", dir + "/" + tag + "-gmm-random.h5", "--overwrite",
             "--n-components", "3", "--init-params", "random", "--n-init", "2", "--threads", threads, "--block-rows", "128"});
    run_cli({"fit", "kmeans", "--data", dir + "/data", "--output", dir + "/" + tag + "-kmeans.h5", "--overwrite",
             "--n-clusters", "5", "--threads", threads, "--block-rows", "128"});
    // Online minibatches of 90 documents straddle shard and block boundaries.
    for (const char* method : {"batch", "online"})
      run_cli({"fit", "lda", "--data", dir + "/corpus", "--output", dir + "/" + tag + "-lda-" + method + ".h5", "--overwrite",
               "--n-topics", "4", "--method", method, "--batch-size", "90", "--max-iter", "3", "--threads", threads,
               "--block-rows", "64", "--learn-priors", "alpha", "--seed", "2"});
    run_cli({"fit", "lda", "--data", dir + "/corpus-sparse", "--output", dir + "/" + tag + "-lda-sparse.h5", "--overwrite",
             "--n-topics", "5", "--method", "online", "--batch-size", "25", "--max-iter", "2", "--threads", threads,
             "--learn-priors", "both", "--seed", "4"});
    // PPCA on the scatter matrix, FA streamed, both with missing values, a diag GMM
    // with missing values, and the outlier flags and imputations of those models.
    run_cli({"fit", "ppca", "--data", dir + "/data", "--output", dir + "/" + tag + "-ppca.h5", "--overwrite",
             "--n-components", "2", "--threads", threads, "--block-rows", "128", "--seed", "3"});
    run_cli({"fit", "fa", "--data", dir + "/data", "--output", dir + "/" + tag + "-fa.h5", "--overwrite", "--n-components",
             "2", "--solver", "streaming", "--threads", threads, "--block-rows", "128", "--max-iter", "30"});
    for (const char* m : {"ppca", "fa"})
      run_cli({"fit", m, "--data", dir + "/data-missing", "--output", dir + "/" + tag + "-" + m + "-missing.h5", "--overwrite",
               "--n-components", "2", "--missing-values", "nan", "--threads", threads, "--block-rows", "128", "--max-iter",
               "30"});
    run_cli({"fit", "gmm", "--data", dir + "/data-missing", "--output", dir + "/" + tag + "-gmm-missing.h5", "--overwrite",
             "--n-components", "4", "--covariance-type", "diag", "--missing-values", "nan", "--threads", threads,
             "--block-rows", "128", "--seed", "3"});
    run_cli({"fit", "gmm", "--data", dir + "/data-missing", "--output", dir + "/" + tag + "-gmm-missing-full.h5",
             "--overwrite", "--n-components", "3", "--covariance-type", "full", "--missing-values", "nan", "--threads",
             threads, "--block-rows", "128", "--max-iter", "15", "--seed", "3"});
    run_cli({"predict", "--model", dir + "/" + tag + "-fa-missing.h5", "--data", dir + "/data-missing", "--missing-values", "nan",
             "--output", dir + "/" + tag + "-outliers.h5", "--overwrite", "--outlier-quantile", "0.05", "--threads", threads,
             "--block-rows", "128"});
    run_cli({"impute", "--model", dir + "/" + tag + "-gmm-missing.h5", "--data", dir + "/data-missing", "--output",
             dir + "/" + tag + "-imputed.h5", "--overwrite", "--threads", threads, "--block-rows", "128"});
    run_cli({"fit", "bgmm", "--data", dir + "/data", "--output", dir + "/" + tag + "-bgmm.h5", "--overwrite",
             "--n-components", "6", "--threads", threads, "--block-rows", "128", "--tol", "1e-6", "--seed", "3"});
    run_cli({"fit", "bgmm", "--data", dir + "/data", "--output", dir + "/" + tag + "-bgmm-tied.h5", "--overwrite",
             "--n-components", "5", "--covariance-type", "tied", "--weight-concentration-prior-type",
             "dirichlet_distribution", "--threads", threads, "--block-rows", "128", "--max-iter", "30", "--seed", "3"});
    run_cli({"fit", "bmm", "--data", dir + "/data-binary", "--output", dir + "/" + tag + "-bmm.h5", "--overwrite",
             "--n-components", "3", "--threads", threads, "--block-rows", "128", "--tol", "1e-8", "--seed", "2"});
    run_cli({"fit", "mmm", "--data", dir + "/corpus", "--output", dir + "/" + tag + "-mmm.h5", "--overwrite",
             "--n-components", "4", "--threads", threads, "--block-rows", "64", "--max-iter", "20", "--seed", "2"});
    run_cli({"predict", "--model", dir + "/" + tag + "-mmm.h5", "--data", dir + "/corpus", "--output",
             dir + "/" + tag + "-mmm-predict.h5", "--overwrite", "--proba", "--threads", threads, "--block-rows", "64"});
    // VAE: 7 micro-batches of 16 rows per step (short ones at shard ends, a 1-row shard),
    // minibatches in a shuffled order, a validation split with early-stopping bookkeeping,
    // clipping, learned variances.
    run_cli({"fit", "vae", "--data", dir + "/data", "--output", dir + "/" + tag + "-vae.h5", "--overwrite", "--likelihood",
             "gaussian", "--latent-dim", "2", "--hidden", "8", "--batch-size", "100", "--micro-batch-rows", "16", "--epochs",
             "2", "--validation-fraction", "0.1", "--max-grad-norm", "5", "--shuffle", "--threads", threads, "--seed", "3"});
    // The same with bfloat16 products (float32 where the CPU lacks AVX512_BF16), one rank
    // without clipping (the fused single-rank Adam pass) against several with it off too.
    const bool bf16 = matmul::available(matmul::Precision::kMedium);
    run_cli({"fit", "vae", "--data", dir + "/data", "--output", dir + "/" + tag + "-vae-medium.h5", "--overwrite",
             "--likelihood", "gaussian", "--latent-dim", "3", "--hidden", "40,24", "--batch-size", "100",
             "--micro-batch-rows", "16", "--epochs", "2", "--matmul-precision", bf16 ? "medium" : "highest", "--threads",
             threads, "--seed", "4"});
  }
}

TEST(Invariance, Compare) {
  if (invariance_dir().empty()) GTEST_SKIP() << "LATENT_INVARIANCE_DIR not set";
  const std::string dir = invariance_dir();
  std::vector<std::pair<std::string, std::vector<std::string>>> models;
  for (const auto& type : kCovarianceTypes)
    models.push_back({"gmm-" + type, {"weights", "means", "covariances", "precisions_cholesky", "history/objective"}});
  models.push_back({"gmm-random", {"weights", "means", "covariances", "history/objective"}});
  models.push_back({"kmeans", {"cluster_centers", "history/objective"}});
  for (const char* method : {"batch", "online"})
    models.push_back({std::string("lda-") + method, {"components", "doc_topic_prior", "history/objective"}});
  models.push_back({"lda-sparse", {"components", "doc_topic_prior", "topic_word_prior"}});
  models.push_back({"vae", {"encoder/0/weight", "decoder/1/weight", "log_variance", "history/objective"}});
  models.push_back({"vae-medium", {"encoder/0/weight", "decoder/2/weight", "log_variance", "history/objective"}});
  for (const char* m : {"ppca", "fa", "ppca-missing", "fa-missing"})
    models.push_back({m, {"components", "mean", "noise_variance", "history/objective"}});
  models.push_back({"gmm-missing", {"weights", "means", "covariances", "history/objective"}});
  models.push_back({"gmm-missing-full", {"weights", "means", "covariances", "history/objective"}});
  models.push_back({"outliers", {"log_likelihood", "outlier"}});
  models.push_back({"imputed", {"data"}});
  models.push_back({"bmm", {"weights", "means", "history/objective"}});
  models.push_back({"bgmm", {"weights", "means", "covariances", "weight_concentration", "history/objective"}});
  models.push_back({"bgmm-tied", {"weights", "means", "covariances", "degrees_of_freedom", "history/objective"}});
  models.push_back({"mmm", {"weights", "components", "history/objective"}});
  models.push_back({"mmm-predict", {"labels", "proba"}});
  int compared = 0;
  for (const auto& [name, datasets] : models) {
    const io::H5Reader reference(dir + "/n1-t1-" + name + ".h5");
    for (const char* ranks : {"1", "2", "3", "4"})
      for (const char* threads : {"1", "2"}) {
        const std::string path = dir + "/n" + ranks + "-t" + threads + "-" + name + ".h5";
        ASSERT_TRUE(std::filesystem::exists(path)) << path;
        const io::H5Reader other(path);
        for (const auto& ds : datasets) {
          const auto a = reference.read_doubles(ds), b = other.read_doubles(ds);
          ASSERT_EQ(a.size(), b.size());
          EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(double)), 0) << path << " /" << ds << " differs";
          ++compared;
        }
      }
  }
  EXPECT_EQ(compared, 8 * (4 * 5 + 4 + 2 + 2 * 3 + 3 + 4 + 4 + 4 * 4 + 4 + 2 + 1 + 3 + 3 + 2 + 5 + 4 + 5));
}

}  // namespace
}  // namespace latent
