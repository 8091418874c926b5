#!/usr/bin/python3
"""PPCA, factor analysis, missing values, imputation and anomaly flags through the command line.

- `fit fa` against scikit-learn's FactorAnalysis and `fit ppca` against scikit-learn's PCA
  (whose score() is the PPCA log-likelihood): mean log-likelihood within 1e-6 relative.
- `score --per-sample` and `transform` against scikit-learn's score_samples/transform with
  latent's fitted parameters (1e-9).
- `impute` against the conditional Gaussian mean computed here; `predict --outlier-quantile`
  flags exactly the rows at or below the order statistic, identically at 1 and 3 ranks.
- Usage and input errors: NaN without --missing-values, full covariances with missing values,
  predict on a factor model.
Usage: factor_cli_test.py LATENT_BINARY MPIEXEC. Exits 77 (skipped) without h5py/sklearn.
"""
import os
import sys
import tempfile
import warnings

try:
    import h5py
    import numpy as np
    from sklearn.decomposition import PCA, FactorAnalysis
except ImportError:
    print("scikit-learn/h5py not available: skipped")
    sys.exit(77)

from clitest import Harness  # noqa: E402  (tests/cli/clitest.py)

H = Harness(sys.argv[1], sys.argv[2])
check, run = H.check, H.run


def run_env(args, ranks, extra_env, expect):
    return run(args, ranks, expect, env=extra_env)


def same_bits(a, b, names):
    with h5py.File(a) as f, h5py.File(b) as g:
        return all(np.array_equal(f[n][...], g[n][...]) for n in names)


def resume_check(name, args, names, d):
    """A fit stopped by a signal at iteration 3 on 2 ranks (exit 75, checkpoint written),
    resumed on 3 ranks, gives the same bits as an uninterrupted fit on 1 rank."""
    run(args + ["--output", f"{d}/{name}-ref.h5"])
    run_env(args + ["--output", f"{d}/{name}-cut.h5", "--checkpoint-dir", f"{d}/{name}-ck"], 2,
            {"LATENT_FAULT": "rank=1,iteration=3,kind=signal"}, 75)
    check(not os.path.exists(f"{d}/{name}-cut.h5"), f"{name}: no model after the stop")
    run(args + ["--output", f"{d}/{name}-cut.h5", "--checkpoint-dir", f"{d}/{name}-ck", "--resume"], ranks=3)
    check(same_bits(f"{d}/{name}-ref.h5", f"{d}/{name}-cut.h5", names),
          f"{name}: stopped at iteration 3 on 2 ranks, resumed on 3: the same bits as uninterrupted")


def write(path, X):
    with h5py.File(path, "w") as f:
        f["data"] = X
        f.attrs["format_version"] = np.int64(1)
        f.attrs["kind"] = "dense"


rng = np.random.default_rng(7)
N, D, L = 2400, 10, 3
W = rng.normal(size=(L, D))
psi = rng.uniform(0.2, 1.5, size=D)
X = rng.normal(size=(N, L)) @ W + rng.normal(size=D) * 4 + rng.normal(size=(N, D)) * np.sqrt(psi)

