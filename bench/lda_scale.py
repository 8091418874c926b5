#!/usr/bin/python3
"""Scale: online LDA throughput and peak memory as the corpus grows (streaming, no cache).

What it measures
  Synthetic corpora from `latent generate lda` (V = 20000 words, 50 true topics, mean
  document length 100) of 100,000 and 1,000,000 documents (--sizes), fitted with
  `latent fit lda --method online --n-topics 100 --max-iter 1 --threads T` streaming
  from the shards (--cache-mb 0): tokens per second from the iteration log, and the
  peak resident memory of the process (ru_maxrss of the child, via os.wait4). Memory
  should stay flat (the model, K x V, and a few minibatches), whatever the corpus size.

How to run
  /usr/bin/python3 bench/lda_scale.py                     # 1e5 and 1e6 documents
  /usr/bin/python3 bench/lda_scale.py --sizes 20000,200000 --threads 1
  Results: bench/results/lda_scale.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000", help="corpus sizes in documents")
    ap.add_argument("--vocab-size", type=int, default=20000)
    ap.add_argument("--n-topics", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=1024)
    args = ap.parse_args()
    latent = common.latent_bin()
    rows, results = [], []
    for n in [int(x) for x in args.sizes.split(",")]:
        data = common.data_dir() / f"lda-synthetic-n{n}-v{args.vocab_size}"
        if not common.has_shards(data):
            t0 = time.monotonic()
            subprocess.run([str(latent), "generate", "lda", "--n-documents", str(n), "--vocab-size",
                            str(args.vocab_size), "--n-topics", "50", "--doc-length", "100", "--seed", "1",
                            "--output", str(data)], check=True, env=common.mpi_env())
            print(f"generated {n} documents in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        log = data.parent / f"{data.name}-fit.jsonl"
        model = data.parent / f"{data.name}-model.h5"
        for p in (log, model):
            p.unlink(missing_ok=True)
        # Each measurement in its own child so that ru_maxrss is that child's alone.
        code = ("import resource,subprocess,sys,json;"
                "r=subprocess.run(sys.argv[1:]);"
                "print(json.dumps({'rc':r.returncode,'rss_kib':resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))")
        cmd = [sys.executable, "-c", code, str(latent), "fit", "lda", "--data", str(data), "--output", str(model),
               "--n-topics", str(args.n_topics), "--method", "online", "--batch-size", str(args.batch_size),
               "--max-iter", "1", "--threads", str(args.threads), "--cache-mb", "0", "--evaluate-every", "0",
               "--log-json", str(log)]
        t0 = time.monotonic()
        p = subprocess.run(cmd, capture_output=True, text=True, env=common.mpi_env())
        wall = time.monotonic() - t0
        info = json.loads(p.stdout.strip().splitlines()[-1])
        if info["rc"] != 0:
            sys.exit(f"fit failed:\n{p.stderr[-2000:]}")
        recs = common.iteration_records(log)
        tps = recs[-1].get("tokens_per_second", 0.0)
        rss = info["rss_kib"] / 1024.0
        res = {"documents": n, "vocab_size": args.vocab_size, "n_topics": args.n_topics, "threads": args.threads,
               "batch_size": args.batch_size, "pass_seconds": recs[-1]["seconds"], "tokens_per_second": tps,
               "peak_rss_mib": rss, "wall_seconds": wall}
        results.append(res)
        rows.append([n, f"{recs[-1]['seconds']:.1f}", f"{tps / 1e6:.2f}M", f"{rss:.0f}"])
    common.print_table(rows, ["documents", "pass s", "tokens/s", "peak RSS MiB"])
    ratio = results[-1]["peak_rss_mib"] / results[0]["peak_rss_mib"] if len(results) > 1 else 1.0
    print(f"peak RSS ratio largest/smallest corpus: {ratio:.2f} "
          f"({results[-1]['documents'] / results[0]['documents']:.0f}x the documents)")
    common.write_results("lda_scale", {"machine": common.machine_info(), "commit": common.git_commit(),
                                       "runs": results, "rss_ratio": ratio})


if __name__ == "__main__":
    main()
