#!/usr/bin/python3
"""Quality: online LDA, latent vs scikit-learn over many seeds (is a gap noise?).

Online LDA's held-out perplexity varies by several per cent from seed to seed on the
Brown test split (38 documents), more than implementations differ. This fits latent and
scikit-learn's LatentDirichletAllocation (online, same split, K, priors, batch size, κ,
τ0, passes) with seeds 0..N-1 and compares the mean document-completion perplexity, all
scored by `latent score`.

How to run
  /usr/bin/python3 bench/lda_online_seeds.py [--k 20] [--seeds 10] [--passes 5]
  Results: bench/results/lda_online_seeds.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lda_common as L  # noqa: E402

L.single_threaded()

import common  # noqa: E402
common.ensure_tuned_blas()  # references on a tuned BLAS (OPENBLAS_CORETYPE), before numpy loads


def main() -> None:
    import numpy as np
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--passes", type=int, default=5)
    args = ap.parse_args()
    data = Path(L.import_brown())
    train, test = data / "train", data / "test"
    Xtr, vocab, _ = L.read_counts(train)
    K, a = args.k, 1.0 / args.k
    runs = common.data_dir() / "runs" / "lda_online_seeds"
    runs.mkdir(parents=True, exist_ok=True)
    ours, ref = [], []
    for s in range(args.seeds):
        m = runs / f"latent_s{s}.h5"
        L.fit_latent(train, m, K, "online", args.passes, a, a, seed=s, threads=1, extra=["--evaluate-every", "0"])
        ours.append(float(L.score_latent(m, test)["doc_completion_perplexity"]))
        sk, _ = L.fit_sklearn(Xtr, K, "online", args.passes, a, a, seed=s)
        m = runs / f"sklearn_s{s}.h5"
        L.write_lda_model(m, sk.components_, np.full(K, a), a, vocab, attrs={"source": "scikit-learn"})
        ref.append(float(L.score_latent(m, test)["doc_completion_perplexity"]))
        print(f"seed {s}: latent {ours[-1]:.1f}  scikit-learn {ref[-1]:.1f}", flush=True)
    o, r = np.array(ours), np.array(ref)
    se = np.sqrt(o.var(ddof=1) / len(o) + r.var(ddof=1) / len(r))
    print(f"mean: latent {o.mean():.1f} (sd {o.std(ddof=1):.1f}), scikit-learn {r.mean():.1f} (sd {r.std(ddof=1):.1f}); "
          f"ratio {o.mean() / r.mean():.4f}; difference {o.mean() - r.mean():+.1f} ± {se:.1f} (1 s.e.)")
    common.write_results("lda_online_seeds", {"k": K, "passes": args.passes, "latent": ours, "sklearn": ref,
                                              "ratio_of_means": float(o.mean() / r.mean()), "standard_error": float(se),
                                              "machine": common.machine_info(), "commit": common.git_commit()})


if __name__ == "__main__":
    main()
