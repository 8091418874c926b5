#!/usr/bin/python3
"""Scaling: strong and weak scaling of gmm, lda (online) and vae over ranks x threads.

What it measures
  For every model and every configuration RANKSxTHREADS (default 1x1, 1x2, 2x1, 2x2, 4x1)
      mpirun --oversubscribe -n RANKS latent fit MODEL ... --threads THREADS \\
          --profile --log-json LOG.jsonl
  on synthetic data from `latent generate`, with a fixed number of iterations, and from
  the log: the median seconds per iteration over the iterations after the first (the
  first includes warm-up; an iteration's seconds = the slowest rank's), samples/s
  (tokens/s for lda) and the breakdown of an iteration into read wait / compute /
  allreduce / M-step (bench/report.py: mean over ranks and over the iterations after the
  first), load imbalance, allreduce MB per iteration and peak RSS.
    strong  the same data for every configuration; speed-up S = t(1x1) / t(RxT),
            parallel efficiency E = S / (R x T)
    weak    rows per core (R x T) fixed, so the data grow with the cores;
            E = t(1x1) / t(RxT) (1 = perfect), scaled speed-up = E x R x T
  (cores = R x T; "rows per rank fixed" taken per core so that 1x2 and 2x1 compare).
    ceiling these 2-vCPU machines do not give two independent cores' worth (two plain
            numpy processes: 1.3-1.9x seen). So, per model, two copies of the strong 1x1
            fit run at once (separate outputs and logs) and the machine's ceiling is
            C = t(1x1) / t(copy a) + t(1x1) / t(copy b): what two independent single-rank
            jobs achieve together. Every strong configuration on two cores (1x2, 2x1)
            gets fraction_of_ceiling = S / C (issue 21 item 6 asks >= 0.9 for gmm, lda
            online and vae, streaming). --no-ceiling skips it.
    rounds  a shared host drifts: the same 1x2 fit varies by 20 % from one run to the
            next. --repeat R runs every configuration and the ceiling once per round,
            R rounds in turn; a configuration's record is its median round's, and
            fraction_of_ceiling the median over rounds of that round's own fraction
            (1 / t) / (1 / t(copy a) + 1 / t(copy b)), so that the runs compared are
            close in time.
  Configurations with R x T > the cores of this machine oversubscribe it (2x2 and 4x1
  on 2 cores): they are marked "oversubscribed": true in the JSON and hatched in the
  plots. Their numbers show the cost of sharing cores (MPI ranks busy-poll in
  collectives), not scaling.

  Models (settings in MODELS below; every run streams from HDF5, --cache-mb 0):
    gmm  `latent fit gmm --covariance-type diag --n-components 16 --init-params
         random_from_data --tol 0 --max-iter I` on float32 rows with D = 784 from
         `latent generate gmm --n-features 784 --n-components 16`
         default: 196,608 rows strong (96 shards of 2048 rows, 616 MB), 49,152 rows per
         core weak, I = 6; --quick: 49,152 / 12,288, I = 4
    lda  `latent fit lda --method online --n-topics 50 --batch-size 1024
         --evaluate-every 0 --max-iter I` (an iteration = one pass) on documents from
         `latent generate lda --vocab-size 20000 --n-components 50` (mean length 100)
         default: 40,960 documents strong, 10,240 per core weak, I = 4 passes;
         --quick: 8,192 / 2,048, I = 3
    vae  `latent fit vae --likelihood gaussian --batch-size 256 --micro-batch-rows 64
         --epochs I` (an iteration = one epoch; 4 micro-batches per step, so up to 4
         workers have work) on the first rows of the gmm data
         default: 32,768 rows strong, 8,192 per core weak, I = 3; --quick: 8,192 /
         2,048, I = 2
  Iterations after the first are measured (so I - 1 of them). Each data directory's shards
  are read into the page cache afresh before their first run (common.refresh_page_cache).
  Data are generated once under <data_dir>/scaling (LATENT_BENCH_DATA, default
  bench/.data/scaling) in shards of a fixed size and reused; a smaller data set is a
  directory of symbolic links to the first shards of a larger one (row i of `latent
  generate` depends only on the seed and i, so this is the same data). A weak-scaling
  configuration whose data equal the strong data (R x T = 4 here) reuses the strong run.

How to run (binary must be built; Open MPI env from bench/common.py is set)
  /usr/bin/python3 bench/scaling/run_scaling.py            # ~5-10 min on 2 idle cores
  /usr/bin/python3 bench/scaling/run_scaling.py --quick    # < 2 min
  Options: --models gmm,lda,vae --configs 1x1,1x2,2x1,2x2,4x1 --kinds strong,weak
           --quick --out-dir DIR --name NAME --timeout S --nice N --repeat R
  Results (NAME = scaling, or scaling_quick with --quick; DIR = bench/results):
    DIR/NAME.json                 every run: config, seconds/iteration, speed-up,
                                  efficiency, breakdown, path of its log
    DIR/NAME_strong.png           speed-up and efficiency per configuration, one line
                                  per model, with the ideal
    DIR/NAME_weak.png             the same for weak scaling
    DIR/NAME_breakdown.png        stacked bars (read wait / compute / allreduce /
                                  M-step) per configuration
  The logs stay in <data_dir>/scaling/logs-NAME/ (`bench/report.py LOG...` shows them).
  bench/scaling/collect.py builds the same JSON and plots from the logs of
  jobs/scaling_array.sbatch on a cluster (the analysis and plotting code is here).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import common  # noqa: E402
import report  # noqa: E402

DEFAULT_CONFIGS = "1x1,1x2,2x1,2x2,4x1"
DEFAULT_MODELS = "gmm,lda,vae"

# Synthetic data sets. Shards of a fixed number of rows (a multiple of --block-rows 2048,
# so blocks are whole and ranks get equal shares); a data set of m shards is the first m
# shards of any larger one with the same parameters.
DATASETS = {
    "dense": {
        "kind": "dense", "shard_rows": 2048,
        "generate": ["generate", "gmm", "--n-features", 784, "--n-components", 16, "--dtype", "float32",
                     "--seed", 0],
        "describe": "latent generate gmm, D = 784, 16 components, float32, seed 0",
    },
    "counts": {
        "kind": "counts", "shard_rows": 2048,
        "generate": ["generate", "lda", "--vocab-size", 20000, "--n-components", 50, "--doc-length", 100,
                     "--seed", 0],
        "describe": "latent generate lda, V = 20000, 50 topics, mean document length 100, seed 0",
    },
}

# Per model: the data set, shards for strong scaling and per core for weak scaling, the
# iterations, and the fit arguments (without --data/--output/--threads/--profile/--log-json).
MODELS = {
    "gmm": {
        "dataset": "dense", "strong_shards": {"full": 96, "quick": 24},
        "weak_shards_per_core": {"full": 24, "quick": 6}, "iterations": {"full": 6, "quick": 4},
        "fit": lambda it: ["fit", "gmm", "--n-components", 16, "--covariance-type", "diag",
                           "--init-params", "random_from_data", "--tol", 0, "--max-iter", it],
        "dims": {"n_components": 16, "n_features": 784, "covariance_type": "diag"},
    },
    "lda": {
        "dataset": "counts", "strong_shards": {"full": 20, "quick": 4},
        "weak_shards_per_core": {"full": 5, "quick": 1}, "iterations": {"full": 4, "quick": 3},
        "fit": lambda it: ["fit", "lda", "--method", "online", "--n-topics", 50, "--batch-size", 1024,
                           "--evaluate-every", 0, "--max-iter", it],
        "dims": {"n_components": 50, "vocab_size": 20000, "doc_length": 100, "batch_size": 1024},
    },
    "vae": {
        "dataset": "dense", "strong_shards": {"full": 16, "quick": 4},
        "weak_shards_per_core": {"full": 4, "quick": 1}, "iterations": {"full": 3, "quick": 2},
        "fit": lambda it: ["fit", "vae", "--likelihood", "gaussian", "--batch-size", 256,
                           "--micro-batch-rows", 64, "--epochs", it],
        "dims": {"n_features": 784, "hidden": [512, 256], "latent_dim": 20, "batch_size": 256,
                 "micro_batch_rows": 64, "likelihood": "gaussian"},
    },
}

BREAKDOWN = [n for n, _k, _l in report.COMPONENTS]  # read_wait, compute, allreduce, m_step


# --------------------------------------------------------------------------- configs

def parse_configs(text: str) -> list[tuple[int, int]]:
    out = []
    for c in text.split(","):
        c = c.strip()
        if not c:
            continue
        m = re.fullmatch(r"(\d+)x(\d+)", c)
        if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
            raise SystemExit(f"bad configuration '{c}': expected RANKSxTHREADS such as 2x1")
        out.append((int(m.group(1)), int(m.group(2))))
    if not out:
        raise SystemExit("no configurations")
    return out


def config_name(ranks: int, threads: int) -> str:
    return f"{ranks}x{threads}"


# --------------------------------------------------------------------------- data

def scaling_dir() -> Path:
    d = common.data_dir() / "scaling"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _base_name(ds: str, shards: int) -> str:
    return f"{ds}-s{DATASETS[ds]['shard_rows']}-n{shards}"


def ensure_dataset(ds: str, shards: int, nice: int | None = None, ranks: int = 2) -> Path:
    """A data directory with the first `shards` shards of data set `ds`: an existing
    generated base with at least that many shards (a view of symbolic links if it has
    more), else a newly generated base (under mpirun -n RANKS)."""
    spec = DATASETS[ds]
    root = scaling_dir()
    bases = []
    for p in root.glob(f"{ds}-s{spec['shard_rows']}-n*"):
        m = re.fullmatch(rf"{re.escape(ds)}-s{spec['shard_rows']}-n(\d+)", p.name)
        if m and common.has_shards(p) and len(common.shard_paths(p)) == int(m.group(1)):
            bases.append((int(m.group(1)), p))
    bases.sort()
    base = next((p for n, p in bases if n >= shards), None)
    if base is None:
        base = root / _base_name(ds, shards)
        tmp = root / (base.name + ".tmp")
        if tmp.exists():
            import shutil
            shutil.rmtree(tmp)
        common.run_latent(spec["generate"] + ["--n-samples", shards * spec["shard_rows"], "--shards", shards,
                                              "--output", tmp, "--true-model", "none"],
                          ranks=ranks, nice=nice)
        tmp.rename(base)
    parts = common.shard_paths(base)
    if len(parts) == shards:
        return base
    view = root / "views" / f"{base.name}-first{shards}"
    linked = common.shard_paths(view) if view.is_dir() else []
    if not (len(linked) == shards and all(p.exists() for p in linked)):  # missing, or links to a removed base
        view.mkdir(parents=True, exist_ok=True)
        for old in view.iterdir():
            old.unlink()
        for p in parts[:shards]:
            (view / p.name).symlink_to(p.resolve())
        for extra in base.iterdir():  # vocabulary.txt and other non-shard files
            if extra.is_file() and extra not in parts and not extra.name.startswith("part-"):
                (view / extra.name).symlink_to(extra.resolve())
    return view


def shards_needed(model: str, kind: str, mode: str, cores: int) -> int:
    spec = MODELS[model]
    if kind == "strong":
        return int(spec["strong_shards"][mode])
    return max(1, int(round(spec["weak_shards_per_core"][mode] * cores)))


# --------------------------------------------------------------------------- running

def run_with_timeout(cmd: list, timeout: float | None, nice: int | None = None) -> tuple[int, float, str]:
    """Runs cmd (MPI environment, one BLAS/OpenMP thread) in its own process group;
    kills the group after `timeout` seconds. Returns (exit status, seconds, stderr tail)."""
    cmd = [str(c) for c in cmd]
    if nice:
        cmd = ["nice", "-n", str(nice)] + cmd
    print("+ " + shlex.join(cmd), file=sys.stderr, flush=True)
    env = common.mpi_env({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        return 124, time.perf_counter() - t0, f"timed out after {timeout} s\n" + (err or "")[-2000:]
    return proc.returncode, time.perf_counter() - t0, (err or "")[-3000:]


def run_record(log: Path, *, model: str, kind: str, ranks: int, threads: int, cores_available: int | None,
               rows: int | None = None, data: str | None = None, nodes: int | None = None,
               wall_seconds: float | None = None) -> dict:
    """One configuration's numbers from its profile log (shared with collect.py)."""
    s = report.summarize_log(log, skip_first=True)
    its = s["iteration_seconds"]
    cores = ranks * threads
    tps = s["tokens_per_second"]
    rec = {
        "model": model, "kind": kind, "config": config_name(ranks, threads), "ranks": ranks, "threads": threads,
        "cores": cores, "nodes": nodes,
        "oversubscribed": bool(cores_available and cores > cores_available),
        "rows": rows, "data": data, "log": str(log),
        "iterations_total": s["iterations_total"], "iterations_used": s["iterations_used"],
        "seconds_per_iteration": common.median(its), "iteration_seconds": its,
        "samples_per_second": s["samples_per_second"], "tokens_per_second": tps,
        "breakdown_seconds": {n: s["breakdown"][n]["mean_seconds"] for n in BREAKDOWN},
        "breakdown_max_seconds": {n: s["breakdown"][n]["max_seconds"] for n in BREAKDOWN},
        "breakdown_percent": {n: s["breakdown"][n]["mean_percent"] for n in BREAKDOWN},
        "io_read_seconds": s["breakdown"]["read_io"]["mean_seconds"],
        "load_imbalance": s["load_imbalance"],
        "allreduce_mb_per_iteration": s["allreduce_mb_per_iteration"],
        "collectives_per_iteration": s["collectives_per_iteration"],
        "peak_rss_mib": s["peak_rss_mib"], "peak_rss_mib_per_rank": s["peak_rss_mib_per_rank"],
        "total_seconds": s.get("total_seconds"), "wall_seconds": wall_seconds,
    }
    if rec["rows"] is None and s["rows_per_iteration"]:
        # rows per iteration = samples/s x seconds of rank 0's log lines
        rec["rows"] = int(round(s["rows_per_iteration"]))
        rec["rows_estimated"] = True
    return rec


