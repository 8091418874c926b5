#!/usr/bin/python3
"""Fashion-MNIST with PPCA, factor analysis and Gaussian mixtures: held-out likelihood,
reconstruction, imputation, anomaly detection and model selection (issue 6, "Real input").

What it measures (train: 60000 images, test: 10000; pixels in [0, 1]; one BLAS thread)
 (1) PPCA and FA with L = 50 fitted on train by `latent fit ppca|fa`, scikit-learn's PCA(50)
     and FactorAnalysis(50) on the same rows: mean test log-likelihood (nats/image) and
     test reconstruction MSE per pixel (latent: mu + W^T E[z|x] from `latent transform`;
     PCA: inverse_transform(transform(x)); FactorAnalysis: mu + W^T transform(x)).
 (2) 30 % of the test pixels removed at random (seed 0): RMSE on the removed pixels of
     `latent impute` with PPCA/FA (L = 50) and diag GMMs (K = 10, 50; reg_covar 1e-3) fitted
     on the complete train set, of PPCA fitted on the train set with 30 % of its pixels
     missing (`--missing-values nan`, streamed EM), and of mean imputation (train means).
 (3) Anomaly detection: for each class c, PPCA (L = 50) and a diag GMM (K = 10) fitted on
     the train images of the nine other classes; every test image scored by
     `latent score --per-sample`; ROC AUC of -log-likelihood for "class c" vs the rest.
 (4) `latent select gmm --covariance-type diag --n-components 2,5,10,20,30,50` on train
     (10 % held out): BIC, AIC, held-out log-likelihood; plot bench/results/gmm_select_bic.png.

How to run (binary built; ~30 minutes on 2 cores). scikit-learn runs in this process: give it
OpenBLAS (Debian's default reference BLAS makes its PCA/FactorAnalysis fits take many minutes):
  LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-serial /usr/bin/python3 bench/factor_fashion.py \
      [--parts 1,2,3,4] [--classes 0-9] [--threads 2]
  Results: bench/results/factor_fashion.json and bench/results/gmm_select_bic.png
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
common.ensure_tuned_blas()  # references on a tuned BLAS (OPENBLAS_CORETYPE), before numpy loads


def h5(path, name):
    import h5py
    import numpy as np
    with h5py.File(path, "r") as f:
        return np.asarray(f[name][...])


def fit(model, data, out, threads, *extra):
    common.run_latent(["fit", model, "--data", data, "--output", out, "--overwrite", "--threads", threads, *extra],
                      capture=True)


def per_sample(model, data, out, threads, *extra):
    common.run_latent(["score", "--model", model, "--data", data, "--per-sample", out, "--overwrite", "--threads", threads,
                       *extra], capture=True)
    return h5(out, "log_likelihood")


def part1(train, test, d, threads, res):
    import numpy as np
    from sklearn.decomposition import PCA, FactorAnalysis
    X, _ = common.load_shards(train, with_labels=False)
    T, _ = common.load_shards(test, with_labels=False)
    out = {}
    for m in ("ppca", "fa"):
        fit(m, train, f"{d}/{m}50.h5", threads, "--n-components", 50)
        ll = common.score(Path(f"{d}/{m}50.h5"), test)["mean_log_likelihood"]
        common.run_latent(["transform", "--model", f"{d}/{m}50.h5", "--data", test, "--output", f"{d}/z.h5", "--overwrite",
                           "--threads", threads], capture=True)
        W, mu = h5(f"{d}/{m}50.h5", "components"), h5(f"{d}/{m}50.h5", "mean")
        rec = mu + h5(f"{d}/z.h5", "latent_mean") @ W
        out[f"latent_{m}"] = {"test_log_likelihood": ll, "test_reconstruction_mse": float(np.mean((rec - T) ** 2))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pca = PCA(50, random_state=0).fit(X)
        fa = FactorAnalysis(50, random_state=0).fit(X)
    out["sklearn_pca"] = {"test_log_likelihood": float(pca.score(T)),
                          "test_reconstruction_mse": float(np.mean((pca.inverse_transform(pca.transform(T)) - T) ** 2))}
    out["sklearn_fa"] = {"test_log_likelihood": float(fa.score(T)),
                         "test_reconstruction_mse": float(np.mean((fa.mean_ + fa.transform(T) @ fa.components_ - T) ** 2))}
    res["held_out"] = out
    common.print_table([[k, f"{v['test_log_likelihood']:.2f}", f"{v['test_reconstruction_mse']:.5f}"] for k, v in out.items()],
                       ["model (L=50)", "test log-lik (nats/image)", "test reconstruction MSE/pixel"])


def part2(train, test, d, threads, res):
    import numpy as np
    X, _ = common.load_shards(train, with_labels=False)
    T, y = common.load_shards(test)
    rng = np.random.default_rng(0)
    M = rng.random(T.shape) < 0.3
    common.write_shard(Path(f"{d}/test-missing/part-00000.h5"), np.where(M, np.nan, T), y)
    Mt = np.random.default_rng(1).random(X.shape) < 0.3
    common.write_shard(Path(f"{d}/train-missing/part-00000.h5"), np.where(Mt, np.nan, X))
    del X
    rmse = {"mean_imputation": float(np.sqrt(np.mean((np.broadcast_to(common.load_shards(train, False)[0].mean(0), T.shape)[M]
                                                        - T[M]) ** 2)))}
    models = {"ppca_L50": ("ppca", ["--n-components", 50]), "fa_L50": ("fa", ["--n-components", 50]),
              "gmm_diag_K10": ("gmm", ["--n-components", 10, "--covariance-type", "diag", "--reg-covar", 1e-3]),
              "gmm_diag_K50": ("gmm", ["--n-components", 50, "--covariance-type", "diag", "--reg-covar", 1e-3])}
    for name, (m, extra) in models.items():
        fit(m, train, f"{d}/{name}.h5", threads, *extra)
    fit("ppca", f"{d}/train-missing", f"{d}/ppca_L50_fit_on_missing.h5", threads, "--n-components", 50, "--missing-values",
        "nan", "--max-iter", 40)
    for name in list(models) + ["ppca_L50_fit_on_missing"]:
        common.run_latent(["impute", "--model", f"{d}/{name}.h5", "--data", f"{d}/test-missing", "--output", f"{d}/imp.h5",
                           "--overwrite", "--threads", threads], capture=True)
        rmse[name] = float(np.sqrt(np.mean((h5(f"{d}/imp.h5", "data")[M] - T[M]) ** 2)))
    res["imputation_rmse_30pct"] = rmse
    common.print_table([[k, f"{v:.4f}", f"{rmse['mean_imputation'] / v:.2f}x"] for k, v in rmse.items()],
                       ["imputation (30 % of test pixels)", "RMSE", "mean-imputation RMSE / RMSE"])


def part3(train, test, d, threads, classes, res):
    import numpy as np
    from sklearn.metrics import roc_auc_score
    X, y = common.load_shards(train)
    _, yt = common.load_shards(test)
    aucs = {"ppca_L50": {}, "gmm_diag_K10": {}}
    for c in classes:
        sub = Path(f"{d}/without-{c}")
        common.write_shard(sub / "part-00000.h5", X[y != c].astype(np.float32))
        fit("ppca", sub, f"{d}/a-ppca.h5", threads, "--n-components", 50)
        fit("gmm", sub, f"{d}/a-gmm.h5", threads, "--n-components", 10, "--covariance-type", "diag", "--reg-covar", 1e-3)
        shutil.rmtree(sub)
        for name, model in (("ppca_L50", "a-ppca"), ("gmm_diag_K10", "a-gmm")):
            ll = per_sample(f"{d}/{model}.h5", test, f"{d}/ll.h5", threads)
            aucs[name][str(c)] = float(roc_auc_score(yt == c, -ll))
        print(f"class {c}: AUC ppca {aucs['ppca_L50'][str(c)]:.3f}, gmm {aucs['gmm_diag_K10'][str(c)]:.3f}", flush=True)
    res["anomaly_auc"] = {k: {"per_class": v, "mean": float(np.mean(list(v.values())))} for k, v in aucs.items()}


def part4(train, d, threads, res):
    r = common.run_latent(["select", "gmm", "--data", train, "--covariance-type", "diag", "--reg-covar", 1e-3,
                           "--n-components", "2,5,10,20,30,50", "--threads", threads], capture=True)
    j = common.parse_last_json(r.stdout)
    res["select_gmm_diag"] = j
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (apt-get install python3-matplotlib): no plot", file=sys.stderr)
        return
    ks = [c["n_components"] for c in j["candidates"]]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].plot(ks, [c["bic"] / 1e6 for c in j["candidates"]], "o-", label="BIC")
    ax[0].plot(ks, [c["aic"] / 1e6 for c in j["candidates"]], "s--", label="AIC")
    ax[0].set_xlabel("K (components)")
    ax[0].set_ylabel("criterion / 1e6 (lower is better)")
    ax[0].legend()
    ax[0].set_title(f"Fashion-MNIST, diag GMM: best by BIC K={j['best_n_components']}")
    ax[1].plot(ks, [c["held_out_log_likelihood"] for c in j["candidates"]], "o-")
    ax[1].set_xlabel("K (components)")
    ax[1].set_ylabel("held-out log-likelihood (nats/image)")
    fig.tight_layout()
    out = common.RESULTS_DIR / "gmm_select_bic.png"
    fig.savefig(out, dpi=100)
    print(f"plot written to {out}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="1,2,3,4")
    ap.add_argument("--classes", default="0-9")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    a, _, b = args.classes.partition("-")
    classes = list(range(int(a), int(b or a) + 1))
    train = common.import_fashion_mnist("train")
    test = common.import_fashion_mnist("test")
    parts = set(args.parts.split(","))
    path = common.RESULTS_DIR / "factor_fashion.json"
    res = json.loads(path.read_text()) if path.exists() else {}
    with tempfile.TemporaryDirectory(dir=common.data_dir()) as d:
        if "1" in parts:
            part1(train, test, d, args.threads, res)
        if "2" in parts:
            part2(train, test, d, args.threads, res)
        if "3" in parts:
            part3(train, test, d, args.threads, classes, res)
        if "4" in parts:
            part4(train, d, args.threads, res)
    for k in ("timestamp", "machine", "git_commit"):
        res.pop(k, None)
    common.write_results("factor_fashion", res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
