#!/usr/bin/env python3
"""The kernel variant of a job (docs/ARCHITECTURE.md §5.7) on 1 and 2 ranks.

Every rank takes LATENT_KERNEL or the best variant its CPU runs; the job runs the minimum.
Ranks are given different LATENT_KERNELs through mpirun's multiple-program syntax
(`mpirun -n 1 env LATENT_KERNEL=A latent ... : -n 1 latent ...`), standing in for the
nodes of a mixed partition. Checks, for small gmm, mfa (float32 pass), lda (online) and vae
fits:
  - the variant logged on the fit's first line and recorded in the model file
    (`kernel_variant`) is the minimum over the ranks, whichever rank has it;
  - the model content (golden_models.content_hash: every dataset and attribute but the
    timing fields and the variant) is the same for every variant and for 1 and 2 ranks;
  - a LATENT_KERNEL naming no variant on rank 1 fails every rank with 64 and writes nothing;
  - `--matmul-precision medium` is refused up front (64, before the data line) when one rank
    forces avx2, even on a CPU with AVX512_BF16;
  - `--version` shows the tile prefetch (on for Intel, off otherwise, LATENT_TILE_PREFETCH
    forcing it), and diag gmm and kmeans give the same content with it 0 and 1.

Usage: kernel_variant_cli_test.py LATENT MPIEXEC
"""
import os
import re
import subprocess
import sys
import tempfile

import h5py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import Harness  # noqa: E402
from golden_models import content_hash  # noqa: E402

H = Harness(os.path.abspath(sys.argv[1]), sys.argv[2])
check = H.check
LATENT, MPIEXEC = H.latent, H.mpiexec
VARIANTS = ["avx2", "avx512", "avx512bf16", "amxbf16"]

FITS = {
    "gmm": ["gmm", "--n-components", "3", "--data", "dense"],
    "mfa": ["mfa", "--n-components", "3", "--n-factors", "2", "--data", "dense"],
    "lda": ["lda", "--n-topics", "4", "--method", "online", "--batch-size", "50", "--max-iter", "2", "--data", "counts"],
    "vae": ["vae", "--latent-dim", "2", "--hidden", "8", "--likelihood", "gaussian", "--epochs", "2", "--batch-size", "100",
            "--data", "dense"],
}


def base_env():
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    env.pop("LATENT_KERNEL", None)
    return env


def run(args, kernels, cwd):
    """`latent ARGS` on len(kernels) ranks; kernels[r] is rank r's LATENT_KERNEL (None: unset)."""
    env = base_env()
    if len(kernels) == 1:
        if kernels[0]:
            env["LATENT_KERNEL"] = kernels[0]
        cmd = [LATENT] + args
    else:
        cmd = [MPIEXEC, "--oversubscribe"]
        for r, k in enumerate(kernels):
            cmd += ([":"] if r else []) + ["-n", "1"] + (["env", f"LATENT_KERNEL={k}"] if k else []) + [LATENT] + args
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=cwd)


def variant_in_log(stderr):
    m = re.search(r"thread\(s\); kernel variant (\S+)", stderr)
    return m.group(1) if m else None


def supported():
    out = subprocess.run([LATENT, "--version"], capture_output=True, text=True, env=base_env()).stdout
    m = re.search(r"kernel variants: .*\(this CPU: ([^;]*); selected: (\S+),", out)
    if not m:
        sys.exit(f"FAIL: --version lists no kernel variants:\n{out}")
    return [v.strip() for v in m.group(1).split(",")], m.group(2)


