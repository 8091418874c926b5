#!/usr/bin/python3
"""Fashion-MNIST: a mixture of factor analysers beside a diagonal GMM and factor analysis
(issue 18, "The proof").

Fitted on the 60000 train images (pixels in [0, 1]) on 2 ranks, scored on the 10000 test
images, all in the same run:
  - mfa   K = 10, L = 10 (diagonal noise)
  - gmm   K = 10, --covariance-type diag
  - fa    L = 50
Every variance is regularised by 1e-3 (gmm/mfa --reg-covar, fa --noise-variance-floor):
many border pixels are constant, and an unregularised variance there makes every
likelihood meaningless. Printed: held-out mean log-likelihood (nats/image), iterations,
mean seconds per EM iteration (from --log-json), and the ratios mfa/gmm and mfa/fa of
the time per iteration, with the CPU they were measured on.

How to run (binary built; about 10 minutes on 2 cores):
  LATENT_BIN=build/release/src/latent /usr/bin/python3 bench/mfa_fashion.py [--ranks 2] [--max-iter 60]
Results: bench/results/mfa_fashion.json
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
common.ensure_tuned_blas()  # references on a tuned BLAS (OPENBLAS_CORETYPE), before numpy loads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="threads per rank")
    ap.add_argument("--max-iter", type=int, default=60)
    ap.add_argument("--reg", type=float, default=1e-3)
    args = ap.parse_args()
    common.warn_if_busy()
    train = common.import_fashion_mnist("train")
    test = common.import_fashion_mnist("test")
    reg = str(args.reg)
    runs = {
        "mfa K=10 L=10": ["mfa", "--n-components", "10", "--n-factors", "10", "--reg-covar", reg, "--tol", "1e-3",
                          "--max-iter", str(args.max_iter)],
        "gmm K=10 diag": ["gmm", "--n-components", "10", "--covariance-type", "diag", "--reg-covar", reg, "--tol",
                          "1e-3", "--max-iter", str(args.max_iter)],
        "fa L=50": ["fa", "--n-components", "50", "--noise-variance-floor", reg, "--tol", "1e-3", "--max-iter",
                    str(args.max_iter)],
    }
    rows, out = [], {}
    with tempfile.TemporaryDirectory() as d:
        for name, fit in runs.items():
            model, log = Path(d) / f"{fit[0]}.h5", Path(d) / f"{fit[0]}.jsonl"
            res = common.run_latent(["fit", *fit, "--data", train, "--output", model, "--seed", "0", "--threads",
                                     str(args.threads), "--log-json", log], args.ranks, capture=True)
            its = common.iteration_records(log)
            per_it = common.median([r["seconds"] for r in its]) if its else float("nan")
            attrs = common.model_attrs(model)
            held = common.score(model, test, args.ranks)["mean_log_likelihood"]
            train_ll = float(attrs.get("lower_bound", float("nan")))
            out[name] = {"command": fit, "held_out_log_likelihood": held, "train_log_likelihood": train_ll,
                         "n_iter": len(its), "seconds_per_iteration_median": per_it, "fit_seconds": res.seconds}
            rows.append([name, f"{held:.2f}", f"{train_ll:.2f}", len(its), f"{per_it:.3f}", f"{res.seconds:.1f}"])
    common.print_table(rows, ["model", "test ll (nats/image)", "train ll", "iterations", "s/iteration (median)",
                              "fit s (with data passes)"])
    m, g, f = (out[k]["seconds_per_iteration_median"] for k in runs)
    ratios = {"mfa_over_gmm_time_per_iteration": m / g, "mfa_over_fa_time_per_iteration": m / f,
              "mfa_minus_gmm_test_ll": out["mfa K=10 L=10"]["held_out_log_likelihood"] - out["gmm K=10 diag"]["held_out_log_likelihood"],
              "mfa_minus_fa_test_ll": out["mfa K=10 L=10"]["held_out_log_likelihood"] - out["fa L=50"]["held_out_log_likelihood"]}
    machine = common.machine_info()
    print(f"on {machine['cpu_model']} ({args.ranks} ranks x {args.threads} thread(s)):")
    print(f"  time per EM iteration: mfa/gmm {ratios['mfa_over_gmm_time_per_iteration']:.2f}x, "
          f"mfa/fa {ratios['mfa_over_fa_time_per_iteration']:.2f}x (fa's covariance solver iterates in memory "
          f"after one scatter pass)")
    print(f"  held-out log-likelihood: mfa - gmm {ratios['mfa_minus_gmm_test_ll']:+.2f}, mfa - fa "
          f"{ratios['mfa_minus_fa_test_ll']:+.2f} nats/image")
    common.write_results("mfa_fashion", {"machine": machine, "ranks": args.ranks, "threads": args.threads,
                                         "regularisation": args.reg, "runs": out, "ratios": ratios})


if __name__ == "__main__":
    main()
