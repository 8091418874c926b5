#!/usr/bin/python3
"""Communication model: where a plain allreduce stops scaling, projected to 1024 ranks.

What it measures and projects
  1. Allreduce time vs payload on this machine:
         mpirun --oversubscribe -n P latent bench-allreduce --size N --repeat R
     (N int64 elements, 1 ... 3e7; P = 2 and 4, 4 oversubscribing this 2-core machine;
     the command prints one JSON line with seconds_per_op = mean and best_seconds =
     fastest of R timed operations, each timed as the slowest rank after a barrier).
     Fitted per P: t(n) = alpha_P + beta_P * bytes (least squares on relative error,
     alpha, beta >= 0), from best_seconds by default (--stat mean for the mean: on a
     shared VM the mean includes time slices lost to other processes).
     Projection form (Rabenseifner / Thakur et al. 2005, what MPI libraries approach:
     recursive doubling for small messages, reduce-scatter + allgather or ring for large):
         t_P(bytes) = 2 log2(P) * alpha + 2 (P-1)/P * bytes * beta
     The latency term is that of a log-depth algorithm (a pure ring's 2 (P-1) alpha is
     far too pessimistic for small payloads at P = 1024) and the bandwidth term is the
     lower bound of any allreduce (each rank must send and receive (P-1)/P of the data
     twice). For large payloads t_P tends to 2 * bytes * beta: it does NOT shrink with P,
     while the compute per rank does; that is why data-parallel EM stops scaling.
     The per-link alpha, beta of this machine come from the P = 2 fit (2 log2 2 = 2,
     2 (P-1)/P = 1: alpha = alpha_2 / 2, beta = beta_2); the P = 4 fit is reported for
     comparison (it includes the oversubscription penalty). A cluster is given by
     --alpha-us (default 2 us) and --bandwidth-GBps (default 10 GB/s per rank,
     InfiniBand HDR-class), beta = 1 / bandwidth. Both projections are printed.
     Simplifications: the exact-sum reduction of GMM statistics (ExactCell, 32 bytes per
     value, a user-defined MPI_Op) is assumed to cost the same per byte as the int64 sum
     measured here; contention of several ranks for one NIC is not modelled (per-rank
     bandwidth is the parameter).
  2. Compute time per row (per token for LDA) of each model, from a profile log
     (--profile-log MODEL=LOG.jsonl, any ranks x threads; LOG from `latent fit ...
     --profile --log-json`, e.g. bench/scaling/run_scaling.py's logs): per-thread cost
     = compute_seconds (mean over ranks, iterations after the first) x threads / rows
     per rank, rows = samples/s x seconds (tokens: tokens/s x seconds). Also taken: the
     M-step seconds per update (replicated on every rank: does not shrink with P), and,
     from a multi-rank log, the collectives and bytes per update (compared with the
     payload formula below). Without a log the model is measured by a small 1x1 fit with
     --profile on synthetic data (logs cached under <data_dir>/scaling/comm_model_logs;
     --remeasure to redo). The log's problem dimensions are those of run_scaling.py
     (gmm: K = 16, D = 784 diag; lda: K = 50; vae: 784-512-256-20) or of the fallback
     (gmm_full: K = 8, D = 256 full); override with --dims MODEL=k=..,d=.. .
     Compute is scaled to the projected size: diag GMM per row x K D, full GMM x K D^2
     (M-step x K D^3), LDA per token x K, VAE per row (same network). A projected rank
     runs --threads-per-rank T threads (default 1: P = cores) at the measured
     per-thread speed (linear thread scaling assumed).
  3. Projected parallel efficiency, per update (EM iteration, LDA minibatch, VAE step):
         E(P) = T_compute(work / P) / (T_compute(rank) + T_comm(P))
     T_comm(P) = n_coll * 2 log2(P) alpha + 2 (P-1)/P * payload * beta (+ the word-id
     allgather for LDA), n_coll = collectives per update; T_compute(rank) = the rank's
     compute, larger than work / P only when ranks idle (VAE micro-batches). The M-step,
     which every rank repeats (Amdahl's serial part, not communication), is reported
     separately: E incl. M-step = T_compute(work / P) / (T_compute + T_mstep + T_comm)
     ("efficiency_with_m_step" in the JSON; named in the verdict when it costs > 10 %).
     Cases and assumptions (also in the JSON):
       gmm diag  K = 100, D = 784, N = 1e8 rows (and N = 1e6 for contrast); payload =
                 (2 + K + 2 K D) ExactCells x 32 bytes (Gmm::num_stats; 5.0 MB); 2
                 collectives per iteration (or as measured in a multi-rank log).
       gmm full  K = 50, D = 256, N = 1e8; payload (2 + K + K D + K D^2) x 32 bytes
                 (105 MB: the full D x D second moments, not symmetric-packed).
       lda online  per-rank minibatch 128 documents (global 128 P) of the measured mean
                 length (~100 tokens); N = 1e7 documents only sets the updates per pass
                 (N / 128 P), not E; K x V = 100 x 1e5, 100 x 1e6,
                 1000 x 1e5. Payload per update: the K int64 of every word touched by the
                 global minibatch when that is <= V/2 (plus an allgather of the word ids),
                 else the dense K x V int64 (as latent does). Touched words: V (1 -
                 exp(-tokens / V)) (uniform occupancy; an upper bound: Zipfian text
                 touches fewer). Compute per update ~ 128 x length x K per rank; M-step ~
                 touched rows x K (replicated).
       vae       the 784-512-256-20 Gaussian network (1.08 M parameters: the README's
                 8.7 MB per step; --vae-params to change), one int64 per parameter per
                 step, 4 collectives per step (or as measured); global batch 1024 (16 micro-batches of
                 64: beyond 16 ranks the others idle) and 128 per rank (global 128 P).
  1b. With --two-node (root; tests/slurm/cluster_two_node.sh): the same measurement over
     TCP between two network namespaces joined by a veth pair (P = 2: one rank per node,
     every byte over TCP; P = 4: two per node), fitted the same way ("two_node_tcp" in the
     JSON, beside the shared-memory fit), and a third projection from those per-link
     figures. Also recorded for both: the per-collective waiting for the slowest rank,
     mean - best time of one small allreduce ("waiting_for_slowest_us").
  4. A table per projection (this machine, cluster): case, size, payload MB, E at P =
     16 ... 1024, and a verdict: the first P with E < 0.5 under a plain allreduce, what
     dominates there (bandwidth, latency or idle ranks), and the
     alternative it needs with its projected E(P_max) on the cluster:
       reduce-scatter by vocabulary slice (LDA): rank r owns V/P words; each rank sends
                 the statistics of its local minibatch's words to their owners and gets
                 back their lambda rows: 2 x local touched x K x 8 bytes per rank (does
                 not grow with P; the M-step is sliced too), latency 2 (P-1) alpha
                 (pairwise all-to-all).
       hierarchical (latency-bound): reduce inside a node of --ranks-per-node R first
                 (this machine's shared-memory beta), then allreduce over P / R nodes.
       compression / sparse (bandwidth-bound): GMM statistics as doubles instead of
                 32-byte exact cells (4x less; full: also symmetric packing, ~8x), VAE
                 gradients top-k / low precision (--compression 8x assumed).
       bigger per-rank work (idle ranks): a larger global batch.

How to run (binary must be built; Open MPI env from bench/common.py is set)
  /usr/bin/python3 bench/scaling/comm_model.py                      # ~1-2 min
  /usr/bin/python3 bench/scaling/comm_model.py --quick              # < 1 min
  /usr/bin/python3 bench/scaling/comm_model.py \\
      --profile-log gmm=bench/.data/scaling/logs-scaling/gmm-strong-1x1.jsonl \\
      --profile-log lda=bench/.data/scaling/logs-scaling/lda-strong-2x1.jsonl \\
      --alpha-us 1.5 --bandwidth-GBps 25 --threads-per-rank 1
  Options: --ranks 2,4 --sizes 1,...,3e7 --repeat R --trials T --stat best|mean
           --reuse-allreduce (take the measurement from an earlier comm_model.json)
           --profile-log MODEL=LOG (gmm|gmm_diag, gmm_full, lda, vae) --dims MODEL=k=..,d=..
           --remeasure --models gmm_diag,gmm_full,lda,vae --alpha-us --bandwidth-GBps
           --threads-per-rank T --ranks-per-node R --p-max 1024 --compression F
           --out-dir DIR --nice N
  Results: bench/results/comm_model.json (measurements, fits, assumptions, every
  projection) and bench/results/comm_model.png (efficiency vs P, log2 axis: this
  machine and cluster with a plain allreduce, and the cluster with the alternative).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import common  # noqa: E402
import report  # noqa: E402
import run_scaling  # noqa: E402

DEFAULT_SIZES = "1,10,100,1e3,1e4,1e5,1e6,1e7,3e7"
QUICK_SIZES = "1,100,1e4,1e6,1e7"
CELL_BYTES = 32  # sizeof(ExactCell): int64 top + 3 int64 limbs (include/latent/core/exact_sum.hpp)
P_TABLE = [16, 32, 64, 128, 256, 512, 1024]

# Dimensions of the runs whose logs are used by default (run_scaling.py's settings and
# the fallback measurement below).
MEASURED_DIMS = {
    "gmm_diag": {"k": 16, "d": 784},
    "gmm_full": {"k": 8, "d": 256},
    "lda": {"k": 50, "batch": 128},
    "vae": {"params": None, "batch": 256, "micro": 64},
}
DEFAULT_COLLECTIVES = {"gmm_diag": 2, "gmm_full": 2, "lda": 5, "vae": 4}


def vae_params(d=784, hidden=(512, 256), latent=20, gaussian=True) -> int:
    """Weights + biases of latent's VAE (encoder D -> hidden -> 2L, decoder L -> reversed
    hidden -> D), plus one log-variance per feature for a learned Gaussian decoder."""
    enc = [d, *hidden, 2 * latent]
    dec = [latent, *reversed(hidden), d]
    n = sum(a * b + b for a, b in zip(enc[:-1], enc[1:])) + sum(a * b + b for a, b in zip(dec[:-1], dec[1:]))
    return n + (d if gaussian else 0)


MEASURED_DIMS["vae"]["params"] = vae_params()


# --------------------------------------------------------------------------- 1. allreduce

def default_repeat(n: int) -> int:
    return int(min(1000, max(3, round(2e8 / (n * 8)))))


def measure_allreduce(ranks: list[int], sizes: list[int], repeat: int | None, trials: int, nice,
                      launcher=None) -> list[dict]:
    """launcher(P) -> command prefix that starts P ranks (default: mpirun -n P here)."""
    out = []
    for p in ranks:
        for n in sizes:
            rep = repeat or default_repeat(n)
            runs = []
            for _ in range(trials):
                args = ["bench-allreduce", "--size", n, "--repeat", rep]
                if launcher is None:
                    res = common.run_latent(args, ranks=p, capture=True, nice=nice)
                else:
                    res = common.run(launcher(p) + common.latent_cmd(args), capture=True, nice=nice)
                runs.append(common.parse_last_json(res.stdout))
            bpe = int(runs[0].get("bytes_per_element", 8))
            r = {"ranks": p, "size": n, "bytes": n * bpe, "repeat": rep, "trials": trials,
                 "seconds_per_op": common.median([float(x["seconds_per_op"]) for x in runs]),
                 "best_seconds": common.median([float(x.get("best_seconds", x["seconds_per_op"])) for x in runs]),
                 "oversubscribed": p > (os.cpu_count() or 1), "raw": runs}
            out.append(r)
            print(f"  P={p} n={n:.0e}: mean {r['seconds_per_op'] * 1e6:.1f} us, best {r['best_seconds'] * 1e6:.1f} us",
                  file=sys.stderr, flush=True)
    return out


TWO_NODE_SUBNET = "10.231.77.0/24"  # tests/slurm/cluster_two_node.sh


def measure_two_node(sizes: list[int], repeat: int | None, trials: int, nice) -> list[dict]:
    """bench-allreduce between the two network namespaces of tests/slurm/cluster_two_node.sh
    (started here and stopped afterwards): P = 2 is one rank per node, so every byte
    crosses the veth link over Open MPI's TCP transport; P = 4 is 2 ranks per node
    (shared memory within a node, TCP between). mpirun runs on node1 with
    tests/slurm/netns_rsh.sh as its remote shell (ssh on a real cluster)."""
    import subprocess
    import tempfile
    script = common.REPO_ROOT / "tests" / "slurm" / "cluster_two_node.sh"
    agent = common.REPO_ROOT / "tests" / "slurm" / "netns_rsh.sh"
    tmp = tempfile.mkdtemp(prefix="latent-comm-2node.")
    os.chmod(tmp, 0o755)
    env = dict(os.environ, LATENT_SLURM2_DIR=tmp)
    os.environ["LATENT_SLURM2_DIR"] = tmp  # for the remote-shell agent, through mpirun
    try:
        rc = subprocess.run(["bash", str(script), "start"], env=env).returncode
        if rc != 0:
            raise SystemExit(f"--two-node: {script} start failed ({rc}; 77: cannot run here: root, "
                             "network namespaces and slurm-wlm/munge needed)")

        def launcher(p: int) -> list[str]:
            per = p // 2
            return ["bash", str(script), "on", "node1", "env", "OMPI_MCA_btl=self,vader,tcp",
                    f"OMPI_MCA_btl_tcp_if_include={TWO_NODE_SUBNET}", f"OMPI_MCA_oob_tcp_if_include={TWO_NODE_SUBNET}",
                    f"OMPI_MCA_plm_rsh_agent={agent}", "mpirun", "--host", f"node1:{per},node2:{per}", "-n", str(p)]
        return measure_allreduce([2, 4], sizes, repeat, trials, nice, launcher=launcher)
    finally:
        subprocess.run(["bash", str(script), "stop"], env=env)
        os.environ.pop("LATENT_SLURM2_DIR", None)
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)


def waiting_us(measurements: list[dict], max_bytes: float = 8e3) -> dict:
    """Per-collective waiting for the slowest rank, per P: the median over small payloads
    (<= max_bytes, where transfer is negligible) of mean - best time of one allreduce (each
    timed as the slowest rank after a barrier): what one collective loses to the rank that
    arrives late or is descheduled."""
    out = {}
    for p in sorted({m["ranks"] for m in measurements}):
        d = [(m["seconds_per_op"] - m["best_seconds"]) * 1e6 for m in measurements
             if m["ranks"] == p and m["bytes"] <= max_bytes]
        if d:
            out[str(p)] = common.median(d)
    return out


def fit_alpha_beta(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least squares of t = a + b x on relative error, a, b >= 0."""
    import numpy as np
    x = np.array([p[0] for p in points], float)
    t = np.array([p[1] for p in points], float)
    w = 1.0 / t
    A = np.stack([w, x * w], axis=1)
    (a, b), *_ = np.linalg.lstsq(A, np.ones_like(t), rcond=None)
    if a < 0:
        a = 0.0
        b = float(np.sum(x * w * w * t) / np.sum((x * w) ** 2))
    if b < 0:
        b = 0.0
        a = float(np.sum(w * w * t) / np.sum(w * w))
    return float(a), float(b)


