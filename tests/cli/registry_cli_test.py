#!/usr/bin/env python3
"""Every registered model goes through fit -> score -> every task its spec declares.

The list of models and their tasks comes from the program itself (`latent fit --list-json`),
so a model that registers a task must support it, and a model added to the registry is
tested without editing this file. Also: a task a model does not declare is refused with
exit 64, every `fit MODEL --help` has EXAMPLES and EXIT STATUS and prints defaults as
written, and a bad value of every numeric option with a range exits 64 naming the flag.

Usage: registry_cli_test.py LATENT
"""
import json
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

LATENT = os.path.abspath(sys.argv[1])
failures = 0


def check(ok, what):
    global failures
    print(("ok   " if ok else "FAIL ") + what)
    failures += not ok


def run(*args, cwd):
    return subprocess.run([LATENT, *args], capture_output=True, text=True, cwd=cwd)


def main():
    specs = json.loads(run("fit", "--list-json", cwd=".").stdout)
    check(len(specs) >= 9, f"{len(specs)} registered models")
    top = run("--help", cwd=".").stdout
    for s in specs:
        check(f"fit {s['name']}" in top, f"top-level help lists {s['name']}")
    all_tasks = ["score", "predict", "transform", "sample", "impute", "select", "generate", "export"]
    with tempfile.TemporaryDirectory() as root:
        rng = np.random.default_rng(1)
        x = np.clip(rng.random((600, 6)) * 0.5 + np.repeat(rng.random((3, 6)) * 0.5, 200, axis=0), 0, 1)
        np.savetxt(os.path.join(root, "unit.csv"), x, delimiter=",")
        xm = x.copy()
        xm[rng.random(xm.shape) < 0.1] = np.nan
        np.savetxt(os.path.join(root, "missing.csv"), xm, delimiter=",")
        for name in ("unit", "missing"):
            r = run("import", "dense", "--format", "csv", "--input", f"{name}.csv", "--output", name, cwd=root)
            assert r.returncode == 0, r.stderr
        r = run("generate", "lda", "--n-samples", "200", "--vocab-size", "40", "--n-components", "3", "--output",
                "counts", "--true-model", "none", cwd=root)
        assert r.returncode == 0, r.stderr
        for s in specs:
            name, data = s["name"], ("unit" if s["data"] == "dense" else "counts")
            model = f"{name}.h5"
            small = {"vae": ["--hidden", "8", "--latent-dim", "2", "--epochs", "1"],
                     "lda": ["--n-topics", "3", "--max-iter", "2"]}.get(name, [])
            k = [] if small else (["--n-clusters", "3"] if name == "kmeans" else ["--n-components", "2"])
            r = run("fit", name, "--data", data, "--output", model, "--seed", "1", *k, *small, cwd=root)
            check(r.returncode == 0 and os.path.exists(os.path.join(root, model)), f"fit {name} (exit {r.returncode})")
            if r.returncode != 0:
                print(r.stderr)
                continue
            with h5py.File(os.path.join(root, model)) as f:
                check(f.attrs["model"] in (name.encode(), name), f"{name}: file's model attribute")
            h = run("fit", name, "--help", cwd=root).stdout
            check("EXAMPLES" in h and "EXIT STATUS" in h and "e-07" not in h and "9999" not in h,
                  f"fit {name} --help: EXAMPLES, EXIT STATUS, defaults as written")
            for t in all_tasks:
                declared = t in s["tasks"]
                out = f"{name}-{t}.h5"
                if t == "score":
                    r = run("score", "--model", model, "--data", data, cwd=root)
                    ok = r.returncode == 0 and "{" in r.stdout
                elif t in ("predict", "transform"):
                    # Factor models have no clusters: they predict outlier flags.
                    extra = ["--outlier-quantile", "0.05"] if t == "predict" and name in ("ppca", "fa") else []
                    r = run(t, "--model", model, "--data", data, "--output", out, *extra, cwd=root)
                    ok = r.returncode == 0 and os.path.exists(os.path.join(root, out))
                elif t == "sample":
                    r = run("sample", "--model", model, "--n-samples", "20", "--output", out, cwd=root)
                    ok = r.returncode == 0 and os.path.exists(os.path.join(root, out))
                elif t == "impute":
                    r = run("impute", "--model", model, "--data", "missing", "--output", out, cwd=root)
                    ok = r.returncode == 0 and os.path.exists(os.path.join(root, out))
                    if ok:
                        with h5py.File(os.path.join(root, out)) as f:
                            ok = not np.isnan(f["data"][()]).any()
                elif t == "select":
                    if not declared:
                        continue  # select takes a model name, not a file: nothing to refuse
                    grid = [a for f in s["select_grid"] for a in (f"--{f}", "1,2")]
                    r = run("select", name, "--data", data, *grid, "--block-rows", "100", cwd=root)
                    ok = r.returncode == 0 and len(json.loads(r.stdout)["candidates"]) == 2 ** len(s["select_grid"])
                elif t == "export":
                    r = run("export", "--model", model, "--data", data, "--format", "ldavis", "--output", f"{out}.json",
                            cwd=root)
                    ok = r.returncode == 0 and os.path.exists(os.path.join(root, f"{out}.json"))
                else:  # generate: a synthetic data set from the model family
                    if not declared:
                        continue
                    extra = ["--n-features", "3"] if s["data"] == "dense" else ["--vocab-size", "20"]
                    r = run("generate", name, "--n-samples", "100", "--n-components", "2", *extra, "--output",
                            f"gen-{name}", "--true-model", "none", cwd=root)
                    ok = r.returncode == 0
                if declared:
                    check(ok, f"{name}: {t} (exit {r.returncode})")
                    if not ok:
                        print(r.stderr[-2000:])
                else:
                    check(r.returncode == 64 and "does not support" in r.stderr,
                          f"{name}: undeclared {t} refused with 64 (exit {r.returncode})")
            # A bad value for every option with a range: exit 64 naming the flag, no output.
            for o in s["options"]:
                try:
                    float(o["default"])
                except ValueError:
                    continue  # text options: their choices are checked by the specs' unit test
                r = run("fit", name, "--data", data, "--output", "bad.h5", f"--{o['flag']}", "-7.5e300", cwd=root)
                named = f"--{o['flag']}" in r.stderr
                check(r.returncode == 64 and named and not os.path.exists(os.path.join(root, "bad.h5")),
                      f"{name} --{o['flag']} -7.5e300: exit {r.returncode}, flag named")
    print(f"{failures} failure(s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
