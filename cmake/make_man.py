#!/usr/bin/env python3
"""Generates the man pages latent(1) and latent-COMMAND(1) from the binary's own help, so
they say exactly what `latent COMMAND --help` says (the options, EXAMPLES and EXIT STATUS
sections come from the command definitions and the model registry), plus the ENVIRONMENT,
FILES and SEE ALSO sections every page shares.

Usage: make_man.py LATENT OUTDIR     (writes OUTDIR/latent.1, OUTDIR/latent-fit.1, ...)
Standard library only; run by the build (target `man`) and by tests/cli/man_test.sh.
"""
import datetime
import json
import os
import re
import subprocess
import sys

COMMANDS = {
    "import": "convert CSV, NPY, IDX, HDF5 or a corpus into a directory of HDF5 shards",
    "generate": "write a synthetic data set of any size from a random model, in parallel",
    "fit": "fit a registered model to a data directory, on any number of MPI ranks",
    "score": "score a model on data: log-likelihoods, BIC/AIC, perplexities, coherence",
    "predict": "hard labels, responsibilities and outlier flags of each row",
    "transform": "each row's latent representation",
    "sample": "draws from a fitted generative model",
    "impute": "fill missing values with their conditional expectation",
    "select": "fit a model for several sizes and choose by BIC, AIC or held-out likelihood",
    "info": "describe a model file, checkpoint, shard or data directory",
    "export": "a model with a corpus for another tool: pyLDAvis inputs as JSON, gensim's LdaModel files",
}
SUBCOMMANDS = {"import": ["dense", "counts"]}

ENVIRONMENT = [
    ("LATENT_FAULT", 'fault injection for tests: "rank=R,iteration=I,kind=K" with K one of kill, signal, throw, '
                     "nan, hang, stop, enospc (docs/FAULTS.md \"Checkpoints, preemption and faults\")"),
    ("LATENT_KERNEL", "avx2, avx512, avx512bf16 or amxbf16: force this rank's kernel variant (default: the best this CPU runs; "
                      "the job runs the lowest over its ranks; one the CPU lacks is refused with exit 64)"),
    ("SLURM_CPUS_PER_TASK", "--threads 0 uses this many TBB threads per rank"),
    ("LATENT_PYTHON", "the Python interpreter `latent export --format gensim` runs (default /usr/bin/python3); "
                      "PYTHONPATH is searched after the package beside the binary"),
    ("OMPI_COMM_WORLD_LOCAL_SIZE, SLURM_NTASKS_PER_NODE",
     "ranks on this node: --threads 0 divides the cores by it, and the memory check shares the node's memory"),
    ("OMPI_ALLOW_RUN_AS_ROOT, OMPI_ALLOW_RUN_AS_ROOT_CONFIRM",
     "set both to 1 to run mpirun as root (containers)"),
    ("OMPI_MCA_hwloc_base_binding_policy",
     "none: do not bind each rank to one core, so its TBB threads can use the cores it was given"),
]
FILES = [
    ("DIR/part-*.h5", "a dense data set: HDF5 shards with /data (rows x features) and optional /labels"),
    ("DIR/part-*.h5, DIR/vocabulary.txt", "a count data set: CSR shards (/indptr, /indices, /data) and the vocabulary"),
    ("MODEL.h5", "a model file: scikit-learn's attribute names (/weights, /means, /components, ...), a model attribute"),
    ("CKPT_DIR/ckpt-RUN-ITER.h5, CKPT_DIR/.lock", "checkpoints of a fit (--checkpoint-dir) and its lock"),
    ("OUT.tmp-HOST-PID", "a temporary output, renamed into place when complete; stale ones of dead processes are removed"),
]


def esc(text: str) -> str:
    """Roff-safe text: backslashes doubled, a leading dot or quote protected."""
    out = []
    for line in text.split("\n"):
        line = line.replace("\\", "\\e")
        if line.startswith((".", "'")):
            line = "\\&" + line
        out.append(line)
    return "\n".join(out)


def help_of(latent: str, args: list) -> str:
    r = subprocess.run([latent] + args + ["--help"], capture_output=True, text=True, env=os.environ)
    text = r.stdout or r.stderr
    if r.returncode != 0 or not text.strip():
        raise SystemExit(f"make_man.py: `latent {' '.join(args)} --help` failed ({r.returncode}): {r.stderr}")
    return text


