#!/usr/bin/python3
"""Topic coherence in `latent score` for LDA models (issue 20 item 5).

A generated corpus is fitted; `latent score` prints UMass and NPMI per topic and averaged.
In Python the same documents (bag-of-words read from the shards with h5py) and the same top
words (from /components: decreasing weight, ties by lower word id) go to gensim's
CoherenceModel(coherence='u_mass'), which must agree per topic to 1e-6, and to a direct
numpy evaluation of the document-NPMI definition (1e-9). Checked on the corpus itself and
on a variant with empty documents and a top word removed from every document (gensim's
D(w*) = 0 convention), at top N = 10 (default), 3 and > V (clamped to V). The coherence
values are identical at 1 and 3 ranks, 1 and 2 threads and other block sizes; top N 0
leaves the fields out, 1 and -1 are refused (exit 64). Usage: coherence_cli_test.py LATENT
MPIEXEC (exits 77 without gensim or h5py).
"""
import json
import os
import shutil
import sys
import tempfile

try:
    import h5py
    import numpy as np
    from gensim.corpora import Dictionary
    from gensim.models.coherencemodel import CoherenceModel
except ImportError:
    print("gensim or h5py not available: skipped")
    sys.exit(77)

from clitest import Harness  # noqa: E402  (tests/cli/clitest.py)

H = Harness(sys.argv[1], sys.argv[2])
check, run = H.check, H.run
FIELDS = ("coherence_top_n", "coherence_umass", "coherence_umass_per_topic", "coherence_npmi",
          "coherence_npmi_per_topic")


def read_corpus(directory):
    """Documents as gensim bag-of-words lists, in dataset order, and the vocabulary."""
    docs = []
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".h5"):
            continue
        with h5py.File(os.path.join(directory, name), "r") as f:
            indptr, indices, data = f["indptr"][:], f["indices"][:], f["data"][:]
        for d in range(len(indptr) - 1):
            b, e = indptr[d], indptr[d + 1]
            docs.append([(int(w), int(c)) for w, c in zip(indices[b:e], data[b:e])])
    with open(os.path.join(directory, "vocabulary.txt")) as f:
        vocab = f.read().split("\n")[:-1]
    return docs, vocab


def top_words(model, n):
    with h5py.File(model, "r") as f:
        components = f["components"][:]
    return [list(np.argsort(-row, kind="stable")[:n]) for row in components]


def gensim_umass(docs, vocab, topics, n):
    dictionary = Dictionary.from_corpus(docs, id2word=dict(enumerate(vocab)))
    tokens = [[vocab[w] for w in t] for t in topics]
    cm = CoherenceModel(topics=tokens, corpus=docs, dictionary=dictionary, coherence="u_mass", topn=n)
    return cm.get_coherence_per_topic()


def numpy_npmi(docs, vocab_size, topics):
    """Document NPMI from its definition: P = document frequency / documents."""
    present = np.zeros((len(docs), vocab_size), dtype=bool)
    for d, doc in enumerate(docs):
        for w, _ in doc:
            present[d, w] = True
    n_docs = len(docs)
    out = []
    for t in topics:
        values = []
        for i in range(len(t)):
            for j in range(i):
                a, b = present[:, t[i]], present[:, t[j]]
                dij = int(np.sum(a & b))
                if dij == 0:
                    values.append(-1.0)
                elif dij == n_docs:
                    values.append(1.0)
                else:
                    pij, pi, pj = dij / n_docs, a.sum() / n_docs, b.sum() / n_docs
                    values.append(np.log(pij / (pi * pj)) / -np.log(pij))
        out.append(float(np.mean(values)))
    return out


def score(model, data, ranks=1, extra=()):
    r = run(["score", "--model", model, "--data", data, *extra], ranks=ranks)
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[0]) if r.returncode == 0 and lines else {}