def fits_from(measurements: list[dict], stat: str) -> dict:
    key = "best_seconds" if stat == "best" else "seconds_per_op"
    fits = {}
    for p in sorted({m["ranks"] for m in measurements}):
        pts = [(m["bytes"], m[key]) for m in measurements if m["ranks"] == p and m[key] > 0]
        if len(pts) < 2:
            continue
        a, b = fit_alpha_beta(pts)
        lat, bw = 2 * math.log2(p), 2 * (p - 1) / p
        fits[str(p)] = {"alpha_P_seconds": a, "beta_P_seconds_per_byte": b,
                        "bandwidth_P_GBps": (1 / b / 1e9) if b > 0 else None,
                        "per_link_alpha_seconds": a / lat, "per_link_beta_seconds_per_byte": b / bw,
                        "per_link_bandwidth_GBps": (bw / b / 1e9) if b > 0 else None,
                        "oversubscribed": p > (os.cpu_count() or 1),
                        "max_relative_error": max(abs(a + b * x - t) / t for x, t in pts)}
    return fits


def t_allreduce(p: int, nbytes: float, alpha: float, beta: float, n_coll: float = 1.0) -> float:
    """n_coll collectives' latency (log-depth) + one payload's bandwidth term."""
    if p <= 1:
        return 0.0
    return n_coll * 2 * math.log2(p) * alpha + 2 * (p - 1) / p * nbytes * beta


