// `latent export` of an LDA model with a corpus (docs/COMMANDS.md "latent export",
// docs/FORMATS.md "Exports"):
//  - ldavis: the five inputs of pyLDAvis.prepare as one JSON object, computed in one
//    distributed pass over the corpus (θ of every document, its length, and the corpus
//    term frequencies summed exactly across ranks as integers); rank 0 writes.
//  - gensim: gensim's LdaModel files. They are pickles and .npy arrays of gensim's own
//    classes, whose layout is gensim's private business from version to version; writing
//    them from C++ would re-implement pickle for one gensim release. So one distributed
//    pass counts what gensim's Dictionary holds (document frequencies, totals), and rank 0
//    runs the Python package's export (python/latent/export.py: LatentDirichletAllocation.
//    to_gensim, which builds the LdaModel with gensim itself and saves it with
//    LdaModel.save). Without an importable Python package and gensim the command is
//    refused up front (exit 64), before reading the corpus.
#include <fmt/format.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "latent/core/control.hpp"
#include "latent/core/error.hpp"
#include "latent/io/block_plan.hpp"
#include "latent/io/counts_dataset.hpp"
#include "latent/io/h5_file.hpp"
#include "latent/io/text_file.hpp"
#include "latent/models/lda/lda_apply.hpp"
#include "latent/models/lda/lda_fit.hpp"
#include "latent/train/task_run.hpp"
#include "../specs.hpp"
#include "lda_tasks.hpp"

extern char** environ;

namespace latent::models {
namespace {

namespace fs = std::filesystem;

// Exact integer counts of documents: per word the tokens (term frequency) and the
// documents containing it (document frequency), and the nonzeros.
struct CorpusCounts {
  std::vector<std::int64_t> term_frequency, document_frequency;
  std::int64_t nonzeros = 0;
  explicit CorpusCounts(Index v) : term_frequency(static_cast<std::size_t>(v), 0), document_frequency(static_cast<std::size_t>(v), 0) {}