# --------------------------------------------------------------------------- analysis

def analyze(runs: list[dict]) -> None:
    """Adds speedup and efficiency to every run, per (model, kind), against the
    configuration with the fewest cores c0 (fewest ranks among those; normally 1x1),
    whose seconds per iteration are t0:
    strong: S = t0 / t, E = S x c0 / c;  weak: E = t0 / t, scaled speed-up S = E x c / c0."""
    groups: dict = {}
    for r in runs:
        groups.setdefault((r["model"], r["kind"]), []).append(r)
    for (_m, kind), rs in groups.items():
        ok = [r for r in rs if r.get("seconds_per_iteration") and not math.isnan(r["seconds_per_iteration"])]
        if not ok:
            continue
        base = min(ok, key=lambda r: (r["cores"], r["ranks"]))
        t0, c0 = base["seconds_per_iteration"], base["cores"]
        for r in rs:
            r["baseline"] = base["config"]
            t = r.get("seconds_per_iteration")
            if not t or math.isnan(t):
                r["speedup"] = r["efficiency"] = None
                continue
            if kind == "strong":
                r["speedup"] = t0 / t
                r["efficiency"] = r["speedup"] * c0 / r["cores"]
            else:
                r["efficiency"] = t0 / t
                r["speedup"] = r["efficiency"] * r["cores"] / c0


