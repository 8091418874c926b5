#!/usr/bin/python3
"""The mixture of factor analysers through the command line (issue 18's acceptance tests).

- K = 1 gives `fit fa`'s fit (mean log-likelihood to 1e-8 relative, same init), diag and
  isotropic (`fit ppca`), also with missing values (--matmul-precision highest: double).
- L = 0 gives `fit gmm --covariance-type diag` (same seed and --reg-covar) to 1e-8, in
  double (highest) and with the float32 passes of both (high, the default).
- --matmul-precision high (float32 products) agrees with highest to 1e-6 relative, reads
  float32 shards as stored (the same bits as the same values stored as float64), and gives
  the same bits on 1, 2 and 3 ranks x 1 and 2 threads.
- EM never decreases the log-likelihood (the history of a fit with missing values).
- Rank/thread invariance: 1, 2, 3 and 4 ranks x 1 and 2 threads give the same bits.
- A fit stopped by a signal on 2 ranks and resumed on 3 gives the same bits as an
  uninterrupted one (with --n-init 2, stopped inside the second restart).
- score/predict/transform/impute/sample agree with the model file (per-sample
  log-likelihood against a dense numpy evaluation of the mixture).
Usage: mfa_cli_test.py LATENT_BINARY MPIEXEC. Exits 77 (skipped) without h5py.
"""
import json
import os
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
PARAMS = ["weights", "means", "components", "noise_variance", "history/objective"]


def same_bits(a, b, names=PARAMS):
    with h5py.File(a) as f, h5py.File(b) as g:
        return all(np.array_equal(f[n][...], g[n][...]) for n in names)


def lower_bound(path):
    with h5py.File(path) as f:
        return float(f.attrs["lower_bound"])


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


def write(path, X):
    with h5py.File(path, "w") as f:
        f["data"] = X
        f.attrs["format_version"] = np.int64(1)
        f.attrs["kind"] = "dense"


def mixture_logpdf(path, X):
    """log p(x) of every row under the MFA file, with dense covariances C_k = W_k^T W_k + Psi_k."""
    with h5py.File(path) as f:
        w, mu, comp, psi = f["weights"][...], f["means"][...], f["components"][...], f["noise_variance"][...]
    K, D = mu.shape
    out = np.empty((X.shape[0], K))
    for k in range(K):
        Psi = np.diag(psi[k] if psi.ndim == 2 else np.full(D, psi[k]))
        C = comp[k].T @ comp[k] + Psi
        diff = X - mu[k]
        _, logdet = np.linalg.slogdet(C)
        maha = np.einsum("ij,ij->i", diff @ np.linalg.inv(C), diff)
        out[:, k] = np.log(w[k]) - 0.5 * (D * np.log(2 * np.pi) + logdet + maha)
    m = out.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(out - m).sum(axis=1, keepdims=True)))[:, 0]


