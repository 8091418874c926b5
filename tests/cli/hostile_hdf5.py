#!/usr/bin/python3
"""Hostile and malformed HDF5 inputs are refused with a clear message (docs/ARCHITECTURE.md §6 rule 6).

Usage: hostile_hdf5.py LATENT_BINARY. Needs Debian's python3-h5py; exits 77 (skipped) without it.
"""
import os
import shutil
import subprocess
import sys
import tempfile

try:
    import h5py
    import numpy as np
except ImportError:
    print("h5py not available: skipped")
    sys.exit(77)

latent = sys.argv[1]
failures = []


def check(name, path, code, *needles, model="gmm"):
    with tempfile.TemporaryDirectory() as out:
        try:
            r = subprocess.run([latent, "fit", model, "--data", path, "--output", os.path.join(out, "m.h5")],
                               capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            print(f"FAIL {name}: still running after 120 s (blocked?)")
            failures.append(name)
            return
        produced = os.listdir(out)
    ok = r.returncode == code and all(n in r.stderr for n in needles) and not produced
    print(f"{'ok  ' if ok else 'FAIL'} {name}: exit {r.returncode}: {r.stderr.strip()}")
    if not ok:
        failures.append(name)


def shard(path):
    """An h5py file with the root attributes of a dense shard (format_version 1, kind "dense"),
    so that each case below reaches the check it is about."""
    f = h5py.File(path, "w")
    f.attrs["format_version"] = np.int64(1)
    f.attrs["kind"] = "dense"
    return f


with tempfile.TemporaryDirectory() as d:
    x = np.random.default_rng(0).normal(size=(50, 3))
    with h5py.File(f"{d}/target.h5", "w") as f:
        f["data"] = x
    with shard(f"{d}/extlink.h5") as f:
        f["data"] = h5py.ExternalLink("target.h5", "/data")
    check("external link", f"{d}/extlink.h5", 65, "extlink.h5", "/data", "external link; refused")

    with shard(f"{d}/virtual.h5") as f:
        layout = h5py.VirtualLayout(shape=(50, 3), dtype="f8")
        layout[:] = h5py.VirtualSource(f"{d}/target.h5", "data", shape=(50, 3))
        f.create_virtual_dataset("data", layout)
    check("virtual dataset", f"{d}/virtual.h5", 65, "virtual.h5", "virtual dataset; refused")

    x.astype("<f8").tofile(f"{d}/raw.bin")
    with shard(f"{d}/external.h5") as f:
        f.create_dataset("data", shape=(50, 3), dtype="<f8", external=[(f"{d}/raw.bin", 0, 50 * 3 * 8)])
    check("external storage", f"{d}/external.h5", 65, "external.h5", "external storage; refused")

    with shard(f"{d}/strings.h5") as f:
        f["data"] = np.array([["a", "b"], ["c", "d"]], dtype="S1")
    check("string dataset", f"{d}/strings.h5", 65, "strings.h5", "/data", "string", "float32, float64")

    with shard(f"{d}/ints.h5") as f:
        f["data"] = np.arange(12, dtype=np.int32).reshape(4, 3)
    check("integer dataset", f"{d}/ints.h5", 65, "32-bit integer", "float32, float64")

    with shard(f"{d}/nodata.h5") as f:
        f["pixels"] = x
    check("missing dataset", f"{d}/nodata.h5", 65, "nodata.h5", "/data: missing")

    with shard(f"{d}/inf.h5") as f:
        y = x.copy()
        y[42, 2] = np.inf
        f["data"] = y
    check("infinite value", f"{d}/inf.h5", 65, "inf.h5, dataset /data, row 42, column 2: value is infinite")

    # The root attributes of a shard are checked (docs/FORMATS.md): exit 65 naming
    # the file and the attribute.
    with h5py.File(f"{d}/noattrs.h5", "w") as f:
        f["data"] = x
    check("no attributes", f"{d}/noattrs.h5", 65, "noattrs.h5", "attribute format_version: missing")
    with shard(f"{d}/future.h5") as f:
        f["data"] = x
        f.attrs["format_version"] = np.int64(2)
    check("unknown format_version", f"{d}/future.h5", 65, "future.h5", "attribute format_version: 2 is not supported")
    with shard(f"{d}/nokind.h5") as f:
        f["data"] = x
        del f.attrs["kind"]
    check("no kind", f"{d}/nokind.h5", 65, "nokind.h5", "attribute kind: missing")
    with shard(f"{d}/intkind.h5") as f:
        f["data"] = x
        f.attrs["kind"] = np.int64(1)
    check("kind not a string", f"{d}/intkind.h5", 65, "intkind.h5", "attribute kind: is not one string")
    with shard(f"{d}/countskind.h5") as f:
        f["data"] = x
        f.attrs["kind"] = "counts"
    check("counts shard in dense data", f"{d}/countskind.h5", 65, "countskind.h5", 'attribute kind: is "counts"',
          "dense dataset")
    os.mkdir(f"{d}/corpus")
    with open(f"{d}/corpus/vocabulary.txt", "w") as v:
        v.write("a\nb\nc\n")
    with shard(f"{d}/corpus/part-00000.h5") as f:
        f["data"] = x
        f.attrs["vocab_size"] = np.int64(3)
    check("dense shard in count data", f"{d}/corpus", 65, "part-00000.h5", 'attribute kind: is "dense"',
          "counts dataset", model="lda")

    # A dataset with rows but no columns is refused as such (not as a damaged file).
    with shard(f"{d}/nocols.h5") as f:
        f["data"] = np.zeros((5000, 0))
    check("0 columns", f"{d}/nocols.h5", 65, "nocols.h5", "/data: has 0 columns (shape 5000 x 0)")
    with tempfile.TemporaryDirectory() as out:
        r = subprocess.run([latent, "import", "dense", "--format", "hdf5", "--dataset", "data", "--input",
                            f"{d}/nocols.h5", "--output", f"{out}/imported"], capture_output=True, text=True, timeout=120)
        ok = r.returncode == 65 and "has 0 columns" in r.stderr and not os.listdir(out)
        print(f"{'ok  ' if ok else 'FAIL'} import of 0 columns: exit {r.returncode}: {r.stderr.strip()}")
        if not ok:
            failures.append("import of 0 columns")

    # Which entries of a data directory are shards: regular files named *.h5 (not hidden), or
    # symbolic links to regular files. An entry named like a shard that is not one is refused
    # naming it (exit 66): never skipped, never opened.
    good = f"{d}/good"
    os.mkdir(good)
    for i in range(2):
        with shard(f"{good}/part-{i:05d}.h5") as f:
            f["data"] = x + i
    with shard(f"{d}/outside.h5") as f:
        f["data"] = x

    def odd(name, make, code, *needles):
        case = f"{d}/case-{len(os.listdir(d))}"
        shutil.copytree(good, case)
        make(case)
        check(name, case, code, *needles)

    odd("dangling symlink", lambda c: os.symlink(f"{d}/absent.h5", f"{c}/part-00009.h5"), 66,
        "part-00009.h5", "dangling symbolic link", "absent.h5")
    odd("symlink loop", lambda c: os.symlink(f"{c}/part-00008.h5", f"{c}/part-00008.h5"), 66,
        "part-00008.h5", "symbolic link loop")
    odd("FIFO", lambda c: os.mkfifo(f"{c}/part-00007.h5"), 66, "part-00007.h5", "FIFO")
    odd("directory", lambda c: os.mkdir(f"{c}/part-00006.h5"), 66, "part-00006.h5", "is a directory")
    odd("device", lambda c: os.symlink("/dev/null", f"{c}/part-00005.h5"), 66, "part-00005.h5",
        "character device")
    odd("link to a FIFO", lambda c: (os.mkfifo(f"{c}/pipe"), os.symlink(f"{c}/pipe", f"{c}/part-00004.h5")), 66,
        "part-00004.h5", "symbolic link to a FIFO")
    os.mkfifo(f"{d}/lone.fifo")
    check("FIFO as the data path", f"{d}/lone.fifo", 66, "lone.fifo", "FIFO")

    def info(path):
        r = subprocess.run([latent, "info", path], capture_output=True, text=True, timeout=120)
        return r.returncode, r.stdout + r.stderr

    # Hidden entries are not shards: a copy .part-00000.h5 must not duplicate rows. A symbolic
    # link to a regular file is a shard.
    shutil.copy(f"{good}/part-00000.h5", f"{good}/.part-00000.h5")
    os.symlink(f"{d}/outside.h5", f"{good}/part-00002.h5")
    code, text = info(good)
    ok = code == 0 and "150 samples x 3 features, 3 shard(s)" in text and ".part-00000.h5" not in text
    print(f"{'ok  ' if ok else 'FAIL'} hidden file ignored, symlink read: exit {code}: {text.strip()}")
    if not ok:
        failures.append("hidden file / symlink")

    # A chunk larger than --max-chunk-mb (64 MiB by default): one 96 MiB gzip chunk (a few
    # KiB on disk) is refused naming it, instead of being decompressed for every block read;
    # --max-chunk-mb raises the limit.
    os.makedirs(f"{d}/bigchunk")
    with shard(f"{d}/bigchunk/part-00000.h5") as f:
        f.create_dataset("data", shape=(300000, 40), dtype="f8", chunks=(300000, 40), compression="gzip",
                         data=np.zeros((300000, 40)) + 0.5)
    check("chunk over the limit", f"{d}/bigchunk", 65, "part-00000.h5", "/data", "chunks are 92 MiB",
          "--max-chunk-mb")
    with tempfile.TemporaryDirectory() as out:
        r = subprocess.run([latent, "fit", "kmeans", "--data", f"{d}/bigchunk", "--n-clusters", "1", "--max-iter", "1",
                            "--output", f"{out}/k.h5", "--max-chunk-mb", "128"], capture_output=True, text=True, timeout=300)
        ok = r.returncode == 0 and os.path.exists(f"{out}/k.h5")
    print(f"{'ok  ' if ok else 'FAIL'} --max-chunk-mb 128 reads it: exit {r.returncode}: {r.stderr.strip()[-300:]}")
    if not ok:
        failures.append("--max-chunk-mb")

sys.exit(1 if failures else 0)
