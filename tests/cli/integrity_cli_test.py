"""Resume integrity (issue 19): a checkpoint records a content hash of every shard, so a
resume on data whose bytes changed (same names, shapes and file sizes) is refused naming
the shard, while a byte-identical copy in another directory resumes to the same model.
Covers every way a fit validates its data: the dense summary pass (gmm, kmeans), the VAE's,
LDA's and the multinomial mixture's.

Usage: integrity_cli_test.py LATENT MPIEXEC
"""
import os
import shutil
import sys
import tempfile

import h5py
import numpy as np

from clitest import Harness

H = Harness(sys.argv[1], sys.argv[2])
check, run = H.check, H.run
work = tempfile.mkdtemp(prefix="latent-integrity-")


def datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def same_model(a, b):
    x, y = datasets(a), datasets(b)
    return x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)


def tamper(directory, shard, dataset, index, delta):
    """Changes one stored value in place; the file keeps its size (contiguous storage)."""
    path = os.path.join(directory, shard)
    size = os.path.getsize(path)
    with h5py.File(path, "r+") as f:
        f[dataset][index] = f[dataset][index] + delta
    assert os.path.getsize(path) == size, "the tampered shard changed size: the test would not isolate the content hash"


dense, counts = os.path.join(work, "dense"), os.path.join(work, "counts")
run(["generate", "gmm", "--n-samples", "3000", "--n-features", "5", "--n-components", "3", "--shards", "3",
     "--output", dense, "--true-model", "none"])
run(["generate", "lda", "--n-samples", "600", "--vocab-size", "50", "--n-components", "3", "--shards", "2",
     "--output", counts, "--true-model", "none"])

cases = [
    ("gmm", dense, ["--n-components", "3", "--max-iter", "4"], ("part-00001.h5", "data", (7, 2), 0.5)),
    ("kmeans", dense, ["--n-clusters", "3", "--max-iter", "4"], ("part-00002.h5", "data", (0, 0), 1.0)),
    ("vae", dense, ["--latent-dim", "2", "--hidden", "8", "--epochs", "2", "--likelihood", "gaussian"],
     ("part-00000.h5", "data", (11, 4), 0.25)),
    ("lda", counts, ["--n-components", "3", "--max-iter", "2", "--method", "online", "--batch-size", "100"],
     ("part-00001.h5", "data", (5,), 1.0)),
    ("mmm", counts, ["--n-components", "3", "--max-iter", "3"], ("part-00000.h5", "data", (9,), 1.0)),
]
for model, data, opts, (shard, dataset, index, delta) in cases:
    d = os.path.join(work, model)
    os.makedirs(d)
    ck = os.path.join(d, "ck")
    first = os.path.join(d, "first.h5")
    r = run(["fit", model, "--data", data, "--output", first, "--checkpoint-dir", ck, "--seed", "3"] + opts)
    if r.returncode != 0:
        continue
    # A byte-identical copy elsewhere resumes (on 2 ranks) to the same model.
    copy = os.path.join(d, "copy")
    shutil.copytree(data, copy)
    again = os.path.join(d, "again.h5")
    r = run(["fit", model, "--data", copy, "--output", again, "--checkpoint-dir", ck, "--seed", "3", "--resume"] + opts,
            ranks=2)
    check(r.returncode == 0 and same_model(first, again), f"{model}: resume on an identical copy of the data gives the same model")
    # One value changed, same size: refused (64) naming the shard, nothing written.
    changed = os.path.join(d, "changed")
    shutil.copytree(data, changed)
    tamper(changed, shard, dataset, index, delta)
    out = os.path.join(d, "changed.h5")
    r = run(["fit", model, "--data", changed, "--output", out, "--checkpoint-dir", ck, "--seed", "3", "--resume"] + opts,
            ranks=2, expect=64)
    check(r.returncode == 64 and shard in r.stderr and "contents" in r.stderr and not os.path.exists(out),
          f"{model}: resume on data with one value changed in {shard} is refused naming it (exit {r.returncode})")
    if r.returncode == 64:
        print("   ", [l for l in r.stderr.splitlines() if "cannot resume" in l][:1])

shutil.rmtree(work)
H.finish()