def main():
    rng = np.random.default_rng(11)
    K, L, D, N = 3, 2, 8, 1800
    means = rng.normal(scale=4.0, size=(K, D))
    W = rng.normal(size=(K, L, D))
    X = np.concatenate([rng.normal(size=(N // K, L)) @ W[k] + means[k] + rng.normal(scale=0.5, size=(N // K, D))
                        for k in range(K)])
    X = X[rng.permutation(N)]
    Xm = X.copy()
    Xm[rng.random(X.shape) < 0.1] = np.nan
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(f"{d}/data")
        os.makedirs(f"{d}/miss")
        os.makedirs(f"{d}/data32")
        os.makedirs(f"{d}/data32w")
        for s in range(3):
            write(f"{d}/data/part-{s:05d}.h5", X[s * 600:(s + 1) * 600])
            write(f"{d}/miss/part-{s:05d}.h5", Xm[s * 600:(s + 1) * 600])

        # K = 1 is factor analysis / PPCA (same init), with and without missing values.
        for noise, other in (("diag", "fa"), ("isotropic", "ppca")):
            for data, extra in (("data", []), ("miss", ["--missing-values", "nan"])):
                common = ["--data", f"{d}/{data}", "--tol", "1e-10", "--max-iter", "400", "--block-rows", "256", *extra]
                run(["fit", other, "--n-components", str(L), "--solver", "streaming", "--output",
                     f"{d}/{other}-{data}.h5", *common])
                run(["fit", "mfa", "--n-components", "1", "--n-factors", str(L), "--noise", noise, "--reg-covar", "0",
                     "--matmul-precision", "highest", "--output", f"{d}/mfa1-{noise}-{data}.h5", *common])
                a, b = lower_bound(f"{d}/mfa1-{noise}-{data}.h5"), lower_bound(f"{d}/{other}-{data}.h5")
                check(rel(a, b) < 1e-8, f"K=1 {noise} on {data}: {a:.12f} vs fit {other} {b:.12f}")

        # L = 0 is the diagonal GMM (same seed and reg_covar).
        common = ["--data", f"{d}/data", "--n-components", "3", "--tol", "1e-8", "--seed", "5", "--block-rows", "256"]
        for prec in ("highest", "high"):
            run(["fit", "gmm", "--covariance-type", "diag", "--output", f"{d}/gmm-{prec}.h5", "--matmul-precision", prec,
                 *common])
            run(["fit", "mfa", "--n-factors", "0", "--output", f"{d}/mfa0-{prec}.h5", "--matmul-precision", prec, *common])
            a, b = lower_bound(f"{d}/mfa0-{prec}.h5"), lower_bound(f"{d}/gmm-{prec}.h5")
            check(rel(a, b) < 1e-8, f"L=0 {prec}: {a:.12f} vs fit gmm diag {b:.12f}")

        # The float32 pass (high, the default) against double (highest); float32 shards;
        # rank/thread invariance of the float32 pass (blocks of 600 rows: tiles of 256,
        # 256 and 88).
        for s in range(3):
            write(f"{d}/data32/part-{s:05d}.h5", X[s * 600:(s + 1) * 600].astype(np.float32))
            write(f"{d}/data32w/part-{s:05d}.h5", X[s * 600:(s + 1) * 600].astype(np.float32).astype(np.float64))
        f32 = ["fit", "mfa", "--data", f"{d}/data", "--n-components", "3", "--n-factors", "2", "--tol", "0",
               "--max-iter", "15", "--block-rows", "600"]
        run(f32 + ["--output", f"{d}/f32.h5"])
        run(f32 + ["--output", f"{d}/f64.h5", "--matmul-precision", "highest"])
        a, b = lower_bound(f"{d}/f32.h5"), lower_bound(f"{d}/f64.h5")
        check(a != b and rel(a, b) < 1e-6, f"high {a:.12f} vs highest {b:.12f}: within 1e-6 relative, not the same bits")
        with h5py.File(f"{d}/f32.h5") as f:
            config = json.loads(f.attrs["config"])
            check(config.get("matmul_precision") == "high", "the model file records matmul_precision high")
        run([x if x != f"{d}/data" else f"{d}/data32" for x in f32] + ["--output", f"{d}/s32.h5"])
        run([x if x != f"{d}/data" else f"{d}/data32w" for x in f32] + ["--output", f"{d}/s64.h5"])
        check(same_bits(f"{d}/s32.h5", f"{d}/s64.h5"), "float32 shards read as stored: the same bits as float64 copies")
        for ranks in (1, 2, 3):
            for threads in (1, 2):
                if ranks == 1 and threads == 1:
                    continue
                out = f"{d}/f32-{ranks}-{threads}.h5"
                run(f32 + ["--output", out, "--threads", str(threads)], ranks=ranks)
                check(same_bits(f"{d}/f32.h5", out), f"high: {ranks} rank(s) x {threads} thread(s): same bits")

        # EM never decreases the log-likelihood (missing values, K = 3, L = 2).
        args = ["fit", "mfa", "--data", f"{d}/miss", "--n-components", "3", "--n-factors", "2", "--missing-values", "nan",
                "--tol", "0", "--max-iter", "25", "--block-rows", "256", "--n-init", "2"]
        run(args + ["--output", f"{d}/ref.h5", "--threads", "1"])
        with h5py.File(f"{d}/ref.h5") as f:
            h = f["history/objective"][...]
        check(len(h) >= 20 and np.all(np.diff(h) >= -1e-10 * np.abs(h[1:])), f"EM monotone over {len(h)} iterations")

        # Rank/thread invariance.
        for ranks in (1, 2, 3, 4):
            for threads in (1, 2):
                out = f"{d}/inv-{ranks}-{threads}.h5"
                run(args + ["--output", out, "--threads", str(threads)], ranks=ranks)
                check(same_bits(f"{d}/ref.h5", out), f"{ranks} rank(s) x {threads} thread(s): same bits")

        # Stopped at iteration 4 of the first restart on 2 ranks; resumed on 3 ranks and stopped
        # again at iteration 3 of the second restart (the checkpoint then holds the best run so
        # far); resumed on 1 rank: the same bits as uninterrupted.
        ck = ["--output", f"{d}/cut.h5", "--checkpoint-dir", f"{d}/ck"]
        run(args + ck, ranks=2, expect=75, env={"LATENT_FAULT": "rank=1,iteration=4,kind=signal"})
        check(not os.path.exists(f"{d}/cut.h5"), "no model after the stop")
        run(args + ck + ["--resume"], ranks=3, expect=75, env={"LATENT_FAULT": "rank=2,iteration=3,kind=signal"})
        check(not os.path.exists(f"{d}/cut.h5"), "no model after the second stop (inside restart 2)")
        run(args + ck + ["--resume"], ranks=1)
        check(same_bits(f"{d}/ref.h5", f"{d}/cut.h5"), "stopped on 2 ranks, again on 3 in restart 2, resumed on 1: same bits")

        # Tasks agree with the model file.
        run(["fit", "mfa", "--data", f"{d}/data", "--n-components", "3", "--n-factors", "2", "--output", f"{d}/m.h5",
             "--block-rows", "256"])
        run(["score", "--model", f"{d}/m.h5", "--data", f"{d}/data", "--per-sample", f"{d}/ps.h5"], ranks=2)
        with h5py.File(f"{d}/ps.h5") as f:
            names = list(f.keys())
            ll = f["log_likelihood"][...] if "log_likelihood" in f else f[names[0]][...]
        ref = mixture_logpdf(f"{d}/m.h5", X)
        check(np.allclose(ll, ref, rtol=1e-9, atol=1e-9), f"per-sample log-likelihood = dense mixture (max diff "
              f"{np.max(np.abs(ll - ref)):.2e})")
        run(["impute", "--model", f"{d}/m.h5", "--data", f"{d}/miss", "--output", f"{d}/imp.h5", "--missing-values", "nan"],
            ranks=2)
        with h5py.File(f"{d}/imp.h5") as f:
            imp = f["data"][...]
        obs = ~np.isnan(Xm)
        check(not np.isnan(imp).any() and np.array_equal(imp[obs], Xm[obs]), "impute: observed kept, every NaN filled")
        err_imp = np.sqrt(np.mean((imp[~obs] - X[~obs]) ** 2))
        err_mean = np.sqrt(np.mean((np.nanmean(Xm, axis=0)[np.where(~obs)[1]] - X[~obs]) ** 2))
        check(err_imp < 0.5 * err_mean, f"impute: RMSE {err_imp:.3f} below half the column-mean RMSE {err_mean:.3f}")
        run(["predict", "--model", f"{d}/m.h5", "--data", f"{d}/data", "--output", f"{d}/pred.h5", "--proba"], ranks=3)
        with h5py.File(f"{d}/pred.h5") as f:
            proba = f["proba"][...]
        check(np.allclose(proba.sum(axis=1), 1.0), "predict --proba rows sum to 1")
        run(["sample", "--model", f"{d}/m.h5", "--n-samples", "3000", "--output", f"{d}/s.h5", "--seed", "3"])
        with h5py.File(f"{d}/s.h5") as f:
            S = f["data"][...]
        check(abs(mixture_logpdf(f"{d}/m.h5", S).mean() - ref.mean()) < 0.5,
              "sample: draws score like the training rows under the model")
    H.finish()


if __name__ == "__main__":
    main()