  // Adds the documents of `block` and appends their lengths (tokens) to `lengths`.
  // read_csr_block validated the counts (finite, integral, >= 1).
  void add(const io::CsrBlock& block, const std::string& data, std::vector<std::int64_t>* lengths) {
    for (Index d = 0; d < block.num_rows(); ++d) {
      std::int64_t length = 0;
      const auto b = static_cast<std::size_t>(block.indptr[static_cast<std::size_t>(d)]);
      const auto e = static_cast<std::size_t>(block.indptr[static_cast<std::size_t>(d) + 1]);
      for (std::size_t i = b; i < e; ++i) {
        const double c = block.counts[i];
        const auto w = static_cast<std::size_t>(block.indices[i]);
        if (!(c < 9.0e15) || __builtin_add_overflow(length, static_cast<std::int64_t>(c), &length) ||
            __builtin_add_overflow(term_frequency[w], static_cast<std::int64_t>(c), &term_frequency[w]))
          throw_input(fmt::format("data {}: document {} (row {} of shard {}): count {} of word {} is too large to sum "
                                  "exactly",
                                  data, block.ref.global_row_begin + d, block.ref.row_begin + d, block.ref.shard, c, w));
        ++document_frequency[w];
      }
      nonzeros += static_cast<std::int64_t>(e - b);
      if (lengths != nullptr) lengths->push_back(length);
    }
  }
};

// The vocabulary of the export: the model's /vocabulary, else the corpus's (a model file of
// another tool may have none). The corpus's words must be the model's: the term
// frequencies are counted by word id.
std::vector<std::string> export_vocabulary(const train::TaskRun& run, const io::CountsDatasetInfo& info,
                                           std::vector<std::string> model_vocabulary) {
  const train::TaskCommon& c = run.common();
  const std::vector<std::string> data_vocabulary = io::read_vocabulary(info);
  if (model_vocabulary.empty()) return data_vocabulary;
  for (std::size_t w = 0; w < model_vocabulary.size(); ++w)
    if (model_vocabulary[w] != data_vocabulary[w])
      throw_input(fmt::format("data {}: word {} of its vocabulary is '{}' but model {} has '{}' there; import the "
                              "data with the model's vocabulary",
                              c.data, w, data_vocabulary[w], c.model, model_vocabulary[w]));
  return model_vocabulary;
}

// JSON text of a value (nlohmann: shortest round-trip doubles, strict UTF-8).
template <class T>
std::string json_text(const T& value) {
  return nlohmann::json(value).dump();
}

std::string vocabulary_json(const std::vector<std::string>& vocab, const std::string& model) {
  try {
    return json_text(vocab);
  } catch (const nlohmann::json::exception&) {
    for (std::size_t w = 0; w < vocab.size(); ++w) {
      try {
        (void)json_text(vocab[w]);
      } catch (const nlohmann::json::exception& e) {
        throw_input(fmt::format("model {}: vocabulary word {} is not valid UTF-8 ({})", model, w, e.what()));
      }
    }
    throw;
  }
}

// --format ldavis.
int export_ldavis(train::TaskRun& run) {
  const train::TaskCommon& c = run.common();
  const comm::Communicator& comm = run.comm();
  run.check_output();
  io::CountsDatasetInfo info;
  std::vector<std::string> model_vocabulary;
  const Lda model = load_lda_and_corpus(run, info, &model_vocabulary);
  std::vector<std::string> vocab;
  comm::run_agreed(comm, [&] { vocab = export_vocabulary(run, info, std::move(model_vocabulary)); });
  const Index k = model.num_topics(), v = model.vocab_size();

  // Rank 0 holds the output's lock and its temporary from the start, and writes what needs
  // no data (the topics) before the pass. A write error is kept and raised, agreed, after
  // the pieces (every rank takes part in every gather whatever happens on rank 0).
  std::unique_ptr<io::OutputLock> lock;
  std::unique_ptr<io::TextWriter> out;
  std::string vocab_json;
  comm::run_agreed(comm, [&] {
    if (!comm.is_root()) return;
    vocab_json = vocabulary_json(vocab, c.model);
    lock = std::make_unique<io::OutputLock>(c.output);
    out = std::make_unique<io::TextWriter>(c.output, c.overwrite);
    out->write("{\"topic_term_dists\":[");
    const RowMatrix& lambda = model.lambda_vk();  // V × K
    std::vector<double> row(static_cast<std::size_t>(v));
    for (Index t = 0; t < k; ++t) {
      double total = 0;  // in word order, as LdaExactTransform
      for (Index w = 0; w < v; ++w) total += lambda(w, t);
      for (Index w = 0; w < v; ++w) row[static_cast<std::size_t>(w)] = lambda(w, t) / total;
      out->write((t == 0 ? "" : ",") + json_text(row));
    }
    out->write("],\"doc_topic_dists\":[");
  });

  // The pass: θ of every local document (K doubles) and its length, packed as one record
  // per document in document order; the corpus counts.
  const std::vector<io::BlockRef> mine =
      io::rank_blocks(io::make_block_plan(info.shard_rows(), c.block_rows), comm.rank(), comm.size());
  const Index local_rows = io::num_rows(mine);
  const std::size_t record = static_cast<std::size_t>(k + 1) * sizeof(double);
  std::string records;
  records.reserve(static_cast<std::size_t>(local_rows) * record);
  CorpusCounts counts(v);
  transform_lda_documents(comm, info, mine, model, lda_e_step(run.options()), c.threads, c.prefetch,
                          [&](const io::CsrBlock& docs, const RowMatrix& theta) {
                            std::vector<std::int64_t> lengths;
                            counts.add(docs, c.data, &lengths);
                            for (Index d = 0; d < theta.rows(); ++d) {
                              records.append(reinterpret_cast<const char*>(theta.row(d).data()),
                                             static_cast<std::size_t>(k) * sizeof(double));
                              const std::int64_t length = lengths[static_cast<std::size_t>(d)];
                              records.append(reinterpret_cast<const char*>(&length), sizeof length);
                            }
                          });
  comm.allreduce_sum(counts.term_frequency);

  // Rank 0 writes every document's θ in global order: its own, then each rank's in pieces
  // of at most 64 MiB (one rank sends per gather), so no rank holds more than its own
  // records and one piece.
  std::exception_ptr write_error;
  std::vector<std::int64_t> all_lengths;
  Index written = 0;
  const auto write_records = [&](const std::string& bytes) {
    if (!comm.is_root() || write_error) return;
    try {
      std::vector<double> theta(static_cast<std::size_t>(k));
      for (std::size_t at = 0; at + record <= bytes.size(); at += record) {
        std::memcpy(theta.data(), bytes.data() + at, static_cast<std::size_t>(k) * sizeof(double));
        std::int64_t length = 0;
        std::memcpy(&length, bytes.data() + at + static_cast<std::size_t>(k) * sizeof(double), sizeof length);
        out->write((written == 0 ? "" : ",") + json_text(theta));
        all_lengths.push_back(length);
        ++written;
      }
    } catch (...) {
      write_error = std::current_exception();
    }
  };
  const std::vector<std::int64_t> rows_of = comm.allgatherv(std::vector<std::int64_t>{local_rows});
  const std::size_t piece_rows = std::max<std::size_t>(1, (std::size_t{64} << 20) / record);
  write_records(records);
  for (int r = 1; r < comm.size(); ++r)
    for (std::int64_t begin = 0; begin < rows_of[static_cast<std::size_t>(r)]; begin += static_cast<std::int64_t>(piece_rows)) {
      std::string piece;
      if (comm.rank() == r)
        piece = records.substr(static_cast<std::size_t>(begin) * record, piece_rows * record);
      const std::vector<std::string> pieces = comm.gather(piece, 0);
      if (comm.is_root()) write_records(pieces[static_cast<std::size_t>(r)]);
    }
  records.clear();
  records.shrink_to_fit();

  comm::run_agreed(comm, [&] {
    if (!comm.is_root()) return;
    if (write_error) std::rethrow_exception(write_error);
    if (written != info.num_rows)
      throw Error(ErrorKind::kInternal, fmt::format("export: {} of {} documents gathered", written, info.num_rows));
    out->write("],\"doc_lengths\":" + json_text(all_lengths));
    out->write(",\"vocab\":" + vocab_json);
    out->write(",\"term_frequency\":" + json_text(counts.term_frequency) + "}\n");
    out->commit();
  });
  run.log().info(fmt::format("wrote the pyLDAvis inputs of {} topics, {} documents and {} words to {}", k,
                             info.num_rows, v, c.output));
  return 0;
}

// --format gensim: the Python side.

// The interpreter: $LATENT_PYTHON, else Debian's /usr/bin/python3.
std::string python_interpreter() {
  const char* p = std::getenv("LATENT_PYTHON");
  return p != nullptr && *p != '\0' ? p : "/usr/bin/python3";
}

// PYTHONPATH for the child: the package next to this binary (the build tree's
// <build>/python beside <build>/src/latent; an install's <prefix>/lib/python3*/dist-packages
// beside <prefix>/bin/latent) before the caller's PYTHONPATH.
std::string python_path() {
  std::vector<std::string> dirs;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path up = exe.parent_path().parent_path();
    std::vector<fs::path> candidates{up / "python", up / "lib" / "python3" / "dist-packages"};
    for (const auto& entry : fs::directory_iterator(up / "lib", ec))
      if (entry.path().filename().string().rfind("python3.", 0) == 0)
        candidates.push_back(entry.path() / "dist-packages");
    for (const fs::path& d : candidates)
      if (fs::is_regular_file(d / "latent" / "__init__.py", ec)) dirs.push_back(d.string());
  }
  if (const char* p = std::getenv("PYTHONPATH"); p != nullptr && *p != '\0') dirs.emplace_back(p);
  std::string joined;
  for (const std::string& d : dirs) joined += (joined.empty() ? "" : ":") + d;
  return joined;
}

// Runs `args` with the interpreter (posix_spawn: no fork of an MPI process's memory) in
// this environment minus the MPI launcher's variables (the child is not an MPI rank) and
// with python_path(); stdout and stderr are this process's. Returns the exit status (128
// + signal if killed), or -1 if it could not be started.
int run_python(const std::vector<std::string>& args, bool quiet) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view var(*e);
    if (var.rfind("OMPI_", 0) == 0 || var.rfind("PMIX_", 0) == 0 || var.rfind("PMI_", 0) == 0 ||
        var.rfind("PYTHONPATH=", 0) == 0)
      continue;
    env.emplace_back(var);
  }
  env.push_back("PYTHONPATH=" + python_path());
  std::vector<std::string> argv{python_interpreter()};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> argv_c, env_c;
  for (std::string& a : argv) argv_c.push_back(a.data());
  argv_c.push_back(nullptr);
  for (std::string& e : env) env_c.push_back(e.data());
  env_c.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (quiet) {
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  }
  pid_t pid = 0;
  const int spawned = posix_spawnp(&pid, argv_c[0], &actions, nullptr, argv_c.data(), env_c.data());
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) return -1;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
}

