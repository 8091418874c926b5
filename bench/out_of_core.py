#!/usr/bin/python3
"""Out of core, for real: GMM and LDA fits on data sets larger than this machine's memory.

What it measures
  For each model (--models gmm,lda):
  1. A synthetic data set of --size-gib (default 40 GiB for gmm, 28 GiB for lda: both
     larger than the 24 GiB of RAM here) written in parallel by `latent generate` on
     --ranks ranks (gmm: D = 784 float32 rows from a 10-component diagonal mixture; lda:
     V = 20,000, 50 true topics, 100 tokens per document), and a small one (--cache-gib,
     default 2 GiB) that stays in the page cache.
  2. The raw sequential read rate of the big data set's files: page cache dropped (as
     root), then every shard file read in 16 MiB chunks, once by one reader and once by
     --ranks readers in parallel, each taking a contiguous half of the files as the ranks
     do. The better of the two is the reference.
  3. `latent fit` on the big set with --profile and --memory-budget (per rank, default
     1 GiB) on --ranks ranks × 1 thread, streaming (no cache): per-iteration seconds,
     the streaming rate (bytes of the data set / seconds per pass), the share of time the
     compute waited for reads, and the peak RSS of every rank (checked against the budget).
     gmm: --init-params random, 3 EM iterations (the first is not timed), K = 10 and
     again with K = 2 (an E-step cheap enough that the disk sets the pace: the test of
     read/compute overlap); lda: online, K = 20, batch 4096, one pass.
  4. The same fit on the small, page-cached set (run twice; the second is timed): rows
     per second when reading costs nothing. Out-of-core rows/s ÷ in-cache rows/s says how
     much of the disk time is hidden behind compute; streaming rate ÷ raw read rate says
     how close to the disk the fit runs (aim: ≥ 80 % when the fit is I/O-bound).

How to run (needs ~size + 2 GiB free on the disk of --data-dir; the big sets are deleted
afterwards unless --keep)
  /usr/bin/python3 bench/out_of_core.py                          # 40 GiB gmm, 28 GiB lda
  /usr/bin/python3 bench/out_of_core.py --models gmm --size-gib 2 --cache-gib 0.5   # quick look
  Results: bench/results/out_of_core.json (the profile logs beside it: out_of_core_*.jsonl)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

GIB = 1 << 30
GMM_D, GMM_K_TRUE, GMM_K_FIT = 784, 10, 10
LDA_V, LDA_K_TRUE, LDA_K_FIT, LDA_LENGTH = 20000, 50, 20, 100


def drop_caches() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def read_files(files: list[Path]) -> int:
    total = 0
    buf = bytearray(16 << 20)
    for p in files:
        with open(p, "rb", buffering=0) as f:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                total += n
    return total


def raw_read_rate(directory: Path, streams: int) -> dict:
    files = common.shard_paths(directory)
    dropped = drop_caches()
    parts = [files[len(files) * i // streams:len(files) * (i + 1) // streams] for i in range(streams)]
    totals = [0] * streams

    def work(i):
        totals[i] = read_files(parts[i])

    t0 = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    return {"streams": streams, "bytes": sum(totals), "seconds": seconds, "GBps": sum(totals) / seconds / 1e9,
            "page_cache_dropped": dropped}


def dir_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in common.shard_paths(directory))


def generate(model: str, out: Path, n: int, ranks: int) -> float:
    if common.has_shards(out):
        return 0.0
    if model == "gmm":
        args = ["generate", "gmm", "--n-samples", n, "--n-features", GMM_D, "--n-components", GMM_K_TRUE,
                "--cluster-std", 0.1, "--center-box", 0.5]
    else:
        args = ["generate", "lda", "--n-samples", n, "--vocab-size", LDA_V, "--n-components", LDA_K_TRUE,
                "--doc-length", LDA_LENGTH]
    truth = Path(str(out) + ".truth.h5")
    if truth.exists():
        truth.unlink()
    res = common.run_latent(args + ["--seed", 1, "--output", out], ranks)
    return res.seconds


def fit(model: str, data: Path, log: Path, ranks: int, budget: float, out: Path, k: int = 0) -> list[dict]:
    if model == "gmm":
        args = ["fit", "gmm", "--n-components", k or GMM_K_FIT, "--covariance-type", "diag", "--init-params", "random",
                "--max-iter", 3, "--tol", 0, "--reg-covar", 1e-3]
    else:
        args = ["fit", "lda", "--n-components", LDA_K_FIT, "--method", "online", "--batch-size", 4096,
                "--max-iter", 1, "--evaluate-every", 0]
    args += ["--data", data, "--output", out, "--overwrite", "--threads", 1, "--memory-budget", budget,
             "--profile", "--log-json", log]
    common.run_latent(args, ranks)
    return common.read_log_json(log)


def summarise(records: list[dict], data_bytes: int, rows: int, budget: float) -> dict:
    its = [r for r in records if r["event"] == "iteration"]
    done = [r for r in records if r["event"] == "done"][-1]
    timed = its[1:] if len(its) > 1 else its
    sec = common.median([r["seconds"] for r in timed])
    prof = [r["profile"] for r in timed]
    mean = lambda key: sum(sum(p[key]) / len(p[key]) for p in prof) / len(prof)  # noqa: E731
    rss = done["profile_total"]["max_rss_bytes"]
    return {
        "iterations_timed": [r["iteration"] for r in timed],
        "seconds_per_pass": sec,
        "rows_per_second": rows / sec,
        "streaming_GBps": data_bytes / sec / 1e9,
        "read_wait_share": mean("read_wait_seconds") / mean("seconds"),
        "compute_share": mean("compute_seconds") / mean("seconds"),
        "allreduce_share": mean("allreduce_seconds") / mean("seconds"),
        "io_thread_busy_share": mean("read_seconds") / mean("seconds"),
        "peak_rss_MiB_per_rank": [x / 2**20 for x in rss],
        "budget_GiB_per_rank": budget,
        "within_budget": max(rss) <= budget * GIB,
        "tokens_per_second": common.median([r.get("tokens_per_second", 0) for r in timed]) or None,
    }


def rows_of(directory: Path, model: str) -> int:
    import h5py
    key = "data" if model == "gmm" else "indptr"
    return sum(h5py.File(p, "r")[key].shape[0] - (0 if model == "gmm" else 1) for p in common.shard_paths(directory))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="gmm,lda")
    ap.add_argument("--size-gib", type=float, default=0, help="big data set size (default 40 for gmm, 28 for lda)")
    ap.add_argument("--cache-gib", type=float, default=2.0, help="size of the in-page-cache data set")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--budget-gib", type=float, default=1.0, help="--memory-budget per rank")
    ap.add_argument("--data-dir", type=Path, default=None, help="where the data sets go (default bench/.data/out_of_core)")
    ap.add_argument("--keep", action="store_true", help="keep the big data sets")
    args = ap.parse_args()
    common.latent_bin()
    root = args.data_dir or common.data_dir() / "out_of_core"
    root.mkdir(parents=True, exist_ok=True)
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    out_json = common.RESULTS_DIR / "out_of_core.json"
    previous = json.loads(out_json.read_text()).get("models", {}) if out_json.exists() else {}
    results = {"machine_memory_GiB": mem / GIB, "ranks": args.ranks, "threads_per_rank": 1, "models": previous}
    for model in args.models.split(","):
        size = args.size_gib or (40.0 if model == "gmm" else 28.0)
        small = root / f"{model}-cache"
        big = root / f"{model}-big"
        # Bytes per row from the small set (LDA documents vary in length).
        if model == "gmm":
            per_row = GMM_D * 4
            generate(model, small, int(args.cache_gib * GIB / per_row), args.ranks)
        else:
            generate(model, small, int(args.cache_gib * GIB / 1200), args.ranks)
            per_row = dir_bytes(small) / rows_of(small, model)
        n_big = int(size * GIB / per_row)
        if not common.has_shards(big):
            free = shutil.disk_usage(root).free
            if free < size * GIB + 2 * GIB:
                sys.exit(f"{root}: {free / GIB:.1f} GiB free, {size + 2:.1f} GiB needed for the {model} data set")
        gen_seconds = generate(model, big, n_big, args.ranks)
        big_bytes, small_bytes = dir_bytes(big), dir_bytes(small)
        rows_big, rows_small = rows_of(big, model), rows_of(small, model)
        print(f"{model}: big {big_bytes / GIB:.1f} GiB ({rows_big} rows), in-cache {small_bytes / GIB:.2f} GiB",
              file=sys.stderr)
        raw = [raw_read_rate(big, 1), raw_read_rate(big, args.ranks)]
        drop_caches()
        log_big = common.RESULTS_DIR / f"out_of_core_{model}_big.jsonl"
        recs = fit(model, big, log_big, args.ranks, args.budget_gib, root / f"{model}-big-model.h5")
        out = summarise(recs, big_bytes, rows_big, args.budget_gib)
        log_small = common.RESULTS_DIR / f"out_of_core_{model}_cache.jsonl"
        fit(model, small, log_small, args.ranks, args.budget_gib, root / f"{model}-cache-model.h5")  # warms the cache
        cached = summarise(fit(model, small, log_small, args.ranks, args.budget_gib, root / f"{model}-cache-model.h5"),
                           small_bytes, rows_small, args.budget_gib)
        best_raw = max(r["GBps"] for r in raw)
        io_bound = None
        if model == "gmm":
            # K = 2: the E-step is ~5x cheaper, so the disk, not the compute, sets the pace.
            drop_caches()
            log_io = common.RESULTS_DIR / "out_of_core_gmm_big_k2.jsonl"
            io_bound = summarise(fit(model, big, log_io, args.ranks, args.budget_gib, root / "gmm-big-model.h5", k=2),
                                 big_bytes, rows_big, args.budget_gib)
            io_bound["streaming_over_raw_read"] = io_bound["streaming_GBps"] / best_raw
        results["models"][model] = {
            "big": {"GiB": big_bytes / GIB, "rows": rows_big, "generate_seconds": gen_seconds,
                    "generate_GBps": big_bytes / gen_seconds / 1e9 if gen_seconds else None, **out},
            "in_cache": {"GiB": small_bytes / GIB, "rows": rows_small, **cached},
            "raw_read": raw,
            "streaming_over_raw_read": out["streaming_GBps"] / best_raw,
            "out_of_core_over_in_cache_rows_per_second": out["rows_per_second"] / cached["rows_per_second"],
        }
        m = results["models"][model]
        if io_bound:
            m["big_k2_io_bound"] = io_bound
        print(f"\n{model}: {m['big']['GiB']:.1f} GiB on {args.ranks} ranks x 1 thread, memory {mem / GIB:.1f} GiB")
        print(f"  raw sequential read: {raw[0]['GBps']:.2f} GB/s (1 reader), {raw[1]['GBps']:.2f} GB/s "
              f"({args.ranks} readers)")
        print(f"  out of core: {out['seconds_per_pass']:.1f} s/pass, {out['streaming_GBps']:.2f} GB/s = "
              f"{100 * m['streaming_over_raw_read']:.0f} % of the raw read rate; {out['rows_per_second']:.4g} rows/s; "
              f"read wait {100 * out['read_wait_share']:.1f} % of the time")
        print(f"  in cache:    {cached['seconds_per_pass']:.2f} s/pass, {cached['rows_per_second']:.4g} rows/s "
              f"-> out of core runs at {100 * m['out_of_core_over_in_cache_rows_per_second']:.0f} % of in-cache speed")
        if io_bound:
            print(f"  I/O-bound (K = 2): {io_bound['seconds_per_pass']:.1f} s/pass, {io_bound['streaming_GBps']:.2f} GB/s = "
                  f"{100 * io_bound['streaming_over_raw_read']:.0f} % of the raw read rate; read wait "
                  f"{100 * io_bound['read_wait_share']:.1f} %")
        print(f"  peak RSS per rank: {', '.join(f'{x:.0f}' for x in out['peak_rss_MiB_per_rank'])} MiB "
              f"(budget {args.budget_gib:g} GiB: {'within' if out['within_budget'] else 'EXCEEDED'})")
        if not args.keep:
            shutil.rmtree(big)
            for p in [Path(str(big) + ".truth.h5"), root / f"{model}-big-model.h5"]:
                p.unlink(missing_ok=True)
        common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out_json} (other models' entries kept)")


if __name__ == "__main__":
    main()
