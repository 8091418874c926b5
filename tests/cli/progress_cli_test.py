#!/usr/bin/python3
"""Progress lines on a terminal only: `latent generate gmm` and `latent generate lda` draw a
bar (done/total, rate, time left) on stderr when it is a terminal, as `latent import` does,
ending at 100% of the rows (documents); with stderr not a terminal (a log) they print the
closing line only, without a carriage return. Usage: progress_cli_test.py LATENT.
"""
import os
import pty
import subprocess
import sys
import tempfile


def run_on_tty(cmd):
    """(exit code, what the command wrote on its stderr, a pseudo-terminal)."""
    master, slave = pty.openpty()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other end is closed
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return p.wait(timeout=300), out.decode(errors="replace")


def main():
    latent = sys.argv[1]
    failures = []

    def check(ok, what):
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            failures.append(what)

    with tempfile.TemporaryDirectory(prefix="progress-") as work:
        cases = [("gmm", ["--n-samples", "100000", "--n-features", "8", "--n-components", "3"], "rows"),
                 ("lda", ["--n-samples", "20000", "--vocab-size", "200", "--n-components", "4"], "documents")]
        for model, args, unit in cases:
            code, err = run_on_tty([latent, "generate", model] + args + ["--output", os.path.join(work, model + "-tty")])
            frames = err.split("\r")
            check(code == 0, f"generate {model} on a terminal: exit {code}")
            check(any(f.startswith("generate [" + "#" * 30 + "] 100%") and f"{unit}/s" in f for f in frames),
                  f"generate {model}: a progress bar on a terminal reaching 100% of the {unit} ({err[-200:]!r})")
            r = subprocess.run([latent, "generate", model] + args + ["--output", os.path.join(work, model + "-log")],
                               capture_output=True, text=True, timeout=300)
            check(r.returncode == 0 and "\r" not in r.stderr and "generate [" not in r.stderr and r.stderr.startswith("wrote "),
                  f"generate {model} into a log: the closing line only ({r.stderr!r})")
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