const char* kGensimNeeds =
    "--format gensim writes gensim's own files with the Python package latent and gensim ({} -m latent.export); "
    "`{} -c 'import latent._core, gensim'` failed (PYTHONPATH={}): install the package (cmake --install, docs/PYTHON.md) "
    "and gensim (Debian: python3-gensim), or set LATENT_PYTHON to an interpreter that has both; --format ldavis "
    "needs no Python";

// --format gensim.
int export_gensim(train::TaskRun& run) {
  const train::TaskCommon& c = run.common();
  const comm::Communicator& comm = run.comm();
  run.check_output();
  comm::run_agreed(comm, [&] {
    if (!comm.is_root()) return;
    if (run_python({"-c", "import latent._core, gensim"}, true) != 0) {
      const std::string py = python_interpreter();
      throw_usage(fmt::format(fmt::runtime(kGensimNeeds), py, py, python_path()));
    }
  });
  io::CountsDatasetInfo info;
  std::vector<std::string> model_vocabulary;
  const Lda model = load_lda_and_corpus(run, info, &model_vocabulary);
  std::vector<std::string> vocab;
  comm::run_agreed(comm, [&] { vocab = export_vocabulary(run, info, std::move(model_vocabulary)); });

  // The pass: gensim's Dictionary statistics (Dictionary.from_corpus's dfs, num_docs,
  // num_pos, num_nnz; cfs = the term frequencies, as doc2bow counts them), exact integers.
  const std::vector<io::BlockRef> mine =
      io::rank_blocks(io::make_block_plan(info.shard_rows(), c.block_rows), comm.rank(), comm.size());
  CorpusCounts counts(model.vocab_size());
  comm::run_agreed(comm, [&] {
    io::CountsSource source(info, mine, {c.prefetch, 0, false});
    source.start_pass();
    while (auto block = source.next()) {
      heartbeat();
      counts.add(*block, c.data, nullptr);
    }
  });
  comm.allreduce_sum(counts.term_frequency);
  comm.allreduce_sum(counts.document_frequency);
  std::int64_t nonzeros[1] = {counts.nonzeros};
  comm.allreduce_sum(nonzeros);

  comm::run_agreed(comm, [&] {
    if (!comm.is_root()) return;
    const io::OutputLock lock(c.output);
    std::int64_t tokens = 0;
    for (const std::int64_t f : counts.term_frequency) tokens += f;
    const nlohmann::json stats{{"vocab", vocab},
                               {"dfs", counts.document_frequency},
                               {"cfs", counts.term_frequency},
                               {"num_docs", info.num_rows},
                               {"num_pos", tokens},
                               {"num_nnz", nonzeros[0]}};
    // The statistics go to the child in a temporary beside the output (swept if we die).
    const std::string stats_path = c.output + ".gensim-dictionary.json" + io::temp_suffix();
    struct Remove {
      std::string path;
      ~Remove() { std::remove(path.c_str()); }
    } remove{stats_path};
    {
      io::TextWriter w(stats_path, true);
      w.write(stats.dump());
      w.commit();
    }
    std::vector<std::string> args{"-m", "latent.export", "gensim", "--model", c.model, "--dictionary-stats", stats_path,
                                  "--output", c.output};
    if (c.overwrite) args.emplace_back("--overwrite");
    const int status = run_python(args, false);
    if (status == 0) return;
    const std::string what = fmt::format("{} -m latent.export gensim (for --format gensim) exited with status {}",
                                         python_interpreter(), status);
    switch (status) {
      case 64: throw Error(ErrorKind::kUsage, what);
      case 65: throw Error(ErrorKind::kInput, what);
      case 66: throw Error(ErrorKind::kNoInput, what);
      case 73: throw Error(ErrorKind::kOutput, what);
      case 74: throw Error(ErrorKind::kIo, what);
      default: throw Error(ErrorKind::kInternal, what + "; its message is above");
    }
  });
  run.log().info(fmt::format("wrote a gensim LdaModel of {} topics and {} words (dictionary of {} documents) to {}",
                             model.num_topics(), model.vocab_size(), info.num_rows, c.output));
  return 0;
}

