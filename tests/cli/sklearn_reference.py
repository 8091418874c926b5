#!/usr/bin/python3
"""latent fit gmm against scikit-learn's GaussianMixture, from identical starting parameters.

For every covariance type, both run 25 EM iterations (tol 0) from the same weights, means
and covariances (latent: --init-model; scikit-learn: weights_init/means_init/
precisions_init); fitted weights, means, covariances and the lower bound must agree to
1e-8 (relative to the largest entry) with --matmul-precision highest (double throughout).
diag, spherical and full also run with the default, high (the float32 passes): the lower
bound within 1e-6 relative and the parameters within 1e-5 of scikit-learn's. Then latent fit kmeans against scikit-learn's KMeans
on blobs with one column offset by 1e12: the same inertia (1e-6 relative) and partition.
Usage: sklearn_reference.py LATENT_BINARY.
Needs Debian's python3-sklearn and python3-h5py; exits 77 (skipped) without them.
"""
import os
import subprocess
import sys
import tempfile
import warnings

try:
    import h5py
    import numpy as np
    from sklearn.mixture import GaussianMixture
except ImportError:
    print("scikit-learn/h5py not available: skipped")
    sys.exit(77)

latent = sys.argv[1]
rng = np.random.default_rng(42)
K, D, N = 3, 5, 900
centers = rng.normal(scale=3.0, size=(K, D))
X = np.concatenate([c + rng.normal(size=(N // K, D)) @ rng.normal(scale=0.6, size=(D, D)) for c in centers])
X = X[rng.permutation(N)]
start_means = X[[0, 1, 2]].copy()
failures = []

with tempfile.TemporaryDirectory() as d:
    with h5py.File(f"{d}/data.h5", "w") as f:
        f["data"] = X
        f.attrs["format_version"] = np.int64(1)
        f.attrs["kind"] = "dense"
    for cov_type, precision in [("full", "highest"), ("tied", "highest"), ("diag", "highest"),
                                ("spherical", "highest"), ("diag", "high"), ("spherical", "high"),
                                ("full", "high")]:
        eye = np.eye(D) * 2.0
        cov = {"full": np.stack([eye] * K), "tied": eye, "diag": np.full((K, D), 2.0),
               "spherical": np.full(K, 2.0)}[cov_type]
        prec = np.linalg.inv(cov) if cov_type in ("full", "tied") else 1.0 / cov
        weights = np.full(K, 1.0 / K)
        with h5py.File(f"{d}/init-{cov_type}.h5", "w") as f:
            f["weights"], f["means"], f["covariances"] = weights, start_means, cov
            f.attrs["format_version"] = np.int64(1)
            f.attrs["model"] = "gmm"
            f.attrs["covariance_type"] = cov_type
            f.attrs["reg_covar"] = 1e-6
        out = f"{d}/latent-{cov_type}-{precision}.h5"
        r = subprocess.run([latent, "fit", "gmm", "--data", f"{d}/data.h5", "--output", out, "--n-components", str(K),
                            "--covariance-type", cov_type, "--init-model", f"{d}/init-{cov_type}.h5",
                            "--max-iter", "25", "--tol", "0", "--block-rows", "128", "--threads", "2",
                            "--matmul-precision", precision],
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            print(f"FAIL {cov_type}: latent exited {r.returncode}: {r.stderr}")
            failures.append(cov_type)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm = GaussianMixture(K, covariance_type=cov_type, max_iter=25, tol=0, reg_covar=1e-6,
                                 weights_init=weights, means_init=start_means, precisions_init=prec,
                                 random_state=0).fit(X)
        with h5py.File(out, "r") as f:
            ours = {"weights": f["weights"][()], "means": f["means"][()], "covariances": f["covariances"][()],
                    "lower_bound": f.attrs["lower_bound"], "n_iter": int(f.attrs["n_iter"])}
        theirs = {"weights": gm.weights_, "means": gm.means_, "covariances": gm.covariances_,
                  "lower_bound": gm.lower_bound_, "n_iter": gm.n_iter_}
        worst = 0.0
        for key in ["weights", "means", "covariances", "lower_bound"]:
            a, b = np.asarray(ours[key]), np.asarray(theirs[key])
            rel = np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)
            worst = max(worst, rel)
            bound = 1e-8 if precision == "highest" else (1e-6 if key == "lower_bound" else 1e-5)
            if a.shape != b.shape or not rel <= bound:
                failures.append(f"{cov_type}/{precision}/{key}")
        if ours["n_iter"] != theirs["n_iter"]:
            failures.append(f"{cov_type}/{precision}/n_iter")
        print(f"{cov_type:9s} {precision:7s}: n_iter {ours['n_iter']} vs {theirs['n_iter']}, lower bound {ours['lower_bound']:.12f} "
              f"vs {theirs['lower_bound']:.12f}, worst relative difference {worst:.2e}")

# k-means on data with a column offset by 1e12 (issue 19): both centre the data on its mean,
# so both find the same partition with the same inertia (to 1e-6 relative; scikit-learn
# with n_init=10, latent with --n-init 3, on well-separated blobs).
from sklearn.cluster import KMeans  # noqa: E402

Xk = rng.normal(scale=10.0, size=(4, 5))[np.arange(4000) % 4] + rng.normal(size=(4000, 5))
Xk[:, 1] += 1e12
with tempfile.TemporaryDirectory() as d:
    with h5py.File(f"{d}/data.h5", "w") as f:
        f["data"] = Xk
        f.attrs["format_version"] = np.int64(1)
        f.attrs["kind"] = "dense"
    r = subprocess.run([latent, "fit", "kmeans", "--data", f"{d}/data.h5", "--output", f"{d}/km.h5", "--n-clusters", "4",
                        "--n-init", "3", "--block-rows", "512"], capture_output=True, text=True, timeout=300)
    r2 = subprocess.run([latent, "predict", "--model", f"{d}/km.h5", "--data", f"{d}/data.h5", "--output",
                         f"{d}/pred.h5"], capture_output=True, text=True, timeout=300)
    if r.returncode != 0 or r2.returncode != 0:
        print(f"FAIL kmeans: latent exited {r.returncode}/{r2.returncode}: {r.stderr}{r2.stderr}")
        failures.append("kmeans")
    else:
        km = KMeans(n_clusters=4, n_init=10, random_state=0).fit(Xk)
        with h5py.File(f"{d}/km.h5") as f, h5py.File(f"{d}/pred.h5") as p:
            inertia, labels = float(f.attrs["inertia"]), p["labels"][()]
        rel = abs(inertia - km.inertia_) / km.inertia_
        pairs = set(zip(labels.tolist(), km.labels_.tolist()))
        same = len(pairs) == len(set(labels.tolist())) == len(set(km.labels_.tolist()))
        if not rel < 1e-6:
            failures.append("kmeans/inertia")
        if not same:
            failures.append("kmeans/labels")
        print(f"kmeans (column offset 1e12): inertia {inertia:.10g} vs {km.inertia_:.10g} (relative {rel:.1e}), "
              f"same partition: {same}")

print("FAIL: " + ", ".join(failures) if failures else "PASS: latent matches scikit-learn (GMM to 1e-8, k-means to 1e-6)")
sys.exit(1 if failures else 0)
