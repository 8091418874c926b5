"""`latent export` (issue 24 item 4; docs/COMMANDS.md "latent export", docs/FORMATS.md
"Exports").

--format ldavis: the JSON holds exactly pyLDAvis.prepare's five inputs and passes its input
check as pyLDAvis 3.x's _input_check does it (shapes, lengths, every row of both
distributions summing to at least 0.999), and our stricter contract: rows sum to 1 within
1e-12; topic_term_dists are the model's λ rows normalised; vocab is the model's
/vocabulary in order; doc_lengths and term_frequency are the corpus's row and column sums
computed here independently from the CSR shards with h5py/numpy (exact integers);
doc_topic_dists are the bits `latent transform` writes for the same block rows. The file is
the same bytes at 1, 2 and 3 ranks (block rows that cut shards).
--format gensim: gensim.models.LdaModel.load reads the export; get_topics() equals our
normalised λ to 1e-12, its Dictionary holds the model's words and the corpus's document
frequencies; at 2 ranks too. Without the Python package it is refused up front (64).
Bad inputs: a model that is not LDA (64, "does not support"), a corpus whose vocabulary
size or words differ (65, naming both), an existing output (73), a missing model (66), no
--format (64): each leaves no output file.

Usage: export_cli_test.py LATENT MPIEXEC [PYTHON_BUILT: 1 if the Python package was built]
"""
import json
import os
import shutil
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import Harness  # noqa: E402

H = Harness(sys.argv[1], sys.argv[2])
check, run = H.check, H.run
PYTHON_BUILT = len(sys.argv) > 3 and sys.argv[3] in ("1", "ON", "TRUE", "true", "on")
KEYS = ["topic_term_dists", "doc_topic_dists", "doc_lengths", "vocab", "term_frequency"]


def pyldavis_input_check(ttd, dtd, doc_lengths, vocab, term_frequency):
    """pyLDAvis 3.x _prepare._input_check, verbatim in substance (pandas row sums < 0.999)."""
    errors = []
    if dtd.shape[1] != ttd.shape[0]:
        errors.append("topic_term_dists rows != doc_topic_dists columns")
    if len(doc_lengths) != dtd.shape[0]:
        errors.append("doc_lengths length != doc_topic_dists rows")
    if ttd.shape[1] != len(vocab):
        errors.append("vocab length != topic_term_dists columns")
    if len(term_frequency) != len(vocab):
        errors.append("term_frequency length != vocab length")
    if ttd.shape[0] - int((ttd.sum(axis=1) < 0.999).sum()) != ttd.shape[0]:
        errors.append("not all topic_term_dists rows sum to 1")
    if dtd.shape[0] - int((dtd.sum(axis=1) < 0.999).sum()) != dtd.shape[0]:
        errors.append("not all doc_topic_dists rows sum to 1")
    return errors


def corpus_sums(directory, v):
    """(row sums, column sums, document frequencies, nonzeros) of the CSR shards, in shard order."""
    lengths, tf, df, nnz = [], np.zeros(v, dtype=np.int64), np.zeros(v, dtype=np.int64), 0
    for name in sorted(n for n in os.listdir(directory) if n.startswith("part-") and n.endswith(".h5")):
        with h5py.File(os.path.join(directory, name), "r") as f:
            indptr, indices, data = f["indptr"][()], f["indices"][()], f["data"][()]
        counts = data.astype(np.int64)
        assert np.array_equal(counts, data), "integral counts"
        lengths += [int(counts[indptr[i]:indptr[i + 1]].sum()) for i in range(len(indptr) - 1)]
        for w, c in zip(indices.tolist(), counts.tolist()):  # integer sums, no float weights
            tf[w] += c
        df += np.bincount(indices, minlength=v)
        nnz += len(indices)
    return np.array(lengths, dtype=np.int64), tf, df, nnz


def no_output(path):
    d, base = os.path.split(path)
    return not any(n == base or n.startswith(base + ".") for n in os.listdir(d))


