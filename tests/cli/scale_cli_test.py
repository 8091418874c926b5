#!/usr/bin/python3
"""`latent generate gmm|lda` and `latent fit --profile` through the command line.

- generate: the same rows (and labels) for 1, 2 and 3 ranks and for 3 or 5 shards; the
  true model beside the data; `latent sample` of the true GMM with the same seed gives the
  same rows; a GMM fitted to the data recovers the true weights and means; LDA corpora
  identical across ranks and shard counts; refusals (existing output or true model, bad
  sizes) leave nothing behind, and a failure after the shards were written removes them.
- --profile: every iteration line of the JSON log has one entry per rank for each field;
  read wait + compute + allreduce + M-step add up to the iteration's seconds; no bytes are
  allreduced on 1 rank, the same bytes on every rank and every EM iteration on 2 ranks; the
  done line totals are at least the sum of the iterations; gmm, lda (online) and vae.
Usage: scale_cli_test.py LATENT_BINARY MPIEXEC. Exits 77 (skipped) without h5py.
"""
import glob
import itertools
import json
import os
import re
import sys
import tempfile

try:
    import h5py
    import numpy as np
except ImportError:
    print("h5py not available: skipped")
    sys.exit(77)

from clitest import Harness  # noqa: E402  (tests/cli/clitest.py)

H = Harness(sys.argv[1], sys.argv[2])
check, run = H.check, H.run


def dense(d):
    files = sorted(glob.glob(os.path.join(d, "*.h5")))
    x = np.concatenate([h5py.File(f)["data"][...] for f in files])
    y = np.concatenate([h5py.File(f)["labels"][...] for f in files])
    return x, y, len(files)


def csr(d):
    files = sorted(glob.glob(os.path.join(d, "*.h5")))
    docs, labels = [], []
    for f in files:
        with h5py.File(f) as h:
            ptr, ind, val = h["indptr"][...], h["indices"][...], h["data"][...]
            labels.extend(h["labels"][...].tolist())
            for i in range(len(ptr) - 1):
                docs.append((tuple(ind[ptr[i]:ptr[i + 1]]), tuple(val[ptr[i]:ptr[i + 1]])))
    return docs, labels, len(files)


tmp = tempfile.mkdtemp(prefix="latent-scale-")
T = lambda *p: os.path.join(tmp, *p)  # noqa: E731

# ---------------------------------------------------------------- generate gmm
gen = ["generate", "gmm", "--n-samples", "6000", "--n-features", "12", "--n-components", "4", "--seed", "7",
       "--cluster-std", "0.5", "--threads", "1"]
run(gen + ["--shards", "3", "--output", T("g1")])
run(gen + ["--shards", "3", "--output", T("g3")], ranks=3)
run(gen + ["--shards", "5", "--output", T("g5"), "--true-model", "none", "--dtype", "float64"], ranks=2)
x1, y1, n1 = dense(T("g1"))
x3, y3, n3 = dense(T("g3"))
x5, y5, n5 = dense(T("g5"))
check(x1.dtype == np.float32 and x1.shape == (6000, 12) and n1 == 3 and n5 == 5, "gmm: shapes, dtype, shard counts")
check(np.array_equal(x1, x3) and np.array_equal(y1, y3), "gmm: 1 and 3 ranks write the same rows and labels")
check(np.array_equal(x1, x5.astype(np.float32)) and np.array_equal(y1, y5),
      "gmm: 3 and 5 shards (float32 vs float64) hold the same rows")
check(os.path.isfile(T("g1.truth.h5")) and not os.path.exists(T("g5.truth.h5")), "gmm: true model beside the data (or none)")
with h5py.File(T("g1.truth.h5")) as t:
    w, mu, cov = t["weights"][...], t["means"][...], t["covariances"][...]