with tempfile.TemporaryDirectory() as d:
    os.makedirs(f"{d}/data")
    write(f"{d}/data/part-00000.h5", X[:1000])
    write(f"{d}/data/part-00001.h5", X[1000:])
    run(["fit", "fa", "--data", f"{d}/data", "--output", f"{d}/fa.h5", "--n-components", str(L), "--tol", "1e-11",
         "--max-iter", "20000", "--block-rows", "256"])
    run(["fit", "ppca", "--data", f"{d}/data", "--output", f"{d}/ppca.h5", "--n-components", str(L), "--tol", "1e-12",
         "--max-iter", "20000"])
    import json
    s_fa = json.loads(run(["score", "--model", f"{d}/fa.h5", "--data", f"{d}/data"]).stdout)
    s_ppca = json.loads(run(["score", "--model", f"{d}/ppca.h5", "--data", f"{d}/data"]).stdout)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fa = FactorAnalysis(L, tol=1e-10, max_iter=100000).fit(X)
    pca = PCA(L).fit(X)
    check(abs(s_fa["mean_log_likelihood"] - fa.score(X)) < 1e-6 * abs(fa.score(X)),
          f"fa log-likelihood {s_fa['mean_log_likelihood']:.10f} vs scikit-learn {fa.score(X):.10f}")
    check(abs(s_ppca["mean_log_likelihood"] - pca.score(X)) < 1e-6 * abs(pca.score(X)),
          f"ppca log-likelihood {s_ppca['mean_log_likelihood']:.10f} vs scikit-learn PCA {pca.score(X):.10f}")
    p = L * D - L * (L - 1) // 2 + D + D
    check(abs(s_fa["bic"] - (-2 * s_fa["mean_log_likelihood"] * N + p * np.log(N))) < 1e-6 * abs(s_fa["bic"]),
          "fa BIC counts D + L D - L(L-1)/2 + D parameters")
    with h5py.File(f"{d}/ppca.h5") as f:
        # scikit-learn's PCA divides the covariance by N - 1; the maximum-likelihood PPCA by N.
        sk = pca.noise_variance_ * (N - 1) / N
        check(abs(f["noise_variance"][0] - sk) < 1e-6 * sk,
              f"ppca noise_variance {f['noise_variance'][0]:.8f} vs scikit-learn's x (N-1)/N {sk:.8f}")
    # Per-row scores and latent means with latent's own parameters, through scikit-learn.
    with h5py.File(f"{d}/fa.h5") as f:
        ref = FactorAnalysis(L)
        ref.components_, ref.noise_variance_, ref.mean_ = f["components"][...], f["noise_variance"][...], f["mean"][...]
        ref.n_features_in_ = D
    run(["score", "--model", f"{d}/fa.h5", "--data", f"{d}/data", "--per-sample", "--output", f"{d}/per.h5"], ranks=3)
    run(["transform", "--model", f"{d}/fa.h5", "--data", f"{d}/data", "--output", f"{d}/z.h5"], ranks=2)
    with h5py.File(f"{d}/per.h5") as f, h5py.File(f"{d}/z.h5") as g:
        check(np.allclose(f["log_likelihood"][...], ref.score_samples(X), rtol=1e-9, atol=1e-9), "score --per-sample = score_samples")
        check(np.allclose(g["latent_mean"][...], ref.transform(X), rtol=1e-9, atol=1e-9), "transform = FactorAnalysis.transform")
    run(["predict", "--model", f"{d}/fa.h5", "--data", f"{d}/data", "--output", f"{d}/p.h5"], expect=64)

    # Missing values: NaN is an input error unless asked for.
    M = rng.random(X.shape) < 0.25
    Xm = np.where(M, np.nan, X)
    os.makedirs(f"{d}/miss")
    write(f"{d}/miss/part-00000.h5", Xm[:1200])
    write(f"{d}/miss/part-00001.h5", Xm[1200:])
    r = run(["fit", "fa", "--data", f"{d}/miss", "--output", f"{d}/bad.h5", "--n-components", str(L)], expect=65)
    check("part-00000.h5" in r.stderr and "row" in r.stderr and "NaN" in r.stderr and not os.path.exists(f"{d}/bad.h5"),
          "NaN without --missing-values: exit 65 naming file and row, no output")
    run(["fit", "gmm", "--data", f"{d}/miss", "--output", f"{d}/gfull.h5", "--n-components", "2", "--missing-values", "nan",
         "--max-iter", "10"], ranks=2)
    run(["fit", "fa", "--data", f"{d}/miss", "--output", f"{d}/fam.h5", "--n-components", str(L), "--missing-values", "nan",
         "--solver", "covariance"], expect=64)
    run(["fit", "fa", "--data", f"{d}/miss", "--output", f"{d}/fam.h5", "--n-components", str(L), "--missing-values", "nan",
         "--tol", "1e-8"], ranks=2)
    run(["fit", "gmm", "--data", f"{d}/miss", "--output", f"{d}/gm.h5", "--n-components", "3", "--covariance-type", "diag",
         "--missing-values", "nan"])
    for model in ("fam", "gm"):
        run(["impute", "--model", f"{d}/{model}.h5", "--data", f"{d}/miss", "--output", f"{d}/imp-{model}.h5"], ranks=2)
    with h5py.File(f"{d}/fam.h5") as f:
        Wf, pf, mf = f["components"][...], f["noise_variance"][...], f["mean"][...]
    C = Wf.T @ Wf + np.diag(pf)
    expect = Xm.copy()
    for i in range(N):
        m, o = M[i], ~M[i]
        if m.any():
            expect[i, m] = mf[m] + C[np.ix_(m, o)] @ np.linalg.solve(C[np.ix_(o, o)], Xm[i, o] - mf[o])
    with h5py.File(f"{d}/imp-fam.h5") as f:
        got = f["data"][...]
    check(np.allclose(got, expect, rtol=1e-9, atol=1e-9), "fa impute = conditional Gaussian mean")
    mean_rmse = np.sqrt(np.mean((np.nanmean(Xm, 0)[None, :].repeat(N, 0)[M] - X[M]) ** 2))
    fa_rmse = np.sqrt(np.mean((got[M] - X[M]) ** 2))
    with h5py.File(f"{d}/imp-gm.h5") as f:
        gm_rmse = np.sqrt(np.mean((f["data"][...][M] - X[M]) ** 2))
        check(np.array_equal(f["data"][...][~M], X[~M]), "gmm impute keeps every observed entry")
    check(fa_rmse < 0.8 * mean_rmse and gm_rmse < mean_rmse,
          f"imputation RMSE: fa {fa_rmse:.3f}, gmm {gm_rmse:.3f}, mean imputation {mean_rmse:.3f}")
    r = run(["info", f"{d}/imp-fam.h5"])
    check(f"{N} samples x {D} features" in r.stdout, "the imputed file is a dense dataset")

    # Outlier flags: the rows at or below the order statistic floor(q (N-1)), at any rank count.
    for ranks in (1, 3):
        run(["predict", "--model", f"{d}/fam.h5", "--data", f"{d}/miss", "--missing-values", "nan", "--output",
             f"{d}/out{ranks}.h5", "--outlier-quantile", "0.07", "--block-rows", "100"], ranks=ranks)
    with h5py.File(f"{d}/out1.h5") as a, h5py.File(f"{d}/out3.h5") as b:
        ll, flag = a["log_likelihood"][...], a["outlier"][...]
        check(np.array_equal(flag, b["outlier"][...]) and np.array_equal(ll, b["log_likelihood"][...]),
              "outlier flags identical at 1 and 3 ranks")
    threshold = np.sort(ll)[int(np.floor(0.07 * (N - 1)))]
    check(np.array_equal(flag == 1, ll <= threshold) and flag.sum() == int(np.floor(0.07 * (N - 1))) + 1,
          f"predict --outlier-quantile 0.07 flags {flag.sum()} rows at or below {threshold:.4f}")

    # Model selection: the true latent dimension wins by BIC and by held-out likelihood;
    # the table is the same at 1 and 3 ranks (but for the timings).
    def select(ranks, *extra):
        r = run(["select", "fa", "--data", f"{d}/data", "--n-components", "1,2,3,4,5", "--block-rows", "200", *extra], ranks=ranks)
        j = json.loads(r.stdout)
        for c in j["candidates"]:
            c.pop("seconds")
        return j
    s1, s3 = select(1), select(3)
    check(s1 == s3, "select fa: identical results at 1 and 3 ranks")
    check(s1["best_n_components"] == L, f"select fa by BIC picks L = {s1['best_n_components']} (true {L})")
    h = {c["n_components"]: c["held_out_log_likelihood"] for c in select(1, "--criterion", "held-out")["candidates"]}
    check(max(h.values()) - h[L] < 0.01 and h[L] - h[L - 1] > 0.5,
          "held-out log-likelihood: the true L within 0.01 nats of the best, far above L - 1")
    check(s1["n_held_out"] >= 0.1 * N and s1["n_train"] + s1["n_held_out"] == N, "select holds out at least 10 % of the rows")
    c3 = [c for c in s1["candidates"] if c["n_components"] == L][0]
    r = run(["score", "--model", f"{d}/fa.h5", "--data", f"{d}/data"])
    check(abs(c3["train_log_likelihood"] - json.loads(r.stdout)["mean_log_likelihood"]) < 0.05,
          "select's L = 3 candidate scores like `fit fa` (fitted on 90 % of the rows)")
    g = rng.normal(scale=6, size=(4, D))
    Xg = g[rng.integers(0, 4, size=N)] + rng.normal(size=(N, D))
    os.makedirs(f"{d}/blobs")
    write(f"{d}/blobs/part-00000.h5", Xg)
    r = run(["select", "gmm", "--data", f"{d}/blobs", "--n-components", "1,2,3,4,6,8", "--covariance-type", "diag",
             "--n-init", "2", "--output-dir", f"{d}/sel"])
    j = json.loads(r.stdout)
    check(j["best_n_components"] == 4 and os.path.exists(f"{d}/sel/gmm-4.h5"),
          f"select gmm by BIC picks K = {j['best_n_components']} (true 4) and writes every candidate")
    run(["select", "gmm", "--data", f"{d}/blobs", "--n-components", "2,x"], expect=64)

    # Bernoulli mixture: values outside [0, 1] refused on 2 ranks (exit 65, file and row named,
    # no output); a fit on binary data labels its clusters well and samples binary rows.
    Xb = (X > X.mean(0)).astype(np.float64)
    Xb[1500, 4] = 2.0
    os.makedirs(f"{d}/bin")
    write(f"{d}/bin/part-00000.h5", Xb[:1200])
    write(f"{d}/bin/part-00001.h5", Xb[1200:])
    r = run(["fit", "bmm", "--data", f"{d}/bin", "--output", f"{d}/bmm.h5", "--n-components", "2"], ranks=2, expect=65)
    check("part-00001.h5" in r.stderr and "row 300, column 4" in r.stderr and not os.path.exists(f"{d}/bmm.h5"),
          "bmm on a value outside [0, 1]: exit 65 naming file, row and column, no model")

    # Variational Bayesian GMM against scikit-learn's BayesianGaussianMixture started from the
    # same responsibilities (latent's own k-means, which `fit bgmm` runs with the same seed):
    # weights, means, covariances and lower bound agree, for both weight priors and every
    # covariance type; 3 of 8 components stay in use.
    from sklearn.mixture import BayesianGaussianMixture
    C = rng.normal(scale=8, size=(3, 4))
    Xc = C[rng.choice(3, N, p=[.2, .3, .5])] + rng.normal(size=(N, 4)) * rng.uniform(0.5, 1.5, size=4)
    os.makedirs(f"{d}/bg")
    write(f"{d}/bg/part-00000.h5", Xc)
    run(["fit", "kmeans", "--data", f"{d}/bg", "--output", f"{d}/km8.h5", "--n-clusters", "8"])
    with h5py.File(f"{d}/km8.h5") as f:
        centers = f["cluster_centers"][...]
    R = np.eye(8)[((Xc[:, None, :] - centers[None]) ** 2).sum(-1).argmin(1)]

    class SameStart(BayesianGaussianMixture):
        def _initialize_parameters(self, X, random_state):
            self._initialize(X, R)

    for cov in ("full", "tied", "diag", "spherical"):
        for prior in ("dirichlet_process", "dirichlet_distribution"):
            run(["fit", "bgmm", "--data", f"{d}/bg", "--output", f"{d}/bg.h5", "--overwrite", "--n-components", "8",
                 "--covariance-type", cov, "--weight-concentration-prior-type", prior, "--tol", "1e-10",
                 "--max-iter", "2000"], ranks=2)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sk = SameStart(n_components=8, covariance_type=cov, weight_concentration_prior_type=prior, tol=1e-10,
                               max_iter=2000).fit(Xc)
            with h5py.File(f"{d}/bg.h5") as f:
                ok = (np.abs(f["weights"][...] - sk.weights_).max() < 1e-8
                      and np.abs(f["means"][...] - sk.means_).max() < 1e-5
                      and np.abs(f["covariances"][...] - sk.covariances_).max() < 1e-5
                      and abs(f.attrs["lower_bound"] * N - sk.lower_bound_) < 1e-6 * abs(sk.lower_bound_)
                      and (cov in ("tied", "spherical") or (f["weights"][...] > 0.01).sum() == 3))
                check(ok, f"bgmm {cov}/{prior} = scikit-learn's BayesianGaussianMixture (lower bound "
                          f"{f.attrs['lower_bound'] * N:.6f} vs {sk.lower_bound_:.6f})")

    # Checkpoints: stop and resume on another rank count.
    resume_check("bgmm", ["fit", "bgmm", "--data", f"{d}/bg", "--n-components", "6", "--covariance-type", "full",
                          "--tol", "1e-8", "--max-iter", "40", "--block-rows", "500"],
                 ["weights", "means", "covariances", "weight_concentration", "history/objective"], d)
    resume_check("fa-missing", ["fit", "fa", "--data", f"{d}/miss", "--n-components", str(L), "--missing-values", "nan",
                                "--max-iter", "12", "--block-rows", "500"],
                 ["components", "mean", "noise_variance", "history/objective"], d)
    resume_check("ppca", ["fit", "ppca", "--data", f"{d}/data", "--n-components", str(L), "--max-iter", "12"],
                 ["components", "mean", "noise_variance", "history/objective"], d)
    Xb[1500, 4] = 1.0
    write(f"{d}/bin/part-00001.h5", Xb[1200:])
    resume_check("bmm", ["fit", "bmm", "--data", f"{d}/bin", "--n-components", "4", "--tol", "1e-12", "--max-iter", "15",
                         "--block-rows", "500"], ["weights", "means", "history/objective"], d)

    # Multinomial mixture on a synthetic corpus: fit on 2 ranks, the same labels from predict
    # at 1 and 3 ranks, score with perplexity, info with top words.
    run(["generate", "lda", "--n-documents", "600", "--vocab-size", "200", "--n-topics", "3", "--doc-length", "60",
         "--doc-topic-prior", "0.05", "--docs-per-shard", "250", "--seed", "4", "--output", f"{d}/corpus"])
    run(["fit", "mmm", "--data", f"{d}/corpus", "--output", f"{d}/mmm.h5", "--n-components", "3", "--block-rows", "100",
         "--seed", "1"], ranks=2)
    for ranks in (1, 3):
        run(["predict", "--model", f"{d}/mmm.h5", "--data", f"{d}/corpus", "--output", f"{d}/mp{ranks}.h5", "--proba",
             "--block-rows", "70"], ranks=ranks)
    check(same_bits(f"{d}/mp1.h5", f"{d}/mp3.h5", ["labels", "proba"]), "mmm predict: identical at 1 and 3 ranks")
    sm = json.loads(run(["score", "--model", f"{d}/mmm.h5", "--data", f"{d}/corpus"]).stdout)
    with h5py.File(f"{d}/mmm.h5") as f:
        comp = f["components"][...]
        hist = f["history/objective"][...]
        ok = np.allclose(comp.sum(1), 1.0) and f["vocabulary"].shape == (200,)
    check(len(hist) > 2 and np.all(np.diff(hist) >= -1e-9 * np.abs(hist[1:])),
          f"mmm: the log posterior never decreases over {len(hist)} iterations")
    check(ok and 1 < sm["perplexity"] < 200, f"mmm: word probabilities sum to 1, vocabulary stored, perplexity "
          f"{sm['perplexity']:.1f} below the vocabulary size")
    run(["sample", "--model", f"{d}/mmm.h5", "--n-samples", "3000", "--doc-length", "50", "--output", f"{d}/msample",
         "--seed", "2"])
    with h5py.File(f"{d}/mmm.h5") as f:
        beta, pi = f["components"][...], f["weights"][...]
    counts = np.zeros((3, 200))
    nlab = np.zeros(3)
    import glob
    for path in sorted(glob.glob(f"{d}/msample/*.h5")):
        with h5py.File(path) as f:
            ip, ix, dv, lab = f["indptr"][...], f["indices"][...], f["data"][...], f["labels"][...]
        for i in range(len(lab)):
            np.add.at(counts[lab[i]], ix[ip[i]:ip[i + 1]], dv[ip[i]:ip[i + 1]])
            nlab[lab[i]] += 1
    emp = counts / counts.sum(1, keepdims=True)
    check(np.abs(nlab / nlab.sum() - pi).max() < 0.03 and np.abs(emp - beta).max() < 0.02,
          "mmm sample: component frequencies and word frequencies match the model")
    info = run(["info", f"{d}/mmm.h5"]).stdout
    check("multinomial mixture: 3 components" in info and info.count("component") >= 3, "info on an mmm model")

    # Samples from the fitted FA have its covariance.
    run(["sample", "--model", f"{d}/fa.h5", "--n-samples", "40000", "--output", f"{d}/s.h5", "--seed", "3"])
    with h5py.File(f"{d}/s.h5") as f, h5py.File(f"{d}/fa.h5") as g:
        S = np.cov(f["data"][...].T)
        C = g["components"][...].T @ g["components"][...] + np.diag(g["noise_variance"][...])
        check(np.abs(S - C).max() < 0.05 * np.abs(C).max(), f"sample covariance within 5 % of W^T W + Psi "
              f"(max error {np.abs(S - C).max():.3f})")

H.finish()
