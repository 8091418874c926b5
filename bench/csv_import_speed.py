#!/usr/bin/python3
"""CSV import speed: MB/s of `latent import dense --format csv` (libcsv, issue 22 item 4).

What it measures
  One large numeric CSV (default >= 200 MB; a header, 20 columns of random numbers written
  with 6-7 significant digits, LF line ends) is generated once and imported with
      latent import dense --format csv --input FILE --output DIR --dtype float64
  on one rank (--trials times, the median wall time kept; the page cache is warmed by one
  untimed read first, so this is parsing and writing, not the disk). MB/s = input bytes /
  wall seconds. In the same run, for reference:
    - numpy.loadtxt(FILE, delimiter=",", skiprows=1) on a 1/10 prefix of the file (it is
      slow; its MB/s is that of the prefix), a parser every reader of the file has;
    - with --old-bin PATH, the same import by another latent binary (the hand-written
      parser before libcsv, e.g. a build of main before this change); the outputs of the
      two binaries are compared (h5py: the /data of every shard must be equal).
  The CPU model (lscpu) and the load average before each run are recorded.

How to run (binary built; Open MPI env from bench/common.py is set)
  /usr/bin/python3 bench/csv_import_speed.py --old-bin /tmp/latent-old
  /usr/bin/python3 bench/csv_import_speed.py --mb 50 --trials 1   # quick
  Options: --mb SIZE --trials T --old-bin PATH --keep
  Results: bench/results/csv_import_speed.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

COLUMNS = 20


def lscpu_model() -> str | None:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for line in text.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return None


def generate(path: Path, mb: float) -> int:
    import numpy as np
    rng = np.random.default_rng(7)
    target = int(mb * 1e6)
    with open(path, "w") as f:
        f.write(",".join(f"c{j}" for j in range(COLUMNS)) + "\n")
        size = 0
        while size < target:
            block = rng.normal(scale=100.0, size=(20000, COLUMNS))
            text = "\n".join(",".join(f"{v:.6g}" for v in row) for row in block) + "\n"
            f.write(text)
            size += len(text)
    return path.stat().st_size


def timed_import(binary: Path, csv: Path, out: Path) -> tuple[float, float]:
    if out.exists():
        shutil.rmtree(out)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    subprocess.run([str(binary), "import", "dense", "--format", "csv", "--input", str(csv), "--output", str(out),
                    "--dtype", "float64"], env=common.mpi_env(), check=True, capture_output=True)
    return time.perf_counter() - t0, load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=200)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--old-bin", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    latent = common.latent_bin()
    work = common.data_dir() / "csv_import_speed"
    work.mkdir(parents=True, exist_ok=True)
    csv = work / f"numbers-{int(args.mb)}mb.csv"
    if not csv.exists():
        print(f"generating {csv} ...", flush=True)
        generate(csv, args.mb)
    size = csv.stat().st_size
    with open(csv, "rb") as f:  # warm the page cache
        while f.read(1 << 24):
            pass
    binaries = [("latent (libcsv)", latent)] + ([("latent (old parser)", args.old_bin)] if args.old_bin else [])
    rows, record = [], {"cpu": lscpu_model(), "bytes": size, "columns": COLUMNS, "trials": args.trials, "runs": {}}
    for name, binary in binaries:
        times, loads = [], []
        for _ in range(args.trials):
            t, load = timed_import(binary, csv, work / f"out-{len(record['runs'])}")
            times.append(t)
            loads.append(load)
        med = common.median(times)
        record["runs"][name] = {"binary": str(binary), "seconds": times, "median_seconds": med, "mb_per_s": size / 1e6 / med,
                                "load_average_before": loads}
        rows.append([name, f"{med:.2f}", f"{size / 1e6 / med:.1f}", " ".join(f"{x:.2f}" for x in loads)])
    # numpy.loadtxt on a tenth of the file.
    import numpy as np
    prefix = work / "prefix.csv"
    with open(csv, "rb") as src, open(prefix, "wb") as dst:
        dst.write(src.read(size // 10).rsplit(b"\n", 1)[0] + b"\n")
    psize = prefix.stat().st_size
    t0 = time.perf_counter()
    x = np.loadtxt(prefix, delimiter=",", skiprows=1)
    t = time.perf_counter() - t0
    record["runs"]["numpy.loadtxt"] = {"bytes": psize, "seconds": t, "mb_per_s": psize / 1e6 / t, "rows": int(x.shape[0])}
    rows.append(["numpy.loadtxt (1/10 prefix)", f"{t:.2f}", f"{psize / 1e6 / t:.1f}", ""])
    if args.old_bin:
        import h5py

        def data(d: Path):
            return np.concatenate([h5py.File(p, "r")["data"][:] for p in sorted(d.glob("*.h5"))])
        same = bool(np.array_equal(data(work / "out-0"), data(work / "out-1")))
        record["same_output"] = same
        rows.append(["outputs equal (libcsv vs old)", "", str(same), ""])
        new, old = record["runs"]["latent (libcsv)"]["mb_per_s"], record["runs"]["latent (old parser)"]["mb_per_s"]
        record["libcsv_over_old"] = new / old
        rows.append(["libcsv / old parser speed", "", f"{new / old:.2f}", ""])
    print(f"CPU: {record['cpu']}; {size / 1e6:.0f} MB, {COLUMNS} columns")
    common.print_table(rows, ["reader", "seconds", "MB/s", "load before"])
    out = common.BENCH_DIR / "results" / "csv_import_speed.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    if not args.keep:
        for d in work.glob("out-*"):
            shutil.rmtree(d)
        prefix.unlink()


if __name__ == "__main__":
    main()
