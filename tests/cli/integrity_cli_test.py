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


def text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def same_model(a, b):
    """Every dataset bitwise equal, but the history's timings."""
    x, y = datasets(a), datasets(b)
    x = {k: v for k, v in x.items() if "second" not in k}
    y = {k: v for k, v in y.items() if "second" not in k}
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

# Two fits on one --checkpoint-dir (issue 19 item 3): the directory is locked for the life
# of a fit; the second exits 73 naming the holder and touches nothing.
import glob
import signal
import subprocess
import time

ck = os.path.join(work, "shared-ck")
gmm = ["fit", "gmm", "--data", dense, "--n-components", "3", "--max-iter", "50", "--tol", "0", "--seed", "5"]
env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           LATENT_FAULT="rank=0,iteration=3,kind=hang")
holder = subprocess.Popen([H.latent] + gmm + ["--output", os.path.join(work, "a.h5"), "--checkpoint-dir", ck], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
deadline = time.time() + 60
while time.time() < deadline and len(glob.glob(os.path.join(ck, "ckpt-*.h5"))) < 2:
    time.sleep(0.1)
time.sleep(0.5)
before = {p: open(p, "rb").read() for p in glob.glob(os.path.join(ck, "ckpt-*.h5"))}
check(len(before) == 2, f"the first fit wrote its checkpoints and holds the directory ({len(before)} files)")
for extra in ([], ["--resume"]):
    r = run(gmm + ["--output", os.path.join(work, "b.h5"), "--checkpoint-dir", ck] + extra, expect=73)
    check(r.returncode == 73 and "another job is using it" in r.stderr and f"pid {holder.pid}" in r.stderr
          and not os.path.exists(os.path.join(work, "b.h5")),
          f"a second fit {' '.join(extra)} on a locked --checkpoint-dir exits 73 naming the holder (pid {holder.pid})")
after = {p: open(p, "rb").read() for p in glob.glob(os.path.join(ck, "ckpt-*.h5"))}
check(before == after, "the holder's checkpoints are untouched")
holder.send_signal(signal.SIGKILL)
holder.wait()

# With the holder gone: a fresh fit (no --resume) over its checkpoints is refused (73),
# nothing changed; --resume continues the same run (its identity is kept).
r = run(gmm + ["--output", os.path.join(work, "c.h5"), "--checkpoint-dir", ck], expect=73)
check(r.returncode == 73 and "holds the checkpoints of an earlier fit" in r.stderr and
      {p: open(p, "rb").read() for p in glob.glob(os.path.join(ck, "ckpt-*.h5"))} == before,
      "a fresh fit over another fit's checkpoints is refused and changes nothing")
ids = set()
for p in before:
    with h5py.File(p, "r") as f:
        ids.add((text(f.attrs["run_id"]), text(f.attrs["output"])))
check(len(ids) == 1 and len(next(iter(ids))[0]) == 16, f"every checkpoint of a run records one run identity: {ids}")
r = run(gmm + ["--output", os.path.join(work, "a.h5"), "--checkpoint-dir", ck, "--resume"])
latest = sorted(glob.glob(os.path.join(ck, "ckpt-*.h5")))[-1]
with h5py.File(latest, "r") as f:
    resumed_id, writer = text(f.attrs["run_id"]), text(f.attrs["writer"])
check(r.returncode == 0 and resumed_id == next(iter(ids))[0] and f"pid {holder.pid} " not in writer + " ",
      "the resumed fit continues the run's identity (written by another process)")
undisturbed = os.path.join(work, "u.h5")
run(gmm + ["--output", undisturbed])
check(same_model(undisturbed, os.path.join(work, "a.h5")), "the resumed fit equals an undisturbed one")
check(not os.path.exists(os.path.join(ck, ".lock")), "the lock file is removed when the fit ends")

# Stale temporaries (issue 19 item 7): a command sweeps its output directory of the
# *.tmp-<host>-<pid> files and directories whose process on this host is gone, and nothing
# else. Then a predict whose output is locked by another process exits 73 (item 4).
import fcntl
import socket

host = socket.gethostname()
dead = subprocess.Popen(["true"])
dead.wait()
out_dir = os.path.join(work, "outputs")
os.makedirs(out_dir)
stale = [f"old.h5.tmp-{host}-{dead.pid}", f"labels.h5.part-1-of-2.tmp-{host}-{dead.pid}", f"shards.tmp-{host}-{dead.pid}"]
kept = [f"live.h5.tmp-{host}-1", f"other.h5.tmp-elsewhere-{dead.pid}", f"legacy.h5.tmp-{dead.pid}", "mine.h5"]
for name in stale + kept:
    if name.startswith("shards"):
        os.makedirs(os.path.join(out_dir, name))
        open(os.path.join(out_dir, name, "part-00000.h5"), "w").write("partial")
    else:
        open(os.path.join(out_dir, name), "w").write("x")
model = os.path.join(work, "gmm", "first.h5")
r = run(["predict", "--model", model, "--data", dense, "--output", os.path.join(out_dir, "labels.h5")], ranks=2)
left = sorted(os.listdir(out_dir))
check(r.returncode == 0 and all(n not in left for n in stale) and all(n in left for n in kept),
      f"predict swept the dead process's temporaries only: {left}")
check(not any(".part-" in n for n in left), "no part file is left after predict")

locked = os.path.join(out_dir, "locked.h5")
with open(locked + ".lock", "w") as held:
    fcntl.lockf(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    r = run(["predict", "--model", model, "--data", dense, "--output", locked], ranks=2, expect=73)
    check(r.returncode == 73 and "another job is writing it" in r.stderr and not os.path.exists(locked)
          and not any(".part-" in n for n in os.listdir(out_dir)),
          "predict on an output another process holds exits 73 and writes nothing")

shutil.rmtree(work)
H.finish()