def main():
    here, best = supported()
    check(best == here[-1], f"--version: this CPU runs {', '.join(here)}; selected {best}")
    with tempfile.TemporaryDirectory() as root:
        for args in (["generate", "gmm", "--n-samples", "1200", "--n-features", "5", "--n-components", "3", "--output",
                      "dense", "--rows-per-shard", "400", "--true-model", "none", "--seed", "3"],
                     ["generate", "lda", "--n-samples", "300", "--vocab-size", "50", "--n-components", "4", "--output",
                      "counts", "--rows-per-shard", "100", "--true-model", "none", "--seed", "3"]):
            r = run(args, [None], root)
            if r.returncode != 0:
                sys.exit(f"FAIL: {' '.join(args)}: {r.stderr}")

        def fit(name, kernels, tag):
            out = os.path.join(root, f"{name}-{tag}.h5")
            r = run(["fit", *FITS[name], "--output", out, "--seed", "7"], kernels, root)
            return r, out

        # Reference: one rank, avx2 forced.
        ref = {}
        for name in FITS:
            r, out = fit(name, ["avx2"], "ref")
            check(r.returncode == 0 and variant_in_log(r.stderr) == "avx2", f"{name}: LATENT_KERNEL=avx2 logged avx2")
            if r.returncode != 0:
                print(r.stderr)
                continue
            with h5py.File(out, "r") as f:
                check(f.attrs.get("kernel_variant") == "avx2", f"{name}: kernel_variant avx2 recorded")
            ref[name] = content_hash(out)

        # (rank 0's LATENT_KERNEL, rank 1's) and the variant the job must run.
        cases = [([None], best), ([None, "avx2"], "avx2"), (["avx2", None], "avx2")]
        if "avx512" in here:
            cases.append((["avx512", None], "avx512"))
            cases.append(([None, "avx512"], "avx512"))
        for i, (kernels, expect) in enumerate(cases):
            for name in FITS:
                if name not in ref:
                    continue
                r, out = fit(name, kernels, f"case{i}")
                what = f"{name} on {len(kernels)} rank(s) with LATENT_KERNEL {kernels}"
                if r.returncode != 0:
                    print(r.stderr)
                    check(False, f"{what}: exit {r.returncode}")
                    continue
                check(variant_in_log(r.stderr) == expect, f"{what}: logged {variant_in_log(r.stderr)} (want {expect})")
                with h5py.File(out, "r") as f:
                    got = f.attrs.get("kernel_variant")
                check(got == expect, f"{what}: recorded {got}")
                check(content_hash(out) == ref[name], f"{what}: the same content as 1 rank of avx2")

        # The next tile's prefetch (kernel::tile_prefetch: on for Intel and AMD family 25,
        # off for other AMD, or LATENT_TILE_PREFETCH) is shown by --version and changes no
        # bit of the float32 passes that take it.
        cpuinfo = open("/proc/cpuinfo").read()
        family = re.search(r"^cpu family\s*:\s*(\d+)", cpuinfo, re.M)
        vendor_on = "GenuineIntel" in cpuinfo or (
            "AuthenticAMD" in cpuinfo and family is not None and int(family.group(1)) == 25)
        for setting, want in ((None, "on" if vendor_on else "off"), ("0", "off"), ("1", "on")):
            env = base_env()
            env.pop("LATENT_TILE_PREFETCH", None)
            if setting is not None:
                env["LATENT_TILE_PREFETCH"] = setting
            out = subprocess.run([LATENT, "--version"], capture_output=True, text=True, env=env).stdout
            m = re.search(r"tile prefetch: (\S+) ", out)
            check(m is not None and m.group(1) == want,
                  f"--version with LATENT_TILE_PREFETCH={setting}: tile prefetch {m.group(1) if m else None} (want {want})")
        for name, args in (("gmm-diag", ["gmm", "--n-components", "3", "--covariance-type", "diag"]),
                           ("kmeans", ["kmeans", "--n-clusters", "3"])):
            hashes = {}
            for setting in ("0", "1"):
                out = os.path.join(root, f"{name}-prefetch{setting}.h5")
                env = dict(base_env(), LATENT_TILE_PREFETCH=setting)
                r = subprocess.run([LATENT, "fit", *args, "--data", "dense", "--output", out, "--seed", "7"],
                                   capture_output=True, text=True, timeout=600, env=env, cwd=root)
                check(r.returncode == 0, f"{name} with LATENT_TILE_PREFETCH={setting}: exit {r.returncode}"
                      + (f" {r.stderr[-300:]}" if r.returncode else ""))
                hashes[setting] = content_hash(out) if r.returncode == 0 else setting
            check(hashes["0"] == hashes["1"], f"{name}: the same content with the tile prefetch on and off")

        # A name that is no variant, on rank 1 only: every rank fails with 64, nothing written.
        r, out = fit("gmm", [None, "avx3"], "bad")
        check(r.returncode == 64 and "rank 1: LATENT_KERNEL='avx3' names no kernel variant" in r.stderr
              and not os.path.exists(out), f"LATENT_KERNEL=avx3 on rank 1: exit {r.returncode}, {r.stderr.strip()[:200]}")

        # bfloat16 products need every rank on avx512bf16 or amxbf16: refused before the data line.
        if "avx512bf16" in here:
            best_bf16 = "amxbf16" if "amxbf16" in here else "avx512bf16"
            args = FITS["vae"] + ["--matmul-precision", "medium"]
            out = os.path.join(root, "vae-medium.h5")
            r = run(["fit", *args, "--output", out], [None, "avx2"], root)
            check(r.returncode == 64 and "needs the kernel variant avx512bf16; this run uses avx2" in r.stderr
                  and "kernel variant avx2" not in r.stderr and not os.path.exists(out),
                  f"medium with rank 1 on avx2: exit {r.returncode}, {r.stderr.strip()[:200]}")
            r = run(["fit", *args, "--output", out], [None, None], root)
            check(r.returncode == 0 and variant_in_log(r.stderr) == best_bf16, f"medium on 2 ranks of {best_bf16} runs")
            # The medium bits are the variant's: 1 rank and 2 ranks of it agree.
            one = os.path.join(root, "vae-medium-1.h5")
            r1 = run(["fit", *args, "--output", one], [None], root)
            check(r.returncode == 0 and r1.returncode == 0 and content_hash(out) == content_hash(one),
                  f"medium, {best_bf16}: 2 ranks give the content of 1 rank")
            if best_bf16 == "amxbf16":
                # A rank on avx512bf16 takes the job to VDPBF16PS products (the job's variant).
                mixed = os.path.join(root, "vae-medium-mixed.h5")
                r = run(["fit", *args, "--output", mixed], [None, "avx512bf16"], root)
                check(r.returncode == 0 and variant_in_log(r.stderr) == "avx512bf16",
                      f"medium with rank 1 on avx512bf16: exit {r.returncode}, logged {variant_in_log(r.stderr)}")
                solo = os.path.join(root, "vae-medium-avx512bf16.h5")
                r1 = run(["fit", *args, "--output", solo], ["avx512bf16"], root)
                check(r.returncode == 0 and r1.returncode == 0 and content_hash(mixed) == content_hash(solo),
                      "medium on avx512bf16 + amxbf16 ranks: the content of 1 rank of avx512bf16")
    H.finish()


if __name__ == "__main__":
    main()