def _order(r: dict):
    return (r.get("nodes") or 0, r["cores"], r["ranks"], r["threads"])


def _xlabel(r: dict) -> str:
    lab = r["config"]
    if r.get("nodes"):
        lab = f"{r['nodes']}n {lab}"
    return f"{lab}\n{r['cores']} core{'s' if r['cores'] != 1 else ''}"


def _configs_of(runs: list[dict]) -> list[dict]:
    """One representative run per configuration label, in plotting order."""
    seen = {}
    for r in sorted(runs, key=_order):
        seen.setdefault(_xlabel(r), r)
    return list(seen.values())


def _fmt(x, fmt: str) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def print_summary(runs: list[dict]) -> None:
    f = _fmt
    rows = []
    for r in sorted(runs, key=lambda r: (r["model"], r["kind"], _order(r))):
        b = r["breakdown_percent"]
        rows.append([r["model"], r["kind"], (f"{r['nodes']}n " if r.get("nodes") else "") + r["config"],
                     r["cores"], "yes" if r["oversubscribed"] else "", r.get("rows") or "?",
                     f(r["seconds_per_iteration"], "{:.3f}"), f(r.get("speedup"), "{:.2f}"),
                     f(r.get("efficiency"), "{:.2f}"),
                     *[f(b[n], "{:.0f}") for n in BREAKDOWN], f(r["load_imbalance"], "{:.2f}"),
                     f(r["allreduce_mb_per_iteration"], "{:.1f}"), f(r["peak_rss_mib"], "{:.0f}")])
    common.print_table(rows, ["model", "kind", "config", "cores", "oversub", "rows", "s/iter", "speedup",
                              "effic", "wait%", "comp%", "allred%", "Mstep%", "imbal", "MB/iter", "RSS MiB"])
    print("s/iter = median over iterations after the first (slowest rank); speed-up and efficiency vs the "
          "smallest configuration (strong: E = S / cores; weak: E = t1 / t, speed-up = E x cores); "
          "% = share of the iteration (mean over ranks)")


