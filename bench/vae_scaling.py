#!/usr/bin/python3
"""VAE epoch time on 2 ranks against 1 rank, by batch size (Fashion-MNIST, one thread per rank).

What it measures
  `latent fit vae` on the Fashion-MNIST training images (L = 20, hidden 512,256, ReLU,
  Bernoulli decoder, Adam lr 1e-3, seed 0, --matmul-precision highest), E epochs
  (default 3) at each batch size, once on 1 rank x 1 thread and once under
  `mpirun -n 2` (1 thread each). Epoch seconds = the median of the "seconds" of the
  "iteration" records of --log-json. The ratio printed is 1-rank / 2-rank epoch
  seconds (above 1: the second rank helps). The 2-rank run is also run with --profile;
  its per-rank breakdown (compute, allreduce, M-step = Adam and the repack of the
  packed weights) is recorded. The trained weights are bitwise the same on 1 and 2
  ranks (docs/ARCHITECTURE.md §5), which the script checks through the training ELBO of every
  epoch.

Why the batch size matters
  Every step exchanges the whole gradient (P = 1.08 million parameters as 64-bit
  fixed-point integers, 8.7 MB) and runs Adam over all of it on every rank; both cost
  the same at any batch size, while a step's products grow with the batch. At batch
  128 a rank's share of the products takes about as long as the exchange on this VM.

How to run (the binary must be built; needs an idle machine)
  /usr/bin/python3 bench/vae_scaling.py [--batch-sizes 128,256,512,1024] [--epochs 2]
Results: bench/results/vae_scaling.json
"""
import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def fit(train: Path, runs: Path, batch: int, ranks: int, epochs: int) -> dict:
    tag = f"b{batch}_{ranks}r"
    log = runs / f"vae_scaling_{tag}.log.jsonl"
    args = ["fit", "vae", "--data", train, "--output", runs / f"vae_scaling_{tag}.h5", "--latent-dim", 20,
            "--hidden", "512,256", "--activation", "relu", "--likelihood", "bernoulli", "--batch-size", batch,
            "--learning-rate", 0.001, "--epochs", epochs, "--seed", 0, "--threads", 1, "--log-json", log,
            "--overwrite", "--matmul-precision", "highest"]
    if ranks > 1:
        args.append("--profile")
    res = common.run_latent(args, ranks=ranks if ranks > 1 else None, capture=True)
    its = common.iteration_records(log)
    secs = [float(r["seconds"]) for r in its]
    out = {"ranks": ranks, "epoch_seconds": secs, "median_epoch_seconds": common.median(secs),
           "train_objective": [r.get("objective") for r in its]}
    m = re.search(r"^profile .*$", res.stderr or "", re.M) or re.search(r"^profile .*$", res.stdout or "", re.M)
    if m:
        out["profile"] = m.group(0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-sizes", default="128,256,512,1024")
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    load = common.warn_if_busy()
    train = common.import_fashion_mnist("train")
    runs = common.data_dir() / "runs" / "vae_scaling"
    runs.mkdir(parents=True, exist_ok=True)
    rows, table, ok = [], [], True
    for b in [int(x) for x in args.batch_sizes.split(",") if x.strip()]:
        one = fit(train, runs, b, 1, args.epochs)
        two = fit(train, runs, b, 2, args.epochs)
        same = one["train_objective"] == two["train_objective"]
        ok &= same
        ratio = one["median_epoch_seconds"] / two["median_epoch_seconds"]
        rows.append({"batch_size": b, "one_rank": one, "two_ranks": two, "speedup": ratio, "bitwise_same_elbo": same})
        table.append([b, f"{one['median_epoch_seconds']:.2f}", f"{two['median_epoch_seconds']:.2f}", f"{ratio:.2f}x",
                      "yes" if same else "NO"])
    print()
    print(f"Fashion-MNIST VAE (L=20, hidden 512,256), {args.epochs} epoch(s), epoch seconds (median), one thread per rank")
    common.print_table(table, ["batch", "1 rank", "2 ranks", "1-rank / 2-rank", "same ELBOs"])
    for r in rows:
        if "profile" in r["two_ranks"]:
            print(f"batch {r['batch_size']}, 2 ranks: {r['two_ranks']['profile']}")
    common.write_results("vae_scaling", {"benchmark": "vae_scaling", "load_average_at_start": load,
                                         "epochs": args.epochs, "runs": rows})
    if not ok:
        print("FAIL: the training ELBOs differ between 1 and 2 ranks", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