def listed_commands(latent: str) -> list:
    """The command words of `latent --help`'s Commands section. A command listed there and
    missing from COMMANDS stops the build, so a new command cannot go without its man page
    and completion."""
    r = subprocess.run([latent, "--help"], capture_output=True, text=True, env=os.environ)
    words, inside = [], False
    for line in r.stdout.split("\n"):
        if line.startswith("Commands:"):
            inside = True
        elif inside and not line.strip():
            break
        elif inside and re.match(r"^  [a-z]", line):
            words.append(line.split()[0])
    missing = sorted(set(words) - set(COMMANDS))
    if not words or missing:
        raise SystemExit(f"make_man.py: `latent --help` lists commands without a man page: {missing or 'none found'}; "
                         "add them to COMMANDS in cmake/make_man.py")
    return list(dict.fromkeys(words))


def sections(text: str) -> list:
    """Splits help text into (title, body): the usage and options first, then every
    upper-case heading line (EXAMPLES, EXIT STATUS) as its own section."""
    out, title, body = [], "DESCRIPTION", []
    for line in text.rstrip().split("\n"):
        if re.fullmatch(r"[A-Z][A-Z ]+", line.strip()) and not line.startswith(" "):
            out.append((title, "\n".join(body).strip("\n")))
            title, body = line.strip(), []
        else:
            body.append(line)
    out.append((title, "\n".join(body).strip("\n")))
    return [(t, b) for t, b in out if b]


def page(name: str, summary: str, version: str, parts: list, see_also: list) -> str:
    date = datetime.date.today().isoformat()
    s = [f'.TH {name.upper()} 1 "{date}" "latent {version}" "latent manual"', ".SH NAME",
         f"{name} \\- {esc(summary)}"]
    merged = {}
    order = []
    for title, body in parts:
        if title not in merged:
            order.append(title)
            merged[title] = []
        if body not in merged[title]:  # every --help ends with the same EXIT STATUS
            merged[title].append(body)
    # The commands' own sections in order, then EXAMPLES and EXIT STATUS once each.
    last = [t for t in ("EXAMPLES", "EXIT STATUS", "VERSION") if t in merged]
    order = [t for t in order if t not in last] + last
    for title in order:
        s.append(f".SH {title}")
        for body in merged[title]:
            s += [".nf", esc(body), ".fi", ".PP"]
    s.append(".SH ENVIRONMENT")
    for var, text in ENVIRONMENT:
        s += [".TP", f"\\fB{esc(var)}\\fR", esc(text)]
    s.append(".SH FILES")
    for f, text in FILES:
        s += [".TP", f"\\fI{esc(f)}\\fR", esc(text)]
    s += [".SH SEE ALSO", ", ".join(f"\\fB{p}\\fR(1)" for p in see_also) + ", mpirun(1), sbatch(1); README.md and "
          "docs/ in the source tree"]
    return "\n".join(s) + "\n"


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    latent, outdir = sys.argv[1], sys.argv[2]
    listed_commands(latent)
    os.makedirs(outdir, exist_ok=True)
    version_text = subprocess.run([latent, "--version"], capture_output=True, text=True).stdout
    version = version_text.split("\n")[0].split()[-1] if version_text else "?"
    pages = ["latent"] + [f"latent-{c}" for c in COMMANDS]
    models = json.loads(subprocess.run([latent, "fit", "--list-json"], capture_output=True, text=True,
                                       check=True).stdout)
    generators = [m["name"] for m in models if "generate" in m["tasks"]]
    written = []
    top = sections(help_of(latent, []))
    top.append(("VERSION", version_text.strip()))
    written.append(("latent", page("latent", "distributed, out-of-core trainer for latent variable models", version,
                                   top, pages[1:])))
    for command, summary in COMMANDS.items():
        parts = sections(help_of(latent, [command]))
        subs = SUBCOMMANDS.get(command, [])
        if command == "fit":
            subs = [m["name"] for m in models]
        elif command == "generate":
            subs = generators
        elif command == "select":
            subs = [m["name"] for m in models if "select" in m["tasks"]]
        for sub in subs:
            for title, body in sections(help_of(latent, [command, sub])):
                parts.append((title if title != "DESCRIPTION" else f"{command.upper()} {sub.upper()}", body))
        written.append((f"latent-{command}", page(f"latent-{command}", summary, version, parts,
                                                  [p for p in pages if p != f"latent-{command}"])))
    for name, text in written:
        with open(os.path.join(outdir, f"{name}.1"), "w") as f:
            f.write(text)
    print(f"make_man.py: wrote {len(written)} pages to {outdir}")


if __name__ == "__main__":
    main()
