#!/usr/bin/python3
"""Scaling on a cluster: collects the logs of jobs/scaling_array.sbatch into scaling.json
and the scaling plots.

What it measures
  Nothing by itself: it reads the profile logs that jobs/scaling_array.sbatch (submitted
  by jobs/submit_scaling.sh) writes,
      DIR/MODEL-MODE-nNODES-rRANKS-tTHREADS-repI.jsonl
  (`latent fit ... --profile --log-json`; MODE = strong | weak, optional in the name:
  --kind gives it otherwise), and computes exactly what bench/scaling/run_scaling.py
  computes on one machine (its analysis and plotting code is reused): per log the median
  seconds per iteration over the iterations after the first (slowest rank), samples/s,
  the read wait / compute / allreduce / M-step breakdown, load imbalance, allreduce MB
  per iteration and peak RSS; per configuration (model, mode, nodes, ranks, threads) the
  median over the repetitions; then speed-up and parallel efficiency against the
  configuration with the fewest cores (strong: S = t0 / t, E = S x c0 / c; weak:
  E = t0 / t). Rows come from samples/s x seconds of rank 0's log lines (marked
  "rows_estimated"). With --cores-per-node C a configuration using more than C cores per
  node is marked oversubscribed. Logs without profile fields are skipped with a warning.

How to run
  /usr/bin/python3 bench/scaling/collect.py DIR [--out-dir OUT] [--name scaling]
      [--cores-per-node C] [--kind strong|weak] [--recursive]
  Results (OUT defaults to DIR, so cluster results do not overwrite bench/results/):
    OUT/NAME.json, OUT/NAME_strong.png, OUT/NAME_weak.png, OUT/NAME_breakdown.png
  Test locally (no SLURM): bench/scaling/run_scaling.py's logs follow another naming;
  logs named as above from any `latent fit --profile --log-json` run work.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import common  # noqa: E402
import report  # noqa: E402
import run_scaling  # noqa: E402

NAME_RE = re.compile(r"^(?P<model>[A-Za-z0-9_]+?)(?:-(?P<kind>strong|weak))?-n(?P<nodes>\d+)-r(?P<ranks>\d+)"
                     r"-t(?P<threads>\d+)(?:-rep(?P<rep>\d+))?\.jsonl$")


def collect(directory: Path, *, kind_default: str, cores_per_node: int | None, recursive: bool):
    paths = sorted(directory.rglob("*.jsonl") if recursive else directory.glob("*.jsonl"))
    groups: dict = {}
    skipped = []
    for p in paths:
        m = NAME_RE.match(p.name)
        if not m:
            skipped.append({"log": str(p), "reason": "name does not match MODEL-MODE-nN-rR-tT-repI.jsonl"})
            continue
        nodes = int(m.group("nodes"))
        kind = m.group("kind") or kind_default
        try:
            s = report.summarize_log(p, skip_first=True)
        except report.ProfileError as e:
            print(f"warning: skipping {e}", file=sys.stderr)
            skipped.append({"log": str(p), "reason": str(e)})
            continue
        ranks = int(s["ranks"])
        threads = int(s["threads"] if s["threads"] is not None else m.group("threads"))
        if ranks != int(m.group("ranks")) or threads != int(m.group("threads")):
            print(f"warning: {p.name}: the log says {ranks} ranks x {threads} threads; using the log",
                  file=sys.stderr)
        model = s["model"] or m.group("model")
        cores_avail = nodes * cores_per_node if cores_per_node else None
        rec = run_scaling.run_record(p, model=model, kind=kind, ranks=ranks, threads=threads,
                                     cores_available=cores_avail, nodes=nodes)
        rec["repetition"] = int(m.group("rep")) if m.group("rep") is not None else 0
        groups.setdefault((model, kind, nodes, ranks, threads), []).append(rec)
    runs = []
    for key, reps in sorted(groups.items()):
        reps.sort(key=lambda r: r["seconds_per_iteration"])
        mid = reps[(len(reps) - 1) // 2]  # the (lower) median repetition
        rec = dict(mid)
        rec["seconds_per_iteration"] = common.median([r["seconds_per_iteration"] for r in reps])
        rec["repetitions"] = len(reps)
        rec["seconds_per_iteration_repetitions"] = [r["seconds_per_iteration"] for r in reps]
        rec["logs"] = [r["log"] for r in reps]
        runs.append(rec)
    return runs, skipped


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("directory", type=Path, help="directory of the JSONL logs")
    ap.add_argument("--out-dir", type=Path, default=None, help="where to write (default: the log directory)")
    ap.add_argument("--name", default="scaling", help="file name stem (default scaling)")
    ap.add_argument("--cores-per-node", type=int, default=None,
                    help="cores of a node: configurations using more per node are marked oversubscribed")
    ap.add_argument("--kind", choices=["strong", "weak"], default="strong",
                    help="scaling kind of logs whose name has no -strong-/-weak- (default strong)")
    ap.add_argument("--recursive", action="store_true", help="also read logs in subdirectories")
    args = ap.parse_args(argv)
    if not args.directory.is_dir():
        raise SystemExit(f"{args.directory}: not a directory")
    runs, skipped = collect(args.directory, kind_default=args.kind, cores_per_node=args.cores_per_node,
                            recursive=args.recursive)
    if not runs:
        raise SystemExit(f"{args.directory}: no usable logs (expected MODEL-MODE-nN-rR-tT-repI.jsonl written by "
                         f"`latent fit --profile --log-json`; {len(skipped)} skipped)")
    obj = {"benchmark": "scaling", "mode": "cluster", "source": str(args.directory.resolve()),
           "cores_per_node": args.cores_per_node,
           "definitions": {
               "seconds_per_iteration": "median over repetitions of the median over the iterations after the "
                                        "first of the slowest rank's iteration seconds",
               "strong": "speedup = t(base) / t; efficiency = speedup x cores(base) / cores",
               "weak": "efficiency = t(base) / t; speedup = efficiency x cores / cores(base)",
               "base": "the configuration with the fewest cores",
               "rows": "estimated as samples/s x seconds from rank 0's iteration lines"},
           "runs": runs, "skipped": skipped}
    out = args.out_dir or args.directory
    run_scaling.write_outputs(obj, out, args.name, " (cluster)")
    if skipped:
        print(f"{len(skipped)} log(s) skipped (see 'skipped' in the JSON)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