check(abs(w.sum() - 1) < 1e-12 and np.all(np.abs(mu) <= 10) and np.all((cov >= 0.0625 - 1e-12) & (cov <= 0.5625 + 1e-12)),
      "gmm: true weights sum to 1, means in the box, variances in (cluster_std (0.5..1.5))^2")
run(["sample", "--model", T("g1.truth.h5"), "--n-samples", "50", "--seed", "7", "--output", T("s.h5")])
with h5py.File(T("s.h5")) as s:
    check(np.allclose(s["data"][...], x1[:50], rtol=0, atol=1e-5) and np.array_equal(s["labels"][...], y1[:50]),
          "gmm: `latent sample` of the true model with the seed gives the generated rows")
run(["fit", "gmm", "--data", T("g1"), "--output", T("fit.h5"), "--n-components", "4", "--covariance-type", "diag",
     "--threads", "1"])
with h5py.File(T("fit.h5")) as f:
    fw, fmu = f["weights"][...], f["means"][...]
best = min(itertools.permutations(range(4)), key=lambda p: np.abs(fmu[list(p)] - mu).max())
check(np.abs(fmu[list(best)] - mu).max() < 0.05 and np.abs(fw[list(best)] - w).max() < 0.02,
      f"gmm: a fit recovers the true means ({np.abs(fmu[list(best)] - mu).max():.3g}) and weights "
      f"({np.abs(fw[list(best)] - w).max():.3g})")

# refusals: nothing created, nothing left
run(gen + ["--output", T("g1")], expect=73)
run(gen + ["--output", T("g6"), "--true-model", T("g1.truth.h5")], expect=73)
run(gen + ["--output", T("g7"), "--shards", "7000"], expect=64)
run(["generate", "gmm", "--n-samples", "10", "--n-features", "0", "--n-components", "2", "--output", T("g8")], expect=64)
# The true model cannot be written (its directory is missing): the temporary shard directory goes too.
run(gen + ["--output", T("g9"), "--true-model", T("missing", "t.h5")], ranks=2, expect=73)
left = sorted(os.listdir(tmp))
check(not any(n.startswith(("g6", "g7", "g8", "g9")) for n in left), f"refused or failed runs leave nothing ({left})")

# ---------------------------------------------------------------- generate lda
lgen = ["generate", "lda", "--n-samples", "900", "--vocab-size", "300", "--n-components", "5", "--doc-length", "40"]
run(lgen + ["--shards", "4", "--output", T("l1")])
run(["generate", "lda", "--n-documents", "900", "--vocab-size", "300", "--n-topics", "5", "--doc-length", "40",
     "--shards", "3", "--output", T("l3")], ranks=3)
run(["generate", "lda", "--n-documents", "900", "--vocab-size", "300", "--n-topics", "5", "--doc-length", "40",
     "--docs-per-shard", "300", "--output", T("l2"), "--true-model", "none"], ranks=2)
d1, lab1, s1 = csr(T("l1"))
d2, _, s2 = csr(T("l2"))
check(s2 == 3 and d2 == d1, "lda: --docs-per-shard (the old name of --rows-per-shard) sets the shard size")
d3, lab3, s3 = csr(T("l3"))
check(s1 == 4 and s3 == 3 and d1 == d3 and lab1 == lab3, "lda: the same documents for 1 rank x 4 shards and 3 ranks x 3 shards")
check(all(len(i) > 0 and list(i) == sorted(set(i)) for i, _ in d1), "lda: word ids sorted and unique in every document")
check(abs(np.mean([sum(c) for _, c in d1]) - 40) < 2, "lda: mean document length near --doc-length")
with open(T("l1", "vocabulary.txt")) as f:
    check(f.read().split() == [f"w{i}" for i in range(300)], "lda: vocabulary.txt")
with h5py.File(T("l1.truth.h5")) as t:
    comp = t["components"][...]
check(comp.shape == (5, 300) and np.allclose(comp.sum(1), 1), "lda: true topics (rows of beta) beside the data")

