#!/usr/bin/python3
"""A stop signal during the initialisation (issue 19): k-means|| seeding and the k-means
that starts a GMM are interruptible.

- `fit kmeans` (K = 50, seeding a few seconds long) and `fit gmm` (its k-means start) get
  SIGTERM at 40 % of their initialisation, timed from an uninterrupted fit's first
  iteration line: they exit 75 within 2 s of the signal and before 90 % of that time,
  saying they stopped during the initialisation, with a checkpoint; `--resume` (kmeans on 2 ranks) writes a model file
  with the same content (every dataset and attribute but wall-clock times) as the
  uninterrupted fit. Before, the stop waited for the whole initialisation and EM
  iteration 1.
- Deterministically, with `--checkpoint-interval` tiny (a checkpoint at every point of
  the initialisation): gmm, kmeans, bgmm and mfa with --n-init 2 resumed from the last
  checkpoint taken inside the initialisation of restart 1 or 2 give the same content.
Usage: init_stop_cli_test.py LATENT MPIEXEC (exits 77 without h5py).
"""
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

try:
    import h5py  # noqa: F401  (golden_models needs it)
except ImportError:
    print("h5py not available: skipped")
    sys.exit(77)

from clitest import Harness  # noqa: E402  (tests/cli/clitest.py)
from golden_models import content_hash  # noqa: E402

H = Harness(sys.argv[1], sys.argv[2])
check, run = H.check, H.run
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def timed(args, signal_after=None):
    """Runs latent ARGS on one rank. Returns (exit code, stderr, seconds until the first
    iteration line or None, seconds from the signal to the exit or None)."""
    t0 = time.monotonic()
    p = subprocess.Popen([H.latent] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    lines, first = [], []

    def read():
        for line in p.stderr:
            lines.append(line)
            if not first and line.startswith("iter "):
                first.append(time.monotonic() - t0)

    reader = threading.Thread(target=read)
    reader.start()
    latency = None
    if signal_after is not None:
        time.sleep(signal_after)
        sent = time.monotonic()
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=600)
        latency = time.monotonic() - sent
    code = p.wait(timeout=600)
    reader.join()
    return code, "".join(lines), first[0] if first else None, latency


with tempfile.TemporaryDirectory() as tmp:
    data = f"{tmp}/big"
    run(["generate", "gmm", "--n-samples", "800000", "--n-features", "16", "--n-components", "20", "--dtype",
         "float32", "--seed", "2", "--output", data, "--true-model", "none"])
    cases = {
        "kmeans": ["fit", "kmeans", "--n-clusters", "50", "--max-iter", "3", "--tol", "0"],
        "gmm": ["fit", "gmm", "--n-components", "20", "--covariance-type", "diag", "--max-iter", "2"],
    }
    for name, fit in cases.items():
        args = fit + ["--data", data, "--threads", "1"]
        code, err, t_init, _ = timed(args + ["--output", f"{tmp}/{name}-ref.h5"])
        check(code == 0 and t_init is not None, f"{name}: uninterrupted fit (exit {code})")
        if t_init is None:
            continue
        print(f"     {name}: the initialisation takes {t_init:.2f} s")
        ckpt = f"{tmp}/{name}-ckpt"
        at = 0.4 * t_init
        code, err, _, latency = timed(args + ["--output", f"{tmp}/{name}.h5", "--checkpoint-dir", ckpt],
                                      signal_after=at)
        check(code == 75 and "during initialisation 1" in err,
              f"{name}: SIGTERM at {at:.2f} s: exit {code}, stopped during the initialisation"
              + ("" if code == 75 else f": {err[-500:]}"))
        # Within one pass over the data: well before the initialisation would have ended.
        check(latency < 2.0 and at + latency < 0.9 * t_init,
              f"{name}: exited {latency:.2f} s after the signal (< 2 s, and before {0.9 * t_init:.2f} s)")
        check(os.path.exists(f"{ckpt}/ckpt-000-000000.h5") and not os.path.exists(f"{tmp}/{name}.h5"),
              f"{name}: a checkpoint of the initialisation, no model file")
        ranks = 2 if name == "kmeans" else 1
        r = run(args + ["--output", f"{tmp}/{name}.h5", "--checkpoint-dir", ckpt, "--resume"], ranks=ranks)
        same = r.returncode == 0 and content_hash(f"{tmp}/{name}.h5") == content_hash(f"{tmp}/{name}-ref.h5")
        check(same and "resuming from" in r.stderr,
              f"{name}: resumed on {ranks} rank(s): the same model as the uninterrupted fit")

    # A checkpoint at every point of the initialisation (--checkpoint-interval tiny); resume
    # from the last one taken inside restart 1's or restart 2's initialisation.
    small = f"{tmp}/small"
    run(["generate", "gmm", "--n-samples", "20000", "--n-features", "6", "--n-components", "5", "--seed", "4",
         "--output", small, "--true-model", "none"])
    cases = {
        "gmm": ["fit", "gmm", "--n-components", "5", "--n-init", "2", "--max-iter", "20"],
        "kmeans": ["fit", "kmeans", "--n-clusters", "5", "--n-init", "2", "--max-iter", "20"],
        "bgmm": ["fit", "bgmm", "--n-components", "5", "--n-init", "2", "--max-iter", "20"],
        "mfa": ["fit", "mfa", "--n-components", "5", "--n-factors", "2", "--n-init", "2", "--max-iter", "20"],
    }
    for name, fit in cases.items():
        args = fit + ["--data", small, "--block-rows", "1000"]
        run(args + ["--output", f"{tmp}/{name}-small-ref.h5"])
        ckpt = f"{tmp}/{name}-every"
        run(args + ["--output", f"{tmp}/{name}-every.h5", "--checkpoint-dir", ckpt, "--checkpoint-interval", "1e-9",
                    "--keep-checkpoints", "1000"])
        for restart in (0, 1):
            last = f"ckpt-{restart:03d}-000000.h5"
            check(os.path.exists(f"{ckpt}/{last}"), f"{name}: {last} written inside initialisation {restart + 1}")
            with h5py.File(f"{ckpt}/{last}") as f:
                names = f["scalars"].attrs["names"]
                names = names.decode() if isinstance(names, bytes) else names
            check("in_init" in names.split("\n"), f"{name}: {last} holds the initialisation's state")
            resumed = f"{tmp}/{name}-resume{restart}"
            os.makedirs(resumed)
            for c in sorted(os.listdir(ckpt)):
                if c <= last:
                    os.link(f"{ckpt}/{c}", f"{resumed}/{c}")
            r = run(args + ["--output", f"{resumed}.h5", "--checkpoint-dir", resumed, "--resume"])
            same = r.returncode == 0 and content_hash(f"{resumed}.h5") == content_hash(f"{tmp}/{name}-small-ref.h5")
            check(same and f"resuming from {resumed}/{last}" in r.stderr,
                  f"{name}: resumed from {last}: the same model as the uninterrupted fit")

H.finish()