# --------------------------------------------------------------------------- 2. compute

def parse_kv(text: str) -> dict:
    out = {}
    for part in text.split(","):
        if not part.strip():
            continue
        k, _, v = part.partition("=")
        if not _:
            k, _, v = part.partition(":")
        out[k.strip().lower()] = float(v)
    return out


MODEL_ALIASES = {"gmm": "gmm_diag", "gmm_diag": "gmm_diag", "gmm-diag": "gmm_diag", "gmm_full": "gmm_full",
                 "gmm-full": "gmm_full", "lda": "lda", "vae": "vae"}


def fallback_log(model: str, remeasure: bool, nice) -> Path:
    """A small 1x1 fit with --profile (cached)."""
    d = run_scaling.scaling_dir() / "comm_model_logs"
    d.mkdir(parents=True, exist_ok=True)
    log = d / f"{model}-1x1.jsonl"
    if log.exists() and not remeasure:
        try:
            report.load_profile_log(log)
            return log
        except report.ProfileError:
            pass
    out = d / "model.h5"
    if model == "gmm_diag":
        data = run_scaling.ensure_dataset("dense", 8, nice=nice)
        args = ["fit", "gmm", "--n-components", 16, "--covariance-type", "diag", "--init-params", "random_from_data",
                "--tol", 0, "--max-iter", 4]
    elif model == "gmm_full":
        data = run_scaling.scaling_dir() / "dense256-s2048-n4"
        if not common.has_shards(data):
            tmp = data.with_name(data.name + ".tmp")
            if tmp.exists():
                import shutil
                shutil.rmtree(tmp)
            common.run_latent(["generate", "gmm", "--n-samples", 8192, "--n-features", 256, "--n-components", 8,
                               "--shards", 4, "--seed", 0, "--threads", 1, "--output", tmp, "--true-model", "none"],
                              ranks=2, nice=nice)
            tmp.rename(data)
        args = ["fit", "gmm", "--n-components", 8, "--covariance-type", "full", "--init-params", "random_from_data",
                "--tol", 0, "--max-iter", 4]
    elif model == "lda":
        data = run_scaling.ensure_dataset("counts", 2, nice=nice)
        args = ["fit", "lda", "--method", "online", "--n-topics", 50, "--batch-size", 128, "--evaluate-every", 0,
                "--max-iter", 3]
    elif model == "vae":
        data = run_scaling.ensure_dataset("dense", 2, nice=nice)
        args = ["fit", "vae", "--likelihood", "gaussian", "--batch-size", 256, "--micro-batch-rows", 64, "--epochs", 3]
    else:
        raise ValueError(model)
    if log.exists():
        log.unlink()
    rc, secs, err = run_scaling.run_with_timeout(
        common.latent_cmd(args + ["--data", data, "--output", out, "--overwrite", "--threads", 1, "--profile",
                                  "--log-json", log], 1), 300, nice)
    if out.exists():
        out.unlink()
    if rc != 0:
        raise SystemExit(f"fallback measurement of {model} failed ({rc}):\n{err}")
    return log