# ---------------------------------------------------------------- --profile
KEYS = ["seconds", "read_wait_seconds", "read_seconds", "compute_seconds", "allreduce_seconds", "m_step_seconds",
        "allreduce_bytes", "collectives", "max_rss_bytes", "settled_rows", "kmeans_rows"]


def profile_log(path, ranks, model):
    lines = [json.loads(s) for s in open(path)]
    its = [j for j in lines if j["event"] == "iteration"]
    done = [j for j in lines if j["event"] == "done"]
    ok = bool(its) and len(done) == 1 and all(all(len(j["profile"][k]) == ranks for k in KEYS) for j in its)
    check(ok, f"{model} x{ranks}: profile fields, one entry per rank")
    if not ok:
        return its, done
    parts = all(abs(sum(j["profile"][k][r] for k in KEYS[1:2] + KEYS[3:6]) - j["profile"]["seconds"][r]) < 1e-6
                for j in its for r in range(ranks))
    check(parts, f"{model} x{ranks}: read wait + compute + allreduce + M-step = iteration seconds")
    check(all(min(j["profile"][k]) >= 0 for j in its for k in KEYS) and all(j["ranks"] == ranks for j in its),
          f"{model} x{ranks}: no negative times")
    tot = done[0]["profile_total"]
    check(all(tot["collectives"][r] >= sum(j["profile"]["collectives"][r] for j in its) for r in range(ranks)) and
          all(tot["max_rss_bytes"][r] >= max(j["profile"]["max_rss_bytes"][r] for j in its) > 0 for r in range(ranks)),
          f"{model} x{ranks}: totals cover the iterations; peak RSS reported")
    return its, done


fit = ["fit", "gmm", "--data", T("g1"), "--n-components", "4", "--covariance-type", "diag", "--init-params", "random",
       "--max-iter", "4", "--tol", "0", "--threads", "1", "--profile", "--block-rows", "500", "--overwrite"]
run(fit + ["--output", T("p1.h5"), "--log-json", T("p1.jsonl")])
its1, _ = profile_log(T("p1.jsonl"), 1, "gmm")
check(all(j["profile"]["allreduce_bytes"] == [0.0] and j["profile"]["collectives"] == [0.0] for j in its1),
      "gmm x1: no collectives on one rank")
check(all(j["profile"]["settled_rows"] == [0.0] for j in its1), "gmm x1 (random start): no distance bounds")
r = run(fit + ["--output", T("p2.h5"), "--log-json", T("p2.jsonl")], ranks=2)
check("profile (mean over 2 rank(s))" in r.stderr, "gmm x2: a profile summary line at the end")
its2, _ = profile_log(T("p2.jsonl"), 2, "gmm")
# EM iterations (the last 3 of 4) each allreduce the statistics once (K (1 + 2D) + 1 exact cells)
# after agreeing on errors: the same bytes on every rank and iteration.
b = [tuple(j["profile"]["allreduce_bytes"]) for j in its2[1:]]
check(len(set(b)) == 1 and b[0][0] == b[0][1] and b[0][0] > 8 * (4 * 25), f"gmm x2: bytes per EM iteration {b[0]}")
check(all(max(j["profile"]["read_seconds"]) > 0 for j in its2), "gmm x2: the I/O thread's reading is timed")

run(["fit", "lda", "--data", T("l1"), "--output", T("lda.h5"), "--n-components", "5", "--method", "online",
     "--batch-size", "100", "--max-iter", "2", "--threads", "1", "--profile", "--log-json", T("lda.jsonl")], ranks=2)
its, _ = profile_log(T("lda.jsonl"), 2, "lda")
check(all(min(j["profile"]["collectives"]) >= 9 and min(j["profile"]["m_step_seconds"]) > 0 for j in its),
      "lda x2: at least one exchange per minibatch (9 per pass) and the M-step timed")
