#!/usr/bin/python3
"""k-means and the GMM's k-means start on data with one far-offset column (issue 19).

Both are translation invariant, so adding 1e8 or 1e12 to one float64 column must give the
fit of the data without the offset: k-means inertia to 1e-6 relative (here ~1e-12: the
column lies on a 2^-10 grid, so x + 1e12 is exact), the same partition up to a relabelling
(`latent predict`), the same centers moved by the offset, the same number of iterations,
and the GMM's (diag, k-means start) lower bound to 1e-6 nats/sample. Before k-means
worked about the data mean, the distance expansion lost every digit: inertia 10x too
large at 1e8, empty clusters at 1e12, the GMM's bound off by units. Also: the 1e12 fit is
the same bits on 2 ranks; a float32 column held at 3e38 (20,000 distinct rows) gives no
"only 1 distinct points" warning and the fit of the other columns; data with 3 distinct
points still get that warning. Usage: kmeans_offset_cli_test.py LATENT MPIEXEC (exits 77
without h5py).
"""
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


def write_shards(directory, X, rows_per_shard=5000):
    os.makedirs(directory)
    for s in range(0, X.shape[0], rows_per_shard):
        with h5py.File(f"{directory}/part-{s // rows_per_shard:05d}.h5", "w") as f:
            f["data"] = X[s:s + rows_per_shard]
            f.attrs["format_version"] = np.int64(1)
            f.attrs["kind"] = "dense"


def same_partition(a, b):
    """b relabels a one-to-one."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def blobs(rng, n, d, k, spread=10.0):
    centers = rng.normal(scale=spread, size=(k, d))
    return centers[np.arange(n) % k] + rng.normal(size=(n, d))


with tempfile.TemporaryDirectory() as tmp:
    rng = np.random.default_rng(19)
    base = blobs(rng, 20000, 5, 4)
    base[:, 1] = np.round(base[:, 1] * 1024) / 1024
    fits = {}
    for offset in (0.0, 1e8, 1e12):
        X = base.copy()
        X[:, 1] += offset
        data = f"{tmp}/off{offset:g}"
        write_shards(data, X)
        km, gm, pred = f"{data}-km.h5", f"{data}-gmm.h5", f"{data}-pred.h5"
        r = run(["fit", "kmeans", "--data", data, "--output", km, "--n-clusters", "4", "--n-init", "3",
                 "--block-rows", "1000"])
        quiet = "empty" not in r.stderr and "distinct" not in r.stderr
        check(quiet, f"offset {offset:g}: no warnings" + ("" if quiet else f": {r.stderr[-400:]}"))
        run(["predict", "--model", km, "--data", data, "--output", pred])
        run(["fit", "gmm", "--data", data, "--output", gm, "--n-components", "4", "--covariance-type", "diag",
             "--block-rows", "1000"])
        with h5py.File(km) as f, h5py.File(pred) as p, h5py.File(gm) as g:
            centers = f["cluster_centers"][()]
            centers[:, 1] -= offset
            fits[offset] = dict(inertia=float(f.attrs["inertia"]), n_iter=int(f.attrs["n_iter"]), centers=centers,
                                labels=p["labels"][()], bound=float(g.attrs["lower_bound"]))
    ref = fits[0.0]
    check(abs(ref["inertia"] / base.size - 1) < 0.05, f"the clusters are found: inertia/(N D) {ref['inertia'] / base.size:.4f}")
    for offset in (1e8, 1e12):
        f = fits[offset]
        rel = abs(f["inertia"] - ref["inertia"]) / ref["inertia"]
        check(rel < 1e-6, f"offset {offset:g}: inertia {f['inertia']:.10g} vs {ref['inertia']:.10g} (relative {rel:.1e})")
        check(same_partition(ref["labels"], f["labels"]), f"offset {offset:g}: the same partition")
        check(f["n_iter"] == ref["n_iter"], f"offset {offset:g}: {f['n_iter']} Lloyd iterations vs {ref['n_iter']}")
        worst = max(np.min(np.linalg.norm(f["centers"] - c, axis=1)) for c in ref["centers"])
        check(worst < 1e-3, f"offset {offset:g}: centers moved by the offset (worst {worst:.1e})")
        diff = abs(f["bound"] - ref["bound"])
        check(diff < 1e-6, f"offset {offset:g}: gmm diag lower bound {f['bound']:.10f} vs {ref['bound']:.10f} ({diff:.1e})")

    # The frame (the exact column mean) keeps rank invariance: 2 ranks give the same bits.
    data = f"{tmp}/off1e+12"
    run(["fit", "kmeans", "--data", data, "--output", f"{tmp}/km2.h5", "--n-clusters", "4", "--n-init", "3",
         "--block-rows", "1000"], ranks=2)
    with h5py.File(f"{data}-km.h5") as a, h5py.File(f"{tmp}/km2.h5") as b:
        check(np.array_equal(a["cluster_centers"][()], b["cluster_centers"][()])
              and a.attrs["inertia"] == b.attrs["inertia"], "offset 1e12: 2 ranks give the same bits")

    # A float32 column held at 3e38: 20,000 distinct rows, not "only 1 distinct points".
    X = blobs(rng, 20000, 3, 4).astype(np.float32)
    X[:, 2] = np.float32(3e38)
    write_shards(f"{tmp}/huge", X)
    X[:, 2] = 0
    write_shards(f"{tmp}/plain", X)
    inertia = {}
    for name in ("huge", "plain"):
        r = run(["fit", "kmeans", "--data", f"{tmp}/{name}", "--output", f"{tmp}/{name}.h5", "--n-clusters", "4",
                 "--n-init", "3"])
        quiet = "distinct" not in r.stderr and "empty" not in r.stderr
        check(quiet, f"{name}: no false warning" + ("" if quiet else f": {r.stderr[-400:]}"))
        with h5py.File(f"{tmp}/{name}.h5") as f:
            inertia[name] = float(f.attrs["inertia"])
    rel = abs(inertia["huge"] - inertia["plain"]) / inertia["plain"]
    check(rel < 1e-6 and abs(inertia["plain"] / (20000 * 2) - 1) < 0.1,
          f"3e38 column: inertia {inertia['huge']:.8g} = that of the other columns {inertia['plain']:.8g}")

    # Three distinct points and five clusters: the warning is still given, and true.
    X = np.zeros((30, 2))
    X[:, 0] = np.arange(30) % 3
    write_shards(f"{tmp}/few", X)
    r = run(["fit", "kmeans", "--data", f"{tmp}/few", "--output", f"{tmp}/few.h5", "--n-clusters", "5"])
    check("the data has only 3 distinct points, fewer than n_clusters=5" in r.stderr, "3 distinct points: warned")

H.finish()
