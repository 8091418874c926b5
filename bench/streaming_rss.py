#!/usr/bin/python3
"""Streaming: peak memory must not grow with the data (8x the rows, same RSS).

What it measures
  Two synthetic data sets, float32, D=784 (a 10-component diagonal Gaussian
  mixture, values roughly in [0,1] like image pixels):
    D1: ROWS rows (default 100000, one 100000-row shard, ~314 MB)
    D8: 8 x ROWS rows (8 shards, ~2.5 GB)
  For each: `latent fit gmm --covariance-type diag --n-components 10 --max-iter 3
  --tol 0` with the default streaming mode (no --cache-mb), 1 process run
  directly (no mpirun), under `/usr/bin/time -v`. Reports "Maximum resident set
  size" of both, the ratio RSS(D8)/RSS(D1) (PASS if <= 1.10) and the streaming
  rate in rows/s (median samples_per_second of the logged EM iterations, and
  rows x iterations / wall time including initialisation).
  The data comes from the page cache after generation, so the rate is the
  compute + HDF5 decode rate, not a disk rate.

How to run (binary must be built; needs ~3 GB free in bench/.data/)
  /usr/bin/python3 bench/streaming_rss.py
  /usr/bin/python3 bench/streaming_rss.py --rows 20000     # quick
  Options: --rows N  --factor 8  --threads T  --keep (keep the data for reruns)
           --init-params P (passed to latent; default: latent's default)
  Results: bench/results/streaming_rss.json
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

D = 784
K = 10
MAX_RSS_RATIO = 1.10


def make_shard(path: Path, rows: int, seed: int) -> None:
    """One shard of `rows` float32 rows from a fixed 10-component diagonal mixture
    (mixture parameters from seed 12345, the points from `seed`)."""
    import numpy as np
    prng = np.random.default_rng(12345)
    means = prng.uniform(0.1, 0.9, size=(K, D))
    scales = prng.uniform(0.05, 0.2, size=(K, D))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, K, size=rows)
    X = np.empty((rows, D), dtype=np.float32)
    step = 20000
    for s in range(0, rows, step):
        e = min(rows, s + step)
        lab = labels[s:e]
        X[s:e] = means[lab] + scales[lab] * rng.standard_normal((e - s, D))
    common.write_shard(path, X, labels=labels)


def make_dataset(directory: Path, rows: int, shards: int) -> None:
    """Shard i holds `rows` rows drawn with seed i; D8's first shard equals D1's."""
    expected = [directory / f"part-{i:05d}.h5" for i in range(shards)]
    if common.shard_paths(directory) == expected and all(_rows_of(p) == rows for p in expected):
        print(f"reusing {directory}", file=sys.stderr)
        return
    shutil.rmtree(directory, ignore_errors=True)
    tmp = directory.with_name(directory.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for i, p in enumerate(expected):
        print(f"writing {directory.name}/{p.name} ({rows} x {D} float32)", file=sys.stderr, flush=True)
        make_shard(tmp / p.name, rows, seed=i)
    tmp.rename(directory)


def _rows_of(path: Path) -> int:
    import h5py
    try:
        with h5py.File(path, "r") as f:
            return f["data"].shape[0]
    except OSError:
        return -1


def parse_time_v(text: str) -> dict:
    out = {}
    m = re.search(r"Maximum resident set size \(kbytes\):\s*(\d+)", text)
    out["max_rss_kb"] = int(m.group(1)) if m else None
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\):\s*([\d:.]+)", text)
    if m:
        secs = 0.0
        for part in m.group(1).split(":"):
            secs = secs * 60 + float(part)
        out["wall_seconds"] = secs
    for key, pat in (("user_seconds", r"User time \(seconds\):\s*([\d.]+)"),
                     ("system_seconds", r"System time \(seconds\):\s*([\d.]+)"),
                     ("major_faults", r"Major \(requiring I/O\) page faults:\s*(\d+)")):
        m = re.search(pat, text)
        if m:
            out[key] = float(m.group(1))
    return out


def fit(args, data: Path, tag: str, n_rows: int) -> dict:
    runs = common.data_dir() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    model, log = runs / f"rss_{tag}.h5", runs / f"rss_{tag}.log.jsonl"
    log.unlink(missing_ok=True)
    cmd = ["/usr/bin/time", "-v"] + common.latent_cmd(
        ["fit", "gmm", "--data", data, "--output", model, "--n-components", K,
         "--covariance-type", "diag", "--max-iter", args.max_iter, "--tol", 0,
         "--threads", args.threads, "--seed", 0, "--log-json", log, "--overwrite"]
        + (["--init-params", args.init_params] if args.init_params else []))
    res = common.run(cmd, capture=True, check=False, nice=args.nice)
    if res.returncode != 0:
        sys.stderr.write(res.stderr[-4000:])
        raise SystemExit(f"latent fit failed on {tag} (exit {res.returncode})")
    tv = parse_time_v(res.stderr)
    if tv.get("max_rss_kb") is None:
        raise SystemExit("could not find 'Maximum resident set size' in /usr/bin/time -v output")
    its = common.iteration_records(log)
    rates = [r["samples_per_second"] for r in its if r.get("samples_per_second") is not None]
    tv.update({
        "rows": n_rows,
        "iterations": len(its),
        "iteration_seconds": [r.get("seconds") for r in its],
        "rows_per_second_em": common.median(rates) if rates else None,
        "rows_per_second_overall": n_rows * max(1, len(its)) / tv["wall_seconds"] if tv.get("wall_seconds") else None,
    })
    return tv


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100000, help="rows of D1 (and of each D8 shard)")
    ap.add_argument("--factor", type=int, default=8, help="D8 has FACTOR x ROWS rows")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="latent --threads (default nproc)")
    ap.add_argument("--max-iter", type=int, default=3)
    ap.add_argument("--init-params", default=None, help="latent --init-params (default: not passed)")
    ap.add_argument("--keep", action="store_true", help="keep the generated data (default: delete)")
    ap.add_argument("--nice", type=int, default=None, help="run latent under nice -n N")
    args = ap.parse_args()
    if not Path("/usr/bin/time").is_file():
        sys.exit("/usr/bin/time not found (Debian package 'time')")
    common.latent_bin()  # fail early if missing

    load = common.warn_if_busy()
    root = common.data_dir() / "streaming-rss"
    d1, d8 = root / "d1", root / f"d{args.factor}"
    try:
        make_dataset(d1, args.rows, 1)
        make_dataset(d8, args.rows, args.factor)
        r1 = fit(args, d1, "d1", args.rows)
        r8 = fit(args, d8, f"d{args.factor}", args.rows * args.factor)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    ratio = r8["max_rss_kb"] / r1["max_rss_kb"]
    ok = ratio <= MAX_RSS_RATIO
    gb = args.rows * D * 4 / 1e9

    def rate(x):
        return "n/a" if x is None else f"{x:,.0f}"

    print()
    print(f"Streaming GMM fit (diag, K={K}, {args.max_iter} iterations, 1 process x {args.threads} threads, "
          f"no --cache-mb)")
    common.print_table([
        [f"D1 ({args.rows} rows, {gb:.2f} GB)", f"{r1['max_rss_kb'] / 1024:.1f}",
         f"{r1.get('wall_seconds', 0):.1f}", rate(r1["rows_per_second_em"]), rate(r1["rows_per_second_overall"])],
        [f"D{args.factor} ({args.rows * args.factor} rows, {gb * args.factor:.2f} GB)",
         f"{r8['max_rss_kb'] / 1024:.1f}", f"{r8.get('wall_seconds', 0):.1f}",
         rate(r8["rows_per_second_em"]), rate(r8["rows_per_second_overall"])],
    ], ["data", "max RSS (MiB)", "wall s", "rows/s (EM iter)", "rows/s (overall)"])
    print(f"\n{'PASS' if ok else 'FAIL'}: RSS(D{args.factor}) / RSS(D1) = {ratio:.3f} "
          f"({'<=' if ok else '>'} {MAX_RSS_RATIO})")

    common.write_results("streaming_rss", {
        "benchmark": "streaming_rss",
        "config": vars(args) | {"d": D, "k": K},
        "d1": r1, f"d{args.factor}": r8,
        "load_average_at_start": load,
        "rss_ratio": ratio, "max_ratio": MAX_RSS_RATIO, "pass": ok,
    })
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
