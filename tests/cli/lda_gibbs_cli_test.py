#!/usr/bin/python3
"""`latent fit lda --method gibbs` end to end (issue 20 items 1-2).

* The model file is the same content (every dataset and attribute but the wall-clock
  fields, golden_models.content_hash) at 1, 2 and 3 (oversubscribed) ranks x 1 and 2
  threads and at 4 ranks, with several blocks per rank.
* The file keeps the LDA layout: /components = n_kw + eta (so components - eta are
  non-negative integers summing to the corpus's tokens), /doc_topic_prior = alpha,
  /vocabulary; lower_bound is the log joint per token and rises over the sweeps;
  `score`, `transform` and `info` read it; its document-completion perplexity is no worse
  than batch VB's on the same planted corpus.
* Stop and resume: a SIGTERM (LATENT_FAULT kind=signal) at a sweep boundary exits 75 with a
  checkpoint; resuming on another rank and thread count gives the same content as the
  uninterrupted fit (2 -> 3 ranks and 3 -> 1). A resume on data with one count changed is
  refused (64) naming the shard.
* Bad inputs as VB: empty documents are allowed (warned); an all-empty corpus is refused
  (65); a word id out of range is refused (65); --learn-priors eta with gibbs is refused (64);
  --learn-priors alpha learns the same α at any rank count and across a resume.

Usage: lda_gibbs_cli_test.py LATENT MPIEXEC (exits 77 without h5py).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

try:
    import h5py
    import numpy as np
except ImportError:
    print("h5py not available: skipped")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import Harness  # noqa: E402
from golden_models import content_hash  # noqa: E402

H = Harness(sys.argv[1], sys.argv[2])
check, run = H.check, H.run


def write_counts(directory, docs, vocab_size):
    """A count dataset from a list of {word: count} documents (one shard)."""
    os.makedirs(directory)
    indptr, indices, data = [0], [], []
    for d in docs:
        for w in sorted(d):
            indices.append(w)
            data.append(d[w])
        indptr.append(len(indices))
    with h5py.File(os.path.join(directory, "part-00000.h5"), "w") as f:
        f["indptr"] = np.array(indptr, dtype=np.int64)
        f["indices"] = np.array(indices, dtype=np.int32)
        f["data"] = np.array(data, dtype=np.int64)
        f.attrs["format_version"] = np.int64(1)
        f.attrs["kind"] = "counts"
        f.attrs["vocab_size"] = np.int64(vocab_size)
    with open(os.path.join(directory, "vocabulary.txt"), "w") as f:
        for w in range(vocab_size):
            f.write(f"word{w}\n")


with tempfile.TemporaryDirectory() as tmp:
    data = os.path.join(tmp, "corpus")
    run(["generate", "lda", "--n-samples", "400", "--vocab-size", "150", "--n-components", "5", "--doc-length", "60",
         "--rows-per-shard", "90", "--output", data, "--seed", "4"])
    with open(os.path.join(data, "vocabulary.txt")) as f:
        vocab = f.read().split()
    tokens = 0
    for name in sorted(os.listdir(data)):
        if name.endswith(".h5"):
            with h5py.File(os.path.join(data, name)) as f:
                tokens += int(f["data"][()].sum())
    common = ["fit", "lda", "--data", data, "--method", "gibbs", "--n-topics", "5", "--block-rows", "30", "--seed", "7",
              "--evaluate-every", "1"]
    base = common + ["--max-iter", "12"]

    # --- bitwise invariance over ranks and threads -------------------------------------
    hashes = {}
    for ranks, threads in ((1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2), (4, 1)):
        out = os.path.join(tmp, f"g{ranks}{threads}.h5")
        r = run(base + ["--output", out, "--threads", str(threads)], ranks=ranks)
        if r.returncode == 0:
            hashes[(ranks, threads)] = content_hash(out)
    ref = hashes.get((1, 1))
    check(len(hashes) == 7 and len(set(hashes.values())) == 1,
          f"the same model content at 1-3 ranks x 1-2 threads and 4 ranks ({len(set(hashes.values()))} distinct of "
          f"{len(hashes)})")
    model = os.path.join(tmp, "g11.h5")

    # --- the file: layout, counts, log ------------------------------------------------------
    with h5py.File(model) as f:
        comp = f["components"][()]
        eta = float(f["topic_word_prior"][()][0])
        alpha = f["doc_topic_prior"][()]
        counts = comp - eta
        config = json.loads(f.attrs["config"])
        history = f["history/objective"][()] if "history/objective" in f else None
        check(comp.shape == (5, 150), f"/components is K x V: {comp.shape}")
        n_kw = np.round(counts)
        check(np.all(comp == n_kw + eta) and n_kw.min() >= 0 and int(n_kw.sum()) == tokens,
              f"/components - eta are integer counts summing to the {tokens} tokens ({counts.sum():.0f})")
        check(eta == 0.2 and np.all(alpha == 0.2), f"priors default to 1/K: eta {eta}, alpha {alpha}")
        check([s.decode() if isinstance(s, bytes) else s for s in f["vocabulary"][()]] == vocab, "/vocabulary kept")
        lb = float(f.attrs["lower_bound"])
        check(config["method"] == "gibbs" and "log joint" in config["lower_bound"] and int(f.attrs["n_iter"]) == 12,
              "config names the method and what lower_bound holds; n_iter = sweeps")
        check(history is not None and len(history) == 12 and history[-1] > history[0] and abs(history[-1] - lb) < 1e-12
              and -6 < lb < 0, f"log p(w,z)/token rises over the sweeps to lower_bound {lb:.4f}")

    r = run(common + ["--output", os.path.join(tmp, "log.h5"), "--max-iter", "3"])
    check("tokens/s" in r.stdout + r.stderr and "MH acceptance" in r.stdout + r.stderr,
          "per-sweep log line with tokens/s and the closing line with the acceptance rate")

    # --- score / transform / info read it unchanged; quality beside batch VB --------------
    gl = os.path.join(tmp, "long.h5")
    run(common + ["--output", gl, "--max-iter", "100"])
    vb = os.path.join(tmp, "vb.h5")
    run(["fit", "lda", "--data", data, "--n-topics", "5", "--max-iter", "30", "--output", vb, "--seed", "7"])
    scores = {}
    for name, path in (("gibbs", gl), ("batch", vb)):
        r = run(["score", "--model", path, "--data", data])
        try:
            scores[name] = json.loads(r.stdout)["doc_completion_perplexity"]
        except (ValueError, KeyError):
            scores[name] = float("nan")
    check(scores["gibbs"] <= 1.02 * scores["batch"],
          f"document-completion perplexity: gibbs {scores['gibbs']:.3f}, batch VB {scores['batch']:.3f}")
    theta = os.path.join(tmp, "theta.h5")
    r = run(["transform", "--model", gl, "--data", data, "--output", theta])
    if r.returncode == 0:
        with h5py.File(theta) as f:
            name = [k for k in f.keys() if f[k].ndim == 2][0]
            t = f[name][()]
            check(t.shape == (400, 5) and np.all(t >= 0), f"transform: {name} {t.shape}")
    r = run(["info", gl])
    check("topic   0" in r.stdout and vocab[0][:1] in r.stdout, "info lists the topics' top words")

    # --- stop and resume on another rank count ------------------------------------------
    for (r1, t1, r2, t2, rank, it) in ((2, 1, 3, 2, 1, 5), (3, 2, 1, 1, 0, 9)):
        ck = os.path.join(tmp, f"ck{r1}{r2}")
        out = os.path.join(tmp, f"resumed{r1}{r2}.h5")
        r = run(base + ["--output", out, "--checkpoint-dir", ck, "--threads", str(t1)], ranks=r1, expect=75,
                env={"LATENT_FAULT": f"rank={rank},iteration={it},kind=signal"})
        check(r.returncode == 75 and not os.path.exists(out), f"SIGTERM at sweep {it} on {r1} ranks: exit 75, no model")
        r = run(base + ["--output", out, "--checkpoint-dir", ck, "--threads", str(t2), "--resume"], ranks=r2)
        check(r.returncode == 0 and content_hash(out) == ref,
              f"resumed on {r2} rank(s) x {t2} thread(s): the same content as the uninterrupted fit")
    # A SIGTERM from outside (as SLURM sends) to both ranks in the middle of a sweep: the fit
    # stops at the next sweep boundary with a checkpoint (exit 75); resumed on 1 rank it
    # ends with the content of the uninterrupted fit.
    big = os.path.join(tmp, "big")
    run(["generate", "lda", "--n-samples", "6000", "--vocab-size", "2000", "--n-components", "20", "--doc-length", "150",
         "--output", big, "--seed", "5", "--true-model", "none"])
    big_args = ["fit", "lda", "--data", big, "--method", "gibbs", "--n-topics", "50", "--max-iter", "60", "--seed", "1",
                "--threads", "1", "--evaluate-every", "0"]
    whole = os.path.join(tmp, "whole.h5")
    run(big_args + ["--output", whole])
    ck = os.path.join(tmp, "ck-signal")
    out = os.path.join(tmp, "signalled.h5")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    p = subprocess.Popen([H.mpiexec, "--oversubscribe", "-n", "2", H.latent] + big_args +
                         ["--output", out, "--checkpoint-dir", ck], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)
    running = p.poll() is None
    if running:
        for pid in subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split():
            os.kill(int(pid), signal.SIGTERM)
    t0 = time.time()
    sout, serr = p.communicate(timeout=300)
    took = time.time() - t0
    stopped_at = [l for l in serr.splitlines() if "stopped by a signal" in l][:1]
    check(running and p.returncode == 75 and took < 10 and not os.path.exists(out),
          f"SIGTERM to both ranks mid-fit: exit {p.returncode} {took:.2f} s after the signal, no model ({stopped_at})")
    r = run(big_args + ["--output", out, "--checkpoint-dir", ck, "--resume"])
    check(r.returncode == 0 and "resuming from" in r.stderr + r.stdout and content_hash(out) == content_hash(whole),
          "resumed on 1 rank after the external SIGTERM: the content of the uninterrupted fit")
    # Changed data: refused.
    changed = os.path.join(tmp, "changed")
    shutil.copytree(data, changed)
    with h5py.File(os.path.join(changed, "part-00001.h5"), "r+") as f:
        d = f["data"][()]
        d[3] += 1
        f["data"][...] = d
    ck = os.path.join(tmp, "ck23")
    r = run([changed if a == data else a for a in base] + ["--output", os.path.join(tmp, "ch.h5"), "--checkpoint-dir", ck,
                                                            "--resume"], expect=64)
    check(r.returncode == 64 and "part-00001" in r.stderr, "a resume on changed data is refused naming the shard")

    # --- bad inputs --------------------------------------------------------------------
    rng = np.random.default_rng(1)
    docs = [{int(w): int(c) for w, c in zip(rng.integers(0, 20, 6), rng.integers(1, 4, 6))} for _ in range(30)]
    docs[0] = {}
    docs[17] = {}
    empty_docs = os.path.join(tmp, "empty_docs")
    write_counts(empty_docs, docs, 20)
    outs = []
    for ranks in (1, 2):
        out = os.path.join(tmp, f"e{ranks}.h5")
        r = run(["fit", "lda", "--data", empty_docs, "--method", "gibbs", "--n-topics", "3", "--max-iter", "5",
                 "--block-rows", "7", "--output", out], ranks=ranks)
        check(r.returncode == 0 and "2 of 30 documents are empty" in r.stderr, f"empty documents: fitted with a warning ({ranks} rank(s))")
        outs.append(content_hash(out) if r.returncode == 0 else None)
    check(outs[0] is not None and outs[0] == outs[1], "with empty documents: the same content at 1 and 2 ranks")
    zero = os.path.join(tmp, "zero")
    write_counts(zero, [{} for _ in range(5)], 4)
    r = run(["fit", "lda", "--data", zero, "--method", "gibbs", "--output", os.path.join(tmp, "z.h5")], expect=65)
    check(r.returncode == 65 and "no tokens" in r.stderr and not os.path.exists(os.path.join(tmp, "z.h5")),
          "an all-empty corpus is refused (65)")
    bad = os.path.join(tmp, "bad")
    write_counts(bad, [{1: 2}, {7: 1}], 4)
    r = run(["fit", "lda", "--data", bad, "--method", "gibbs", "--output", os.path.join(tmp, "b.h5")], expect=65)
    check(r.returncode == 65, "a word id out of range is refused (65)")
    r = run(base + ["--output", os.path.join(tmp, "lp.h5"), "--learn-priors", "eta"], expect=64)
    check(r.returncode == 64 and "gibbs" in r.stderr, "--learn-priors eta with gibbs is refused (64)")
    # --learn-priors alpha: α moves (every 10 sweeps), the same bits at 1 and 3 ranks x 2
    # threads, and a stop at sweep 15 resumed on 2 ranks continues with the learned α.
    learn = common[:-2] + ["--max-iter", "30", "--learn-priors", "alpha", "--evaluate-every", "10"]
    outs = {}
    for ranks, threads in ((1, 1), (3, 2)):
        out = os.path.join(tmp, f"la{ranks}.h5")
        r = run(learn + ["--output", out, "--threads", str(threads)], ranks=ranks)
        outs[ranks] = content_hash(out) if r.returncode == 0 else None
    with h5py.File(os.path.join(tmp, "la1.h5")) as f:
        learned = f["doc_topic_prior"][()]
    check(outs[1] is not None and outs[1] == outs[3] and np.all(learned == learned[0]) and abs(learned[0] - 0.2) > 1e-3,
          f"--learn-priors alpha: alpha {learned[0]:.4f} (from 0.2), the same content at 1 and 3 ranks x 2 threads")
    ck = os.path.join(tmp, "ck-alpha")
    out = os.path.join(tmp, "la-resumed.h5")
    run(learn + ["--output", out, "--checkpoint-dir", ck, "--checkpoint-every", "5"], ranks=3, expect=75,
        env={"LATENT_FAULT": "rank=2,iteration=15,kind=signal"})
    r = run(learn + ["--output", out, "--checkpoint-dir", ck, "--checkpoint-every", "5", "--resume"], ranks=2)
    check(r.returncode == 0 and content_hash(out) == outs[1],
          "--learn-priors alpha stopped at sweep 15 on 3 ranks, resumed on 2: the same content")
    r = run(base + ["--output", os.path.join(tmp, "mh.h5"), "--mh-steps", "0"], expect=64)
    check(r.returncode == 64, "--mh-steps 0 is refused (64)")
    # The sharded counts' memory (issue 20 item 3): predicted per rank once the tokens are
    # counted, refused up front with the estimate when the budget is smaller, and a 1/P
    # slice of K x V per rank: K = 50,000 topics over V = 2,000 words is 400 MB of counts on
    # one rank, 100 MB on each of 4 (nothing that large is allocated: every run is refused).
    wide_docs = os.path.join(tmp, "wide_docs")
    write_counts(wide_docs, [{int(w): 1 for w in rng.integers(0, 2000, 40)} for _ in range(30)], 2000)
    wide = ["fit", "lda", "--data", wide_docs, "--method", "gibbs", "--n-topics", "50000", "--max-iter", "1"]
    mem_out = os.path.join(tmp, "mem.h5")
    r = run(wide + ["--output", mem_out, "--memory-budget", "0.15"], ranks=2, expect=64)
    check(r.returncode == 64 and "needs about" in r.stderr and "vocabulary slice" in r.stderr and not os.path.exists(mem_out),
          "a sampler larger than --memory-budget is refused up front with its estimate (64), no output")

    def predicted(stderr):
        for line in stderr.splitlines():
            if "predicted peak memory" in line:
                return float(line.split("predicted peak memory")[1].split()[0])
        return None
    p1 = predicted(run(wide + ["--output", mem_out, "--memory-budget", "0.15", "--overwrite"], ranks=1, expect=64).stderr)
    p4 = predicted(run(wide + ["--output", mem_out, "--memory-budget", "0.15", "--overwrite"], ranks=4, expect=64).stderr)
    check(p1 is not None and p4 is not None and p1 - p4 > 0.9 * 0.75 * 50000 * 2000 * 4 / 2**30,
          f"the prediction falls by the 3/4 of the counts the other ranks hold ({p1} -> {p4} GiB per rank)")

H.finish()
