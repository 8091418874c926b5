#!/usr/bin/env python3
"""The benchmarks' reference basis (bench/common.py, issue 21 item 1): the references run
on the best OpenBLAS kernel the CPU runs, even when the environment names a weaker one.

Checks
  1. best_openblas_core() for fixed flag sets: Cooperlake (AVX-512 + AVX512_BF16),
     SkylakeX (AVX-512 F/DQ/BW/VL), Haswell (AVX2 + FMA), None (neither).
  2. openblas_core_tier() orders Cooperlake > SkylakeX > Haswell > Prescott (generic).
  3. In a fresh process with OPENBLAS_CORETYPE=Prescott (the generic kernel) set, as a
     machine's environment might: tuned_blas() records the given kernel, and the kernel
     numpy then runs (OPENBLAS_VERBOSE=2) ranks as high as the CPU's best; with
     OPENBLAS_CORETYPE unset it sets nothing weaker either.
Exit 77 (skipped) when numpy's BLAS is not OpenBLAS (no libopenblas0-serial).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
import common  # noqa: E402

AVX512 = {"avx512f", "avx512dq", "avx512bw", "avx512vl", "avx2", "fma"}
assert common.best_openblas_core(AVX512 | {"avx512_bf16"}) == "Cooperlake"
assert common.best_openblas_core(AVX512) == "SkylakeX"
assert common.best_openblas_core({"avx2", "fma", "sse4_2"}) == "Haswell"
assert common.best_openblas_core({"sse4_2"}) is None
tiers = [common.openblas_core_tier(c) for c in ("Cooperlake", "SkylakeX", "Haswell", "Prescott")]
assert tiers[0] > tiers[1] > tiers[2] > tiers[3] == 0, tiers


def basis(coretype):
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    code = (f"import sys, json; sys.path.insert(0, {str(BENCH)!r}); import common; "
            "b = common.tuned_blas(); b['verbose_core'] = common.openblas_core(); print(json.dumps(b))")
    r = subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1]), r.stderr


plain, _ = basis(None)
if plain.get("blas") != "openblas":
    print("SKIP: numpy's BLAS is not OpenBLAS", plain)
    sys.exit(77)
best = common.best_openblas_core()
want = max(common.openblas_core_tier(best), common.openblas_core_tier(plain["core_default"]))
assert common.openblas_core_tier(plain["verbose_core"]) >= want, (plain, best)
assert "OPENBLAS_CORETYPE_given" not in plain, plain

weak, err = basis("Prescott")
assert weak.get("OPENBLAS_CORETYPE_given") == "Prescott", weak
assert "weaker kernel" in err, err
assert common.openblas_core_tier(weak["verbose_core"]) >= want, (weak, best)
assert weak["core_used"] == weak["verbose_core"], weak
print("ok: best", best, "default", plain["core_default"], "| Prescott given ->", weak["verbose_core"])