def measure_compute(model: str, log: Path, dims: dict) -> dict:
    """Per-thread compute cost and per-update M-step / collectives from a profile log."""
    its, _done = report.load_profile_log(log)
    s = report.summarize_log(log, skip_first=len(its) >= 2)
    ranks = s["ranks"]
    threads = s["threads"] or 1
    rows = s["rows_per_iteration"]
    tokens = s["tokens_per_iteration"]
    if not rows:
        raise report.ProfileError(f"{log}: no samples_per_second in the iteration lines")
    compute = s["breakdown"]["compute"]["mean_seconds"]
    mstep = s["breakdown"]["m_step"]["mean_seconds"]
    if model.startswith("gmm"):
        updates = 1.0
    elif model == "lda":
        updates = math.ceil(rows / dims["batch"])
    else:  # vae: steps per epoch (at least; micro-batches do not cross shards)
        updates = math.ceil(rows / dims["batch"])
    m = {"log": str(log), "model_in_log": s["model"], "ranks": ranks, "threads": threads,
         "rows_per_iteration": rows, "tokens_per_iteration": tokens, "updates_per_iteration": updates,
         "compute_seconds_per_iteration": compute, "m_step_seconds_per_iteration": mstep,
         "dims": dims,
         "thread_seconds_per_row": compute * threads / (rows / ranks),
         "m_step_seconds_per_update": mstep / updates}
    if tokens:
        m["thread_seconds_per_token"] = compute * threads / (tokens / ranks)
        m["tokens_per_document"] = tokens / rows
    if ranks > 1:
        m["collectives_per_update"] = s["collectives_per_iteration"] / updates
        m["allreduce_bytes_per_update"] = s["allreduce_mb_per_iteration"] * 1e6 / updates
    # the payload formula of section 3 at the measured dimensions, to compare with the log
    if model == "gmm_diag":
        m["payload_formula_bytes"] = (2 + dims["k"] + 2 * dims["k"] * dims["d"]) * CELL_BYTES + 8
    elif model == "gmm_full":
        k, d = dims["k"], dims["d"]
        m["payload_formula_bytes"] = (2 + k + k * d + k * d * d) * CELL_BYTES + 8
    elif model == "lda" and tokens:
        m["payload_formula_bytes"] = touched(dims.get("v", 20000), dims["batch"] * tokens / rows) * dims["k"] * 8
    elif model == "vae":
        m["payload_formula_bytes"] = dims["params"] * 8 + 8
    return m


# --------------------------------------------------------------------------- 3. cases

def touched(v: float, tokens: float) -> float:
    """Expected distinct words among `tokens` uniform draws from v words."""
    return v * (1.0 - math.exp(-tokens / v))


