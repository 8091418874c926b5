"""Distributed fits from a notebook: `latent fit` on several MPI ranks (docs/PYTHON.md)."""
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

from ._estimators import _seed


def _latent_binary(binary):
    found = binary or os.environ.get("LATENT_CLI") or shutil.which("latent")
    if not found:
        raise FileNotFoundError("the latent command was not found (install it, or pass latent_binary= or set LATENT_CLI)")
    return found


def _fit_args(estimator, binary, data_dir, output, threads):
    options = estimator._options(0) if estimator._model in ("fa", "ppca") else estimator._options()
    if estimator._model in ("fa", "ppca") and estimator.n_components is None:
        raise ValueError("n_components must be given for a distributed fit")
    args = [binary, "fit", estimator._model, "--data", os.fspath(data_dir), "--output", output, "--overwrite",
            "--seed", str(_seed(estimator.random_state)), "--block-rows", str(estimator.block_rows)]
    if threads or estimator.n_threads:
        args += ["--threads", str(threads or estimator.n_threads)]
    if estimator.memory_budget_gib:
        args += ["--memory-budget", str(estimator.memory_budget_gib)]
    for flag, value in options.items():
        args += [f"--{flag}", repr(value) if isinstance(value, float) else str(value)]
    return args


def _stream(proc, progress):
    lines = []
    for line in proc.stdout:
        lines.append(line)
        progress(line.rstrip("\n"))
    return proc.wait(), lines


def fit_distributed(estimator, data_dir, ranks=2, launcher="mpirun", *, output=None, threads=None,
                    latent_binary=None, mpirun_args=(), progress=None, poll_seconds=2.0, **slurm_options):
    """Fits `estimator` on the shard directory `data_dir` with `latent fit` on `ranks` MPI
    ranks, streams its progress lines, and returns the estimator, fitted (the same bits as
    a fit in this process or on any other rank count, at the same block_rows).

    launcher: "mpirun" (mpirun -n RANKS, plus `mpirun_args`), "srun" (inside a SLURM
    allocation; slurm_options become --key=value flags, e.g. time="01:00:00",
    partition="batch") or "sbatch" (submits a batch job with those options and waits for
    it with `sbatch --wait`, following its output file). `output`: where the model file
    goes (default: a temporary file, removed after loading). `progress`: a function taking
    each log line (default: print). Raises RuntimeError with the command's exit status and
    last lines if the fit fails; the estimator is then unchanged.
    """
    progress = progress or (lambda line: print(line, file=sys.stdout, flush=True))
    binary = _latent_binary(latent_binary)
    with tempfile.TemporaryDirectory(prefix="latent-dist-") as tmp:
        out = os.fspath(output) if output else os.path.join(tmp, "model.h5")
        args = _fit_args(estimator, binary, data_dir, out, threads)
        slurm = [f"--{k.replace('_', '-')}={v}" for k, v in slurm_options.items()]
        if launcher == "mpirun":
            if slurm:
                raise ValueError(f"slurm options {sorted(slurm_options)} need launcher='srun' or 'sbatch'")
            cmd = ["mpirun", "-n", str(ranks), *mpirun_args, *args]
        elif launcher == "srun":
            cmd = ["srun", "-n", str(ranks), *slurm, *args]
        elif launcher == "sbatch":
            log = os.path.join(os.path.dirname(os.path.abspath(out)), f".latent-fit-{os.getpid()}.log")
            script = "#!/bin/bash\nsrun " + " ".join(map(shlex.quote, args)) + "\n"
            cmd = ["sbatch", "--wait", "--parsable", "-n", str(ranks), f"--output={log}", *slurm]
        else:
            raise ValueError(f"launcher must be 'mpirun', 'srun' or 'sbatch' (got {launcher!r})")
        if launcher == "sbatch":
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True)
            proc.stdin.write(script)
            proc.stdin.close()
            lines, offset = [], 0
            while True:  # follow the job's output file until sbatch --wait returns
                done = proc.poll() is not None
                if os.path.exists(log):
                    with open(log) as f:
                        f.seek(offset)
                        chunk = f.read()
                        offset = f.tell()
                    for line in chunk.splitlines():
                        lines.append(line)
                        progress(line)
                if done:
                    break
                time.sleep(poll_seconds)
            lines += proc.stdout.read().splitlines()
            proc.stdout.close()
            code = proc.returncode
        else:
            with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
                code, lines = _stream(proc, progress)
        if code != 0:
            tail = "".join(line if line.endswith("\n") else line + "\n" for line in lines[-10:])
            raise RuntimeError(f"{' '.join(map(shlex.quote, cmd))} exited {code}:\n{tail}")
        with open(out, "rb") as f:
            model_file = f.read()
        estimator._model_file = model_file
        estimator._read_model(out)
    return estimator