def _save(fig, png: Path) -> None:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)
    print(f"plot written to {png}")


def plot_scaling(runs: list[dict], kind: str, png: Path, title_extra: str = "") -> bool:
    rs = [r for r in runs if r["kind"] == kind and r.get("speedup") is not None]
    if not rs:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cfgs = _configs_of(rs)
    xi = {_xlabel(r): i for i, r in enumerate(cfgs)}
    c0 = min(r["cores"] for r in cfgs)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3))
    for ax in axes:
        for r in cfgs:
            if r["oversubscribed"]:
                ax.axvspan(xi[_xlabel(r)] - 0.5, xi[_xlabel(r)] + 0.5, facecolor="none", edgecolor="0.7",
                           hatch="//", linewidth=0, zorder=0)
    ideal_s = [r["cores"] / c0 for r in cfgs]
    axes[0].plot(range(len(cfgs)), ideal_s, "k--", lw=1, label="ideal")
    axes[1].axhline(1.0, color="k", ls="--", lw=1, label="ideal")
    markers = "osD^v<>p"
    for j, model in enumerate(sorted({r["model"] for r in rs})):
        mr = sorted([r for r in rs if r["model"] == model], key=lambda r: xi[_xlabel(r)])
        x = [xi[_xlabel(r)] for r in mr]
        for ax, key in ((axes[0], "speedup"), (axes[1], "efficiency")):
            line, = ax.plot(x, [r[key] for r in mr], "-", marker=markers[j % len(markers)], label=model)
            over = [(xx, r[key]) for xx, r in zip(x, mr) if r["oversubscribed"]]
            if over:  # hollow markers on oversubscribed configurations
                ax.plot([o[0] for o in over], [o[1] for o in over], linestyle="none",
                        marker=markers[j % len(markers)], markersize=11, markerfacecolor="white",
                        markeredgecolor=line.get_color(), zorder=3)
    if any(r["oversubscribed"] for r in cfgs):
        from matplotlib.patches import Patch
        for ax in axes:
            ax.add_artist(ax.legend(handles=[Patch(facecolor="white", edgecolor="0.6", hatch="//",
                                                   label="oversubscribed (hollow markers)")],
                                    loc="lower left", fontsize=8))
    names = {"strong": ("speed-up t(base) / t", "parallel efficiency speed-up / cores"),
             "weak": ("scaled speed-up (efficiency x cores)", "weak efficiency t(base) / t")}[kind]
    for ax, yl in zip(axes, names):
        ax.set_xticks(range(len(cfgs)))
        ax.set_xticklabels([_xlabel(r) for r in cfgs], fontsize=8)
        ax.set_xlabel("ranks x threads")
        ax.set_ylabel(yl)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(f"{kind} scaling{title_extra}", fontsize=11)
    _save(fig, png)
    return True