def against_references(name, model, data, n_arg, expect_n):
    s = score(model, data, extra=() if n_arg is None else ("--coherence-top-n", str(n_arg)))
    if not s:
        check(False, f"{name}: score failed")
        return s
    check(s.get("coherence_top_n") == expect_n, f"{name}: coherence_top_n {s.get('coherence_top_n')} == {expect_n}")
    docs, vocab = read_corpus(data)
    topics = top_words(model, expect_n)
    ref = gensim_umass(docs, vocab, topics, expect_n)
    ours = s["coherence_umass_per_topic"]
    diff = max(abs(a - b) for a, b in zip(ours, ref))
    check(len(ours) == len(ref) and diff <= 1e-6,
          f"{name}: UMass per topic = gensim's u_mass (max |diff| {diff:.2e}; {np.round(ours, 4).tolist()})")
    check(abs(s["coherence_umass"] - float(np.mean(ref))) <= 1e-6, f"{name}: UMass average = mean of gensim's")
    npmi_ref = numpy_npmi(docs, len(vocab), topics)
    diff = max(abs(a - b) for a, b in zip(s["coherence_npmi_per_topic"], npmi_ref))
    check(diff <= 1e-9, f"{name}: NPMI per topic = numpy from the definition (max |diff| {diff:.2e})")
    check(abs(s["coherence_npmi"] - float(np.mean(npmi_ref))) <= 1e-9, f"{name}: NPMI average")
    check(all(-1 <= v <= 1 for v in s["coherence_npmi_per_topic"]), f"{name}: NPMI within [-1, 1]")
    return s


with tempfile.TemporaryDirectory() as tmp:
    corpus, model = f"{tmp}/corpus", f"{tmp}/lda.h5"
    run(["generate", "lda", "--n-documents", "500", "--vocab-size", "70", "--n-topics", "5", "--doc-length", "60",
         "--docs-per-shard", "180", "--seed", "20", "--output", corpus])
    run(["fit", "lda", "--data", corpus, "--output", model, "--n-topics", "5", "--max-iter", "10", "--seed", "1"])

    base = against_references("corpus", model, corpus, None, 10)
    against_references("corpus top 3", model, corpus, 3, 3)
    against_references("corpus top > V", model, corpus, 1000, 70)

    # A variant: the second top word of topic 0 removed from every document (so pairs with
    # it as W* have D(W*) = 0: gensim counts 0) and 3 empty documents in a shard of their own.
    holes = f"{tmp}/holes"
    shutil.copytree(corpus, holes)
    gone = top_words(model, 2)[0][1]
    for name in sorted(os.listdir(holes)):
        if not name.endswith(".h5"):
            continue
        with h5py.File(os.path.join(holes, name), "r+") as f:
            indptr, indices, data = f["indptr"][:], f["indices"][:], f["data"][:]
            keep = indices != gone
            new_indptr = np.concatenate([[0], np.cumsum([keep[indptr[d]:indptr[d + 1]].sum()
                                                         for d in range(len(indptr) - 1)])]).astype(np.int64)
            for key, value in (("indptr", new_indptr), ("indices", indices[keep]), ("data", data[keep])):
                del f[key]
                f[key] = value
    with h5py.File(f"{holes}/part-99999.h5", "w") as f:
        f["indptr"] = np.zeros(4, dtype=np.int64)
        f["indices"] = np.zeros(0, dtype=np.int32)
        f["data"] = np.zeros(0, dtype=np.int64)
        f.attrs["format_version"] = np.int64(1)
        f.attrs["kind"] = "counts"
        f.attrs["vocab_size"] = np.int64(70)
    h = against_references("removed word + empty documents", model, holes, None, 10)
    check(h.get("num_documents") == 503, "the empty documents are counted")

    # The same values for any rank, thread and block layout.
    for ranks, extra in ((1, ("--threads", "2")), (3, ("--threads", "1")), (3, ("--threads", "2", "--block-rows", "37")),
                         (2, ("--block-rows", "1000"))):
        s = score(model, corpus, ranks=ranks, extra=extra)
        same = bool(s) and all(s.get(k) == base.get(k) for k in FIELDS)
        check(same, f"coherence identical at {ranks} rank(s) {' '.join(extra)}")
    s = score(model, holes, ranks=3, extra=("--threads", "2", "--block-rows", "50"))
    check(bool(s) and all(s.get(k) == h.get(k) for k in FIELDS), "removed word + empty documents: identical at 3 ranks")

    s = score(model, corpus, extra=("--coherence-top-n", "0"))
    check(bool(s) and not any(k in s for k in FIELDS) and "bound_perplexity" in s, "--coherence-top-n 0: no coherence")
    for bad in ("1", "-1"):
        r = run(["score", "--model", model, "--data", corpus, "--coherence-top-n", bad], expect=64)
        check(r.returncode == 64 and "coherence-top-n" in r.stderr, f"--coherence-top-n {bad} refused (exit 64)")

H.finish()