int export_lda(train::TaskRun& run) {
  const std::string& format = run.options().text("format");
  return format == "gensim" ? export_gensim(run) : export_ldavis(run);
}

}  // namespace

TaskSpec lda_export_task() {
  std::vector<OptionSpec> options{
      {.flag = "format", .type = OptionType::kText,
       .help = "ldavis: pyLDAvis.prepare's inputs as JSON (one distributed pass); gensim: gensim's LdaModel files "
               "(LdaModel.load(OUT)), written by the Python package latent with gensim",
       .required = true, .choices = {"ldavis", "gensim"}}};
  for (OptionSpec& o : lda_e_step_options()) {
    o.help += " (ldavis: the E-step of doc_topic_dists, as `latent transform`)";
    options.push_back(std::move(o));
  }
  return {.task = Task::kExport,
          .usage = "latent export --model LDA.h5 --data DIR --format ldavis|gensim --output OUT",
          .data_help = "count dataset directory (`latent import counts`) with the model's vocabulary",
          .output_flag = "output",
          .output_help = "ldavis: a JSON object {topic_term_dists (K x V), doc_topic_dists (N x K), doc_lengths (N), "
                         "vocab (V), term_frequency (V)} (docs/FORMATS.md \"Exports\"); gensim: the file that "
                         "gensim.models.LdaModel.load reads, with its companions OUT.state, OUT.id2word (and "
                         "OUT.*.npy)",
          .options = std::move(options),
          .run = export_lda,
          .examples = {"mpirun -n 4 latent export --model lda.h5 --data corpus/ --format ldavis --output lda_vis.json",
                       "latent export --model lda.h5 --data corpus/ --format gensim --output lda.gensim"}};
}

}  // namespace latent::models
