#!/usr/bin/env python3
"""One binary for every node (docs/ARCHITECTURE.md §5.7): the default build on a CPU without
AVX-512, emulated by `qemu-x86_64 -cpu Haswell` (Debian's qemu-user: AVX2 + FMA, and SIGILL
on any AVX-512 instruction; cmake/install-deps.sh --with-qemu).

  - a control: a two-line AVX-512 program dies with SIGILL under the emulator (so a binary
    that strayed into AVX-512 would fail here, not pass unnoticed);
  - `latent --version` under the emulator: this CPU runs avx2 only, and selects it;
  - LATENT_KERNEL=avx512 there is refused with 64 naming what the CPU runs;
  - small fits of gmm, lda (batch) and vae (float32 products, Adam) under the emulator as
    one rank without mpirun: no illegal instruction, kernel variant avx2 logged and
    recorded, and the model files content-identical (every dataset and attribute, the
    variant included, timing fields excluded) to native runs of the same binary with
    LATENT_KERNEL=avx2;
  - the 19 golden models (tests/cli/golden_models.py, every model and variant) fitted under
    the emulator through a wrapper script: the hashes recorded natively (about 1 minute).

Open MPI's singleton start works under qemu-user: MPI_Init in the emulated latent forks and
execs `orted --hnp` (Open MPI 4.1's singleton runs one), and the host kernel runs that
orted natively (qemu-user emulates only the process it was started with; without a
binfmt_misc entry an exec'd x86-64 program runs on the host CPU), so only latent itself is
emulated. Skipped (77) when qemu-x86_64 is not installed or the binary was built with
-march=native (which targets the build machine, not Haswell: docs/INSTALL.md).

Usage: isa_qemu_test.py LATENT
"""
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden_models import TIMING  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402

LATENT = os.path.abspath(sys.argv[1])
QEMU = shutil.which("qemu-x86_64")
EMULATE = [QEMU, "-cpu", "Haswell"] if QEMU else []
SIGILL = 4
failures = []

FITS = {
    "gmm": ["gmm", "--n-components", "3", "--data", "dense"],
    "lda": ["lda", "--n-topics", "4", "--max-iter", "3", "--data", "counts"],
    "vae": ["vae", "--latent-dim", "2", "--hidden", "8", "--likelihood", "gaussian", "--epochs", "2", "--batch-size", "100",
            "--data", "dense"],
}


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def env(kernel=None):
    e = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    e.pop("LATENT_KERNEL", None)
    if kernel:
        e["LATENT_KERNEL"] = kernel
    return e


def run(cmd, cwd, kernel=None):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env(kernel), cwd=cwd)
    # qemu warns about CPUID bits its TCG does not model (pcid, x2apic, ...): not ours.
    r.stderr = "\n".join(line for line in r.stderr.splitlines() if not line.startswith("qemu-x86_64: warning:"))
    return r


def died_of(r):
    return f"signal {-r.returncode}" if r.returncode < 0 else f"exit {r.returncode}"


def full_hash(path):
    """golden_models.content_hash with the kernel_variant attribute included."""
    h = hashlib.sha256()
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if name.rsplit("/", 1)[-1] in TIMING:
                return
            h.update(name.encode())
            for key in sorted(obj.attrs):
                if key not in TIMING:
                    h.update(key.encode() + repr(obj.attrs[key]).encode())
            if isinstance(obj, h5py.Dataset):
                arr = np.asarray(obj[()])
                h.update(str(obj.dtype).encode() + str(obj.shape).encode())
                h.update(b"\0".join(v if isinstance(v, bytes) else str(v).encode() for v in arr.ravel())
                         if arr.dtype == object else arr.tobytes())
        visit("/", f)
        f.visititems(visit)
    return h.hexdigest()


