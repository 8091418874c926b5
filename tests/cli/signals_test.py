"""SIGTERM and SIGUSR1 stop every long command promptly (issue 19 item 5): import dense,
import counts, generate, predict, transform, sample, select, on 1 and 2 ranks, exit 75
within a few seconds of the signal, leaving no output and no temporary (select: the
finished candidates listed on stdout and kept in --output-dir).

Usage: signals_test.py LATENT MPIEXEC
"""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from clitest import Harness

H = Harness(sys.argv[1], sys.argv[2])
check, run = H.check, H.run
work = tempfile.mkdtemp(prefix="latent-signals-")
env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def stopped(name, args, ranks, signo, out_dir, leftovers, after=1.0, limit=5.0):
    """Starts the command, signals every rank after `after` s, and checks it exits 75
    within `limit` s leaving nothing matching `leftovers` (globs in out_dir)."""
    cmd = ([H.mpiexec, "--oversubscribe", "-n", str(ranks)] if ranks > 1 else []) + [H.latent] + args
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(after)
    if p.poll() is not None:
        check(False, f"{name}: finished before the signal (exit {p.returncode}): make the input larger")
        return None
    if ranks > 1:  # as SLURM does: the signal goes to every rank
        for pid in subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split():
            os.kill(int(pid), signo)
    else:
        os.kill(p.pid, signo)
    t0 = time.time()
    try:
        out, err = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    took = time.time() - t0
    left = [f for g in leftovers for f in glob.glob(os.path.join(out_dir, g))]
    ok = p.returncode == 75 and took < limit and not left
    check(ok, f"{name} ({ranks} rank(s), {signal.Signals(signo).name}): exit {p.returncode} {took:.2f} s after the "
              f"signal, left {left}")
    if not ok:
        print(err[-2000:])
    return out


data = os.path.join(work, "data")
run(["generate", "gmm", "--n-samples", "2000000", "--n-features", "16", "--n-components", "8", "--output", data,
     "--true-model", "none", "--shards", "8"], ranks=2)
run(["fit", "gmm", "--data", data, "--n-components", "8", "--max-iter", "2", "--covariance-type", "diag",
     "--output", os.path.join(work, "model.h5")])
model = os.path.join(work, "model.h5")
out = os.path.join(work, "out")
os.makedirs(out)

with open(os.path.join(work, "x.csv"), "w") as f:
    row = ",".join(["0.125"] * 30) + "\n"
    for _ in range(600000):
        f.write(row)
with open(os.path.join(work, "docs.txt"), "w") as f:
    for i in range(400000):
        f.write(f"the quick brown fox {i % 977} jumps over the lazy dog {i % 131} again and again\n")

stopped("import dense", ["import", "dense", "--format", "csv", "--input", os.path.join(work, "x.csv"), "--output",
        os.path.join(out, "imported")], 1, signal.SIGTERM, out, ["imported*"], after=0.5)
stopped("import counts", ["import", "counts", "--format", "text", "--input", os.path.join(work, "docs.txt"), "--output",
        os.path.join(out, "corpus")], 1, signal.SIGTERM, out, ["corpus*"], after=0.5)
for ranks, signo in ((1, signal.SIGTERM), (2, signal.SIGUSR1)):
    stopped("generate gmm", ["generate", "gmm", "--n-samples", "40000000", "--n-features", "16", "--n-components", "4",
            "--output", os.path.join(out, "gen"), "--true-model", "none"], ranks, signo, out, ["gen*"])
    stopped("generate lda", ["generate", "lda", "--n-samples", "4000000", "--vocab-size", "5000", "--n-components", "20",
            "--output", os.path.join(out, "genc"), "--true-model", "none"], ranks, signo, out, ["genc*"])
    for task in (["predict", "--proba"], ["transform"], ["score", "--per-sample"]):
        stopped(" ".join(task), task + ["--model", model, "--data", data, "--output", os.path.join(out, "o.h5")], ranks,
                signo, out, ["o.h5*"], after=0.3)
    stopped("sample", ["sample", "--model", model, "--n-samples", "30000000", "--output", os.path.join(out, "s.h5")],
            ranks, signo, out, ["s.h5*"], after=0.3)

# select: the candidates finished before the signal are reported and kept.
sel = os.path.join(out, "sel")
small = os.path.join(work, "small")
run(["generate", "gmm", "--n-samples", "100000", "--n-features", "8", "--n-components", "4", "--output", small,
     "--true-model", "none"])
text = stopped("select", ["select", "gmm", "--data", small, "--n-components", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20",
               "--max-iter", "100", "--tol", "0", "--output-dir", sel], 2, signal.SIGTERM, out, ["sel/*.tmp-*"], after=6.0,
               limit=20.0)
if text is not None:
    try:
        report = json.loads(text.strip().splitlines()[-1])
        files = sorted(glob.glob(os.path.join(sel, "*.h5")))
        check(report.get("stopped") is True and 0 < len(report["candidates"]) < 20 and
              len(files) == len(report["candidates"]) and all(os.path.exists(c["model_file"]) for c in report["candidates"]),
              f"select: {len(report['candidates'])} finished candidate(s) reported and kept ({len(files)} files)")
    except (ValueError, KeyError, IndexError) as e:
        check(False, f"select: no report of the finished candidates on stdout ({e}): {text[-500:]}")

shutil.rmtree(work)
H.finish()
