#!/usr/bin/python3
"""Memory of the sharded sampler: K = 10,000 topics over V = 10^5 words (K·V = 10^9) at
1, 2 and 4 ranks (issue 20 item 3).

What it measures
  One generated corpus (`latent generate lda`, default 10,000 documents of mean length 100,
  V = 100,000, 50 true topics: ~1M tokens). For P = 1, 2, 4 (oversubscribed is fine):
  `mpirun -n P latent fit lda --method gibbs --n-topics 10000 --max-iter 2 --threads 1
  --evaluate-every 0 --profile --log-json LOG`, then
    predicted  the fit's own estimate per rank (its log line "gibbs: predicted peak memory")
    measured   every rank's peak resident set (getrusage ru_maxrss, the "done" record of
               --log-json with --profile)
  and prints the ratios: the 4-rank prediction and the 4-rank measured peak (largest rank)
  against the 1-rank prediction (issue 20 asks <= 0.3), and measured / predicted at each P
  (the prediction must not be below what is used). The model file written (K x V doubles,
  8 GB) is deleted after each run. The CPU model is recorded.

How to run (the binary must be built; ~16 GB of memory at P = 1, 9 GB of /tmp)
  /usr/bin/python3 bench/lda_memory.py
  Options: --docs N --length L --vocab V --topics K --ranks 1,2,4 --seed S
  Results: bench/results/lda_memory.json
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

GIB = 2**30


def corpus(args) -> Path:
    path = common.data_dir() / f"gibbs-memory-n{args.docs}-v{args.vocab}-l{args.length}-s{args.seed}"
    if not common.has_shards(path):
        common.run_latent(["generate", "lda", "--n-samples", args.docs, "--vocab-size", args.vocab, "--n-components", 50,
                           "--doc-length", args.length, "--seed", args.seed, "--output", path, "--true-model", "none"])
    return path


def fit(args, data: Path, tmp: Path, ranks: int) -> dict:
    log = tmp / f"p{ranks}.jsonl"
    model = tmp / f"p{ranks}.h5"
    res = common.run_latent(["fit", "lda", "--data", data, "--output", model, "--n-topics", args.topics, "--method",
                             "gibbs", "--max-iter", 2, "--threads", 1, "--evaluate-every", 0, "--seed", args.seed,
                             "--profile", "--log-json", log, "--overwrite"], ranks=ranks, capture=True)
    m = re.search(r"predicted peak memory ([0-9.]+) GiB per rank", res.stderr + res.stdout)
    predicted = float(m.group(1)) * GIB if m else None
    done = [r for r in common.read_log_json(log) if r.get("event") == "done"][-1]
    rss = [float(x) for x in done["profile_total"]["max_rss_bytes"]]
    model.unlink(missing_ok=True)
    return {"ranks": ranks, "predicted_bytes_per_rank": predicted, "peak_rss_bytes_per_rank": rss,
            "wall_seconds": res.seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=10000)
    ap.add_argument("--length", type=int, default=100)
    ap.add_argument("--vocab", type=int, default=100000)
    ap.add_argument("--topics", type=int, default=10000)
    ap.add_argument("--ranks", default="1,2,4")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    data = corpus(args)
    results = []
    with tempfile.TemporaryDirectory(prefix="gibbs-memory-") as tmp:
        for p in [int(x) for x in args.ranks.split(",") if x]:
            results.append(fit(args, data, Path(tmp), p))
    rows = [[r["ranks"], f"{r['predicted_bytes_per_rank'] / GIB:.2f}", f"{max(r['peak_rss_bytes_per_rank']) / GIB:.2f}",
             " ".join(f"{x / GIB:.2f}" for x in r["peak_rss_bytes_per_rank"]), f"{r['wall_seconds']:.0f}"]
            for r in results]
    common.print_table(rows, ["ranks", "predicted GiB/rank", "measured max GiB", "measured per rank", "wall s"])
    by = {r["ranks"]: r for r in results}
    ratios = {}
    for r in results:
        ratios[f"measured_over_predicted_p{r['ranks']}"] = max(r["peak_rss_bytes_per_rank"]) / r["predicted_bytes_per_rank"]
    if 1 in by and 4 in by:
        base = by[1]["predicted_bytes_per_rank"]
        ratios["predicted_p4_over_predicted_p1"] = by[4]["predicted_bytes_per_rank"] / base
        ratios["measured_p4_over_predicted_p1"] = max(by[4]["peak_rss_bytes_per_rank"]) / base
        print(f"4 ranks against the 1-rank prediction: predicted {ratios['predicted_p4_over_predicted_p1']:.3f}, "
              f"measured {ratios['measured_p4_over_predicted_p1']:.3f} (target <= 0.3)")
    for r in results:
        key = "measured_over_predicted_p" + str(r["ranks"])
        print(f"P={r['ranks']}: measured / predicted = {ratios[key]:.3f}")
    common.write_results("lda_memory", {"settings": vars(args), "corpus": str(data), "results": results,
                                        "ratios": ratios, "machine": common.machine_info(),
                                        "command": common.fmt_cmd_env()})


if __name__ == "__main__":
    main()