def build_cases(measured: dict, args) -> list[dict]:
    """Each case: a function P -> (compute, useful compute, mstep, comm) seconds per update
    for a plain allreduce and for the alternative, plus descriptions."""
    cases = []
    T = args.threads_per_rank
    if "gmm_diag" in measured:
        m = measured["gmm_diag"]
        km, dm = m["dims"]["k"], m["dims"]["d"]
        ncoll = m.get("collectives_per_update", DEFAULT_COLLECTIVES["gmm_diag"])
        for n in (1e8, 1e6):
            k, d = 100, 784
            payload = (2 + k + 2 * k * d) * CELL_BYTES + 8
            c_row = m["thread_seconds_per_row"] * (k * d) / (km * dm) / T
            ms = m["m_step_seconds_per_update"] * (k * d) / (km * dm)
            cases.append({
                "case": "gmm_diag", "name": f"gmm diag K={k} D={d} N={n:.0e}", "size": f"K={k}, D={d}, N={n:.0e}",
                "payload_bytes": lambda p, b=payload: b, "n_coll": ncoll,
                "compute": lambda p, c=c_row, n=n: c * n / p, "useful": lambda p, c=c_row, n=n: c * n / p,
                "mstep": lambda p, s=ms: s,
                "alternative": "compression: doubles instead of 32-byte exact cells (4x smaller payload)",
                "alt_payload": lambda p, b=payload: b / 4, "alt_mstep": lambda p, s=ms: s,
                "assumptions": f"payload (2 + K + 2KD) x {CELL_BYTES} B exact cells; compute per row scaled by K D "
                               f"from the measured K={km}, D={dm}; {ncoll:g} collectives per iteration; "
                               "M-step replicated",
            })
    if "gmm_full" in measured:
        m = measured["gmm_full"]
        km, dm = m["dims"]["k"], m["dims"]["d"]
        ncoll = m.get("collectives_per_update", DEFAULT_COLLECTIVES["gmm_full"])
        k, d, n = 50, 256, 1e8
        payload = (2 + k + k * d + k * d * d) * CELL_BYTES + 8
        c_row = m["thread_seconds_per_row"] * (k * d * d) / (km * dm * dm) / T
        ms = m["m_step_seconds_per_update"] * (k * d ** 3) / (km * dm ** 3)
        cases.append({
            "case": "gmm_full", "name": f"gmm full K={k} D={d} N={n:.0e}", "size": f"K={k}, D={d}, N={n:.0e}",
            "payload_bytes": lambda p, b=payload: b, "n_coll": ncoll,
            "compute": lambda p, c=c_row: c * n / p, "useful": lambda p, c=c_row: c * n / p,
            "mstep": lambda p, s=ms: s,
            "alternative": "compression: doubles + symmetric packing of the D x D moments (~8x smaller)",
            "alt_payload": lambda p, b=payload, k=k, d=d: (2 + k + k * d + k * d * (d + 1) / 2) * 8 + 8,
            "alt_mstep": lambda p, s=ms: s,
            "assumptions": f"payload (2 + K + KD + KD^2) x {CELL_BYTES} B; compute per row scaled by K D^2 from the "
                           f"measured K={km}, D={dm}; M-step (Cholesky) by K D^3, replicated",
        })
    if "lda" in measured:
        m = measured["lda"]
        km = m["dims"]["k"]
        b_rank = args.lda_docs_per_rank
        length = m.get("tokens_per_document") or 100.0
        c_tok = m["thread_seconds_per_token"] / km / T  # per token per topic
        ncoll = m.get("collectives_per_update", DEFAULT_COLLECTIVES["lda"])
        # M-step per touched row per topic, from the measured run (its touched rows by the same formula)
        vm = m["dims"].get("v", 20000)
        u_m = touched(vm, m["dims"]["batch"] * length)
        ms_cell = m["m_step_seconds_per_update"] / (u_m * km)
        for k, v in ((100, 1e5), (100, 1e6), (1000, 1e5)):
            u_loc = touched(v, b_rank * length)

            def union(p, v=v):
                return touched(v, b_rank * length * p)

            def payload(p, k=k, v=v, u_loc=u_loc, union=union):
                u = union(p)
                return (u * k * 8 if 2 * u <= v else k * v * 8)

            def extra(p, k=k, v=v, u_loc=u_loc, union=union):  # allgather of word ids (sparse path only)
                if p <= 1 or 2 * union(p) > v:
                    return 0.0
                return math.log2(p) * args.alpha + (p - 1) / p * (p * u_loc * 8) * args.beta

            def extra_here(p, k=k, v=v, u_loc=u_loc, union=union):
                if p <= 1 or 2 * union(p) > v:
                    return 0.0
                return math.log2(p) * args.alpha_here + (p - 1) / p * (p * u_loc * 8) * args.beta_here

            cases.append({
                "case": "lda", "name": f"lda online K={k} V={v:.0e}", "size": f"K={k}, V={v:.0e} (KV={k * v:.0e})",
                "payload_bytes": payload, "n_coll": ncoll, "extra_comm": extra, "extra_comm_here": extra_here,
                "compute": lambda p, c=c_tok, k=k: c * k * b_rank * length,
                "useful": lambda p, c=c_tok, k=k: c * k * b_rank * length,
                "mstep": lambda p, k=k, v=v, union=union: ms_cell * k * (union(p) if 2 * union(p) <= v else v),
                "alternative": "reduce-scatter by vocabulary slice (rank owns V/P words; per-rank payload "
                               "2 x local touched rows, sliced M-step)",
                "alt_payload": lambda p, k=k, u_loc=u_loc: 2 * u_loc * k * 8,
                "alt_mstep": lambda p, k=k, v=v, u_loc=u_loc: ms_cell * k * min(p * u_loc, v) / p,
                "alt_alltoall": True,
                "assumptions": f"per-rank minibatch {b_rank} documents x {length:.0f} tokens; touched words V(1 - "
                               f"exp(-tokens/V)) (uniform, an upper bound); dense K x V int64 when the union > V/2; "
                               f"compute per token x K from the measured K={km}; M-step x touched rows x K, replicated",
            })
    if "vae" in measured:
        m = measured["vae"]
        npar = args.vae_params or m["dims"]["params"]
        c_row = m["thread_seconds_per_row"] / T
        ms = m["m_step_seconds_per_update"] * npar / m["dims"]["params"]
        micro = m["dims"]["micro"]
        ncoll = m.get("collectives_per_update", DEFAULT_COLLECTIVES["vae"])
        payload = npar * 8 + 8
        for label, batch in (("global batch 1024", lambda p: 1024), ("batch 128 per rank", lambda p: 128 * p)):
            def rows_rank(p, batch=batch):
                mb = math.ceil(batch(p) / micro)
                return math.ceil(mb / p) * micro

            cases.append({
                "case": "vae", "name": f"vae {label}", "size": f"{npar / 1e6:.2f}M params, {label}",
                "payload_bytes": lambda p, b=payload: b, "n_coll": ncoll,
                "compute": lambda p, rr=rows_rank: c_row * rr(p),
                "useful": lambda p, batch=batch: c_row * batch(p) / p,
                "mstep": lambda p, s=ms: s,
                "alternative": f"compression: top-k / low-precision gradients ({args.compression:g}x smaller)",
                "alt_payload": lambda p, b=payload: b / args.compression, "alt_mstep": lambda p, s=ms: s,
                "assumptions": f"{npar} parameters x 8 B (int64 fixed point) per step; micro-batches of {micro} rows, "
                               f"so at most batch/{micro} ranks have work; Adam step replicated",
            })
    return cases