run(["fit", "vae", "--data", T("g1"), "--output", T("vae.h5"), "--likelihood", "gaussian", "--hidden", "16",
     "--latent-dim", "2", "--epochs", "2", "--threads", "1", "--profile", "--log-json", T("vae.jsonl")], ranks=2)
its, _ = profile_log(T("vae.jsonl"), 2, "vae")
check(all(j["profile"]["settled_rows"] == [0.0, 0.0] for j in its), "vae x2: no distance bounds")
# k-means' distance bounds: none on the first iteration (no bounds yet), then at most every
# local row; by the last of 15 iterations on well-separated clusters, most rows settle.
r = run(["fit", "kmeans", "--data", T("g1"), "--output", T("km.h5"), "--n-clusters", "4", "--max-iter", "15",
         "--tol", "0", "--threads", "1", "--block-rows", "500", "--profile", "--log-json", T("km.jsonl")], ranks=2)
its, _ = profile_log(T("km.jsonl"), 2, "kmeans")
settled = [sum(j["profile"]["settled_rows"]) for j in its]
rows = round(its[-1]["samples_per_second"] * its[-1]["seconds"])
check(len(its) == 15 and settled[0] == 0 and all(0 <= s <= rows for s in settled) and settled[-1] > rows // 2,
      f"kmeans x2: rows the bounds settle per iteration {settled} of {rows}")
check("distance bounds settled" in r.stderr, "kmeans x2: the share the bounds settled in the summary")
check(all(sum(j["profile"]["kmeans_rows"]) == rows for j in its), "kmeans x2: every row visited once an iteration")
# A mixture's k-means start: its bounds' share is of its own row visits (it was once of the
# mixture's iterations' rows, and read 395 %).
r = run(["fit", "gmm", "--data", T("g1"), "--output", T("gkm.h5"), "--n-components", "4", "--max-iter", "2",
         "--threads", "1", "--block-rows", "500", "--profile"], ranks=1)
share = re.search(r"distance bounds settled ([0-9.]+) % of this run's ([0-9]+) k-means row visits", r.stderr)
check(r.returncode == 0 and share is not None and 0 < float(share.group(1)) <= 100 and int(share.group(2)) > rows,
      f"gmm (k-means start): the bounds' share of the k-means row visits {share and share.groups()}")
# --algorithm lloyd keeps no bounds (no row settled) and gives the model of the bounds' fit.
r = run(["fit", "kmeans", "--data", T("g1"), "--output", T("kml.h5"), "--n-clusters", "4", "--max-iter", "15",
         "--tol", "0", "--threads", "1", "--block-rows", "500", "--profile", "--log-json", T("kml.jsonl"),
         "--algorithm", "lloyd"], ranks=2)
its_l, _ = profile_log(T("kml.jsonl"), 2, "kmeans lloyd")
with h5py.File(T("km.h5")) as a, h5py.File(T("kml.h5")) as b:
    same = (r.returncode == 0 and np.array_equal(a["cluster_centers"][...], b["cluster_centers"][...]) and
            a.attrs["inertia"] == b.attrs["inertia"] and
            np.array_equal(a["history/objective"][...], b["history/objective"][...]))
check(len(its_l) == 15 and all(j["profile"]["settled_rows"] == [0.0, 0.0] for j in its_l) and same,
      "kmeans x2 --algorithm lloyd: no rows settled, the same centres, inertia and objectives as elkan")
r = run(["fit", "kmeans", "--data", T("g1"), "--output", T("kmx.h5"), "--n-clusters", "4", "--algorithm", "hamerly"],
        expect=64)
check(r.returncode == 64 and "algorithm" in r.stderr and not os.path.exists(T("kmx.h5")),
      "kmeans --algorithm hamerly refused (exit 64), no output")
check(all(min(j["profile"]["m_step_seconds"]) > 0 for j in its), "vae x2: optimiser steps timed")

H.finish()