def main():
    with tempfile.TemporaryDirectory(prefix="latent-export-") as root:
        p = lambda *a: os.path.join(root, *a)  # noqa: E731
        # 3 shards of 70 documents, Poisson(4) lengths: a few documents are empty
        # A generated corpus, re-imported through LDA-C with three empty documents added
        # (their θ is α/Σα and their length 0): 213 documents in shards of 70.
        run(["generate", "lda", "--n-samples", "210", "--vocab-size", "60", "--n-components", "3", "--doc-length", "30",
             "--seed", "3", "--output", p("generated"), "--true-model", "none"])
        lines = []
        for name in sorted(x for x in os.listdir(p("generated")) if x.startswith("part-")):
            with h5py.File(p("generated", name), "r") as f:
                indptr, indices, data = f["indptr"][()], f["indices"][()], f["data"][()]
            for i in range(len(indptr) - 1):
                ids, cs = indices[indptr[i]:indptr[i + 1]], data[indptr[i]:indptr[i + 1]]
                lines.append(" ".join([str(len(ids))] + [f"{w}:{int(c)}" for w, c in zip(ids, cs)]))
        for at in (0, 100, 212):
            lines.insert(at, "0")
        with open(p("corpus.ldac"), "w") as f:
            f.write("\n".join(lines) + "\n")
        run(["import", "counts", "--format", "ldac", "--input", p("corpus.ldac"), "--vocab",
             p("generated", "vocabulary.txt"), "--docs-per-shard", "70", "--output", p("corpus")])
        run(["fit", "lda", "--data", p("corpus"), "--output", p("lda.h5"), "--n-topics", "4", "--max-iter", "5",
             "--seed", "1"])
        with h5py.File(p("lda.h5"), "r") as f:
            lam = f["components"][()]
            vocab_model = [w.decode() if isinstance(w, bytes) else w for w in f["vocabulary"][()]]
        k, v = lam.shape
        lengths, tf, df, nnz = corpus_sums(p("corpus"), v)
        n = len(lengths)

        # --- ldavis at 1, 2, 3 ranks: the same bytes
        texts = {}
        for ranks, threads in ((1, 1), (2, 1), (3, 1), (1, 2)):
            out = p(f"vis-{ranks}-{threads}.json")
            r = run(["export", "--model", p("lda.h5"), "--data", p("corpus"), "--format", "ldavis", "--output", out,
                     "--block-rows", "32", "--threads", str(threads)], ranks=ranks)
            check(r.returncode == 0 and os.path.exists(out), f"export ldavis at {ranks} rank(s) x {threads} thread(s)")
            texts[ranks, threads] = open(out, "rb").read() if os.path.exists(out) else b""
            check(not [x for x in os.listdir(root) if ".tmp-" in x], f"no temporaries left at {ranks} rank(s)")
        check(texts[1, 1] != b"" and len(set(texts.values())) == 1,
              f"ldavis export: the same bytes at 1, 2, 3 ranks and 2 threads ({len(texts[1, 1])} bytes)")
        shutil.copy(p("vis-1-1.json"), p("vis-1.json"))
        vis = json.loads(texts[1, 1])
        check(list(vis) == KEYS, f"exactly pyLDAvis.prepare's arguments, in its order: {list(vis)}")
        ttd, dtd = np.array(vis["topic_term_dists"]), np.array(vis["doc_topic_dists"])
        check(ttd.shape == (k, v) and dtd.shape == (n, k), f"shapes K x V = {ttd.shape}, N x K = {dtd.shape}")
        errors = pyldavis_input_check(ttd, dtd, np.array(vis["doc_lengths"]), vis["vocab"],
                                      np.array(vis["term_frequency"]))
        check(not errors, f"pyLDAvis's input check passes {errors}")
        check(np.abs(ttd.sum(axis=1) - 1).max() < 1e-12 and np.abs(dtd.sum(axis=1) - 1).max() < 1e-12,
              f"rows sum to 1 within 1e-12 (topics {np.abs(ttd.sum(axis=1) - 1).max():.1e}, "
              f"documents {np.abs(dtd.sum(axis=1) - 1).max():.1e})")
        ref = lam / lam.sum(axis=1, keepdims=True)
        check(np.abs(ttd - ref).max() <= 1e-15 * 4, f"topic_term_dists = λ rows normalised "
                                                     f"(max diff {np.abs(ttd - ref).max():.1e})")
        check(vis["vocab"] == vocab_model, "vocab is the model's /vocabulary in order")
        check(all(isinstance(x, int) for x in vis["doc_lengths"] + vis["term_frequency"]),
              "doc_lengths and term_frequency are JSON integers")
        check(vis["doc_lengths"] == lengths.tolist() and (lengths == 0).any(), f"doc_lengths = the corpus's row sums ({n} documents, "
                                                      f"{int((lengths == 0).sum())} empty)")
        check(vis["term_frequency"] == tf.tolist() and sum(vis["term_frequency"]) == int(lengths.sum()),
              f"term_frequency = the corpus's column sums ({int(tf.sum())} tokens)")
        run(["transform", "--model", p("lda.h5"), "--data", p("corpus"), "--output", p("theta.h5"), "--block-rows", "32"])
        with h5py.File(p("theta.h5"), "r") as f:
            theta = f["doc_topic_distribution"][()]
        check(np.array_equal(dtd, theta), "doc_topic_dists are `latent transform`'s bits, in document order")

        # A model file without /vocabulary (another tool's): the corpus's words.
        shutil.copy(p("lda.h5"), p("novocab.h5"))
        with h5py.File(p("novocab.h5"), "a") as f:
            del f["vocabulary"]
        run(["export", "--model", p("novocab.h5"), "--data", p("corpus"), "--format", "ldavis", "--output",
             p("novocab.json")])
        with open(p("corpus", "vocabulary.txt"), encoding="utf-8") as f:
            corpus_words = f.read().splitlines()
        nv = json.load(open(p("novocab.json"))) if os.path.exists(p("novocab.json")) else {}
        check(nv.get("vocab") == corpus_words and nv.get("doc_topic_dists") == vis["doc_topic_dists"],
              "a model without /vocabulary: the corpus's words, the same numbers")

        # --- bad inputs: nothing written
        out = p("bad.json")
        run(["generate", "gmm", "--n-samples", "50", "--n-features", "3", "--n-components", "2", "--output", p("dense"),
             "--true-model", "none"])
        run(["fit", "gmm", "--data", p("dense"), "--output", p("gmm.h5"), "--n-components", "2"])
        r = run(["export", "--model", p("gmm.h5"), "--data", p("corpus"), "--format", "ldavis", "--output", out],
                ranks=2, expect=64)
        check(r.returncode == 64 and "does not support `latent export`" in r.stderr and no_output(out),
              "a gmm model: refused (64), no output")
        run(["generate", "lda", "--n-samples", "20", "--vocab-size", "50", "--n-components", "2", "--output",
             p("other"), "--true-model", "none"])
        r = run(["export", "--model", p("lda.h5"), "--data", p("other"), "--format", "ldavis", "--output", out],
                ranks=2, expect=65)
        check(r.returncode == 65 and "vocabulary of 50 words" in r.stderr and p("other") in r.stderr and no_output(out),
              "a corpus of another vocabulary size: refused (65) naming data and model, no output")
        shutil.copytree(p("corpus"), p("renamed"))
        words = open(p("renamed", "vocabulary.txt")).read().split("\n")
        words[7] = "changed"
        open(p("renamed", "vocabulary.txt"), "w").write("\n".join(words))
        r = run(["export", "--model", p("lda.h5"), "--data", p("renamed"), "--format", "ldavis", "--output", out],
                expect=65)
        check(r.returncode == 65 and "word 7" in r.stderr and "'changed'" in r.stderr and no_output(out),
              "a corpus whose words differ: refused (65) naming the word, no output")
        before = open(p("vis-1.json"), "rb").read()
        r = run(["export", "--model", p("lda.h5"), "--data", p("corpus"), "--format", "ldavis", "--output",
                 p("vis-1.json")], expect=73)
        check(r.returncode == 73 and open(p("vis-1.json"), "rb").read() == before, "an existing output: 73, unchanged")
        r = run(["export", "--model", p("lda.h5"), "--data", p("corpus"), "--format", "ldavis", "--output",
                 p("vis-1.json"), "--overwrite"])
        check(r.returncode == 0 and open(p("vis-1.json"), "rb").read() == before, "--overwrite: replaced, same bytes")
        r = run(["export", "--model", p("missing.h5"), "--data", p("corpus"), "--format", "ldavis", "--output", out],
                expect=66)
        check(r.returncode == 66 and no_output(out), "a missing model: 66, no output")
        r = run(["export", "--model", p("lda.h5"), "--data", p("corpus"), "--output", out], expect=64)
        check(r.returncode == 64 and "--format" in r.stderr and no_output(out), "no --format: 64")
        h = run(["export", "--help"])
        check("--format" in h.stdout and "EXAMPLES" in h.stdout and "EXIT STATUS" in h.stdout,
              "export --help: options, EXAMPLES, EXIT STATUS")

        # --- gensim
        out = p("lda.gensim")
        r = run(["export", "--model", p("lda.h5"), "--data", p("corpus"), "--format", "gensim", "--output", out],
                expect=64, env={"LATENT_PYTHON": "/nonexistent/python3"})
        check(r.returncode == 64 and "python3-gensim" in r.stderr and "--format ldavis" in r.stderr and no_output(out),
              "gensim without a usable Python: refused up front (64), saying what to install, no output")
        if not PYTHON_BUILT:
            print("skip gensim load checks: the Python package is not built (LATENT_PYTHON=OFF)")
            H.finish()
        from gensim.models import LdaModel
        for ranks in (1, 2):
            out = p(f"lda-{ranks}.gensim")
            r = run(["export", "--model", p("lda.h5"), "--data", p("corpus"), "--format", "gensim", "--output", out],
                    ranks=ranks)
            check(r.returncode == 0 and os.path.exists(out), f"export gensim at {ranks} rank(s)")
            if r.returncode != 0:
                continue
            g = LdaModel.load(out)
            topics = g.get_topics()
            diff = np.abs(topics - ref).max()
            check(topics.shape == (k, v) and diff <= 1e-12, f"gensim get_topics() = normalised λ (max diff {diff:.1e})")
            d = g.id2word
            check([d[i] for i in range(v)] == vocab_model, "gensim id2word: the model's words in order")
            check([d.dfs[i] for i in range(v)] == df.tolist() and [d.cfs[i] for i in range(v)] == tf.tolist(),
                  "Dictionary dfs/cfs = the corpus's document and term frequencies")
            check((d.num_docs, d.num_pos, d.num_nnz) == (n, int(tf.sum()), nnz),
                  f"Dictionary num_docs, num_pos, num_nnz = {(d.num_docs, d.num_pos, d.num_nnz)}")
            with h5py.File(p("lda.h5"), "r") as f:
                alpha, eta = f["doc_topic_prior"][()], float(f["topic_word_prior"][()].ravel()[0])
            check(np.array_equal(g.alpha, alpha) and np.all(g.eta == eta), f"gensim α, η = the model's ({eta})")
            check(not [x for x in os.listdir(root) if ".tmp-" in x or x.startswith(".latent-gensim-")],
                  "no temporaries left")
        r = run(["export", "--model", p("lda.h5"), "--data", p("corpus"), "--format", "gensim", "--output",
                 p("lda-1.gensim")], expect=73)
        check(r.returncode == 73, "gensim: an existing output: 73")
    H.finish()


if __name__ == "__main__":
    main()
