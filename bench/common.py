"""Shared helpers for the latent benchmark scripts in bench/.

Nothing here is a benchmark by itself. The scripts import it as `import common`
(they put their own directory on sys.path, so run them from anywhere, e.g.
`/usr/bin/python3 bench/gmm_speed.py`).

Environment variables:
  LATENT_BIN          path of the latent binary (default: <repo>/build/release/src/latent)
  LATENT_BENCH_DATA   cache directory for imported data sets (default: <repo>/bench/.data)
  LATENT_FASHION_MNIST  directory with the Fashion-MNIST IDX .gz files
                      (default: /usr/share/datasets/fashion-mnist, Debian's dataset-fashion-mnist)

Only the standard library is imported at module level, so scripts can set
thread-count variables (OMP_NUM_THREADS, ...) before they import numpy.
"""
from __future__ import annotations

import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO_ROOT / "bench"
RESULTS_DIR = BENCH_DIR / "results"

# Open MPI settings needed to run as root inside a container with no rsh/ssh agent and no
# CPU binding. Harmless elsewhere. The shared-memory single-copy mechanism is added by
# mpi_settings(): Open MPI's default (CMA) where a probe shows it works, as on a user's
# node, else none (containers without CAP_SYS_PTRACE). Forcing none everywhere made every
# large message two copies through a shared buffer: an 8 MB int64 allreduce on 2 ranks
# took 8.4-10 ms instead of 2.5-3.7 ms (AMD EPYC family 25, 2026-12-04), and the VAE's
# 2-rank iteration 0.59 s instead of 0.39-0.42 s. The tests keep none (tests/CMakeLists.txt).
MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_hwloc_base_binding_policy": "none",
    "OMPI_MCA_plm_rsh_agent": "",
}
SINGLE_COPY = "OMPI_MCA_btl_vader_single_copy_mechanism"
_SINGLE_COPY_CHOICE: str | None = None


def _built_probe(compiler: list[str], source: str, stem: str) -> Path:
    """bench/<source> built with `compiler` (a command and its flags) into
    $TMPDIR/latent-<stem>-<uid>: the path of the executable. Raises OSError or
    CalledProcessError if it cannot be built."""
    exe = Path(os.environ.get("TMPDIR", "/tmp")) / f"latent-{stem}-{os.getuid()}"
    subprocess.run([*compiler, "-o", str(exe), str(BENCH_DIR / source)], check=True, capture_output=True)
    return exe


def single_copy_mechanism() -> str:
    """The value of OMPI_MCA_btl_vader_single_copy_mechanism the benchmarks run with: the
    caller's if set; else "cma" if bench/cma_probe.c (built with mpicc) sums an 8 MB
    allreduce right on 2 ranks with CMA, else "none". About 1 s, once per process."""
    global _SINGLE_COPY_CHOICE
    if _SINGLE_COPY_CHOICE is not None:
        return _SINGLE_COPY_CHOICE
    if os.environ.get(SINGLE_COPY):
        _SINGLE_COPY_CHOICE = os.environ[SINGLE_COPY]
        return _SINGLE_COPY_CHOICE
    env = dict(os.environ)
    env.update(MPI_ENV)
    env[SINGLE_COPY] = "cma"
    try:
        exe = _built_probe(["mpicc", "-O2"], "cma_probe.c", "cma-probe")
        subprocess.run(["mpirun", "--oversubscribe", "-n", "2", str(exe)], check=True, capture_output=True, env=env,
                       timeout=60)
        _SINGLE_COPY_CHOICE = "cma"
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        _SINGLE_COPY_CHOICE = "none"
    return _SINGLE_COPY_CHOICE


def mpi_settings() -> dict:
    """MPI_ENV plus the single-copy mechanism chosen by single_copy_mechanism(): what every
    benchmark's mpirun gets, and what its JSON records."""
    return {**MPI_ENV, SINGLE_COPY: single_copy_mechanism()}

FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


# --------------------------------------------------------------------------- paths

