"""The harness of the Python command-line tests (factor_cli_test.py, scale_cli_test.py).

check(ok, what) prints and records a result; run(args, ranks, expect, env) runs the latent
binary (under `MPIEXEC --oversubscribe -n RANKS` for more than one rank, allowed as root)
and records a failure when the exit status is not `expect`; finish() exits 1 if anything
failed. Usage: `H = Harness(sys.argv[1], sys.argv[2]); check, run = H.check, H.run`.
"""
import os
import subprocess
import sys


class Harness:
    def __init__(self, latent, mpiexec):
        self.latent, self.mpiexec = latent, mpiexec
        self.failures = []

    def check(self, ok, what):
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            self.failures.append(what)

    def run(self, args, ranks=1, expect=0, env=None):
        cmd = ([self.mpiexec, "--oversubscribe", "-n", str(ranks)] if ranks > 1 else []) + [self.latent] + args
        full_env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", **(env or {}))
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=full_env)
        if r.returncode != expect:
            print(r.stdout, r.stderr)
            self.check(False, f"exit {r.returncode} (expected {expect}): {' '.join(args)}")
        return r

    def finish(self):
        if self.failures:
            print(f"{len(self.failures)} check(s) failed")
            sys.exit(1)
        print("all checks passed")
        sys.exit(0)
