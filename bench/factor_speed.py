#!/usr/bin/python3
"""Speed: PPCA and factor analysis fits, latent vs scikit-learn, one core.

What it measures (Fashion-MNIST train, 60000 x 784 pixels in [0, 1], L = 50 components)
  latent: `latent fit fa|ppca --n-components 50 --threads 1` on 1 MPI rank, wall time of
          the whole command (summary pass, scatter-matrix pass, EM to --tol 1e-6 nats/sample
          or 1000 iterations, model file), data from the page cache; median of --repeats.
  scikit-learn (data already in memory as float64): FactorAnalysis(50, random_state=0)
          .fit(X) (its defaults: tol 1e-2, randomized SVD) and PCA(50, random_state=0).fit(X)
          (svd_solver auto = randomized here); median of --repeats; one BLAS thread.
          Run under each BLAS asked for: "openblas-serial" (LD_LIBRARY_PATH=
          /usr/lib/x86_64-linux-gnu/openblas-serial, the fast reference) and, with
          --blas system,openblas-serial, whatever libblas.so.3 resolves to.
  Quality, so that the speed is not bought with a worse fit: the training mean
  log-likelihood (nats/sample) of each fitted model, latent's from `latent score`,
  scikit-learn's from score(X) (for PCA the PPCA likelihood of its estimate, which uses
  the N-1 covariance), and the held-out log-likelihood on the 10000 test images.
  Ratio printed: scikit-learn seconds / latent seconds. Target: >= 5x for FA.

How to run (binary built; an idle machine)
  /usr/bin/python3 bench/factor_speed.py [--repeats 3] [--blas openblas-serial] [--components 50]
  Results: bench/results/factor_speed.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
common.ensure_tuned_blas()  # references on a tuned BLAS (OPENBLAS_CORETYPE), before numpy loads

LIBDIR = Path("/usr/lib/x86_64-linux-gnu")
BLAS = {"system": None, "openblas-serial": LIBDIR / "openblas-serial"}

WORKER = r"""
import json, os, sys, time, warnings
for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"): os.environ[v] = "1"
sys.path.insert(0, sys.argv[1])
import common, numpy as np
from sklearn.decomposition import FactorAnalysis, PCA
spec = json.loads(sys.argv[2])
X, _ = common.load_shards(spec["train"], with_labels=False)
T, _ = common.load_shards(spec["test"], with_labels=False)
out = {}
for name in spec["models"]:
    times, model = [], None
    for _ in range(spec["repeats"]):
        m = FactorAnalysis(spec["L"], random_state=0) if name == "fa" else PCA(spec["L"], random_state=0)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.fit(X)
        times.append(time.perf_counter() - t0)
        model = m
    out[name] = {"seconds": times, "train_ll": float(model.score(X)), "test_ll": float(model.score(T)),
                 "n_iter": int(getattr(model, "n_iter_", 0))}
print(json.dumps(out))
"""


def sklearn_run(spec: dict, blas: str) -> dict:
    env = dict(os.environ)
    if BLAS[blas]:
        env["LD_LIBRARY_PATH"] = str(BLAS[blas]) + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    res = subprocess.run(["/usr/bin/python3", "-c", WORKER, str(Path(__file__).resolve().parent), json.dumps(spec)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--components", type=int, default=50)
    ap.add_argument("--blas", default="openblas-serial")
    ap.add_argument("--models", default="fa,ppca")
    args = ap.parse_args()
    busy = common.warn_if_busy()
    train = common.import_fashion_mnist("train")
    test = common.import_fashion_mnist("test")
    models = args.models.split(",")
    results = {"components": args.components, "load_before": busy, "latent": {}, "sklearn": {}}
    with tempfile.TemporaryDirectory() as d:
        for m in models:
            times = []
            for r in range(args.repeats):
                res = common.run_latent(["fit", m, "--data", train, "--output", f"{d}/{m}.h5", "--overwrite",
                                         "--n-components", args.components, "--threads", 1], capture=True)
                times.append(res.seconds)
            s_train = common.score(Path(f"{d}/{m}.h5"), train)
            s_test = common.score(Path(f"{d}/{m}.h5"), test)
            attrs = common.model_attrs(Path(f"{d}/{m}.h5"))
            results["latent"][m] = {"seconds": times, "train_ll": s_train["mean_log_likelihood"],
                                    "test_ll": s_test["mean_log_likelihood"], "n_iter": attrs.get("n_iter")}
    spec = {"train": str(train), "test": str(test), "L": args.components, "repeats": args.repeats,
            "models": models}
    for blas in args.blas.split(","):
        print(f"scikit-learn with BLAS {blas} ...", file=sys.stderr, flush=True)
        results["sklearn"][blas] = sklearn_run(spec, blas)
    rows = []
    for m in models:
        ours = results["latent"][m]
        t_ours = statistics.median(ours["seconds"])
        for blas, sk in results["sklearn"].items():
            ref = sk[m]
            t_ref = statistics.median(ref["seconds"])
            ratio = t_ref / t_ours
            results.setdefault("ratios", {})[f"{m}/{blas}"] = ratio
            rows.append([m, blas, f"{t_ours:.2f}", f"{t_ref:.2f}", f"{ratio:.1f}x", f"{ours['train_ll']:.2f}",
                         f"{ref['train_ll']:.2f}", f"{ours['test_ll']:.2f}", f"{ref['test_ll']:.2f}",
                         f"{ours['n_iter']}/{ref['n_iter']}"])
    common.print_table(rows, ["model", "sklearn BLAS", "latent s", "sklearn s", "ratio", "latent train ll",
                              "sklearn train ll", "latent test ll", "sklearn test ll", "iterations"])
    fa_ratio = results.get("ratios", {}).get("fa/openblas-serial")
    if fa_ratio is not None:
        print(f"FA: latent is {fa_ratio:.1f}x faster than scikit-learn with OpenBLAS on one core (target >= 5x): "
              f"{'met' if fa_ratio >= 5 else 'NOT met'}")
    common.write_results("factor_speed", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
