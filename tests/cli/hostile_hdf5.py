#!/usr/bin/python3
"""Hostile and malformed HDF5 inputs are refused with a clear message (docs/ARCHITECTURE.md §6 rule 6).

Usage: hostile_hdf5.py LATENT_BINARY. Needs Debian's python3-h5py; exits 77 (skipped) without it.
"""
import os
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


def check(name, path, code, *needles):
    with tempfile.TemporaryDirectory() as out:
        r = subprocess.run([latent, "fit", "gmm", "--data", path, "--output", os.path.join(out, "m.h5")],
                           capture_output=True, text=True, timeout=120)
        produced = os.listdir(out)
    ok = r.returncode == code and all(n in r.stderr for n in needles) and not produced
    print(f"{'ok  ' if ok else 'FAIL'} {name}: exit {r.returncode}: {r.stderr.strip()}")
    if not ok:
        failures.append(name)


with tempfile.TemporaryDirectory() as d:
    x = np.random.default_rng(0).normal(size=(50, 3))
    with h5py.File(f"{d}/target.h5", "w") as f:
        f["data"] = x
    with h5py.File(f"{d}/extlink.h5", "w") as f:
        f["data"] = h5py.ExternalLink("target.h5", "/data")
    check("external link", f"{d}/extlink.h5", 65, "extlink.h5", "/data", "external link; refused")

    with h5py.File(f"{d}/virtual.h5", "w") as f:
        layout = h5py.VirtualLayout(shape=(50, 3), dtype="f8")
        layout[:] = h5py.VirtualSource(f"{d}/target.h5", "data", shape=(50, 3))
        f.create_virtual_dataset("data", layout)
    check("virtual dataset", f"{d}/virtual.h5", 65, "virtual.h5", "virtual dataset; refused")

    x.astype("<f8").tofile(f"{d}/raw.bin")
    with h5py.File(f"{d}/external.h5", "w") as f:
        f.create_dataset("data", shape=(50, 3), dtype="<f8", external=[(f"{d}/raw.bin", 0, 50 * 3 * 8)])
    check("external storage", f"{d}/external.h5", 65, "external.h5", "external storage; refused")

    with h5py.File(f"{d}/strings.h5", "w") as f:
        f["data"] = np.array([["a", "b"], ["c", "d"]], dtype="S1")
    check("string dataset", f"{d}/strings.h5", 65, "strings.h5", "/data", "string", "float32, float64")

    with h5py.File(f"{d}/ints.h5", "w") as f:
        f["data"] = np.arange(12, dtype=np.int32).reshape(4, 3)
    check("integer dataset", f"{d}/ints.h5", 65, "32-bit integer", "float32, float64")

    with h5py.File(f"{d}/nodata.h5", "w") as f:
        f["pixels"] = x
    check("missing dataset", f"{d}/nodata.h5", 65, "nodata.h5", "/data: missing")

    with h5py.File(f"{d}/inf.h5", "w") as f:
        y = x.copy()
        y[42, 2] = np.inf
        f["data"] = y
    check("infinite value", f"{d}/inf.h5", 65, "inf.h5, dataset /data, row 42, column 2: value is infinite")

sys.exit(1 if failures else 0)
