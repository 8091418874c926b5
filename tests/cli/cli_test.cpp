// In-process tests of every command through cli::run, as a user would type them.
#include "latent/cli/cli.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "../support/fixtures.hpp"
#include "latent/core/kernel.hpp"
#include "latent/io/h5_file.hpp"

namespace latent::cli {
namespace {

using latent::testing::TempDir;

struct Result {
  int code;
  std::string out, err;
};

Result run_cli(std::vector<std::string> args) {
  std::ostringstream out, err;
  const int code = run(args, out, err);
  return {code, out.str(), err.str()};
}

void write_be32(std::ofstream& f, std::uint32_t v) {
  const unsigned char b[4] = {static_cast<unsigned char>(v >> 24), static_cast<unsigned char>(v >> 16),
                              static_cast<unsigned char>(v >> 8), static_cast<unsigned char>(v)};
  f.write(reinterpret_cast<const char*>(b), 4);
}

// Writes an IDX3 ubyte image file and IDX1 labels from three well-separated "image" classes.
void write_idx(const std::string& images, const std::string& labels, int n, int side) {
  std::ofstream fi(images, std::ios::binary), fl(labels, std::ios::binary);
  write_be32(fi, 0x00000803);
  write_be32(fi, static_cast<std::uint32_t>(n));
  write_be32(fi, static_cast<std::uint32_t>(side));
  write_be32(fi, static_cast<std::uint32_t>(side));
  write_be32(fl, 0x00000801);
  write_be32(fl, static_cast<std::uint32_t>(n));
  std::mt19937 gen(3);
  std::normal_distribution<double> noise(0, 8);
  for (int i = 0; i < n; ++i) {
    const int cls = i % 3;
    for (int p = 0; p < side * side; ++p) {
      const double base = (p % 3 == cls) ? 200 : 40;
      const double v = std::clamp(base + noise(gen), 0.0, 255.0);
      fi.put(static_cast<char>(static_cast<unsigned char>(v)));
    }
    fl.put(static_cast<char>(cls));
  }
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    write_idx(dir / "img.idx", dir / "lab.idx", 300, 4);
    const auto r = run_cli({"import", "dense", "--format", "idx", "--input", dir / "img.idx", "--labels", dir / "lab.idx",
                            "--output", dir / "data", "--rows-per-shard", "128"});
    ASSERT_EQ(r.code, 0) << r.err;
  }
  TempDir dir{"cli"};
};

// `--output DIR/` (a trailing slash, as shells complete directory names) used to put the
// temporary inside DIR and then fail to move DIR into itself (exit 1).
TEST_F(CliTest, ImportOutputWithTrailingSlash) {
  for (const bool overwrite : {false, true}) {
    std::vector<std::string> args{"import", "dense", "--format", "idx", "--input", dir / "img.idx", "--output",
                                  (dir / "slash") + "/"};
    if (overwrite) args.push_back("--overwrite");
    const auto r = run_cli(args);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_TRUE(std::filesystem::is_regular_file(dir / "slash/part-00000.h5"));
    for (const auto& e : std::filesystem::directory_iterator(dir / "slash"))
      EXPECT_EQ(e.path().filename().string().rfind(".", 0), std::string::npos) << e.path();  // nothing hidden inside
  }
}

TEST_F(CliTest, ImportFitScorePredictSampleInfo) {
  io::H5Reader shard(dir / "data/part-00000.h5");
  EXPECT_EQ(shard.shape("data"), (std::vector<Index>{128, 16}));
  const RowMatrix first = shard.read_rows("data", 0, 1);
  EXPECT_GE(first.minCoeff(), 0.0);
  EXPECT_LE(first.maxCoeff(), 1.0);  // IDX bytes are scaled to [0, 1]

  auto r = run_cli({"fit", "gmm", "--data", dir / "data", "--output", dir / "m.h5", "--n-components", "3",
                    "--covariance-type", "diag", "--threads", "2", "--block-rows", "50", "--log-json", dir / "log.jsonl"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("iter    1"), std::string::npos) << r.err;
  std::ifstream log(dir / "log.jsonl");
  std::string line;
  std::getline(log, line);
  const auto start = nlohmann::json::parse(line);
  EXPECT_EQ(start["event"], "start");
  EXPECT_EQ(start["output"], (dir / "m.h5"));
  std::getline(log, line);
  const auto first_iter = nlohmann::json::parse(line);
  EXPECT_EQ(first_iter["iteration"], 1);
  EXPECT_TRUE(first_iter.contains("samples_per_second"));
  EXPECT_TRUE(first_iter["change"].is_null());  // no previous objective
  EXPECT_EQ(first_iter["objective_unit"], "nats/sample");
  EXPECT_EQ(first_iter["objective_name"], "mean_log_likelihood");
  EXPECT_EQ(first_iter["ranks"], 1);
  // ISO 8601 UTC: 2026-12-03T02:31:05.123Z
  const std::string time = first_iter["time"];
  EXPECT_EQ(time.size(), 24u) << time;
  EXPECT_EQ(time.back(), 'Z') << time;
  EXPECT_EQ(time[10], 'T') << time;
  std::string last;
  while (std::getline(log, line)) last = line;
  const auto done = nlohmann::json::parse(last);
  EXPECT_EQ(done["event"], "done");
  EXPECT_EQ(done["exit_status"], 0);
  EXPECT_EQ(done["output"], (dir / "m.h5"));
  // A second run appends (a refused one too: exit 73 with a "failed" line); nothing is truncated.
  r = run_cli({"fit", "gmm", "--data", dir / "data", "--output", dir / "m.h5", "--n-components", "3",
               "--log-json", dir / "log.jsonl"});
  EXPECT_EQ(r.code, 73);
  std::ifstream again(dir / "log.jsonl");
  std::vector<nlohmann::json> all;
  while (std::getline(again, line)) all.push_back(nlohmann::json::parse(line));
  ASSERT_GE(all.size(), 4u);
  EXPECT_EQ(all.front()["event"], "start");
  EXPECT_EQ(all[all.size() - 2]["event"], "start");
  EXPECT_EQ(all.back()["event"], "failed");
  EXPECT_EQ(all.back()["exit_status"], 73);

  io::H5Reader model(dir / "m.h5");
  EXPECT_EQ(model.attr_string("/", "model"), "gmm");
  EXPECT_EQ(model.shape("means"), (std::vector<Index>{3, 16}));
  EXPECT_EQ(model.shape("covariances"), (std::vector<Index>{3, 16}));
  EXPECT_EQ(model.shape("precisions_cholesky"), (std::vector<Index>{3, 16}));
  EXPECT_NEAR(model.read_matrix("weights").sum(), 1.0, 1e-12);
  EXPECT_EQ(model.read_doubles("history/objective").size(), static_cast<std::size_t>(model.attr_int("/", "n_iter")));

  r = run_cli({"score", "--model", dir / "m.h5", "--data", dir / "data"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["n_samples"], 300);
  const double ll = j["mean_log_likelihood"];
  const double p = 3 * 16 * 2 + 2;  // diag: K·D variances + K·D means + K-1 weights
  EXPECT_NEAR(j["bic"].get<double>(), -2 * ll * 300 + p * std::log(300.0), 1e-6);
  EXPECT_NEAR(j["aic"].get<double>(), -2 * ll * 300 + 2 * p, 1e-6);
  EXPECT_NEAR(j["adjusted_rand_index"].get<double>(), 1.0, 1e-12);  // three clean classes
  EXPECT_NEAR(j["purity"].get<double>(), 1.0, 1e-12);

  r = run_cli({"predict", "--model", dir / "m.h5", "--data", dir / "data", "--output", dir / "p.h5", "--proba"});
  ASSERT_EQ(r.code, 0) << r.err;
  io::H5Reader pred(dir / "p.h5");
  const auto labels = pred.read_int64("labels");
  ASSERT_EQ(labels.size(), 300u);
  for (int i = 3; i < 300; ++i) EXPECT_EQ(labels[static_cast<std::size_t>(i)], labels[static_cast<std::size_t>(i % 3)]);
  const RowMatrix proba = pred.read_matrix("proba");
  EXPECT_EQ(proba.rows(), 300);
  EXPECT_LT((proba.rowwise().sum().array() - 1.0).abs().maxCoeff(), 1e-12);
  EXPECT_FALSE(std::filesystem::exists(dir / "p.h5.part-0-of-1"));

  r = run_cli({"sample", "--model", dir / "m.h5", "--n-samples", "5000", "--output", dir / "s.h5", "--seed", "4"});
  ASSERT_EQ(r.code, 0) << r.err;
  io::H5Reader s(dir / "s.h5");
  const RowMatrix draws = s.read_matrix("data");
  ASSERT_EQ(draws.rows(), 5000);
  // Sample mean approaches the mixture mean Σ w_k μ_k.
  const RowVector mixture_mean = model.read_matrix("weights").transpose() * model.read_matrix("means");
  EXPECT_LT((draws.colwise().mean() - mixture_mean).cwiseAbs().maxCoeff(), 0.02);

  r = run_cli({"info", dir / "m.h5"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("Gaussian mixture: 3 components, 16 features, covariance_type=diag"), std::string::npos) << r.out;
  r = run_cli({"info", dir / "data"});
  EXPECT_NE(r.out.find("300 samples x 16 features, 3 shard(s), labels: yes"), std::string::npos) << r.out;
}

TEST_F(CliTest, KmeansFitAndScore) {
  auto r = run_cli({"fit", "kmeans", "--data", dir / "data", "--output", dir / "k.h5", "--n-clusters", "3"});
  ASSERT_EQ(r.code, 0) << r.err;
  r = run_cli({"score", "--model", dir / "k.h5", "--data", dir / "data"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_GT(j["inertia"].get<double>(), 0);
  EXPECT_DOUBLE_EQ(j["score"].get<double>(), -j["inertia"].get<double>());
  io::H5Reader k(dir / "k.h5");
  EXPECT_NEAR(k.attr_double("/", "inertia"), j["inertia"].get<double>(), 1e-9 * j["inertia"].get<double>());
  EXPECT_NEAR(j["adjusted_rand_index"].get<double>(), 1.0, 1e-12);
}

TEST(CliImport, CsvNpyAndHdf5AgreeWithTheValuesWritten) {
  TempDir dir("imp");
  {
    std::ofstream f(dir / "h.csv");
    f << "a,b,c\n1,2,3\n4.5,5,-6\n";
    std::ofstream g(dir / "n.csv");
    g << "1 2 3\n4.5 5 -6\n";
  }
  // NPY v1.0, little-endian float32, shape (2, 3).
  {
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    while ((10 + header.size() + 1) % 64 != 0) header += ' ';
    header += '\n';
    std::ofstream f(dir / "a.npy", std::ios::binary);
    f.write("\x93NUMPY\x01\x00", 8);
    const std::uint16_t len = static_cast<std::uint16_t>(header.size());
    f.write(reinterpret_cast<const char*>(&len), 2);
    f << header;
    const float v[6] = {1, 2, 3, 4.5f, 5, -6};
    f.write(reinterpret_cast<const char*>(v), sizeof v);
  }
  {
    io::H5Writer w(dir / "in.h5", false);
    RowMatrix m(2, 3);
    m << 1, 2, 3, 4.5, 5, -6;
    w.write("group/x", m);
    w.commit();
  }
  RowMatrix expected(2, 3);
  expected << 1, 2, 3, 4.5, 5, -6;
  const std::vector<std::vector<std::string>> cases = {
      {"--format", "csv", "--input", dir / "h.csv"},
      {"--format", "csv", "--input", dir / "n.csv", "--delimiter", " ", "--header", "no"},
      {"--format", "npy", "--input", dir / "a.npy"},
      {"--format", "hdf5", "--input", dir / "in.h5", "--dataset", "group/x"},
  };
  int i = 0;
  for (auto args : cases) {
    const std::string out = dir / ("o" + std::to_string(i++));
    args.insert(args.begin(), {"import", "dense"});
    args.insert(args.end(), {"--output", out});
    const auto r = run_cli(args);
    ASSERT_EQ(r.code, 0) << args[3] << ": " << r.err;
    io::H5Reader shard(out + "/part-00000.h5");
    EXPECT_EQ(shard.read_matrix("data"), expected) << args[3];
  }
}

// CSV as people write it (issue 22 item 4): --index-col, --usecols and --label-column by
// name and by position, a tab written \t, quoted fields holding the delimiter, quotes and
// newlines; the labels land in /labels as --labels would put them.
TEST(CliImport, CsvColumnsLabelsAndTabs) {
  TempDir dir("imp");
  {
    std::ofstream f(dir / "c.csv", std::ios::binary);
    f << "id,x,note,y,label\r\nr0,1,\"a, \"\"quoted\"\"\r\nnote\",2,7\r\nr1,3,plain,4,-1\r\n";
    std::ofstream g(dir / "t.tsv", std::ios::binary);
    g << "0\t1\t2\t7\n3\t4\t5\t-1\n";
  }
  RowMatrix expected(2, 2);
  expected << 1, 2, 3, 4;
  const std::vector<std::vector<std::string>> cases = {
      {"--input", dir / "c.csv", "--index-col", "id", "--usecols", "x,y", "--label-column", "label"},
      {"--input", dir / "c.csv", "--index-col", "0", "--usecols", "3,1", "--label-column", "4"},
      {"--input", dir / "t.tsv", "--delimiter", "\\t", "--index-col", "1", "--label-column", "3", "--header", "no"},
  };
  int i = 0;
  for (auto args : cases) {
    const std::string out = dir / ("o" + std::to_string(i++));
    args.insert(args.begin(), {"import", "dense", "--format", "csv", "--dtype", "float64"});
    args.insert(args.end(), {"--output", out});
    const auto r = run_cli(args);
    ASSERT_EQ(r.code, 0) << args[6] << ": " << r.err;
    io::H5Reader shard(out + "/part-00000.h5");
    if (i == 3) {
      RowMatrix tsv(2, 2);
      tsv << 0, 2, 3, 5;
      EXPECT_EQ(shard.read_matrix("data"), tsv);
    } else {
      EXPECT_EQ(shard.read_matrix("data"), expected) << i;
    }
    EXPECT_EQ(shard.read_int64("labels"), (std::vector<std::int64_t>{7, -1})) << i;
  }
  const auto usage = [&](std::vector<std::string> extra, int code, const std::string& message) {
    std::vector<std::string> args = {"import", "dense", "--format", "csv", "--input", dir / "c.csv", "--output", dir / "bad"};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto r = run_cli(args);
    EXPECT_EQ(r.code, code) << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir / "bad"));
  };
  usage({"--usecols", "x,z"}, 65, "--usecols z: no column is named 'z' (the header: 'id', 'x', 'note', 'y', 'label')");
  usage({"--label-column", "9"}, 65, "--label-column 9: there is no column 9 (the file has 5 columns, counted from 0)");
  usage({"--label-column", "label", "--labels", dir / "c.csv"}, 64, "--labels and --label-column");
  usage({"--usecols", "x,,y"}, 64, "--usecols: an empty column name");
  usage({"--delimiter", "ab"}, 64, "--delimiter must be one character");
  usage({"--usecols", "x,note"}, 65, "c.csv, line 2, field 3: 'a, \"quoted\"\nnote' is not a number");
  const auto r = run_cli({"import", "dense", "--format", "npy", "--input", dir / "c.csv", "--usecols", "x", "--output", dir / "bad"});
  EXPECT_EQ(r.code, 64);
  EXPECT_NE(r.err.find("--usecols, --index-col and --label-column are for --format csv"), std::string::npos) << r.err;
}

TEST(CliErrors, ExitCodesAndMessages) {
  TempDir dir("err");
  EXPECT_EQ(run_cli({}).code, 64);
  EXPECT_EQ(run_cli({"frobnicate"}).code, 64);
  EXPECT_EQ(run_cli({"fit", "gmm", "--data", dir / "x"}).code, 64);  // --output missing
  auto r = run_cli({"fit", "gmm", "--data", dir / "absent", "--output", dir / "m.h5"});
  EXPECT_EQ(r.code, 66);
  EXPECT_NE(r.err.find("absent"), std::string::npos);

  RowMatrix x = latent::testing::blobs(40, 3, 2, 1);
  latent::testing::write_shards(dir / "d", x, {20, 20});
  r = run_cli({"fit", "gmm", "--data", dir / "d", "--output", dir / "m.h5", "--covariance-type", "banana"});
  EXPECT_EQ(r.code, 64);
  EXPECT_NE(r.err.find("banana"), std::string::npos);
  r = run_cli({"fit", "gmm", "--data", dir / "d", "--output", dir / "m.h5", "--n-components", "41"});
  EXPECT_EQ(r.code, 64);
  EXPECT_NE(r.err.find("n_samples"), std::string::npos) << r.err;
  r = run_cli({"fit", "gmm", "--data", dir / "d", "--output", dir / "nodir/m.h5"});
  EXPECT_EQ(r.code, 73);
  EXPECT_NE(r.err.find("does not exist"), std::string::npos);

  // Existing output is never replaced without --overwrite.
  std::ofstream(dir / "keep.h5") << "precious";
  r = run_cli({"fit", "gmm", "--data", dir / "d", "--output", dir / "keep.h5"});
  EXPECT_EQ(r.code, 73);
  std::ifstream kept(dir / "keep.h5");
  std::string content;
  kept >> content;
  EXPECT_EQ(content, "precious");

  // NaN in the data: exit 65, file/row named, no model written.
  x(33, 1) = std::nan("");
  latent::testing::write_shards(dir / "bad", x, {20, 20});
  r = run_cli({"fit", "gmm", "--data", dir / "bad", "--output", dir / "m.h5"});
  EXPECT_EQ(r.code, 65);
  EXPECT_NE(r.err.find("part-00001.h5, dataset /data, row 13, column 1: value is NaN"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "m.h5"));
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    EXPECT_EQ(e.path().string().find(".tmp-"), std::string::npos) << e.path();

  // Zero-variance features are fine, with a warning that counts them.
  RowMatrix constant = latent::testing::blobs(60, 3, 2, 2);
  constant.col(1).setConstant(7.0);
  latent::testing::write_shards(dir / "const", constant, {60});
  r = run_cli({"fit", "gmm", "--data", dir / "const", "--output", dir / "c.h5", "--n-components", "2"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("1 of 3 features are constant"), std::string::npos) << r.err;

  // Duplicate points are fine too, with a warning that counts them.
  RowMatrix dup = latent::testing::blobs(40, 3, 2, 5);
  dup.bottomRows(5) = dup.topRows(5);
  latent::testing::write_shards(dir / "dup", dup, {25, 15});
  r = run_cli({"fit", "gmm", "--data", dir / "dup", "--output", dir / "dup.h5", "--n-components", "2"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("5 of 40 samples duplicate an earlier sample"), std::string::npos) << r.err;

  // K larger than the number of distinct points: k-means init warns and the fit proceeds.
  RowMatrix few = RowMatrix::Zero(30, 2);
  for (Index i = 0; i < 30; ++i) few(i, 0) = static_cast<double>(i % 3);
  latent::testing::write_shards(dir / "few", few, {30});
  r = run_cli({"fit", "kmeans", "--data", dir / "few", "--output", dir / "few.h5", "--n-clusters", "5"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("only 3 distinct points, fewer than n_clusters=5"), std::string::npos) << r.err;

  // Model and data dimensions must agree.
  latent::testing::write_shards(dir / "wide", latent::testing::blobs(10, 5, 1, 3), {10});
  r = run_cli({"score", "--model", dir / "c.h5", "--data", dir / "wide"});
  EXPECT_EQ(r.code, 65);
  EXPECT_NE(r.err.find("5 features"), std::string::npos);
}

// --keep-checkpoints below 1 used to act as 1 silently: refused naming the flag (issue 19).
TEST(CliErrors, KeepCheckpointsBelowOneRefused) {
  TempDir dir("keep");
  latent::testing::write_shards(dir / "d", latent::testing::blobs(40, 3, 2, 1), {40});
  for (const char* keep : {"0", "-1"}) {
    const auto r = run_cli({"fit", "gmm", "--data", dir / "d", "--output", dir / "m.h5", "--n-components", "2",
                            "--checkpoint-dir", dir / "ck", "--keep-checkpoints", keep});
    EXPECT_EQ(r.code, 64) << keep << ": " << r.err;
    EXPECT_NE(r.err.find("--keep-checkpoints must be at least 1 (got " + std::string(keep) + ")"), std::string::npos)
        << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir / "m.h5"));
    EXPECT_FALSE(std::filesystem::exists(dir / "ck"));
  }
  const auto r = run_cli({"fit", "gmm", "--data", dir / "d", "--output", dir / "m.h5", "--n-components", "2",
                          "--checkpoint-dir", dir / "ck", "--keep-checkpoints", "1"});
  EXPECT_EQ(r.code, 0) << r.err;
}

// Negative checkpoint and watchdog settings used to be accepted (and meant "off" or
// "always"): refused naming the flag, before anything is written.
TEST(CliErrors, NegativeCheckpointAndWatchdogSettingsRefused) {
  TempDir dir("negative");
  latent::testing::write_shards(dir / "d", latent::testing::blobs(40, 3, 2, 1), {40});
  for (const char* flag : {"--checkpoint-every", "--checkpoint-interval", "--watchdog-seconds"}) {
    const auto r = run_cli({"fit", "gmm", "--data", dir / "d", "--output", dir / "m.h5", "--n-components", "2",
                            "--checkpoint-dir", dir / "ck", flag, "-1"});
    EXPECT_EQ(r.code, 64) << flag << ": " << r.err;
    EXPECT_NE(r.err.find(std::string(flag) + " must be >= 0"), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir / "m.h5"));
    EXPECT_FALSE(std::filesystem::exists(dir / "ck"));
  }
}

// The warning of a fit that did not converge states a true relation between the last
// change and --tol (with --tol 0 and a change of exactly 0 it said "last change 0 > tol 0").
TEST(CliErrors, NotConvergedWarningIsTrue) {
  TempDir dir("tol");
  latent::testing::write_shards(dir / "d", latent::testing::blobs(200, 4, 2, 3), {200});
  const std::regex said(R"(did not converge in \d+ iterations \(\|last change\| (\S+) nats/sample, not below tol (\S+)\))");
  for (const std::vector<std::string>& model : std::vector<std::vector<std::string>>{
           {"ppca", "--n-components", "1", "--max-iter", "3000"},
           {"fa", "--n-components", "1", "--max-iter", "3000"},
           {"mfa", "--n-components", "2", "--n-factors", "1", "--max-iter", "50"}}) {
    std::vector<std::string> args{"fit"};
    args.insert(args.end(), model.begin(), model.end());
    args.insert(args.end(), {"--data", dir / "d", "--output", dir / (model[0] + ".h5"), "--tol", "0"});
    const auto r = run_cli(args);
    EXPECT_EQ(r.code, 0) << r.err;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(r.err, m, said)) << model[0] << ": " << r.err;
    EXPECT_GE(std::stod(m[1].str()), std::stod(m[2].str())) << r.err;  // not below tol: that is why it did not stop
    EXPECT_EQ(r.err.find(" > tol"), std::string::npos) << r.err;
  }
}

TEST(CliHelp, EveryCommandHasHelp) {
  for (const auto& cmd : std::vector<std::vector<std::string>>{{"fit", "gmm"}, {"fit", "kmeans"}, {"score"}, {"predict"},
                                                               {"sample"}, {"info"}, {"import", "dense"}}) {
    auto args = cmd;
    args.push_back("--help");
    const auto r = run_cli(args);
    EXPECT_EQ(r.code, 0) << cmd[0];
    EXPECT_NE(r.out.find("Usage: latent"), std::string::npos) << cmd[0] << ": " << r.out;
  }
}

// LATENT_KERNEL for the calls in one scope; afterwards unset and this process's choice
// restored (run() sets the variant of every command it runs).
struct KernelEnv {
  explicit KernelEnv(const char* value) { ::setenv("LATENT_KERNEL", value, 1); }
  ~KernelEnv() {
    ::unsetenv("LATENT_KERNEL");
    kernel::set_active(kernel::local_choice());
  }
};

// The kernel variant (docs/ARCHITECTURE.md §5.7): listed by --version, chosen by
// LATENT_KERNEL (a bad name or one the CPU lacks refused with 64 before anything is read or
// written), logged at the start of a fit, recorded in the model file; medium precision
// refused up front outside avx512bf16 and amxbf16.
TEST(CliKernel, ForcedLoggedRecordedAndRefused) {
  auto r = run_cli({"--version"});
  ASSERT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("kernel variants: avx2, avx512, avx512bf16, amxbf16 (this CPU: avx2"), std::string::npos) << r.out;
  TempDir dir("kernel");
  latent::testing::write_shards(dir / "d", latent::testing::blobs(60, 3, 2, 1), {30, 30});
  {
    const KernelEnv env("avx3");
    r = run_cli({"fit", "gmm", "--data", dir / "d", "--output", dir / "bad.h5", "--n-components", "2"});
    EXPECT_EQ(r.code, 64);
    EXPECT_NE(r.err.find("LATENT_KERNEL='avx3' names no kernel variant; use one of avx2, avx512, avx512bf16, amxbf16"),
              std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir / "bad.h5"));
  }
  for (kernel::Variant v : kernel::all_variants()) {
    const std::string name = kernel::to_string(v);
    const KernelEnv env(name.c_str());
    const std::string out = dir / (name + ".h5");
    r = run_cli({"fit", "gmm", "--data", dir / "d", "--output", out, "--n-components", "2", "--log-json",
                 dir / (name + ".jsonl")});
    if (!kernel::supported(v)) {  // a CPU without AVX-512: refused, naming what it runs
      EXPECT_EQ(r.code, 64);
      EXPECT_NE(r.err.find("LATENT_KERNEL=" + name + ": this CPU lacks the instructions"), std::string::npos) << r.err;
      continue;
    }
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.err.find(" thread(s); kernel variant " + name + "\n"), std::string::npos) << r.err;
    std::ifstream log(dir / (name + ".jsonl"));
    std::string start;
    std::getline(log, start);
    EXPECT_EQ(nlohmann::json::parse(start).at("kernel_variant"), name) << start;
    io::H5Reader model(out);
    EXPECT_EQ(model.attr_string("/", "kernel_variant"), name);
    r = run_cli({"info", out});
    EXPECT_NE(r.out.find("kernel variant: " + name), std::string::npos) << r.out;
    r = run_cli({"fit", "vae", "--data", dir / "d", "--output", dir / (name + "-vae.h5"), "--latent-dim", "1", "--hidden",
                 "4", "--epochs", "1", "--batch-size", "20", "--likelihood", "gaussian", "--matmul-precision", "medium"});
    if (v >= kernel::Variant::kAvx512Bf16) {
      EXPECT_EQ(r.code, 0) << r.err;
    } else {
      EXPECT_EQ(r.code, 64) << r.err;
      EXPECT_NE(r.err.find("--matmul-precision medium needs"), std::string::npos) << r.err;
      EXPECT_EQ(r.err.find("thread(s); kernel variant"), std::string::npos) << "refused after the start: " << r.err;
      EXPECT_FALSE(std::filesystem::exists(dir / (name + "-vae.h5")));
    }
  }
}

}  // namespace
}  // namespace latent::cli