def plot_breakdown(runs: list[dict], png: Path, title_extra: str = "") -> bool:
    if not runs:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = sorted({(r["model"], r["kind"]) for r in runs}, key=lambda p: (p[0], p[1] != "strong"))
    ncol = 2 if len(panels) > 1 else 1
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(6.0 * ncol, 3.4 * nrow), squeeze=False)
    for ax, (model, kind) in zip(axes.flat, panels):
        rs = sorted([r for r in runs if r["model"] == model and r["kind"] == kind], key=_order)
        x = list(range(len(rs)))
        bottom = [0.0] * len(rs)
        for n, _k, lab in report.COMPONENTS:
            v = [r["breakdown_seconds"].get(n) or 0.0 for r in rs]
            v = [0.0 if math.isnan(y) else y for y in v]
            bars = ax.bar(x, v, bottom=bottom, color=report.COLORS[n], label=lab, width=0.7)
            for b, r in zip(bars, rs):
                if r["oversubscribed"]:
                    b.set_hatch("//")
                    b.set_edgecolor("white")
            bottom = [b + y for b, y in zip(bottom, v)]
        for xx, r, top in zip(x, rs, bottom):
            ax.text(xx, top, f"{r['seconds_per_iteration']:.2f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x)
        ax.set_xticklabels([_xlabel(r) + (" *" if r["oversubscribed"] else "") for r in rs], fontsize=7)
        ax.set_ylabel("seconds per iteration")
        ax.set_title(f"{model}, {kind} scaling", fontsize=10)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle("where an iteration's time goes (mean over ranks and iterations after the first; "
                 f"hatched/*: oversubscribed; label: median s/iteration){title_extra}", fontsize=9)
    _save(fig, png)
    return True


def write_outputs(obj: dict, out_dir: Path, name: str, title_extra: str = "") -> None:
    """Analysis, table, NAME.json and the three PNGs in out_dir (shared with collect.py)."""
    runs = obj["runs"]
    analyze(runs)
    print()
    print_summary(runs)
    out_dir.mkdir(parents=True, exist_ok=True)
    obj = dict(obj)
    obj.setdefault("timestamp", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    obj.setdefault("machine", common.machine_info())
    obj.setdefault("git_commit", common.git_commit())
    path = out_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report.json_safe(obj), indent=2, default=common._json_default) + "\n")
    tmp.replace(path)
    print(f"results written to {path}")
    plot_scaling(runs, "strong", out_dir / f"{name}_strong.png", title_extra)
    plot_scaling(runs, "weak", out_dir / f"{name}_weak.png", title_extra)
    plot_breakdown(runs, out_dir / f"{name}_breakdown.png", title_extra)