def project(case: dict, p: int, alpha: float, beta: float, which: str = "plain", here: bool = False,
            args=None) -> dict:
    comp = case["compute"](p)
    useful = case["useful"](p)
    if which == "plain":
        ms = case["mstep"](p)
        lat = case["n_coll"] * 2 * math.log2(p) * alpha if p > 1 else 0.0
        bw = 2 * (p - 1) / p * case["payload_bytes"](p) * beta if p > 1 else 0.0
        ex = case.get("extra_comm_here" if here else "extra_comm", lambda q: 0.0)(p)
    elif which == "hierarchical":
        r = min(args.ranks_per_node, p)
        nodes = max(1, p // r)
        ms = case["mstep"](p)
        b = case["payload_bytes"](p)
        intra = t_allreduce(r, b, args.alpha_here, args.beta_here, case["n_coll"]) if r > 1 else 0.0
        lat = case["n_coll"] * 2 * math.log2(nodes) * alpha if nodes > 1 else 0.0
        bw = (2 * (nodes - 1) / nodes * b * beta if nodes > 1 else 0.0) + intra
        ex = 0.0
    else:  # the case's alternative
        ms = case["alt_mstep"](p)
        if case.get("alt_alltoall"):
            lat = (2 * (p - 1) * alpha + (case["n_coll"] - 1) * 2 * math.log2(p) * alpha) if p > 1 else 0.0
            bw = case["alt_payload"](p) * beta if p > 1 else 0.0
        else:
            lat = case["n_coll"] * 2 * math.log2(p) * alpha if p > 1 else 0.0
            bw = 2 * (p - 1) / p * case["alt_payload"](p) * beta if p > 1 else 0.0
        ex = 0.0
    total = comp + ms + lat + bw + ex
    no_ms = comp + lat + bw + ex
    return {"P": p, "compute_seconds": comp, "useful_compute_seconds": useful, "m_step_seconds": ms,
            "latency_seconds": lat, "bandwidth_seconds": bw + ex, "update_seconds": total,
            "efficiency": useful / no_ms if no_ms > 0 else float("nan"),
            "efficiency_with_m_step": useful / total if total > 0 else float("nan")}


def verdict(case: dict, cl: list[dict], alt_cl: list[dict], hier_cl: list[dict], p_max: int) -> tuple[str, dict]:
    bad = next((r for r in cl if r["efficiency"] < 0.5), None)
    info = {"p_half": bad["P"] if bad else None}
    last = cl[-1]
    ms_note = ""
    if last["m_step_seconds"] > 0.1 * last["update_seconds"]:
        # Amdahl: the M-step every rank repeats, not communication
        cap = last["useful_compute_seconds"] / (last["useful_compute_seconds"] + last["m_step_seconds"])
        ms_note = f"; replicated M-step: E incl. it {last['efficiency_with_m_step']:.2f}"
        info["m_step_cap"] = cap
    if bad is None:
        return f"plain allreduce scales: E({p_max}) = {last['efficiency']:.2f}" + ms_note, info
    parts = {"bandwidth": bad["bandwidth_seconds"], "latency": bad["latency_seconds"],
             "idle ranks": bad["compute_seconds"] - bad["useful_compute_seconds"]}
    dom = max(parts, key=parts.get)
    info["dominant"] = dom
    e_alt = alt_cl[-1]["efficiency"]
    e_h = hier_cl[-1]["efficiency"]
    series = None
    if dom == "idle ranks":
        rec = "a larger global batch (ranks beyond batch / micro-batch idle)"
        e_rec = None
    elif case["case"] == "lda":
        rec, e_rec, series = "reduce-scatter by vocabulary slice", e_alt, "cluster_alternative"
    elif dom == "latency":
        rec, e_rec, series = "hierarchical (intra-node, then inter-node)", e_h, "cluster_hierarchical"
    else:
        rec, e_rec, series = case["alternative"].split(":")[0], e_alt, "cluster_alternative"
    info.update({"recommendation": rec, "efficiency_at_p_max_with_recommendation": e_rec,
                 "recommended_series": series})
    s = f"E < 0.5 from P={bad['P']} ({dom}): {rec}"
    if e_rec is not None:
        s += f": E({p_max}) = {e_rec:.2f}"
        if e_rec < 0.5:
            s += " (not enough: also more work per rank per update)"
    return s + ms_note, info


# --------------------------------------------------------------------------- output

def plot(result: dict, png: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, c in enumerate(result["projections"]):
        col = colors[i % len(colors)]
        ps = [r["P"] for r in c["cluster"]]
        axes[0].plot(ps, [r["efficiency"] for r in c["cluster"]], "-o", ms=3, color=col, label=c["name"])
        axes[0].plot(ps, [r["efficiency"] for r in c["this_machine"]], "--", color=col, lw=1)
        series = c["verdict_info_cluster"].get("recommended_series")
        if series:
            axes[1].plot(ps, [r["efficiency"] for r in c["cluster"]], "-", color=col, lw=1, alpha=0.5)
            axes[1].plot(ps, [r["efficiency"] for r in c[series]], ":o", ms=3, color=col,
                         label=f"{c['name']}: {c['verdict_info_cluster']['recommendation'].split('(')[0].strip()}")
    cl = result["cluster"]
    axes[0].set_title(f"plain allreduce: cluster (solid; alpha {cl['alpha_us']:g} us, {cl['bandwidth_GBps']:g} GB/s) "
                      "vs this machine (dashed)", fontsize=8)
    axes[1].set_title("cluster, cases with E < 0.5: plain (faint) vs the recommended alternative (dotted)",
                      fontsize=8)
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.axhline(0.5, color="k", lw=0.8, ls="--")
        ax.set_xlabel(f"ranks P ({result['assumptions']['threads_per_rank']} thread(s) each)")
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6.5, loc="lower left")
        else:
            ax.text(0.5, 0.25, "every case keeps E >= 0.5", transform=ax.transAxes, ha="center")
    axes[0].set_ylabel("projected parallel efficiency E(P)")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)
    print(f"plot written to {png}")


def check_against_logs(specs: list[str], fits: dict) -> list[dict]:
    """The model next to measurements: for each multi-rank profile log, the seconds per
    iteration spent in collectives as measured (mean over ranks and over the iterations
    after the first) and as the fitted t = alpha_P + beta_P bytes of the same P predicts
    for the log's own collectives and bytes (n alpha_P + beta_P bytes). Measured time also
    holds waiting for slower ranks, which the model leaves out."""
    out = []
    for spec in specs:
        name, _, path = spec.partition("=")
        its = common.iteration_records(Path(path))
        its = its[1:] if len(its) > 2 else its
        if not its or "profile" not in its[0]:
            raise SystemExit(f"--check-log {spec}: no profile records")
        ranks = len(its[0]["profile"]["seconds"])
        fit = fits.get(str(ranks))
        if fit is None:
            raise SystemExit(f"--check-log {spec}: no allreduce fit for P = {ranks} (add it to --ranks)")
        mean = lambda k: sum(sum(j["profile"][k]) / ranks for j in its) / len(its)  # noqa: E731
        n, b, t = mean("collectives"), mean("allreduce_bytes"), mean("allreduce_seconds")
        pred = n * fit["alpha_P_seconds"] + b * fit["beta_P_seconds_per_byte"]
        out.append({"name": name, "log": path, "ranks": ranks, "collectives_per_iteration": n,
                    "bytes_per_iteration": b, "measured_seconds": t, "predicted_seconds": pred,
                    "iteration_seconds": mean("seconds"),
                    "measured_share": t / mean("seconds"), "predicted_share": pred / mean("seconds")})
    if out:
        print("\nthe model next to measurements (collective seconds per iteration, mean over ranks)")
        common.print_table([[c["name"], c["ranks"], f"{c['collectives_per_iteration']:.0f}",
                             f"{c['bytes_per_iteration'] / 1e6:.3g}", f"{c['measured_seconds']:.4f}",
                             f"{c['predicted_seconds']:.4f}", f"{100 * c['measured_share']:.1f}",
                             f"{100 * c['predicted_share']:.1f}"] for c in out],
                           ["log", "P", "collectives", "MB", "measured s", "model s", "measured %", "model %"])
        print("(measured time includes waiting for the slower rank; the model counts only the transfer)")
    return out


