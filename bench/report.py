#!/usr/bin/python3
"""Profile report: where the time of a `latent fit --profile` run goes, per rank.

What it measures
  Nothing by itself: it reads the JSON logs of fits run with
      latent fit MODEL ... --profile --log-json LOG.jsonl
  whose {"event":"iteration"} lines carry "profile": {key: [one value per rank]} for
  seconds, read_wait_seconds, read_seconds, compute_seconds, allreduce_seconds,
  m_step_seconds, allreduce_bytes, collectives, max_rss_bytes (that iteration only;
  max_rss_bytes is the peak so far), and whose {"event":"done"} line carries
  "profile_total" (the same keys summed over the run). An iteration is an EM iteration
  (gmm, ...), a pass over the corpus (lda online) or an epoch (vae).
  For every log it reports (means over iterations; the first iteration is left out of
  the means when there are at least 3, since it includes warm-up: page cache, thread
  pools, first-touch allocations):
    seconds per iteration       wall time of an iteration (max over ranks)
    read wait / compute / allreduce / M-step
                                seconds and % of the iteration, mean over ranks and max
                                over ranks. They add up to the iteration (compute is
                                defined as the rest). Read wait = reading the I/O thread
                                did not hide; allreduce includes waiting for slower ranks
                                (load imbalance shows up there).
    I/O read (overlapped)       seconds the I/O thread spent reading and validating
    load imbalance              max / mean over ranks of compute seconds
    allreduce MB / iteration    payload bytes of this rank's collectives (mean over
                                ranks), and collectives per iteration
    peak RSS                    MiB, max over ranks (and the per-rank values in JSON)
    samples/s, tokens/s         as logged by rank 0 (tokens/s: LDA only)

How to run
  /usr/bin/python3 bench/report.py LOG.jsonl [LOG2.jsonl ...] [--png OUT.png] [--json OUT.json]
  e.g.
    mpirun --oversubscribe -n 2 build/release/src/latent fit gmm --data D --output m.h5 \\
        --n-components 16 --covariance-type diag --profile --log-json run.jsonl
    /usr/bin/python3 bench/report.py run.jsonl --png run.png
  Output: a text table on stdout; with --png a stacked-bar chart of the breakdown (one
  bar per rank when a single log is given, else one bar per log, mean over ranks);
  with --json the same numbers as JSON. Nothing is written to bench/results/ unless
  asked for with --png/--json.

  Other scripts import summarize_log() (bench/scaling/run_scaling.py, collect.py).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

# The components that add up to an iteration's wall time, in plotting order.
COMPONENTS = [
    ("read_wait", "read_wait_seconds", "read wait"),
    ("compute", "compute_seconds", "compute"),
    ("allreduce", "allreduce_seconds", "allreduce"),
    ("m_step", "m_step_seconds", "M-step"),
]
COLORS = {"read_wait": "#d62728", "compute": "#1f77b4", "allreduce": "#ff7f0e", "m_step": "#2ca02c"}
PROFILE_KEYS = ["seconds", "read_wait_seconds", "read_seconds", "compute_seconds", "allreduce_seconds",
                "m_step_seconds", "allreduce_bytes", "collectives", "max_rss_bytes"]
NO_PROFILE_HINT = "run latent fit with --profile --log-json"
MIB = 1024.0 * 1024.0


class ProfileError(Exception):
    """A log that cannot be summarised (missing, empty, no profile fields)."""


def _mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else float("nan")


def _num(x) -> float:
    return float("nan") if x is None else float(x)


def load_profile_log(path) -> tuple[list[dict], dict | None]:
    """(iteration records that have a profile, the done record or None). Raises
    ProfileError when the file has no iteration with a profile."""
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"{path}: no such file")
    try:
        recs = common.read_log_json(path)
    except json.JSONDecodeError as e:
        raise ProfileError(f"{path}: not a JSON-lines log ({e})")
    its = [r for r in recs if r.get("event") == "iteration"]
    done = next((r for r in reversed(recs) if r.get("event") == "done"), None)
    if not its:
        raise ProfileError(f"{path}: no iteration records (did the fit run? {NO_PROFILE_HINT})")
    prof = [r for r in its if isinstance(r.get("profile"), dict)]
    if not prof:
        raise ProfileError(f"{path}: the iteration records have no \"profile\" field: {NO_PROFILE_HINT}")
    for r in prof:
        missing = [k for k in PROFILE_KEYS if k not in r["profile"]]
        if missing:
            raise ProfileError(f"{path}: iteration {r.get('iteration')}: profile lacks {', '.join(missing)} "
                               "(log written by an older latent?)")
    return prof, done


def summarize_log(path, skip_first: bool | None = None) -> dict:
    """The numbers of one profile log (see the module docstring). skip_first: leave out
    the first iteration (default: when there are at least 3)."""
    its, done = load_profile_log(path)
    n_total = len(its)
    if skip_first is None:
        skip_first = n_total >= 3
    used = its[1:] if skip_first and n_total > 1 else its
    first = its[0]
    ranks = int(first.get("ranks") or len(first["profile"]["seconds"]))
    threads = first.get("threads")
    nr = len(first["profile"]["seconds"])

    def per_iter(key):  # list over used iterations of per-rank lists
        return [[_num(v) for v in r["profile"][key]] for r in used]

    sec = per_iter("seconds")
    iter_wall = [max(s) for s in sec]              # wall time of the iteration (slowest rank)
    iter_mean = [_mean(s) for s in sec]
    out = {
        "path": str(path), "name": Path(path).name.removesuffix(".jsonl").removesuffix(".log"),
        "model": first.get("model"), "ranks": ranks, "threads": threads,
        "iterations_total": n_total, "iterations_used": len(used),
        "first_iteration_skipped": bool(skip_first and n_total > 1),
        "seconds_per_iteration": _mean(iter_wall),
        "seconds_per_iteration_median": common.median(iter_wall),
        "seconds_per_iteration_rank_mean": _mean(iter_mean),
        "iteration_seconds": iter_wall,
        "breakdown": {}, "per_rank": {},
    }
    denom = out["seconds_per_iteration_rank_mean"]
    for name, key, _label in COMPONENTS + [("read_io", "read_seconds", "I/O read (overlapped)")]:
        vals = per_iter(key)
        m = _mean(_mean(v) for v in vals)
        mx = _mean(max(v) for v in vals)
        out["breakdown"][name] = {
            "mean_seconds": m, "max_seconds": mx,
            "mean_percent": 100.0 * m / denom if denom > 0 else float("nan"),
            "max_percent": 100.0 * mx / denom if denom > 0 else float("nan"),
        }
        out["per_rank"][name] = [_mean(v[i] for v in vals) for i in range(nr)]
    out["per_rank"]["seconds"] = [_mean(v[i] for v in sec) for i in range(nr)]
    comp = per_iter("compute_seconds")
    out["load_imbalance"] = _mean(max(c) / _mean(c) if _mean(c) > 0 else float("nan") for c in comp)
    out["allreduce_mb_per_iteration"] = _mean(_mean(v) for v in per_iter("allreduce_bytes")) / 1e6
    out["collectives_per_iteration"] = _mean(_mean(v) for v in per_iter("collectives"))
    rss = [max(_num(r["profile"]["max_rss_bytes"][i]) for r in its) for i in range(nr)]
    if done and isinstance(done.get("profile_total"), dict) and "max_rss_bytes" in done["profile_total"]:
        rss = [max(a, _num(b)) for a, b in zip(rss, done["profile_total"]["max_rss_bytes"])]
    out["peak_rss_mib_per_rank"] = [x / MIB for x in rss]
    out["peak_rss_mib"] = max(out["peak_rss_mib_per_rank"])
    out["samples_per_second"] = _mean(_num(r.get("samples_per_second")) for r in used)
    # rows (documents) per iteration: samples/s x seconds of rank 0's line (exact: that is how it is computed)
    rows = [_num(r.get("samples_per_second")) * _num(r.get("seconds")) for r in used]
    out["rows_per_iteration"] = common.median(rows) if rows and not any(math.isnan(x) for x in rows) else None
    # k-means' distance bounds (logs before they were recorded have no settled_rows):
    # the share of each iteration's k-means row visits (kmeans_rows; logs before it: the
    # iteration's rows), all ranks, settled without the other distances.
    def visits(r):
        if "kmeans_rows" in r["profile"]:
            return sum(_num(v) for v in r["profile"]["kmeans_rows"])
        return _num(r.get("samples_per_second")) * _num(r.get("seconds"))

    if all("settled_rows" in r["profile"] for r in its):
        out["settled_fraction_per_iteration"] = [
            sum(_num(v) for v in r["profile"]["settled_rows"]) / visits(r) if visits(r) > 0 else float("nan")
            for r in its]
    toks = [_num(r.get("tokens_per_second")) * _num(r.get("seconds")) for r in used
            if r.get("tokens_per_second") is not None]
    out["tokens_per_iteration"] = common.median(toks) if toks else None
    tps = [r.get("tokens_per_second") for r in used if r.get("tokens_per_second") is not None]
    out["tokens_per_second"] = _mean(float(t) for t in tps) if tps else None
    if done:
        out["total_seconds"] = done.get("total_seconds")
        out["n_iter"] = done.get("n_iter")
        tot = done.get("profile_total")
        if isinstance(tot, dict):
            out["profile_total"] = {
                k: {"mean": _mean(_num(x) for x in v), "max": max(_num(x) for x in v)}
                for k, v in tot.items() if isinstance(v, list) and v}
    return out


# --------------------------------------------------------------------------- output

def _f(x, fmt="{:.3f}") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return fmt.format(x)


def _rate(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x / 1e6:.3f}M" if x >= 1e6 else f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.1f}"


def config_label(s: dict) -> str:
    return f"{s['ranks']}x{s['threads'] if s['threads'] is not None else '?'}"


def print_report(summaries: list[dict]) -> None:
    for s in summaries:
        note = (f"{s['iterations_used']} of {s['iterations_total']} iterations (first skipped)"
                if s["first_iteration_skipped"] else f"{s['iterations_used']} iteration(s)")
        print(f"== {s['path']}: {s['model']}, {s['ranks']} rank(s) x {s['threads']} thread(s), {note}")
        line = (f"   {_f(s['seconds_per_iteration'])} s/iteration (max over ranks; median "
                f"{_f(s['seconds_per_iteration_median'])}), {_rate(s['samples_per_second'])} samples/s")
        if s["tokens_per_second"] is not None:
            line += f", {_rate(s['tokens_per_second'])} tokens/s"
        print(line)
        print(f"   allreduce {_f(s['allreduce_mb_per_iteration'], '{:.2f}')} MB/iteration in "
              f"{_f(s['collectives_per_iteration'], '{:.1f}')} collectives; load imbalance (max/mean compute) "
              f"{_f(s['load_imbalance'], '{:.3f}')}; peak RSS {_f(s['peak_rss_mib'], '{:.1f}')} MiB (max rank)")
        rows = []
        for name, _k, label in COMPONENTS + [("read_io", None, "I/O read (overlapped)")]:
            b = s["breakdown"][name]
            rows.append([label, _f(b["mean_seconds"], "{:.4f}"), _f(b["mean_percent"], "{:.1f}"),
                         _f(b["max_seconds"], "{:.4f}"), _f(b["max_percent"], "{:.1f}")])
        common.print_table(rows, ["component", "mean s", "mean %", "max s", "max %"])
        print()
    if len(summaries) > 1:
        rows = []
        for s in summaries:
            b = s["breakdown"]
            rows.append([s["name"], s["model"], config_label(s), s["iterations_used"],
                         _f(s["seconds_per_iteration"]),
                         *[_f(b[n]["mean_percent"], "{:.1f}") for n, _k, _l in COMPONENTS],
                         _f(s["load_imbalance"], "{:.2f}"), _f(s["allreduce_mb_per_iteration"], "{:.2f}"),
                         _f(s["peak_rss_mib"], "{:.0f}"), _rate(s["samples_per_second"]),
                         _rate(s["tokens_per_second"]) if s["tokens_per_second"] is not None else "-"])
        common.print_table(rows, ["log", "model", "RxT", "iters", "s/iter", "wait%", "comp%", "allred%",
                                  "Mstep%", "imbal", "MB/iter", "RSS MiB", "samples/s", "tokens/s"])
        print("(% of the iteration, mean over ranks; iters = iterations in the means)")


def plot_breakdown(summaries: list[dict], png: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    if len(summaries) == 1:
        s = summaries[0]
        labels = [f"rank {i}" for i in range(len(s["per_rank"]["seconds"]))]
        values = {n: s["per_rank"][n] for n, _k, _l in COMPONENTS}
        title = f"{s['name']}: {s['model']} {config_label(s)}, seconds per iteration by rank"
    else:
        labels = [f"{s['name']}\n{s['model']} {config_label(s)}" for s in summaries]
        values = {n: [s["breakdown"][n]["mean_seconds"] for s in summaries] for n, _k, _l in COMPONENTS}
        title = "seconds per iteration (mean over ranks)"
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(labels) + 2.5), 4.2))
    x = list(range(len(labels)))
    bottom = [0.0] * len(labels)
    for n, _k, lab in COMPONENTS:
        v = [0.0 if (y is None or math.isnan(y)) else y for y in values[n]]
        ax.bar(x, v, bottom=bottom, color=COLORS[n], label=lab, width=0.7)
        bottom = [b + y for b, y in zip(bottom, v)]
    ax.set_xticks(x)
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("seconds per iteration")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)
    print(f"plot written to {png}")


def json_safe(o):
    """NaN -> None, recursively (JSON has no NaN)."""
    if isinstance(o, float) and (math.isnan(o) or math.isinf(o)):
        return None
    if isinstance(o, dict):
        return {k: json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_safe(v) for v in o]
    return o


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logs", nargs="+", type=Path, help="JSON-lines logs of `latent fit --profile --log-json`")
    ap.add_argument("--png", type=Path, help="write a stacked-bar chart of the breakdown here")
    ap.add_argument("--json", type=Path, help="write the numbers as JSON here")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--skip-first", dest="skip_first", action="store_true", default=None,
                   help="always leave out the first iteration (default: when there are >= 3)")
    g.add_argument("--keep-first", dest="skip_first", action="store_false", help="never leave it out")
    args = ap.parse_args(argv)
    try:
        summaries = [summarize_log(p, args.skip_first) for p in args.logs]
    except ProfileError as e:
        print(f"report.py: {e}", file=sys.stderr)
        return 2
    print_report(summaries)
    if args.png:
        plot_breakdown(summaries, args.png)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(json_safe({"logs": summaries}), indent=2) + "\n")
        print(f"numbers written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