# --------------------------------------------------------------------------- main

def run_ceiling(model: str, data: Path, iters: int, log_dir: Path, timeout: float, nice: int | None,
                suffix: str = "") -> dict:
    """Two copies of the 1x1 strong fit at once: each copy's median seconds per iteration.
    Returns {"copies_seconds_per_iteration": [a, b]} or {"error": ...}."""
    spec = MODELS[model]
    procs, logs, outs = [], [], []
    env = common.mpi_env({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    for i in range(2):
        log = log_dir / f"{model}-ceiling-copy{i}{suffix}.jsonl"
        out = log_dir / f"ceiling-{i}.h5"
        log.unlink(missing_ok=True)
        cmd = [str(c) for c in common.latent_cmd(spec["fit"](iters) + [
            "--data", data, "--output", out, "--overwrite", "--threads", 1, "--profile", "--log-json", log], 1)]
        if nice:
            cmd = ["nice", "-n", str(nice)] + cmd
        print("+ " + shlex.join(cmd) + "   (copy %d of 2, concurrent)" % (i + 1), file=sys.stderr, flush=True)
        procs.append(subprocess.Popen(cmd, env=env, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      start_new_session=True))
        logs.append(log)
        outs.append(out)
    errors = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            _, err = p.communicate()
            errors.append("timed out")
            continue
        if p.returncode != 0:
            errors.append(f"exit {p.returncode}: {(err or '')[-800:]}")
    for out in outs:
        out.unlink(missing_ok=True)
    if errors:
        return {"error": "; ".join(errors)}
    secs = [common.median(report.summarize_log(log, skip_first=True)["iteration_seconds"]) for log in logs]
    return {"copies_seconds_per_iteration": secs, "logs": [str(x) for x in logs]}


def median_round(rs: list[dict]) -> dict:
    """A configuration's record over its rounds: the round with the median seconds per
    iteration (the lower of the two middle ones for an even count), so that its breakdown
    belongs to the time reported, with every round's time alongside."""
    ordered = sorted(rs, key=lambda r: r["seconds_per_iteration"])
    rec = dict(ordered[(len(ordered) - 1) // 2])
    rec["rounds_seconds_per_iteration"] = [r["seconds_per_iteration"] for r in sorted(rs, key=lambda r: r["round"])]
    return rec


def merge_ceiling_rounds(cr: list[dict]) -> dict:
    """The ceiling runs of every round: each copy's median seconds per iteration over the
    rounds, and every round's pair (for fractions paired in time, see apply_ceiling)."""
    ok = [c for c in cr if "copies_seconds_per_iteration" in c]
    if not ok:
        return {"error": "; ".join(c.get("error", "?") for c in cr)}
    out = {"copies_seconds_per_iteration": [common.median([c["copies_seconds_per_iteration"][i] for c in ok])
                                            for i in range(2)],
           "rounds_copies_seconds_per_iteration": [c["copies_seconds_per_iteration"] for c in ok],
           "logs": [log for c in ok for log in c["logs"]]}
    if len(ok) < len(cr):
        out["failed_rounds"] = [c.get("error") for c in cr if "copies_seconds_per_iteration" not in c]
    return out


def apply_ceiling(runs: list[dict], ceilings: dict) -> None:
    """ceiling = t(1x1) / t(copy a) + t(1x1) / t(copy b) per model (median times over the
    rounds); fraction_of_ceiling = speed-up / ceiling for the strong configurations on two
    cores. With several rounds, each round also gives its own fraction, (1 / t) / (1 / a +
    1 / b) with the configuration's and the copies' times of that round (t(1x1) cancels),
    and fraction_of_ceiling is the median of those: runs close in time share the host's
    state."""
    for model, c in ceilings.items():
        base = next((r for r in runs if r["model"] == model and r["kind"] == "strong" and r["config"] == "1x1"), None)
        if base is None or "copies_seconds_per_iteration" not in c:
            continue
        t1 = base["seconds_per_iteration"]
        c["ceiling"] = sum(t1 / t for t in c["copies_seconds_per_iteration"])
        pairs = c.get("rounds_copies_seconds_per_iteration", [])
        for r in runs:
            if r["model"] == model and r["kind"] == "strong" and r["cores"] == 2 and r.get("speedup"):
                r["ceiling"] = c["ceiling"]
                r["fraction_of_ceiling"] = r["speedup"] / c["ceiling"]
                ts = r.get("rounds_seconds_per_iteration", [])
                if len(ts) > 1 and len(ts) == len(pairs):
                    fr = [(1 / t) / (1 / a + 1 / b) for t, (a, b) in zip(ts, pairs)]
                    r["fraction_of_ceiling_rounds"] = fr
                    r["fraction_of_ceiling"] = common.median(fr)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=DEFAULT_MODELS, help=f"comma list of {', '.join(MODELS)}")
    ap.add_argument("--configs", default=DEFAULT_CONFIGS, help="comma list of RANKSxTHREADS")
    ap.add_argument("--kinds", default="strong,weak", help="strong, weak or both")
    ap.add_argument("--quick", action="store_true", help="small data and fewer iterations (< 2 min)")
    ap.add_argument("--out-dir", type=Path, default=common.RESULTS_DIR)
    ap.add_argument("--name", default=None, help="file name stem (default scaling, scaling_quick with --quick)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per fit before it is killed")
    ap.add_argument("--nice", type=int, default=None)
    ap.add_argument("--no-ceiling", action="store_true", help="skip the two-copies ceiling runs")
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds: every configuration and the ceiling once per round, the median round kept")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        raise SystemExit("--repeat must be at least 1")
    mode = "quick" if args.quick else "full"
    name = args.name or ("scaling_quick" if args.quick else "scaling")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in MODELS:
            raise SystemExit(f"unknown model '{m}' (choose from {', '.join(MODELS)})")
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    for k in kinds:
        if k not in ("strong", "weak"):
            raise SystemExit(f"unknown kind '{k}' (strong, weak)")
    configs = parse_configs(args.configs)
    if (1, 1) not in configs:
        print("note: no 1x1 configuration: speed-ups are relative to the smallest one", file=sys.stderr)
    cores = os.cpu_count() or 1
    common.latent_bin()
    load = common.warn_if_busy()
    t_start = time.perf_counter()
    log_dir = scaling_dir() / f"logs-{name}"
    log_dir.mkdir(parents=True, exist_ok=True)
    out_model = log_dir / "model.h5"

    # Rounds: every configuration and the ceiling once per round, so that the machine's
    # drift (a shared host's noise) falls on all of them alike; a configuration's numbers
    # are then its median round's.
    failures, done, rounds = [], {}, {}
    ceiling_rounds: dict = {}
    # Each data directory's shards are read into the page cache afresh once, before their
    # first run (common.refresh_page_cache): pages left from earlier sessions streamed
    # slower than a first read's (docs/PERFORMANCE.md, tenth AMD session).
    refreshed: set = set()

    def fresh(data: Path) -> Path:
        if data not in refreshed:
            common.refresh_page_cache(data)
            refreshed.add(data)
        return data

    for rnd in range(args.repeat):
        if args.repeat > 1:
            print(f"round {rnd + 1} of {args.repeat}", file=sys.stderr, flush=True)
        for model in models:
            spec = MODELS[model]
            ds = spec["dataset"]
            iters = spec["iterations"][mode]
            for kind in kinds:
                for ranks, threads in configs:
                    c = ranks * threads
                    shards = shards_needed(model, kind, mode, c)
                    rows = shards * DATASETS[ds]["shard_rows"]
                    key = (model, shards, ranks, threads)
                    if key in done:  # same data and configuration as a run already made
                        rounds.setdefault((model, kind, ranks, threads), []).append(
                            dict(done[key], kind=kind, shared_with=done[key]["kind"]))
                        continue
                    if any(f["model"] == model and f["config"] == config_name(ranks, threads) for f in failures):
                        continue  # failed in an earlier round
                    data = fresh(ensure_dataset(ds, shards, nice=args.nice))
                    log = log_dir / f"{model}-{kind}-{config_name(ranks, threads)}" \
                        f"{f'-r{rnd + 1}' if args.repeat > 1 else ''}.jsonl"
                    if log.exists():
                        log.unlink()
                    cmd = common.latent_cmd(spec["fit"](iters) + [
                        "--data", data, "--output", out_model, "--overwrite", "--threads", threads,
                        "--profile", "--log-json", log], ranks)
                    rc, secs, err = run_with_timeout(cmd, args.timeout, args.nice)
                    if rc != 0:
                        print(err, file=sys.stderr)
                        print(f"FAILED ({rc}): {model} {kind} {config_name(ranks, threads)}", file=sys.stderr)
                        failures.append({"model": model, "kind": kind, "config": config_name(ranks, threads),
                                         "exit_status": rc, "stderr_tail": err[-1500:]})
                        continue
                    rec = run_record(log, model=model, kind=kind, ranks=ranks, threads=threads,
                                     cores_available=cores, rows=rows, data=str(data), wall_seconds=secs)
                    rec["shards"] = shards
                    rec["round"] = rnd + 1
                    done[key] = rec
                    rounds.setdefault((model, kind, ranks, threads), []).append(rec)
                    print(f"  {model} {kind} {config_name(ranks, threads)}: {rows} rows, "
                          f"{rec['seconds_per_iteration']:.3f} s/iteration ({secs:.1f} s wall)", file=sys.stderr,
                          flush=True)
            if not args.no_ceiling and "strong" in kinds:
                data = fresh(ensure_dataset(spec["dataset"], shards_needed(model, "strong", mode, 1), nice=args.nice))
                ceiling_rounds.setdefault(model, []).append(
                    run_ceiling(model, data, iters, log_dir, args.timeout, args.nice,
                                suffix=f"-r{rnd + 1}" if args.repeat > 1 else ""))
        done = {}  # the next round runs every configuration again
    runs = [median_round(rs) for rs in rounds.values()]
    ceilings = {model: merge_ceiling_rounds(cr) for model, cr in ceiling_rounds.items()}
    if out_model.exists():
        out_model.unlink()
    analyze(runs)
    apply_ceiling(runs, ceilings)
    for model, c in ceilings.items():
        if "ceiling" in c:
            fr = ", ".join(f"{r['config']} {r['speedup']:.2f}x = {r['fraction_of_ceiling']:.2f} of it"
                           + (" (rounds {:.2f}-{:.2f})".format(min(r["fraction_of_ceiling_rounds"]),
                                                               max(r["fraction_of_ceiling_rounds"]))
                              if r.get("fraction_of_ceiling_rounds") else "")
                           for r in runs if r["model"] == model and r.get("fraction_of_ceiling") is not None)
            print(f"{model}: two independent 1x1 copies reach {c['ceiling']:.2f}x one copy (the machine's ceiling); "
                  f"{fr} (target >= 0.9)")
        else:
            print(f"{model}: ceiling not measured: {c.get('error')}")
    elapsed = time.perf_counter() - t_start
    obj = {
        "benchmark": "scaling", "mode": mode, "config": {**vars(args), "out_dir": str(args.out_dir)},
        "cores_available": cores, "load_average_at_start": load, "elapsed_seconds": elapsed,
        "mpi_env": common.mpi_settings(),
        "models": {m: {"fit_args": [str(a) for a in MODELS[m]["fit"](MODELS[m]["iterations"][mode])],
                       "dims": MODELS[m]["dims"], "data": DATASETS[MODELS[m]["dataset"]]["describe"],
                       "shard_rows": DATASETS[MODELS[m]["dataset"]]["shard_rows"],
                       "strong_rows": MODELS[m]["strong_shards"][mode] * DATASETS[MODELS[m]["dataset"]]["shard_rows"],
                       "weak_rows_per_core": MODELS[m]["weak_shards_per_core"][mode]
                       * DATASETS[MODELS[m]["dataset"]]["shard_rows"]} for m in models},
        "definitions": {
            "seconds_per_iteration": "median over the iterations after the first of the slowest rank's "
                                     "iteration seconds (profile.seconds)",
            "strong": "speedup = t(base) / t; efficiency = speedup x cores(base) / cores",
            "weak": "rows per core fixed; efficiency = t(base) / t; speedup = efficiency x cores / cores(base)",
            "base": "the configuration with the fewest cores (1x1)",
            "ceiling": "t(1x1) / t(copy a) + t(1x1) / t(copy b), two copies of the 1x1 strong fit at once; "
                       "fraction_of_ceiling = speedup / ceiling (strong, two cores); with --repeat R > 1 the "
                       "median over rounds of (1 / t) / (1 / a + 1 / b), each round's own times",
            "rounds": "with --repeat R, every configuration and the ceiling run once per round, in turn; a "
                      "configuration's record is its median round's (rounds_seconds_per_iteration: all of them)",
            "oversubscribed": f"ranks x threads > {cores} cores of this machine",
            "breakdown": "mean over ranks and over the iterations after the first (bench/report.py)",
        },
        "runs": runs, "failures": failures, "ceilings": ceilings, "machine": common.machine_info(),
    }
    write_outputs(obj, args.out_dir, name, f" ({mode}, {cores}-core machine)")
    print(f"total {elapsed:.0f} s" + (f"; {len(failures)} run(s) failed" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
