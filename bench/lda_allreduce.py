#!/usr/bin/python3
"""Communication: time of one K x V statistics reduction across 2 MPI ranks.

What it measures
  For sizes N = K*V from 1e5 to 3e7 elements (default 1e5, 3e5, 1e6, 3e6, 1e7, 3e7),
  and each strategy latent exposes, the median time of one reduction as reported
  by the hidden command
      mpirun -n 2 latent bench-allreduce --size N --strategy S --repeat R
  which prints one JSON object {"size": N, "strategy": S, "seconds_per_op": t, ...}
  (rank 0; extra keys such as "bytes_per_element" are recorded). Strategies:
    allreduce       every rank gets the whole reduced K x V array (MPI_Allreduce with
                    the exact-summation reduction)
    reduce-scatter  each rank gets the reduced sum of its 1/ranks slice of the array
  The command is run --trials times (default 3) per (size, strategy) and the median
  of its seconds_per_op is kept. R defaults to about 1 GB of traffic per trial,
  between 3 and 200 repeats.
  Reported: seconds per op, algorithm bandwidth = N x bytes/element / t, and "bus
  bandwidth" with NCCL's convention (allreduce: 2 (p-1)/p x bytes / t, reduce-scatter:
  (p-1)/p x bytes / t, p = ranks), which is comparable with the machine's memory copy
  bandwidth (a NumPy copy of the same bytes, 1 thread, also reported) since both ranks
  share one machine's memory. bytes/element: the command's "bytes_per_element" if it
  prints one, else 8 (float64 / int64 statistics).

How to run (binary must be built; Open MPI env from bench/common.py is set)
  /usr/bin/python3 bench/lda_allreduce.py
  /usr/bin/python3 bench/lda_allreduce.py --sizes 1e5,1e6 --trials 1     # quick
  Options: --ranks 2 --strategies allreduce,reduce-scatter --repeat R --trials T --nice N
  Results: bench/results/lda_allreduce.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

DEFAULT_SIZES = "1e5,3e5,1e6,3e6,1e7,3e7"


def default_repeat(n: int, bytes_per_element: int = 8) -> int:
    return int(min(200, max(3, round(1e9 / (n * bytes_per_element)))))


def memcpy_bandwidth(n: int, bytes_per_element: int = 8, reps: int = 5) -> float:
    """Single-threaded NumPy copy of n elements: bytes read / s (median)."""
    import numpy as np
    a = np.ones(n * bytes_per_element // 8, dtype=np.float64)
    b = np.empty_like(a)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        np.copyto(b, a)
        ts.append(time.perf_counter() - t0)
    return a.nbytes / common.median(ts)


def bus_factor(strategy: str, p: int) -> float:
    if strategy == "allreduce":
        return 2.0 * (p - 1) / p
    if strategy == "reduce-scatter":
        return (p - 1) / p
    return 1.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--sizes", default=DEFAULT_SIZES, help=f"comma list of K*V element counts ({DEFAULT_SIZES})")
    ap.add_argument("--strategies", default="allreduce,reduce-scatter")
    ap.add_argument("--repeat", type=int, default=None, help="--repeat R for every size (default: ~1 GB per trial)")
    ap.add_argument("--trials", type=int, default=3, help="runs of the command per (size, strategy); median kept")
    ap.add_argument("--nice", type=int, default=None)
    ap.add_argument("--skip-memcpy", action="store_true", help="skip the NumPy copy-bandwidth baseline")
    args = ap.parse_args()
    sizes = [int(float(s)) for s in args.sizes.split(",") if s.strip()]
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]

    load = common.warn_if_busy()
    results = []
    rows = []
    for n in sizes:
        rep = args.repeat or default_repeat(n)
        copy_bw = None if args.skip_memcpy else memcpy_bandwidth(n)
        for s in strategies:
            outs = []
            for _ in range(args.trials):
                res = common.run_latent(["bench-allreduce", "--size", n, "--strategy", s, "--repeat", rep],
                                        ranks=args.ranks, capture=True, nice=args.nice)
                outs.append(common.parse_last_json(res.stdout))
            t = common.median([float(o["seconds_per_op"]) for o in outs])
            bpe = int(outs[0].get("bytes_per_element", 8))
            nbytes = n * bpe
            algbw = nbytes / t
            busbw = algbw * bus_factor(s, args.ranks)
            r = {"size": n, "strategy": s, "ranks": args.ranks, "repeat": rep, "trials": args.trials,
                 "seconds_per_op": t, "seconds_per_op_trials": [float(o["seconds_per_op"]) for o in outs],
                 "bytes_per_element": bpe, "bytes": nbytes, "algorithm_bandwidth_GBps": algbw / 1e9,
                 "bus_bandwidth_GBps": busbw / 1e9,
                 "memcpy_bandwidth_GBps": None if copy_bw is None else copy_bw / 1e9, "raw": outs}
            results.append(r)
            rows.append([f"{n:.0e}", s, f"{nbytes / 1e6:.1f}", rep, f"{t * 1e3:.3f}", f"{algbw / 1e9:.2f}",
                         f"{busbw / 1e9:.2f}", "n/a" if copy_bw is None else f"{copy_bw / 1e9:.2f}"])
            print(f"  size {n:.0e} {s}: {t * 1e3:.3f} ms/op", file=sys.stderr, flush=True)

    print()
    print(f"One K x V reduction across {args.ranks} ranks (`latent bench-allreduce`, median of {args.trials} "
          f"trials); bandwidths in GB/s")
    common.print_table(rows, ["K*V", "strategy", "MB", "repeat", "ms/op", "alg bw", "bus bw", "memcpy bw"])
    print("alg bw = bytes / time; bus bw = alg bw x 2(p-1)/p (allreduce) or (p-1)/p (reduce-scatter); "
          "memcpy bw = one-thread NumPy copy of the same bytes")
    by_size = {}
    for r in results:
        by_size.setdefault(r["size"], {})[r["strategy"]] = r["seconds_per_op"]
    if {"allreduce", "reduce-scatter"} <= set(strategies):
        print("\nreduce-scatter / allreduce time: " + ", ".join(
            f"{n:.0e}: {v['reduce-scatter'] / v['allreduce']:.2f}" for n, v in by_size.items()))
    common.write_results("lda_allreduce", {
        "benchmark": "lda_allreduce", "config": vars(args), "load_average_at_start": load,
        "mpi_env": common.mpi_settings(), "results": results,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
