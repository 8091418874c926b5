#!/usr/bin/python3
"""Speed per core against K: the LDA Gibbs sampler (`--method gibbs`) beside online VB (issue 20).

What it measures
  One generated corpus (`latent generate lda`, default 20,000 documents, V = 10,000, mean
  length 200: ~4M tokens, 100 true topics), streamed from its shards. On one rank and one
  thread (--threads 1):
    gibbs   `latent fit lda --method gibbs --n-topics K --max-iter S --mh-steps 2
            --evaluate-every 0` for K = 100, 1,000, 10,000 (S = 30 sweeps by default);
            tokens/s = the median of the per-sweep tokens_per_second of --log-json over
            the sweeps after the first W (default 10: the first sweeps move most tokens
            and cost more); each sweep's time includes the exchange of the topic changes
            and the alias-table rebuild
    online  `latent fit lda --method online --batch-size 256 --n-topics K --max-iter 1`
            for K = 100, 1,000; tokens/s from the same log (one pass)
    gensim  gensim's LdaModel (single process, online: chunksize 256, one pass,
            iterations 100, gamma_threshold 1e-3, float64, on a tuned OpenBLAS) at
            K = --gensim-k (1,000) on the first --gensim-docs documents (2,000) of the same
            corpus; tokens/s = the slice's tokens / fit seconds (bag-of-words conversion
            not timed)
  Ratios printed from this one run: gibbs K=100 / K=10,000 (target <= 2), gibbs at
  K=1,000 against 2M tokens/s per core (target >= 1), gibbs / online VB at K=1,000
  (issue 20 asks 30x), gibbs and online VB / gensim at K=1,000. The CPU model, BLAS
  kernel and FMA peak are recorded. The issue's scale, V = 10^5 with 10^8 tokens:
  --vocab 100000 --docs 500000 --length 200 --vb-docs 20000 (VB and gensim on the first
  20,000 documents' generator settings: per-core rates, an hour of VB otherwise).

How to run (binary must be built; needs an idle machine for meaningful timings)
  /usr/bin/python3 bench/lda_gibbs_speed.py
  /usr/bin/python3 bench/lda_gibbs_speed.py --quick        # 5,000 documents, 15 sweeps
  Options: --docs N --vocab V --length L --true-topics T --ks 100,1000,10000
           --vb-ks 100,1000 --gensim-k 1000 --gensim-docs 2000 --sweeps S --warmup W
           --seed S --nice N
  Results: bench/results/lda_gibbs_speed.json
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def corpus(args, docs: int | None = None) -> Path:
    docs = docs or args.docs
    tag = f"gibbs-speed-n{docs}-v{args.vocab}-k{args.true_topics}-l{args.length}-s{args.seed}"
    path = common.data_dir() / tag
    if not common.has_shards(path):
        common.run_latent(["generate", "lda", "--n-samples", docs, "--vocab-size", args.vocab, "--n-components",
                           args.true_topics, "--doc-length", args.length, "--seed", args.seed, "--output", path,
                           "--true-model", "none"], nice=args.nice)
    return path


def fit(args, data: Path, out_dir: Path, method: str, k: int) -> dict:
    log = out_dir / f"{method}-{k}.jsonl"
    model = out_dir / f"{method}-{k}.h5"
    extra = (["--method", "gibbs", "--max-iter", args.sweeps, "--mh-steps", 2, "--evaluate-every", 0] if method == "gibbs"
             else ["--method", "online", "--batch-size", 256, "--max-iter", 1])
    res = common.run_latent(["fit", "lda", "--data", data, "--output", model, "--n-topics", k, "--threads", 1,
                             "--seed", args.seed, "--log-json", log, "--overwrite"] + extra, capture=True, nice=args.nice)
    recs = common.iteration_records(log)
    rates = [r["tokens_per_second"] for r in recs]
    steady = rates[args.warmup:] if method == "gibbs" and len(rates) > args.warmup else rates
    accept = None
    for line in (res.stderr + res.stdout).splitlines():
        if "MH acceptance" in line:
            accept = float(line.split("MH acceptance")[1].split()[0])
    model.unlink(missing_ok=True)
    return {"method": method, "k": k, "tokens_per_second": common.median(steady),
            "tokens_per_second_all": rates, "sweep_seconds": [r["seconds"] for r in recs],
            "wall_seconds": res.seconds, "acceptance_last_sweep": accept}


def fit_gensim(args, data: Path) -> dict:
    """gensim's LdaModel at K = args.gensim_k on the first args.gensim_docs documents."""
    import lda_common as L
    X, _, _ = L.read_counts(data)
    X = X[: args.gensim_docs]
    bow = L.csr_to_bow(X)
    k = args.gensim_k
    _, _, secs = L.fit_gensim(X, k, "online", 1, 1.0 / k, 1.0 / k, seed=args.seed, batch_size=256, corpus=bow)
    tokens = float(X.sum())
    import gensim
    return {"method": "gensim", "k": k, "tokens_per_second": tokens / secs, "tokens_per_second_all": [tokens / secs],
            "sweep_seconds": [secs], "wall_seconds": secs, "acceptance_last_sweep": None, "documents": X.shape[0],
            "tokens": tokens, "version": gensim.__version__}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--vocab", type=int, default=10000)
    ap.add_argument("--length", type=int, default=200)
    ap.add_argument("--true-topics", type=int, default=100)
    ap.add_argument("--ks", default="100,1000,10000")
    ap.add_argument("--vb-ks", default="100,1000")
    ap.add_argument("--vb-docs", type=int, default=0,
                    help="online VB and gensim on a corpus of this many documents (same generator, "
                         "V and length; 0: the sampler's corpus)")
    ap.add_argument("--gensim-k", type=int, default=1000, help="0: no gensim row")
    ap.add_argument("--gensim-docs", type=int, default=2000)
    ap.add_argument("--sweeps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--nice", type=int, default=None)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.docs, args.sweeps, args.warmup = 5000, 15, 5
    blas = common.ensure_tuned_blas() if args.gensim_k > 0 else None
    load = common.warn_if_busy()
    data = corpus(args)
    vb_data = corpus(args, args.vb_docs) if args.vb_docs else data
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="gibbs-speed-") as tmp:
        for k in [int(x) for x in args.ks.split(",") if x]:
            results.append(fit(args, data, Path(tmp), "gibbs", k))
        for k in [int(x) for x in args.vb_ks.split(",") if x]:
            results.append(fit(args, vb_data, Path(tmp), "online", k))
    if args.gensim_k > 0:
        results.append(fit_gensim(args, vb_data))
    for r in results:
        rows.append([r["method"], r["k"], f"{r['tokens_per_second'] / 1e6:.3f}", f"{sum(r['sweep_seconds']):.1f}",
                     "" if r["acceptance_last_sweep"] is None else f"{r['acceptance_last_sweep']:.3f}"])
    common.print_table(rows, ["method", "K", "Mtokens/s/core", "fit s", "MH acceptance"])
    by = {(r["method"], r["k"]): r["tokens_per_second"] for r in results}
    ratios = {}
    if ("gibbs", 100) in by and ("gibbs", 10000) in by:
        ratios["gibbs_k100_over_k10000"] = by[("gibbs", 100)] / by[("gibbs", 10000)]
        print(f"gibbs tokens/s K=100 / K=10,000: {ratios['gibbs_k100_over_k10000']:.2f} (target <= 2)")
    if ("gibbs", 1000) in by:
        ratios["gibbs_k1000_over_2M"] = by[("gibbs", 1000)] / 2e6
        print(f"gibbs at K=1,000: {by[('gibbs', 1000)] / 1e6:.2f} M tokens/s per core = "
              f"{ratios['gibbs_k1000_over_2M']:.2f} x the 2M target")
    for k in (100, 1000):
        if ("gibbs", k) in by and ("online", k) in by:
            ratios[f"gibbs_over_online_k{k}"] = by[("gibbs", k)] / by[("online", k)]
            print(f"gibbs / online VB at K={k}: {ratios[f'gibbs_over_online_k{k}']:.1f}x")
    for method in ("gibbs", "online"):
        if (method, 1000) in by and ("gensim", 1000) in by:
            ratios[f"{method}_over_gensim_k1000"] = by[(method, 1000)] / by[("gensim", 1000)]
            print(f"{method} / gensim LdaModel at K=1,000: {ratios[f'{method}_over_gensim_k1000']:.1f}x")
    common.write_results("lda_gibbs_speed", {
        "settings": vars(args), "load_average": load, "blas": blas, "machine": common.machine_info(),
        "vb_corpus": str(vb_data), "corpus": str(data), "results": results, "ratios": ratios,
        "command": common.fmt_cmd_env()})


if __name__ == "__main__":
    main()