def print_tables(result: dict) -> None:
    keys = [("this_machine", "this machine (alpha, beta fitted at P = 2)"),
            ("cluster", "cluster (--alpha-us, --bandwidth-GBps)")]
    if result.get("two_node_tcp"):
        keys.append(("two_node_tcp", "TCP between two nodes (measured, --two-node)"))
    for key, title in keys:
        prm = result[key]
        print(f"\nProjected parallel efficiency, {title}: alpha = {prm['alpha_us']:.2f} us, "
              f"bandwidth = {prm['bandwidth_GBps']:.2f} GB/s per rank")
        rows = []
        for c in result["projections"]:
            pr = [r for r in c[key] if r["P"] in P_TABLE]
            pay = [c["payload_mb"][str(r["P"])] for r in pr]
            same = max(pay) - min(pay) < 1e-9 * max(pay) + 1e-12
            pay_s = f"{pay[0]:.3g}" if same else f"{min(pay):.3g}-{max(pay):.3g}"
            rows.append([c["name"], pay_s, *[f"{r['efficiency']:.2f}" for r in pr], c["verdict_" + key]])
        common.print_table(rows, ["case", "payload MB", *[f"P={p}" for p in P_TABLE], "verdict"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", default="2,4", help="rank counts for bench-allreduce")
    ap.add_argument("--sizes", default=None, help=f"int64 elements per allreduce ({DEFAULT_SIZES})")
    ap.add_argument("--repeat", type=int, default=None, help="repetitions per command (default ~200 MB, 3..1000)")
    ap.add_argument("--trials", type=int, default=1)
    ap.add_argument("--stat", choices=["best", "mean"], default="best", help="fit best_seconds or seconds_per_op")
    ap.add_argument("--reuse-allreduce", type=Path, nargs="?", const=common.RESULTS_DIR / "comm_model.json",
                    default=None, help="take the allreduce measurements from this earlier comm_model.json")
    ap.add_argument("--profile-log", action="append", default=[], metavar="MODEL=LOG.jsonl")
    ap.add_argument("--check-log", action="append", default=[], metavar="NAME=LOG.jsonl",
                    help="a multi-rank profile log to set the model's collective time beside (validation)")
    ap.add_argument("--dims", action="append", default=[], metavar="MODEL=k=..,d=..",
                    help="problem dimensions of a --profile-log (k, d, batch, micro, params, v)")
    ap.add_argument("--models", default="gmm_diag,gmm_full,lda,vae")
    ap.add_argument("--remeasure", action="store_true", help="redo the cached fallback fits")
    ap.add_argument("--alpha-us", type=float, default=2.0, help="cluster latency per message step (us)")
    ap.add_argument("--bandwidth-GBps", type=float, default=10.0, help="cluster bandwidth per rank (GB/s)")
    ap.add_argument("--threads-per-rank", type=int, default=1, help="threads of a projected rank")
    ap.add_argument("--ranks-per-node", type=int, default=16, help="for the hierarchical alternative")
    ap.add_argument("--lda-docs-per-rank", type=int, default=128, help="per-rank LDA minibatch (documents)")
    ap.add_argument("--vae-params", type=int, default=None, help="VAE parameters (default: the measured network)")
    ap.add_argument("--compression", type=float, default=8.0, help="payload reduction of VAE gradient compression")
    ap.add_argument("--p-max", type=int, default=1024)
    ap.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES}")
    ap.add_argument("--out-dir", type=Path, default=common.RESULTS_DIR)
    ap.add_argument("--nice", type=int, default=None)
    ap.add_argument("--two-node", action="store_true",
                    help="also measure over TCP between the two network namespaces of "
                         "tests/slurm/cluster_two_node.sh (root) and project from those figures")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    models = [MODEL_ALIASES.get(m.strip(), m.strip()) for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in MEASURED_DIMS:
            raise SystemExit(f"unknown model '{m}' (gmm_diag, gmm_full, lda, vae)")
    logs = {}
    for spec in args.profile_log:
        k, _, v = spec.partition("=")
        k = MODEL_ALIASES.get(k.strip())
        if not k or not v:
            raise SystemExit(f"--profile-log {spec}: expected MODEL=LOG.jsonl, MODEL in gmm, gmm_full, lda, vae")
        logs[k] = Path(v)
    dims = {m: dict(d) for m, d in MEASURED_DIMS.items()}
    for spec in args.dims:
        k, _, v = spec.partition("=")
        k = MODEL_ALIASES.get(k.strip())
        if not k:
            raise SystemExit(f"--dims {spec}: unknown model")
        dims[k].update({kk: (int(vv) if float(vv).is_integer() else vv) for kk, vv in parse_kv(v).items()})

    # 1. allreduce
    load = common.warn_if_busy()
    if args.reuse_allreduce:
        prev = json.loads(Path(args.reuse_allreduce).read_text())
        measurements = prev["allreduce"]["measurements"]
        print(f"allreduce measurements taken from {args.reuse_allreduce}", file=sys.stderr)
    else:
        common.latent_bin()
        sizes = [int(float(s)) for s in (args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)).split(",")
                 if s.strip()]
        ranks = [int(r) for r in args.ranks.split(",") if r.strip()]
        measurements = measure_allreduce(ranks, sizes, args.repeat, args.trials, args.nice)
    fits = fits_from(measurements, args.stat)
    if not fits:
        raise SystemExit("no allreduce fit (need >= 2 sizes for some P)")
    ref = "2" if "2" in fits else sorted(fits, key=int)[0]
    args.alpha_here = fits[ref]["per_link_alpha_seconds"]
    args.beta_here = fits[ref]["per_link_beta_seconds_per_byte"]
    args.alpha = args.alpha_us * 1e-6
    args.beta = 1.0 / (args.bandwidth_GBps * 1e9)
    tcp = None
    if args.two_node:
        tcp_sizes = [int(float(x)) for x in (args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)).split(",")
                     if x.strip()]
        tcp_meas = measure_two_node(tcp_sizes, args.repeat, args.trials, args.nice)
        tcp_fits = fits_from(tcp_meas, args.stat)
        f2 = tcp_fits["2"]
        tcp = {"link": "veth pair between two network namespaces (tests/slurm/cluster_two_node.sh), "
                       "Open MPI btl tcp; P = 2: one rank per node, P = 4: two per node",
               "measurements": tcp_meas, "fits": tcp_fits,
               "alpha_us": f2["per_link_alpha_seconds"] * 1e6,
               "bandwidth_GBps": f2["per_link_bandwidth_GBps"],
               "waiting_for_slowest_us": waiting_us(tcp_meas)}
        args.alpha_tcp = f2["per_link_alpha_seconds"]
        args.beta_tcp = f2["per_link_beta_seconds_per_byte"]
        for p, f in tcp_fits.items():
            print(f"TCP fit P={p}: t = {f['alpha_P_seconds'] * 1e6:.2f} us + bytes / "
                  f"{f['bandwidth_P_GBps'] or float('inf'):.3f} GB/s; per link: alpha "
                  f"{f['per_link_alpha_seconds'] * 1e6:.2f} us, {f['per_link_bandwidth_GBps'] or float('inf'):.3f} GB/s",
                  file=sys.stderr)
    print()
    rows = []
    for m in measurements:
        rows.append([m["ranks"], f"{m['size']:.0e}", f"{m['bytes'] / 1e6:.3g}", m["repeat"],
                     f"{m['seconds_per_op'] * 1e6:.1f}", f"{m['best_seconds'] * 1e6:.1f}",
                     f"{m['bytes'] / m['best_seconds'] / 1e9:.2f}", "yes" if m["oversubscribed"] else ""])
    print("latent bench-allreduce (int64 sum) on this machine")
    common.print_table(rows, ["P", "n", "MB", "repeat", "mean us", "best us", "best GB/s", "oversub"])
    for p, f in fits.items():
        print(f"fit P={p}{' (oversubscribed)' if f['oversubscribed'] else ''}: "
              f"t = {f['alpha_P_seconds'] * 1e6:.2f} us + bytes / {f['bandwidth_P_GBps'] or float('inf'):.2f} GB/s "
              f"(max rel. error {f['max_relative_error']:.0%}); "
              f"per link: alpha {f['per_link_alpha_seconds'] * 1e6:.2f} us, "
              f"{f['per_link_bandwidth_GBps'] or float('inf'):.2f} GB/s")

    # 2. compute
    measured = {}
    for m in models:
        log = logs.get(m) or fallback_log(m, args.remeasure, args.nice)
        try:
            measured[m] = measure_compute(m, log, dims[m])
        except report.ProfileError as e:
            raise SystemExit(f"comm_model.py: {e}")
    print("\ncompute per thread (from the profile logs)")
    rows = []
    for m, x in measured.items():
        extra = (f"{x['thread_seconds_per_token'] * 1e9:.1f} ns/token" if "thread_seconds_per_token" in x else "")
        chk = f"formula {x['payload_formula_bytes'] / 1e6:.3g} MB" if x.get("payload_formula_bytes") else ""
        if "allreduce_bytes_per_update" in x:
            chk += f", measured {x['allreduce_bytes_per_update'] / 1e6:.3g} MB"
        rows.append([m, x["log"], f"{x['ranks']}x{x['threads']}", f"{x['rows_per_iteration']:.0f}",
                     f"{x['thread_seconds_per_row'] * 1e6:.2f}", extra,
                     f"{x['m_step_seconds_per_update'] * 1e3:.3f}", chk])
    common.print_table(rows, ["model", "log", "RxT", "rows/iter", "us/row/thread", "", "M-step ms/update",
                              "payload per update (at the log's size)"])
    print("(LDA formula: uniform word occupancy, an upper bound of the touched rows; the measured bytes also "
          "count the word-id allgather and small collectives)")

    checks = check_against_logs(args.check_log, fits)

    # 3. projections
    cases = build_cases(measured, args)
    ps = [2 ** i for i in range(0, int(math.log2(args.p_max)) + 1)]
    projections = []
    for c in cases:
        here = [project(c, p, args.alpha_here, args.beta_here, "plain", True, args) for p in ps]
        cl = [project(c, p, args.alpha, args.beta, "plain", False, args) for p in ps]
        alt = [project(c, p, args.alpha, args.beta, "alternative", False, args) for p in ps]
        hier = [project(c, p, args.alpha, args.beta, "hierarchical", False, args) for p in ps]
        alt_here = [project(c, p, args.alpha_here, args.beta_here, "alternative", True, args) for p in ps]
        hier_here = [project(c, p, args.alpha_here, args.beta_here, "hierarchical", True, args) for p in ps]
        if tcp is not None:
            tc = [project(c, p, args.alpha_tcp, args.beta_tcp, "plain", False, args) for p in ps]
            tc_alt = [project(c, p, args.alpha_tcp, args.beta_tcp, "alternative", False, args) for p in ps]
            tc_hier = [project(c, p, args.alpha_tcp, args.beta_tcp, "hierarchical", False, args) for p in ps]
            v_tc, _ = verdict(c, tc, tc_alt, tc_hier, args.p_max)
        v_cl, info_cl = verdict(c, cl, alt, hier, args.p_max)
        v_here, info_here = verdict(c, here, alt_here, hier_here, args.p_max)
        projections.append({
            "case": c["case"], "name": c["name"], "size": c["size"], "assumptions": c["assumptions"],
            "alternative": c["alternative"],
            "payload_mb": {str(p): c["payload_bytes"](p) / 1e6 for p in ps},
            "alternative_payload_mb": {str(p): c["alt_payload"](p) / 1e6 for p in ps},
            "this_machine": here, "cluster": cl, "cluster_alternative": alt, "cluster_hierarchical": hier,
            "verdict_this_machine": v_here, "verdict_cluster": v_cl,
            "verdict_info_this_machine": info_here, "verdict_info_cluster": info_cl,
        })
        if tcp is not None:
            projections[-1].update({"two_node_tcp": tc, "verdict_two_node_tcp": v_tc})
    result = {
        "benchmark": "comm_model", "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "load_average_at_start": load, "mpi_env": common.mpi_settings(),
        "allreduce": {"measurements": measurements, "fit_statistic": args.stat, "fits": fits, "reference_P": int(ref),
                      "projection_form": "t_P(bytes) = 2 log2(P) alpha + 2 (P-1)/P bytes beta (Rabenseifner)",
                      "fit_form": "t(n) = alpha_P + beta_P bytes per P; per-link alpha = alpha_P / (2 log2 P), "
                                  "beta = beta_P / (2 (P-1)/P)"},
        "this_machine": {"alpha_us": args.alpha_here * 1e6, "bandwidth_GBps": 1 / args.beta_here / 1e9
                         if args.beta_here > 0 else None},
        "cluster": {"alpha_us": args.alpha_us, "bandwidth_GBps": args.bandwidth_GBps},
        "two_node_tcp": tcp,
        "allreduce_waiting_for_slowest_us": waiting_us(measurements),
        "compute": measured,
        "model_vs_measured": checks,
        "assumptions": {
            "threads_per_rank": args.threads_per_rank, "ranks_per_node": args.ranks_per_node,
            "efficiency": "E(P) = useful compute / (compute + collectives) per update; useful compute = the "
                          "update's total work / P (idle ranks count as lost); efficiency_with_m_step also "
                          "counts the M-step every rank repeats",
            "exact_cell_bytes": CELL_BYTES, "lda_docs_per_rank": args.lda_docs_per_rank,
            "vae_compression": args.compression,
            "linear_thread_scaling": True,
            "io": "reading assumed overlapped with compute (not modelled)",
        },
        "projections": projections,
        "elapsed_seconds": time.perf_counter() - t_start,
    }
    print_tables(result)
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / "comm_model.json"
    result.setdefault("timestamp", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    result.setdefault("machine", common.machine_info())
    result.setdefault("git_commit", common.git_commit())
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report.json_safe(result), indent=2, default=common._json_default) + "\n")
    tmp.replace(out)
    print(f"results written to {out}")
    plot(result, args.out_dir / "comm_model.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