def latent_bin() -> Path:
    """The latent binary; exits with a helpful message if it is missing."""
    p = Path(os.environ.get("LATENT_BIN", REPO_ROOT / "build/release/src/latent"))
    if not p.is_absolute():
        p = REPO_ROOT / p
    if not (p.is_file() and os.access(p, os.X_OK)):
        sys.exit(f"latent binary not found at {p}; build it with "
                 "`cmake --preset release && cmake --build --preset release` or set LATENT_BIN")
    return p


def data_dir() -> Path:
    """Cache directory for imported data sets (created if missing)."""
    d = Path(os.environ.get("LATENT_BENCH_DATA", BENCH_DIR / ".data"))
    if not d.is_absolute():
        d = REPO_ROOT / d
    d.mkdir(parents=True, exist_ok=True)
    return d


def fashion_mnist_source() -> Path:
    return Path(os.environ.get("LATENT_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))


# --------------------------------------------------------------------------- running

def mpi_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.update(mpi_settings())
    if extra:
        env.update(extra)
    return env


def latent_cmd(args: list, ranks: int | None = None) -> list[str]:
    """Command line for `latent ARGS...`; under `mpirun -n RANKS` if ranks is given
    (ranks=None runs the binary directly, as an MPI singleton)."""
    cmd = [str(latent_bin())] + [str(a) for a in args]
    if ranks is not None:
        cmd = ["mpirun", "--oversubscribe", "-n", str(ranks)] + cmd
    return cmd


def run(cmd: list, *, capture: bool = False, check: bool = True, env: dict | None = None,
        nice: int | None = None, quiet: bool = False) -> subprocess.CompletedProcess:
    """Runs cmd (with the MPI environment). With capture=True stdout/stderr are
    returned (text); otherwise they go to the terminal. Raises SystemExit on failure
    if check is set, showing the tail of stderr. The wall time is stored in
    result.seconds."""
    cmd = [str(c) for c in cmd]
    if nice:
        cmd = ["nice", "-n", str(nice)] + cmd
    if not quiet:
        print("+ " + shlex.join(cmd), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env if env is not None else mpi_env(), text=True,
                         stdout=subprocess.PIPE if capture else None,
                         stderr=subprocess.PIPE if capture else None)
    res.seconds = time.perf_counter() - t0
    if check and res.returncode != 0:
        if capture:
            sys.stderr.write((res.stdout or "")[-4000:])
            sys.stderr.write((res.stderr or "")[-4000:])
        raise SystemExit(f"command failed with exit status {res.returncode}: {shlex.join(cmd)}")
    return res


def run_latent(args: list, ranks: int | None = None, **kw) -> subprocess.CompletedProcess:
    return run(latent_cmd(args, ranks), **kw)


def score(model: Path, data: Path, ranks: int | None = None, nice: int | None = None) -> dict:
    """`latent score` -> the JSON object it prints on stdout (last JSON line)."""
    res = run_latent(["score", "--model", model, "--data", data], ranks, capture=True, nice=nice)
    return parse_last_json(res.stdout)


def parse_last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise SystemExit(f"expected a JSON object on stdout, got:\n{text[-2000:]}")


def read_log_json(path: Path, last_run: bool = True) -> list[dict]:
    """The records of a --log-json file (one JSON object per line). latent appends to an
    existing log, each run starting with a {"event": "start"} line: by default only the
    last run's records are returned."""
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rec = json.loads(line)
                if last_run and rec.get("event") == "start":
                    out = []
                out.append(rec)
    return out


def iteration_records(path: Path) -> list[dict]:
    return [r for r in read_log_json(path) if r.get("event") == "iteration"]


def median(xs) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def fmt_cmd_env() -> str:
    return " ".join(f"{k}={v}" for k, v in mpi_settings().items())


# --------------------------------------------------------------------------- data

def shard_paths(directory: Path) -> list[Path]:
    return sorted(Path(directory).glob("part-*.h5"))


def refresh_page_cache(directory: Path) -> None:
    """Reads a dataset's shards into the page cache afresh: each file's cached pages dropped
    (posix_fadvise DONTNEED, which needs no privilege and drops only clean pages), then the
    file read through. A streaming fit then copies from pages in the state a first read
    leaves. On the AMD EPYC family 26 VM, shards whose pages had sat in the cache since
    earlier sessions streamed a diagonal-GMM iteration in 37-41 ms, and in 25.6 ms once
    dropped and read back (as fast as from latent's own cache; docs/PERFORMANCE.md)."""
    for p in shard_paths(directory):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            while os.read(fd, 1 << 20):
                pass
        finally:
            os.close(fd)


def has_shards(directory: Path) -> bool:
    return Path(directory).is_dir() and bool(shard_paths(directory))


def import_fashion_mnist(split: str, dest: Path | None = None, nice: int | None = None) -> Path:
    """Imports the Fashion-MNIST split ('train' or 'test') with labels into
    DEST (default <data_dir>/fashion-mnist/<split>) unless it is already there.
    (`latent import dense` writes a temporary directory and renames it when
    done, so a directory that exists holds a complete import.)"""
    dest = Path(dest) if dest else data_dir() / "fashion-mnist" / split
    if has_shards(dest):
        return dest
    images, labels = (fashion_mnist_source() / f for f in FASHION_MNIST_FILES[split])
    for f in (images, labels):
        if not f.is_file():
            sys.exit(f"{f} not found; install Debian's dataset-fashion-mnist "
                     "(bash cmake/install-deps.sh --with-data) or set LATENT_FASHION_MNIST")
    dest.parent.mkdir(parents=True, exist_ok=True)
    run_latent(["import", "dense", "--format", "idx", "--input", images, "--labels", labels,
                "--output", dest, "--overwrite"], nice=nice)
    return dest


def load_shards(directory: Path, with_labels: bool = True, dtype="float64"):
    """Concatenates /data of DIR/part-*.h5 (sorted) as a numpy array of `dtype`
    (float64 by default); returns (X, labels) where labels is None if any shard
    has no /labels."""
    import h5py
    import numpy as np
    paths = shard_paths(directory)
    if not paths:
        sys.exit(f"{directory}: no part-*.h5 shards")
    xs, ys = [], []
    for p in paths:
        with h5py.File(p, "r") as f:
            xs.append(np.asarray(f["data"][...], dtype=dtype))
            if with_labels and "labels" in f:
                ys.append(np.asarray(f["labels"][...], dtype=np.int64))
            else:
                with_labels = False
    X = xs[0] if len(xs) == 1 else np.concatenate(xs)
    y = (ys[0] if len(ys) == 1 else np.concatenate(ys)) if with_labels and ys else None
    return X, y


def write_shard(path: Path, X, labels=None) -> None:
    """Writes one shard in latent's dense-data schema: /data (rows x D, X's dtype),
    optional /labels (int64), root attributes format_version=1 (int64) and kind="dense"."""
    import h5py
    import numpy as np
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs["format_version"] = np.int64(1)
        f.attrs["kind"] = "dense"
        f.create_dataset("data", data=X)
        if labels is not None:
            f.create_dataset("labels", data=np.asarray(labels, dtype=np.int64))


def synthetic_gmm(n: int, d: int, k: int, seed: int = 0, dtype="float64", separation: float = 4.0,
                  rng=None, params=None):
    """n points from a random k-component GMM in d dimensions with full covariances.
    Returns (X, labels, params); pass params back in to draw more points from the
    same mixture (e.g. chunk by chunk)."""
    import numpy as np
    rng = rng if rng is not None else np.random.default_rng(seed)
    if params is None:
        weights = rng.dirichlet(np.full(k, 5.0))
        means = rng.normal(scale=separation, size=(k, d))
        chols = []
        for _ in range(k):
            a = rng.normal(size=(d, d)) / np.sqrt(d)
            cov = a @ a.T + 0.5 * np.eye(d)
            chols.append(np.linalg.cholesky(cov))
        params = {"weights": weights, "means": means, "chols": np.stack(chols)}
    labels = rng.choice(k, size=n, p=params["weights"])
    X = np.empty((n, d), dtype=dtype)
    for j in range(k):
        idx = np.flatnonzero(labels == j)
        z = rng.standard_normal((idx.size, d))
        X[idx] = params["means"][j] + z @ params["chols"][j].T
    return X, labels, params


# --------------------------------------------------------------------------- metrics

def purity(labels, pred) -> float:
    """Fraction of points whose cluster's majority label is their own label."""
    from sklearn.metrics.cluster import contingency_matrix
    c = contingency_matrix(labels, pred)  # classes x clusters
    return float(c.max(axis=0).sum() / c.sum())


def model_attrs(path: Path) -> dict:
    """Root attributes of a latent model file, JSON-friendly."""
    import h5py
    out = {}
    with h5py.File(path, "r") as f:
        for k, v in f.attrs.items():
            if hasattr(v, "item"):
                try:
                    v = v.item()
                except ValueError:
                    v = v.tolist()
            if isinstance(v, bytes):
                v = v.decode()
            out[k] = v
    return out


# --------------------------------------------------------------------------- machine

CPU_FLAGS_RECORDED = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512_vnni",
                      "avx512_bf16", "amx_bf16", "amx_tile")


def _cpu_flags() -> set[str]:
    try:
        m = re.search(r"^flags\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
        return set(m.group(1).split()) if m else set()
    except OSError:
        return set()


def machine_info() -> dict:
    """The CPU a figure was measured on: model, clock, the ISA flags that decide which
    kernels run (ours and the BLAS's), and (write_results) the BLAS the references used
    and the core's measured FMA peak."""
    info = {"hostname": platform.node(), "cores": os.cpu_count(), "cpu_model": None, "cpu_mhz": None,
            "avx512": False}
    try:
        text = Path("/proc/cpuinfo").read_text()
        m = re.search(r"^model name\s*:\s*(.*)$", text, re.M)
        info["cpu_model"] = m.group(1).strip() if m else None
        mhz = [float(x) for x in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M)]
        info["cpu_mhz"] = max(mhz) if mhz else None
        info["avx512"] = bool(re.search(r"\bavx512f\b", text))
    except OSError:
        pass
    flags = _cpu_flags()
    info["cpu_flags"] = [f for f in CPU_FLAGS_RECORDED if f in flags]
    info.update(latent_build())
    return info


def latent_build() -> dict:
    """The binary's target ISA (-march: Eigen's vector width) and the kernel variant it
    selects on this CPU (docs/ARCHITECTURE.md §5.7), from `latent --version`; {} without a
    binary."""
    p = Path(os.environ.get("LATENT_BIN", REPO_ROOT / "build/release/src/latent"))
    p = p if p.is_absolute() else REPO_ROOT / p
    try:
        text = subprocess.run([str(p), "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    isa = re.search(r"target ISA: (.*)", text)
    variant = re.search(r"selected: ([^,]+),", text)
    return {"latent_target_isa": isa.group(1).strip() if isa else None,
            "latent_kernel_variant": os.environ.get("LATENT_KERNEL") or (variant.group(1) if variant else None)}


# --------------------------------------------------------------------------- honest references
#
# The references (scikit-learn, gensim, PyTorch) run on a tuned BLAS: Debian's OpenBLAS
# (libopenblas0-serial, installed by `cmake/install-deps.sh --with-reference`) with the best
# kernel the CPU supports. OpenBLAS 0.3.21 falls back to a generic kernel ("Core: Prescott")
# on CPUs it does not recognise; OPENBLAS_CORETYPE then names the kernel a user of a current
# BLAS gets. A ratio against a crippled reference (or netlib's reference BLAS) is not a claim.

# OpenBLAS kernels by how fast their GEMM is on a CPU that runs them (a kernel of a lower
# tier on an AVX-512 CPU leaves half its vector width unused: measured on an AMD EPYC
# family 26 machine, float64 GEMM 49 GFLOP/s with Haswell against 74-81 with SkylakeX or
# Cooperlake, float32 104 against 183-189).
OPENBLAS_CORE_TIERS = {"cooperlake": 3, "sapphirerapids": 3, "skylakex": 2, "haswell": 1, "zen": 1,
                       "excavator": 1}


def openblas_core_tier(core: str | None) -> int:
    """0 for a generic or unknown kernel, else its OPENBLAS_CORE_TIERS rank."""
    return OPENBLAS_CORE_TIERS.get((core or "").lower(), 0)


def best_openblas_core(flags: set[str] | None = None) -> str | None:
    """The best OpenBLAS kernel this CPU runs: Cooperlake with AVX-512 and AVX512_BF16,
    SkylakeX with AVX-512 (F, DQ, BW, VL), Haswell with AVX2 + FMA, else None (let OpenBLAS
    choose)."""
    flags = _cpu_flags() if flags is None else flags
    if {"avx512f", "avx512dq", "avx512bw", "avx512vl"} <= flags:
        return "Cooperlake" if "avx512_bf16" in flags else "SkylakeX"
    if {"avx2", "fma"} <= flags:
        return "Haswell"
    return None


def openblas_core(env: dict | None = None) -> str | None:
    """The kernel numpy's BLAS runs in a fresh /usr/bin/python3 with `env` ("SkylakeX",
    "Haswell", "Prescott", ...), from OPENBLAS_VERBOSE=2; None if the BLAS is not OpenBLAS
    (e.g. netlib's reference BLAS)."""
    e = dict(os.environ if env is None else env)
    e["OPENBLAS_VERBOSE"] = "2"
    try:
        r = subprocess.run(["/usr/bin/python3", "-c", "import numpy as np; a = np.ones((64, 64)); a @ a"],
                           capture_output=True, text=True, env=e, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"Core:\s*(\S+)", r.stdout + r.stderr)
    return m.group(1) if m else None


_BLAS_INFO: dict | None = None


def tuned_blas() -> dict:
    """Makes the references of this process and its children run on the tuned BLAS and
    says what they run on: {"blas": "openblas" | "not OpenBLAS (...)", "core_default",
    "core_used", "OPENBLAS_CORETYPE"}. Sets OPENBLAS_CORETYPE in os.environ when OpenBLAS
    would fall back to a generic kernel (call it before numpy is imported: ensure_tuned_blas()
    re-executes the script if numpy is already loaded). Prints a warning when the BLAS is not
    OpenBLAS."""
    global _BLAS_INFO
    if _BLAS_INFO is not None:
        return _BLAS_INFO
    given = os.environ.get("OPENBLAS_CORETYPE")
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    default = openblas_core(env)
    info = {"core_default": default, "OPENBLAS_CORETYPE": given}
    if default is None:
        info["blas"] = "not OpenBLAS (install libopenblas0-serial: cmake/install-deps.sh --with-reference)"
        print("WARNING: numpy's BLAS is not OpenBLAS; the references would run on an untuned BLAS. Install "
              "libopenblas0-serial (cmake/install-deps.sh --with-reference).", file=sys.stderr, flush=True)
        info["core_used"] = None
    else:
        info["blas"] = "openblas"
        # The kernel to run: OpenBLAS's own choice when it recognises the CPU, else the best
        # the CPU's flags allow. A weaker OPENBLAS_CORETYPE in the environment (machines have
        # been seen to set Haswell on AVX-512 CPUs) is overridden and recorded: a ratio
        # against a reference held to half its vector width is not a claim.
        best = best_openblas_core()
        target = best if openblas_core_tier(best) > openblas_core_tier(default) else default
        if given is not None and openblas_core_tier(given) < openblas_core_tier(target):
            print(f"WARNING: OPENBLAS_CORETYPE={given} in the environment is a weaker kernel than this CPU runs "
                  f"({target}); the references run on {target}", file=sys.stderr, flush=True)
            info["OPENBLAS_CORETYPE_given"] = given
            given = None
        if given is None:  # else an explicit kernel at least as good: kept
            if target != default:
                os.environ["OPENBLAS_CORETYPE"] = target
            else:
                os.environ.pop("OPENBLAS_CORETYPE", None)
        info["OPENBLAS_CORETYPE"] = os.environ.get("OPENBLAS_CORETYPE")
        info["core_used"] = openblas_core() if os.environ.get("OPENBLAS_CORETYPE") else default
    _BLAS_INFO = info
    return info


def ensure_tuned_blas() -> dict:
    """tuned_blas(), and if that had to set OPENBLAS_CORETYPE after numpy was loaded in this
    process (or overrode a weaker one), re-executes the script so that its own references use the tuned kernel."""
    before = os.environ.get("OPENBLAS_CORETYPE")
    info = tuned_blas()
    if before != os.environ.get("OPENBLAS_CORETYPE") and "numpy" in sys.modules:
        os.execv(sys.executable, [sys.executable] + sys.argv)
    return info


_FMA_PEAK: dict | None = None


def measure_fma_peak() -> dict:
    """The core's measured FMA throughput on one thread (bench/fma_peak.c: 12 independent
    chains on the widest vectors, built with -march=native): {"vector_bits",
    "float32_gflops", "float64_gflops", "read_gbytes_per_s"} (one thread streaming a 512 MiB
    array), and "bfloat16_dot_gflops" (VDPBF16PS, 64 flops an instruction) on a CPU with
    AVX512_BF16, "amx_bf16_gflops" with AMX; {} if it cannot be built. About 3 s."""
    global _FMA_PEAK
    if _FMA_PEAK is not None:
        return _FMA_PEAK
    try:
        exe = _built_probe(["gcc", "-O2", "-march=native"], "fma_peak.c", "fma-peak")
        _FMA_PEAK = json.loads(subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout)
    except (OSError, subprocess.CalledProcessError, ValueError):
        _FMA_PEAK = {}
    return _FMA_PEAK


def reference_basis() -> str:
    """One line naming what the ratios were measured against, for the printed tables."""
    b, mi, peak = tuned_blas(), machine_info(), measure_fma_peak()
    core = b.get("core_used") or "?"
    how = f"OPENBLAS_CORETYPE={b['OPENBLAS_CORETYPE']}" if b.get("OPENBLAS_CORETYPE") else "its own choice"
    if b.get("OPENBLAS_CORETYPE_given"):
        how += f"; the environment's weaker OPENBLAS_CORETYPE={b['OPENBLAS_CORETYPE_given']} overridden"
    return (f"CPU {mi['cpu_model']}; references on {b['blas']} (kernel {core}, {how}), one thread; measured FMA "
            f"peak {peak.get('float32_gflops', '?')} / {peak.get('float64_gflops', '?')} GFLOP/s (float32/float64, "
            f"one core)")


def warn_if_busy(threshold: float = 0.5) -> float:
    """Prints a warning if the 1-minute load average says other work is running
    (timings would be unreliable); returns the load average."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return float("nan")
    if load > threshold:
        print(f"WARNING: load average {load:.2f} - other processes are running; timings will be "
              "unreliable (run on an idle machine)", file=sys.stderr, flush=True)
    return load


def peak_gflops(cores: int, flops_per_cycle: float = 32.0) -> tuple[float | None, str]:
    """Nominal double-precision peak = cores x GHz x flops/cycle, GHz from /proc/cpuinfo
    'cpu MHz'. 32 flops/cycle assumes two 512-bit FMA units (8 doubles x 2 flops x 2
    units); CPUs that execute AVX-512 as two 256-bit halves (AMD Zen 4) reach 16."""
    mi = machine_info()
    if not mi["cpu_mhz"]:
        return None, "unknown (no 'cpu MHz' in /proc/cpuinfo)"
    ghz = mi["cpu_mhz"] / 1000.0
    peak = cores * ghz * flops_per_cycle
    return peak, f"{cores} core(s) x {ghz:.2f} GHz x {flops_per_cycle:g} DP flops/cycle"


# --------------------------------------------------------------------------- results

def write_results(name: str, obj: dict) -> Path:
    """Writes bench/results/NAME.json atomically (via NAME.json.tmp)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    obj = dict(obj)
    obj.setdefault("timestamp", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    obj.setdefault("machine", machine_info())
    obj.setdefault("reference_blas", tuned_blas())
    obj.setdefault("fma_peak", measure_fma_peak())
    obj.setdefault("git_commit", git_commit())
    path = RESULTS_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")
    tmp.replace(path)
    print(f"results written to {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}")
    print(f"measured on: {reference_basis()}")
    return path


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o)}")


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def print_table(rows: list[list], header: list[str]) -> None:
    cols = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cols) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for r in cols[1:]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