def main():
    if not QEMU:
        print("SKIP: qemu-x86_64 not installed (cmake/install-deps.sh --with-qemu)")
        sys.exit(77)
    version = run([LATENT, "--version"], "/").stdout
    if "-march=native" in version:
        print("SKIP: built with -march=native, which targets this machine, not Haswell")
        sys.exit(77)
    with tempfile.TemporaryDirectory() as root:
        # The control: AVX-512 under the emulated Haswell raises SIGILL.
        src = os.path.join(root, "avx512.c")
        with open(src, "w") as f:
            f.write("#include <immintrin.h>\nint main(int c, char** v) { (void)v; __m512 x = _mm512_set1_ps((float)c);\n"
                    "  x = _mm512_add_ps(x, x); return (int)_mm512_reduce_add_ps(x) == 0; }\n")
        exe = os.path.join(root, "avx512")
        subprocess.run(["cc", "-O1", "-mavx512f", src, "-o", exe], check=True)
        r = run(EMULATE + [exe], root)
        check(r.returncode == -SIGILL, f"control: an AVX-512 program under qemu -cpu Haswell dies of SIGILL ({died_of(r)})")

        r = run(EMULATE + [LATENT, "--version"], root)
        check(r.returncode == 0 and "(this CPU: avx2; selected: avx2," in r.stdout,
              f"--version under Haswell: {died_of(r)}, {re.findall(r'kernel variants.*', r.stdout)}")

        for args in (["generate", "gmm", "--n-samples", "600", "--n-features", "5", "--n-components", "3", "--output",
                      "dense", "--rows-per-shard", "300", "--true-model", "none", "--seed", "3"],
                     ["generate", "lda", "--n-samples", "200", "--vocab-size", "40", "--n-components", "4", "--output",
                      "counts", "--rows-per-shard", "100", "--true-model", "none", "--seed", "3"]):
            r = run([LATENT] + args, root)
            if r.returncode != 0:
                sys.exit(f"FAIL: {' '.join(args)}: {r.stderr}")

        out = os.path.join(root, "refused.h5")
        r = run(EMULATE + [LATENT, "fit", *FITS["gmm"], "--output", out], root, kernel="avx512")
        check(r.returncode == 64 and "LATENT_KERNEL=avx512: this CPU lacks the instructions of that kernel variant "
              "(it runs: avx2)" in r.stderr and not os.path.exists(out),
              f"LATENT_KERNEL=avx512 under Haswell refused: {died_of(r)}, {r.stderr.strip()[:160]}")

        for name, args in FITS.items():
            emulated, native = os.path.join(root, f"{name}-haswell.h5"), os.path.join(root, f"{name}-native.h5")
            r = run(EMULATE + [LATENT, "fit", *args, "--output", emulated, "--seed", "7"], root)
            check(r.returncode == 0 and "kernel variant avx2" in r.stderr,
                  f"{name} under Haswell, one rank without mpirun: {died_of(r)}"
                  + ("" if r.returncode == 0 else ": " + r.stderr.strip()[-300:]))
            n = run([LATENT, "fit", *args, "--output", native, "--seed", "7"], root, kernel="avx2")
            check(n.returncode == 0, f"{name} natively with LATENT_KERNEL=avx2: {died_of(n)}")
            if r.returncode != 0 or n.returncode != 0:
                continue
            with h5py.File(emulated, "r") as f:
                check(f.attrs.get("kernel_variant") == "avx2", f"{name}: kernel_variant avx2 recorded under Haswell")
            check(full_hash(emulated) == full_hash(native), f"{name}: the same model file content under Haswell and natively")

        wrapper = os.path.join(root, "latent-haswell")
        with open(wrapper, "w") as f:
            f.write(f'#!/bin/sh\nexec {QEMU} -cpu Haswell {LATENT} "$@"\n')
        os.chmod(wrapper, 0o755)
        r = subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden_models.py"),
                            wrapper], capture_output=True, text=True, timeout=900, env=env())
        print(r.stdout, end="")
        check(r.returncode == 0, f"golden models under Haswell: exit {r.returncode} {r.stderr.strip()[-300:]}")
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
