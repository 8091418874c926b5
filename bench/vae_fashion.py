#!/usr/bin/python3
"""Speed and quality: latent's VAE vs a PyTorch reference on Fashion-MNIST (one core each).

What it measures
  Both train the same VAE (Kingma & Welling 2014) on the Fashion-MNIST training images
  (pixels scaled by 1/255, float32, in storage order) and are scored on the test images:
    model      encoder 784 -> 512 -> 256 -> 2L (ReLU after the hidden layers; first L
               outputs = mu, next L = log sigma^2), decoder L -> 256 -> 512 -> 784 (ReLU
               after the hidden layers; outputs = Bernoulli logits), L = 20; nn.Linear's
               default initialisation (weights and biases ~ U(-1/sqrt(in), 1/sqrt(in)))
    loss       per row: sum over pixels of BCE-with-logits + analytic KL(q(z|x) || N(0, I)),
               one z = mu + exp(logvar / 2) * eps per row; minibatch loss = mean over rows
    training   Adam (lr 1e-3, betas 0.9/0.999, eps 1e-8), batch 128, consecutive rows in
               storage order (no shuffling; the last minibatch may be short), E epochs
               (default 10), seed 0, float32
  PyTorch (torch.set_num_threads(1), OMP/MKL/OPENBLAS_NUM_THREADS=1, data in memory as one
  float32 tensor) runs in a subprocess once per BLAS that libtorch's sgemm_ can bind to:
  "system" (whatever libblas.so.3 resolves to) and "openblas-serial"
  (LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-serial); a variant whose sgemm_
  comes from the same library file as an earlier one is not run again ("reference",
  LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/blas, Debian's netlib BLAS, can be added with
  --blas). Debian's libblas.so.3 alternative decides what "system" is: with the netlib
  reference BLAS one epoch takes ~97 s on the 2-core AMD EPYC VM, with OpenBLAS serial
  ~7.5 s (so the default run spends ~16 min in the slow variant; --blas openblas-serial
  skips it). The sgemm_ library each variant really used is recorded (found with
  dladdr). Epoch seconds = the training loop only (forward, backward, Adam; no
  evaluation, data already in memory); the speed bar uses the faster variant.
  latent: `latent fit vae` with the same settings, 1 rank x 1 thread, epoch seconds from
  --log-json ("seconds" of the "iteration" records); again on 2 ranks (mpirun -n 2, 1
  thread each) for the epoch-time scaling ratio.
  Test scores, nats per test row (higher is better):
    ELBO   one z sample per row, analytic KL (torch evaluator: fixed torch seed)
    IWAE   log (1/K sum_k w_k) with K = --iw-samples (default 5000) importance samples
           from q(z|x) (Burda et al. 2016); a lower bound of log p(x) tightening with K
  Each implementation is scored by its own evaluator (PyTorch's in Python, ours with
  `latent score`). Cross-check: the PyTorch weights are written into a copy of our
  model file and scored by `latent score`, and our weights are scored by the PyTorch
  evaluator; the two evaluators must agree within Monte-Carlo error (|difference| <=
  4 standard errors of the difference, estimated by the PyTorch evaluator: for the ELBO
  from a second independent sample per row; for the IWAE from the spread between the two
  K/2-sample halves of each row's samples, an upper bound (the delta method,
  sum_k wn_k^2 - 1/K, also recorded, came out ~2x too small against repeated seeds).
  Bars: latent test ELBO >= PyTorch test ELBO - 1 nat, and PyTorch epoch seconds /
  latent epoch seconds >= 2 (both on one core).
  Speed rounds (--speed-rounds R): on a shared machine a single pair of runs cannot
  separate 1.8x from 2.2x, so after the main runs R more rounds time PyTorch (float32,
  and bfloat16 autocast) and latent (each precision) for --speed-epochs E epochs each,
  alternating the order; each round gives its own ratios, and the bars use their median
  (min and max printed beside it).

How to run (the binary must be built; needs an idle machine for meaningful timings)
  /usr/bin/python3 bench/vae_fashion.py                # 10 epochs, K = 5000 (long: each
                                                        # of the four K=5000 IWAE evaluations
                                                        # decodes 5e7 samples, ~17 min for
                                                        # PyTorch with OpenBLAS)
  /usr/bin/python3 bench/vae_fashion.py --quick        # smoke test: 5000 training rows,
                                                        # 1 epoch, K = 50
  /usr/bin/python3 bench/vae_fashion.py --skip-latent  # no binary: the PyTorch part only
  Options: --epochs E --iw-samples K --seed S --train-rows N --test-rows N
           --blas system,openblas-serial[,reference] --skip-2ranks --skip-crosscheck --nice N
           --speed-rounds R --speed-epochs E --micro-batch-rows N
  Data is imported once into bench/.data/ (LATENT_BENCH_DATA); with --skip-latent and no
  imported copy the PyTorch side reads the IDX files directly (same bytes / 255).
  Results: bench/results/vae_fashion.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lda_common  # noqa: E402  (single_threaded(): stdlib only)

lda_common.single_threaded()

import common  # noqa: E402
common.ensure_tuned_blas()  # references on a tuned BLAS (OPENBLAS_CORETYPE), before numpy loads

LATENT_DIM = 20
HIDDEN = (512, 256)
BATCH_SIZE = 128
LEARNING_RATE = 1e-3
BETA1, BETA2, ADAM_EPS = 0.9, 0.999, 1e-8
INPUT_DIM = 784

ELBO_TOLERANCE = 1.0      # nats: latent test ELBO >= PyTorch test ELBO - this
TARGET_SPEEDUP = 2.0      # PyTorch epoch seconds / latent epoch seconds
AGREE_SIGMAS = 4.0        # evaluator cross-check: |difference| <= this many standard errors
QUICK = {"train_rows": 5000, "epochs": 1, "iw_samples": 50}

LIBDIR = Path("/usr/lib/x86_64-linux-gnu")
BLAS_VARIANTS = {
    "system": None,                               # whatever libblas.so.3 resolves to
    "openblas-serial": LIBDIR / "openblas-serial",
    "reference": LIBDIR / "blas",                 # Debian's netlib reference BLAS
}


# =========================================================================== PyTorch side
# Everything in this section runs inside the worker subprocess (python3 vae_fashion.py
# --worker SPEC.json), so that each BLAS variant gets a fresh process with its own
# LD_LIBRARY_PATH. torch is imported only there.

def _read_idx_images(path: Path):
    """IDX3 ubyte (gzip) -> float32 rows x 784 scaled by 1/255, as `latent import dense
    --format idx` does (checked bit-identical with the imported shards)."""
    import gzip
    import struct
    import numpy as np
    with gzip.open(path, "rb") as f:
        buf = f.read()
    magic, n, r, c = struct.unpack(">iiii", buf[:16])
    if magic != 2051:
        raise SystemExit(f"{path}: not an IDX3 ubyte file (magic {magic})")
    raw = np.frombuffer(buf, dtype=np.uint8, offset=16).reshape(n, r * c)
    return raw.astype(np.float32) / np.float32(255)


def load_rows(src: dict):
    """{"dir": shard directory or None, "split": train|test, "rows": N or None} -> float32
    numpy array (the first N rows in storage order)."""
    import numpy as np
    if src.get("dir"):
        X, _ = common.load_shards(Path(src["dir"]), with_labels=False, dtype="float32")
    else:
        X = _read_idx_images(common.fashion_mnist_source() / common.FASHION_MNIST_FILES[src["split"]][0])
    if src.get("rows"):
        X = X[: src["rows"]]
    return np.ascontiguousarray(X, dtype=np.float32)


def blas_info() -> dict:
    """Which library libtorch's sgemm_ binds to (global scope first, as the dynamic
    linker does, then libtorch_cpu's own dependency tree), and the BLAS/LAPACK files
    mapped into this process (/proc/self/maps)."""
    import ctypes
    maps = Path("/proc/self/maps").read_text().splitlines()
    files = sorted({ln.split()[-1] for ln in maps if ln.split()[-1].startswith("/")})
    mapped = [f for f in files if any(s in os.path.basename(f) for s in ("blas", "lapack", "mkl", "blis"))]
    torch_cpu = next((f for f in files if os.path.basename(f).startswith("libtorch_cpu.so")), None)

    class DlInfo(ctypes.Structure):
        _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                    ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]

    libc = ctypes.CDLL(None)
    provider, scope = None, None
    for scope_name, handle in (("global", libc), ("libtorch_cpu", ctypes.CDLL(torch_cpu) if torch_cpu else None)):
        if handle is None:
            continue
        try:
            fn = getattr(handle, "sgemm_")
        except AttributeError:
            continue
        info = DlInfo()
        if libc.dladdr(ctypes.cast(fn, ctypes.c_void_p), ctypes.byref(info)) and info.dli_fname:
            provider, scope = info.dli_fname.decode(), scope_name
            break
    return {"sgemm_provider": provider, "sgemm_provider_realpath": os.path.realpath(provider) if provider else None,
            "sgemm_scope": scope, "mapped": mapped,
            "LD_LIBRARY_PATH": os.environ.get("LD_LIBRARY_PATH")}


def _torch_setup():
    import torch
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    return torch


def make_model(torch, latent_dim: int, hidden):
    nn = torch.nn
    F = torch.nn.functional

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            enc = [INPUT_DIM] + list(hidden) + [2 * latent_dim]
            dec = [latent_dim] + list(reversed(hidden)) + [INPUT_DIM]
            # nn.Linear's default init: weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)).
            self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(enc[:-1], enc[1:]))
            self.decoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dec[:-1], dec[1:]))
            self.latent_dim = latent_dim

        @staticmethod
        def _mlp(layers, h):
            for i, layer in enumerate(layers):
                h = layer(h)
                if i + 1 < len(layers):
                    h = F.relu(h)
            return h

        def encode(self, x):
            h = self._mlp(self.encoder, x)
            return h[:, : self.latent_dim], h[:, self.latent_dim:]

        def decode(self, z):
            return self._mlp(self.decoder, z)

    return VAE()


def model_tensors(model) -> dict:
    """{"encoder/0/weight": array, ...}: the model-file layout of the brief."""
    return {k.replace(".", "/"): v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def load_weights(torch, model, path: Path) -> None:
    import h5py
    import numpy as np
    sd = model.state_dict()
    with h5py.File(path, "r") as f:
        for key, t in sd.items():
            name = key.replace(".", "/")
            if name not in f:
                raise SystemExit(f"{path}: no dataset /{name}")
            a = np.asarray(f[name][...], dtype=np.float32)
            if tuple(a.shape) != tuple(t.shape):
                raise SystemExit(f"{path}: /{name} has shape {a.shape}, expected {tuple(t.shape)}")
            t.copy_(torch.from_numpy(a))


def save_weights(model, path: Path, attrs: dict | None = None) -> None:
    import h5py
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for name, a in model_tensors(model).items():
            f.create_dataset(name, data=a)
        for k, v in (attrs or {}).items():
            f.attrs[k] = v


def train_torch(torch, model, X, epochs: int, batch_size: int, lr: float, log=None, autocast: bool = False) -> dict:
    """autocast: the forward pass under torch.autocast("cpu", dtype=torch.bfloat16) (its matrix
    products in bfloat16 with float32 sums, oneDNN's AVX512_BF16 kernels on CPUs that have them:
    PyTorch's counterpart of latent's --matmul-precision medium); the loss in float32."""
    F = torch.nn.functional
    import contextlib
    cast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if autocast else contextlib.nullcontext
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(BETA1, BETA2), eps=ADAM_EPS)
    n = X.shape[0]
    seconds, objective = [], []
    for epoch in range(1, epochs + 1):
        total = torch.zeros((), dtype=torch.float64)
        t0 = time.perf_counter()
        for i in range(0, n, batch_size):
            x = X[i:i + batch_size]
            with cast():
                mu, logvar = model.encode(x)
                z = mu + torch.exp(0.5 * logvar.float()) * torch.randn_like(mu.float())
                logits = model.decode(z)
            mu, logvar, logits = mu.float(), logvar.float(), logits.float()
            rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
            kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
            per_row = rec + kl
            loss = per_row.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += per_row.detach().sum()
        seconds.append(time.perf_counter() - t0)
        objective.append(-total.item() / n)   # mean training ELBO over the epoch's rows
        if log:
            log(f"epoch {epoch}/{epochs}: {seconds[-1]:.2f} s, train ELBO {objective[-1]:.3f}")
    return {"epoch_seconds": seconds, "train_objective": objective}


def _log_lik(F, logits, x):
    """log p(x | logits) per row (Bernoulli), float64."""
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1).double()


def evaluate_elbo(torch, model, X, seed: int, chunk: int = 2000) -> dict:
    """Mean test ELBO (one z sample per row, analytic KL) with a fixed torch seed, and its
    Monte-Carlo standard error from a second independent sample per row."""
    F = torch.nn.functional
    g = torch.Generator().manual_seed(seed)
    n = X.shape[0]
    elbo_sum, mc_var_sum = 0.0, 0.0
    with torch.no_grad():
        for i in range(0, n, chunk):
            x = X[i:i + chunk]
            mu, logvar = model.encode(x)
            std = torch.exp(0.5 * logvar)
            kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).double()
            ll1 = _log_lik(F, model.decode(mu + std * torch.randn(mu.shape, generator=g)), x)
            ll2 = _log_lik(F, model.decode(mu + std * torch.randn(mu.shape, generator=g)), x)
            elbo_sum += (ll1 - kl).sum().item()
            mc_var_sum += (0.5 * (ll1 - ll2).pow(2)).sum().item()
    return {"elbo": elbo_sum / n, "elbo_mc_se": math.sqrt(mc_var_sum / n / n)}


def evaluate_iwae(torch, model, X, K: int, seed: int, budget: int = 8192, log=None) -> dict:
    """Mean importance-weighted bound log (1/K sum_k w_k), w = p(x|z) p(z) / q(z|x), z ~ q(z|x)
    (Burda et al. 2016), K samples per row decoded as batches of about `budget` rows.

    Monte-Carlo standard error of the mean: each row's K samples are two independent halves
    H1, H2 (K/2 each); with a, b the half-sample estimates, (a - b)^2 / 2 estimates the
    variance of a K/2-sample estimate, which bounds that of the K-sample one from above
    (the bound tightens with K) -> iwae_mc_se (conservative). iwae_mc_se_delta is the
    delta-method value, var(log mean w) ~ sum_k wn_k^2 - 1/K (wn = normalised weights),
    which underestimates when the weights are heavy-tailed (about 2x for a 1-epoch model
    at K = 50)."""
    F = torch.nn.functional
    g = torch.Generator().manual_seed(seed)
    n, L = X.shape[0], model.latent_dim
    rows = max(1, budget // K)
    kc = min(K, budget)
    half = K // 2
    total, var_delta, var_half = 0.0, 0.0, 0.0
    t0 = time.perf_counter()
    last = t0
    ninf = -math.inf
    with torch.no_grad():
        for i in range(0, n, rows):
            x = X[i:i + rows]
            r = x.shape[0]
            mu, logvar = model.encode(x)
            std = torch.exp(0.5 * logvar)
            lse, lse2, lse_a, lse_b = (torch.full((r,), ninf, dtype=torch.float64) for _ in range(4))
            for k0 in range(0, K, kc):
                k = min(kc, K - k0)
                eps = torch.randn((k, r, L), generator=g)
                z = mu + std * eps                                           # k x r x L
                logits = model.decode(z.reshape(k * r, L)).view(k, r, INPUT_DIM)
                ll = _log_lik(F, logits, x.expand(k, r, INPUT_DIM))          # k x r
                # log p(z) - log q(z|x); the (2 pi)^(-L/2) factors cancel
                log_pz_qz = (-0.5 * z.pow(2) + 0.5 * eps.pow(2) + 0.5 * logvar).sum(-1).double()
                logw = ll + log_pz_qz
                lse = torch.logaddexp(lse, torch.logsumexp(logw, 0))
                lse2 = torch.logaddexp(lse2, torch.logsumexp(2 * logw, 0))
                split = min(max(half - k0, 0), k)                            # samples k0.. of H1
                if split > 0:
                    lse_a = torch.logaddexp(lse_a, torch.logsumexp(logw[:split], 0))
                if split < k and half > 0:
                    lse_b = torch.logaddexp(lse_b, torch.logsumexp(logw[split:min(k, 2 * half - k0)], 0))
            total += (lse - math.log(K)).sum().item()
            var_delta += (torch.exp(lse2 - 2 * lse) - 1.0 / K).clamp(min=0).sum().item()
            if half > 0:
                var_half += (0.5 * (lse_a - lse_b).pow(2)).sum().item()
            if log and time.perf_counter() - last > 60:
                last = time.perf_counter()
                log(f"IWAE K={K}: {i + r}/{n} rows, {last - t0:.0f} s")
    # (no standard error for K = 1)
    return {"iwae_log_likelihood": total / n,
            "iwae_mc_se": math.sqrt(var_half) / n if K > 1 else None,
            "iwae_mc_se_delta": math.sqrt(var_delta) / n if K > 1 else None,
            "iw_samples": K, "iwae_seconds": time.perf_counter() - t0}


def worker(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    label = spec.get("label", "torch")

    def log(msg):
        print(f"[torch {label}] {msg}", file=sys.stderr, flush=True)

    torch = _torch_setup()
    import numpy as np
    out = {"torch_version": torch.__version__, "num_threads": torch.get_num_threads(),
           "thread_env": {v: os.environ.get(v) for v in lda_common.THREAD_VARS}}
    torch.manual_seed(spec["seed"])
    model = make_model(torch, spec["latent_dim"], spec["hidden"])
    test = torch.from_numpy(load_rows(spec["test"]))
    if spec["job"] == "train":
        X = torch.from_numpy(load_rows(spec["train"]))
        out["train_rows"] = int(X.shape[0])
        # A tiny matmul so that the BLAS is bound before blas_info() looks (lazy binding).
        torch.ones(4, 4) @ torch.ones(4, 4)
        out["blas"] = blas_info()
        log(f"sgemm_ from {out['blas']['sgemm_provider']}; {X.shape[0]} rows x {spec['epochs']} epochs")
        out["autocast"] = "bfloat16" if spec.get("autocast") else None
        out.update(train_torch(torch, model, X, spec["epochs"], spec["batch_size"], spec["lr"], log=log,
                               autocast=bool(spec.get("autocast"))))
        del X
        if spec.get("time_only"):  # a speed round: epoch seconds only
            Path(spec["out"]).write_text(json.dumps(out, default=str))
            return 0
        save_weights(model, Path(spec["weights_out"]), attrs={"source": "pytorch vae_fashion.py"})
        out["weights"] = spec["weights_out"]
    elif spec["job"] == "eval":
        load_weights(torch, model, Path(spec["weights"]))
        torch.ones(4, 4) @ torch.ones(4, 4)
        out["blas"] = blas_info()
        out["weights"] = spec["weights"]
    else:
        raise SystemExit(f"unknown job {spec['job']}")
    t0 = time.perf_counter()
    out.update(evaluate_elbo(torch, model, test, spec["eval_seed"]))
    out["elbo_seconds"] = time.perf_counter() - t0
    log(f"test ELBO {out['elbo']:.3f} (MC s.e. {out['elbo_mc_se']:.3f})")
    if spec.get("iw_samples"):
        out.update(evaluate_iwae(torch, model, test, spec["iw_samples"], spec["eval_seed"], log=log))
        log(f"test IWAE K={spec['iw_samples']} {out['iwae_log_likelihood']:.3f} "
            f"(MC s.e. {fmt(out['iwae_mc_se'], '.4f')}) in {out['iwae_seconds']:.0f} s")
    out["test_rows"] = int(test.shape[0])
    Path(spec["out"]).write_text(json.dumps(out, default=lambda o: o.item() if isinstance(o, np.generic) else str(o)))
    return 0


# =========================================================================== driver side

def run_worker(args, spec: dict, blas: str, runs: Path) -> dict:
    env = dict(os.environ)
    for v in lda_common.THREAD_VARS:
        env[v] = "1"
    d = BLAS_VARIANTS[blas]
    if d is not None:
        env["LD_LIBRARY_PATH"] = str(d) + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    spec = dict(spec, label=f"{spec['job']} {blas}")
    with tempfile.TemporaryDirectory(dir=runs, prefix=".worker-") as tmp:
        spec["out"] = str(Path(tmp) / "out.json")
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec, default=str))
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_path)]
        res = common.run(cmd, env=env, nice=args.nice, quiet=True)
        out = json.loads(Path(spec["out"]).read_text())
    out["blas_variant"] = blas
    out["process_seconds"] = res.seconds
    return out


def blas_file(d: Path | None) -> str:
    """The file that libblas.so.3 resolves to with LD_LIBRARY_PATH=d (None: the system's)."""
    return os.path.realpath((d if d is not None else LIBDIR) / "libblas.so.3")


def short_lib(path: str | None) -> str:
    if not path:
        return "?"
    p = Path(path)
    return str(p.relative_to(LIBDIR)) if p.is_relative_to(LIBDIR) else str(p)


def torch_train_spec(args, train_src: dict, test_src: dict, **kw) -> dict:
    return dict({"job": "train", "seed": args.seed, "eval_seed": args.seed, "latent_dim": LATENT_DIM,
                 "hidden": list(HIDDEN), "batch_size": BATCH_SIZE, "lr": LEARNING_RATE, "epochs": args.epochs,
                 "train": train_src, "test": test_src}, **kw)


def torch_runs(args, train_src: dict, test_src: dict, runs: Path) -> dict:
    base = torch_train_spec(args, train_src, test_src)
    variants, skipped = {}, {}
    for blas in args.blas:
        d = BLAS_VARIANTS[blas]
        if d is not None and not d.is_dir():
            skipped[blas] = f"{d} does not exist"
            continue
        dup = next((v for v, o in variants.items() if o["blas"]["sgemm_provider_realpath"] == blas_file(d)), None)
        if dup:
            skipped[blas] = (f"libblas.so.3 is the same file as for '{dup}' "
                             f"({variants[dup]['blas']['sgemm_provider_realpath']})")
            print(f"PyTorch with BLAS '{blas}' skipped: {skipped[blas]}", file=sys.stderr, flush=True)
            continue
        print(f"== PyTorch, BLAS '{blas}' ...", file=sys.stderr, flush=True)
        spec = dict(base, weights_out=str(runs / f"vae_fashion_torch_{blas}.weights.h5"))
        o = run_worker(args, spec, blas, runs)
        o["median_epoch_seconds"] = common.median(o["epoch_seconds"])
        variants[blas] = o
    if not variants:
        raise SystemExit("no PyTorch BLAS variant could run: " + json.dumps(skipped))
    faster = min(variants, key=lambda v: variants[v]["median_epoch_seconds"])
    autocast = None
    if args.torch_bf16:
        print(f"== PyTorch, BLAS '{faster}', bfloat16 autocast ...", file=sys.stderr, flush=True)
        spec = dict(base, autocast=True, weights_out=str(runs / f"vae_fashion_torch_{faster}_bf16.weights.h5"))
        autocast = run_worker(args, spec, faster, runs)
        autocast["median_epoch_seconds"] = common.median(autocast["epoch_seconds"])
    return {"variants": variants, "skipped": skipped, "faster": faster, "autocast_bf16": autocast}


def torch_eval(args, weights: Path, test_src: dict, blas: str, runs: Path) -> dict:
    spec = {"job": "eval", "weights": str(weights), "seed": args.seed, "eval_seed": args.seed,
            "latent_dim": LATENT_DIM, "hidden": list(HIDDEN), "test": test_src, "iw_samples": args.iw_samples}
    print(f"== PyTorch evaluator on {weights.name} (K={args.iw_samples}) ...", file=sys.stderr, flush=True)
    return run_worker(args, spec, blas, runs)


def subset_dir(src: Path, rows: int, name: str) -> Path:
    """DIR with the first `rows` rows of the shards in src (one shard, float32), made once."""
    d = common.data_dir() / "fashion-mnist" / name
    if common.has_shards(d):
        return d
    X, y = common.load_shards(src, dtype="float32")
    tmp = d.with_name(d.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    common.write_shard(tmp / "part-00000.h5", X[:rows], labels=None if y is None else y[:rows])
    tmp.rename(d)
    return d


def fit_latent(args, train: Path, ranks: int, runs: Path, precision: str = "highest", tag: str | None = None) -> dict:
    tag = tag or f"latent_{ranks}r" + ("" if precision == "highest" else f"_{precision}")
    model = runs / f"vae_fashion_{tag}.h5"
    log = runs / f"vae_fashion_{tag}.log.jsonl"
    fit_args = ["fit", "vae", "--data", train, "--output", model, "--latent-dim", LATENT_DIM,
                "--hidden", ",".join(map(str, HIDDEN)), "--activation", "relu", "--likelihood", "bernoulli",
                "--batch-size", BATCH_SIZE, "--learning-rate", LEARNING_RATE, "--beta1", BETA1,
                "--beta2", BETA2, "--adam-epsilon", ADAM_EPS, "--epochs", args.epochs, "--seed", args.seed,
                "--threads", 1, "--log-json", log, "--overwrite", "--matmul-precision", precision]
    if args.micro_batch_rows:
        fit_args += ["--micro-batch-rows", args.micro_batch_rows]
    print(f"== latent fit vae, {ranks} rank(s) x 1 thread, --matmul-precision {precision} ...", file=sys.stderr, flush=True)
    res = common.run_latent(fit_args, ranks=ranks if ranks > 1 else None, nice=args.nice)
    its = common.iteration_records(log)
    if len(its) != args.epochs:
        print(f"WARNING: latent logged {len(its)} iterations, expected {args.epochs}", file=sys.stderr)
    secs = [float(r["seconds"]) for r in its]
    return {"ranks": ranks, "threads": 1, "matmul_precision": precision, "model": str(model), "log": str(log),
            "wall_seconds": res.seconds,
            "epoch_seconds": secs, "median_epoch_seconds": common.median(secs),
            "train_objective": [r.get("objective") for r in its], "attrs": common.model_attrs(model)}


def score_latent(args, model: Path, test: Path, K: int) -> dict:
    print(f"== latent score {model.name} (K={K}) ...", file=sys.stderr, flush=True)
    res = common.run_latent(["score", "--model", model, "--data", test, "--iw-samples", K, "--seed", args.seed],
                            capture=True, nice=args.nice)
    sc = common.parse_last_json(res.stdout)
    for k in ("elbo", "iwae_log_likelihood"):
        if k not in sc:
            print(f"WARNING: `latent score` printed no '{k}': {sc}", file=sys.stderr)
    sc["seconds"] = res.seconds
    return sc


def torch_weights_as_latent(ours: Path, weights: Path, dst: Path) -> Path:
    """A copy of our model file (so every attribute and dataset `latent score` expects is
    there) with the network weights replaced by the PyTorch ones."""
    import h5py
    import numpy as np
    shutil.copyfile(ours, dst)
    with h5py.File(weights, "r") as src, h5py.File(dst, "r+") as f:
        names = []
        src.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        for n in names:
            if n not in f:
                raise SystemExit(f"{ours}: no dataset /{n} to overwrite (model-file layout differs from the brief)")
            if f[n].shape != src[n].shape:
                raise SystemExit(f"{ours}: /{n} has shape {f[n].shape}, PyTorch's is {src[n].shape}")
            f[n][...] = np.asarray(src[n][...], dtype=f[n].dtype)
    return dst


def agreement(torch_sc: dict, latent_sc: dict) -> dict:
    """Compares the two evaluators on the same weights. Both estimates are independent
    draws of the same estimator, so the difference has standard error sqrt(2) x the
    PyTorch evaluator's."""
    out = {}
    for key, se_key in (("elbo", "elbo_mc_se"), ("iwae_log_likelihood", "iwae_mc_se")):
        a, b, se = torch_sc.get(key), latent_sc.get(key), torch_sc.get(se_key)
        if a is None or b is None or se is None:
            out[key] = None
            continue
        se_diff = math.sqrt(2.0) * se
        diff = b - a
        z = diff / se_diff if se_diff > 0 else (0.0 if diff == 0 else math.inf)
        # 1e-3 nats of slack for float32 round-off when the MC error is tiny
        out[key] = {"torch": a, "latent": b, "difference": diff, "se_difference": se_diff, "z": z,
                    "agree": abs(diff) <= AGREE_SIGMAS * se_diff + 1e-3}
    return out


def fmt(x, spec=".3f"):
    return "n/a" if x is None else format(x, spec)


def spread(xs: list) -> dict:
    return {"median": common.median(xs), "min": min(xs), "max": max(xs), "values": xs}


def speed_rounds(args, train_src: dict, test_src: dict, runs: Path, faster: str, precisions: list) -> dict:
    """--speed-rounds R: R rounds of timing-only runs (--speed-epochs E epochs each, no scoring):
    PyTorch float32 with the faster BLAS, PyTorch bfloat16 autocast (unless --no-torch-bf16), and
    latent at each precision, one after the other, the order reversed every other round so that a
    slow spell of a shared machine does not land on one side. Each round gives its own ratios
    (median epoch seconds of the reference / of latent); the speed bar uses their median."""
    sub = argparse.Namespace(**dict(vars(args), epochs=args.speed_epochs))
    jobs = [("torch_float32", None), ("torch_bf16", None)] if args.torch_bf16 else [("torch_float32", None)]
    jobs += [(f"latent_{p}", p) for p in precisions]
    rounds = []
    for r in range(args.speed_rounds):
        secs = {}
        for name, prec in (jobs if r % 2 == 0 else jobs[::-1]):
            print(f"== speed round {r + 1}/{args.speed_rounds}: {name} ...", file=sys.stderr, flush=True)
            if prec is None:
                spec = torch_train_spec(sub, train_src, test_src, time_only=True, autocast=name == "torch_bf16")
                secs[name] = common.median(run_worker(sub, spec, faster, runs)["epoch_seconds"])
            else:
                secs[name] = fit_latent(sub, Path(train_src["dir"]), 1, runs, prec, tag=f"speed_{prec}")["median_epoch_seconds"]
        ratios = {p: secs["torch_float32"] / secs[f"latent_{p}"] for p in precisions}
        if "torch_bf16" in secs and "medium" in precisions:
            ratios["medium_vs_torch_bf16"] = secs["torch_bf16"] / secs["latent_medium"]
        rounds.append({"epoch_seconds": secs, "ratios": ratios})
    keys = rounds[0]["ratios"].keys() if rounds else []
    return {"rounds": rounds, "epochs": args.speed_epochs,
            "ratios": {k: spread([rd["ratios"][k] for rd in rounds]) for k in keys}}


def epoch_gflop(rows: int) -> float:
    """The nominal arithmetic of one training epoch over `rows` rows, in GFLOP: the forward
    pass's 2 · Σ in · out flops per row over the encoder's and decoder's layers, times 3
    (the backward pass counted as two forward passes). 388.9 GFLOP for Fashion-MNIST."""
    enc = [INPUT_DIM] + list(HIDDEN) + [2 * LATENT_DIM]
    dec = [LATENT_DIM] + list(reversed(HIDDEN)) + [INPUT_DIM]
    per_row = sum(2 * a * b for layers in (enc, dec) for a, b in zip(layers, layers[1:]))
    return 3 * per_row * rows / 1e9


def peak_share(precision: str, seconds: float, rows: int, variant: str | None = None) -> dict | None:
    """GFLOP/s of an epoch at `precision` and its fraction of the core's measured peak for
    the products that precision runs in the fit's kernel variant (float32 FMAs for highest;
    for medium VDPBF16PS, or AMX TDPBF16PS in variant amxbf16)."""
    peak = common.measure_fma_peak()
    key = "float32_gflops"
    if precision == "medium":
        key = "amx_bf16_gflops" if variant == "amxbf16" else "bfloat16_dot_gflops"
    if not seconds or not peak.get(key):
        return None
    rate = epoch_gflop(rows) / seconds
    return {"epoch_gflop": epoch_gflop(rows), "gflops": rate, "peak_key": key, "peak_gflops": peak[key],
            "fraction_of_peak": rate / peak[key]}


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        return worker(sys.argv[2])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=None, help="epochs for both (default 10; --quick: 1)")
    ap.add_argument("--iw-samples", type=int, default=None,
                    help="K importance samples for the IWAE score (default 5000; --quick: 50)")
    ap.add_argument("--seed", type=int, default=0, help="training seed and evaluation seed (default 0)")
    ap.add_argument("--train-rows", type=int, default=None,
                    help="use the first N training rows (default all 60000; --quick: 5000)")
    ap.add_argument("--test-rows", type=int, default=None, help="use the first N test rows (default all 10000)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 5000 training rows, 1 epoch, K=50")
    ap.add_argument("--blas", default="system,openblas-serial",
                    help="comma list of PyTorch BLAS variants: system, openblas-serial, reference "
                         "(default system,openblas-serial)")
    ap.add_argument("--skip-latent", action="store_true", help="no binary: run the PyTorch part only")
    ap.add_argument("--skip-2ranks", action="store_true", help="do not run latent on 2 ranks")
    ap.add_argument("--skip-crosscheck", action="store_true",
                    help="do not score the PyTorch weights with latent and ours with PyTorch")
    ap.add_argument("--nice", type=int, default=None, help="run latent and the PyTorch workers under nice -n N")
    ap.add_argument("--matmul-precision", default="highest,medium",
                    help="latent runs on 1 rank, one per listed precision (highest: float32 products; medium: bfloat16 "
                         "operands, float32 sums); the first is the one cross-checked and run on 2 ranks")
    ap.add_argument("--no-torch-bf16", dest="torch_bf16", action="store_false",
                    help="skip the PyTorch run under bfloat16 autocast (the like-for-like reference of "
                         "--matmul-precision medium)")
    ap.add_argument("--results-name", default="vae_fashion", help="bench/results/NAME.json (default vae_fashion)")
    ap.add_argument("--micro-batch-rows", type=int, default=None,
                    help="latent's --micro-batch-rows for every latent fit (default: latent's own default)")
    ap.add_argument("--speed-rounds", type=int, default=0,
                    help="after the main runs, R interleaved timing-only rounds of PyTorch and latent; the speed "
                         "bar then uses the median of the rounds' ratios (default 0: the main runs' ratio)")
    ap.add_argument("--speed-epochs", type=int, default=2, help="epochs per speed-round run (default 2)")
    args = ap.parse_args()
    args.epochs = args.epochs or (QUICK["epochs"] if args.quick else 10)
    args.iw_samples = args.iw_samples or (QUICK["iw_samples"] if args.quick else 5000)
    args.train_rows = args.train_rows or (QUICK["train_rows"] if args.quick else None)
    args.blas = [b.strip() for b in args.blas.split(",") if b.strip()]
    if any(b not in BLAS_VARIANTS for b in args.blas):
        ap.error(f"--blas: comma list of {', '.join(BLAS_VARIANTS)}")

    load = common.warn_if_busy()
    runs = common.data_dir() / "runs" / "vae_fashion"
    runs.mkdir(parents=True, exist_ok=True)

    # ---- data: the same rows for both
    if args.skip_latent:
        dirs = {s: common.data_dir() / "fashion-mnist" / s for s in ("train", "test")}
        dirs = {s: (d if common.has_shards(d) else None) for s, d in dirs.items()}
    else:
        dirs = {s: common.import_fashion_mnist(s, nice=args.nice) for s in ("train", "test")}
    train_src = {"dir": str(dirs["train"]) if dirs["train"] else None, "split": "train", "rows": args.train_rows}
    test_src = {"dir": str(dirs["test"]) if dirs["test"] else None, "split": "test", "rows": args.test_rows}
    if not args.skip_latent:
        # latent reads a directory: make one with the first N rows when a subset is asked for
        train_dir = (subset_dir(dirs["train"], args.train_rows, f"train-first{args.train_rows}")
                     if args.train_rows else dirs["train"])
        test_dir = (subset_dir(dirs["test"], args.test_rows, f"test-first{args.test_rows}")
                    if args.test_rows else dirs["test"])
        train_src = {"dir": str(train_dir), "split": "train", "rows": None}
        test_src = {"dir": str(test_dir), "split": "test", "rows": None}

    # ---- PyTorch: train once per BLAS (timing + test ELBO), IWAE with the faster one
    tr = torch_runs(args, train_src, test_src, runs)
    faster = tr["faster"]
    fv = tr["variants"][faster]
    torch_weights = Path(fv["weights"])
    torch_sc = torch_eval(args, torch_weights, test_src, faster, runs)
    n_train, n_test = fv["train_rows"], torch_sc["test_rows"]

    ours = ours2 = None
    others = []
    cross = {}
    if not args.skip_latent:
        precisions = [x.strip() for x in args.matmul_precision.split(",") if x.strip()]
        others = []
        for i, prec in enumerate(precisions):
            run = fit_latent(args, Path(train_src["dir"]), 1, runs, prec)
            run["score"] = score_latent(args, Path(run["model"]), Path(test_src["dir"]), args.iw_samples)
            if i == 0:
                ours = run
            else:
                others.append(run)
        if not args.skip_2ranks:
            ours2 = fit_latent(args, Path(train_src["dir"]), 2, runs)
            # ELBO only matters here; a small K keeps it cheap
            ours2["score"] = score_latent(args, Path(ours2["model"]), Path(test_src["dir"]),
                                          min(args.iw_samples, 50))
        if not args.skip_crosscheck:
            conv = torch_weights_as_latent(Path(ours["model"]), torch_weights, runs / "vae_fashion_torch_as_latent.h5")
            lat_on_torch = score_latent(args, conv, Path(test_src["dir"]), args.iw_samples)
            torch_on_ours = torch_eval(args, Path(ours["model"]), test_src, faster, runs)
            cross = {
                "torch_weights": {"torch_evaluator": torch_sc, "latent_evaluator": lat_on_torch,
                                  "agreement": agreement(torch_sc, lat_on_torch), "model": str(conv)},
                "latent_weights": {"torch_evaluator": torch_on_ours, "latent_evaluator": ours["score"],
                                   "agreement": agreement(torch_on_ours, ours["score"])},
            }

    rounds = None
    if args.speed_rounds > 0 and not args.skip_latent:
        rounds = speed_rounds(args, train_src, test_src, runs, faster,
                              [x.strip() for x in args.matmul_precision.split(",") if x.strip()])

    # ---- table
    print()
    print(f"Fashion-MNIST VAE, L={LATENT_DIM}, hidden {','.join(map(str, HIDDEN))}, Bernoulli decoder, "
          f"batch {BATCH_SIZE}, Adam lr {LEARNING_RATE:g}, {args.epochs} epoch(s), train {n_train} / test {n_test} "
          f"rows, one thread per process; scores in nats per test row, IWAE K={args.iw_samples}")
    rows = []
    for blas, o in tr["variants"].items():
        is_f = blas == faster
        rows.append([f"PyTorch {torch_sc['torch_version']} ({blas} BLAS)" + (" *" if is_f and len(tr["variants"]) > 1 else ""),
                     short_lib(o["blas"]["sgemm_provider_realpath"]), fmt(o["median_epoch_seconds"], ".2f"),
                     fmt(o["train_objective"][-1]), fmt(o["elbo"]),
                     fmt(torch_sc["iwae_log_likelihood"]) if is_f else "-"])
    if tr["autocast_bf16"]:
        o = tr["autocast_bf16"]
        rows.append([f"PyTorch {torch_sc['torch_version']} ({faster} BLAS), bfloat16 autocast",
                     short_lib(o["blas"]["sgemm_provider_realpath"]), fmt(o["median_epoch_seconds"], ".2f"),
                     fmt(o["train_objective"][-1]), fmt(o["elbo"]), "-"])
    for o in ([ours] + (others if not args.skip_latent else []) + [ours2]):
        if o is None:
            continue
        rows.append([f"latent ({o['ranks']} rank{'s' if o['ranks'] > 1 else ''} x 1 thread, {o['matmul_precision']})", "-",
                     fmt(o["median_epoch_seconds"], ".2f"), fmt(o["train_objective"][-1] if o["train_objective"] else None),
                     fmt(o["score"].get("elbo")),
                     fmt(o["score"].get("iwae_log_likelihood"))
                     + ("" if o is ours else f" (K={o['score'].get('iw_samples')})")])
    common.print_table(rows, ["implementation", "sgemm_ from", "epoch s (median)", "train ELBO (last epoch)",
                              "test ELBO", "test IWAE"])
    for blas, why in tr["skipped"].items():
        print(f"(PyTorch '{blas}' BLAS not run: {why})")

    if cross:
        print()
        print("Evaluator cross-check (same weights, both evaluators; |latent - torch| <= "
              f"{AGREE_SIGMAS:g} x s.e. of the difference)")
        crow = []
        for wname, c in cross.items():
            for key, label in (("elbo", "ELBO"), ("iwae_log_likelihood", f"IWAE K={args.iw_samples}")):
                a = c["agreement"].get(key)
                if a is None:
                    crow.append([wname, label, "n/a", "n/a", "n/a", "n/a", "n/a"])
                    continue
                crow.append([wname, label, fmt(a["torch"]), fmt(a["latent"]), f"{a['difference']:+.3f}",
                             fmt(a["se_difference"], ".3f"), ("agree" if a["agree"] else "DISAGREE") + f" (z={a['z']:+.1f})"])
        common.print_table(crow, ["weights", "score", "torch evaluator", "latent evaluator", "difference",
                                  "s.e.", "verdict"])

    # ---- bars
    result = {"benchmark": "vae_fashion", "load_average_at_start": load,
              "config": {"latent_dim": LATENT_DIM, "hidden": list(HIDDEN), "activation": "relu",
                         "likelihood": "bernoulli", "batch_size": BATCH_SIZE, "learning_rate": LEARNING_RATE,
                         "beta1": BETA1, "beta2": BETA2, "adam_epsilon": ADAM_EPS, "epochs": args.epochs,
                         "seed": args.seed, "iw_samples": args.iw_samples, "train_rows": n_train,
                         "test_rows": n_test, "quick": args.quick, "skip_latent": args.skip_latent,
                         "blas_variants": args.blas, "nice": args.nice, "micro_batch_rows": args.micro_batch_rows,
                         "speed_rounds": args.speed_rounds, "speed_epochs": args.speed_epochs},
              "torch": {"variants": tr["variants"], "skipped": tr["skipped"], "faster": faster,
                        "autocast_bf16": tr["autocast_bf16"], "test_scores": torch_sc},
              "latent": ours, "latent_other_precisions": [] if args.skip_latent else others,
              "latent_2ranks": ours2, "crosscheck": cross, "speed_rounds": rounds,
              "targets": {"elbo_tolerance_nats": ELBO_TOLERANCE, "speedup": TARGET_SPEEDUP,
                          "agree_sigmas": AGREE_SIGMAS},
              "criterion": "latent test ELBO >= PyTorch test ELBO - 1 nat, and PyTorch (faster BLAS) median "
                           "epoch seconds / latent median epoch seconds >= 2, one core each; both evaluators "
                           "agree within Monte-Carlo error on both sets of weights"}
    ok = None
    print()
    if ours is not None:
        t_elbo, o_elbo = fv["elbo"], ours["score"].get("elbo")
        # With speed rounds, every ratio is the median over the rounds (the main runs' are printed in the table).
        def ratio(key: str, ref: float, o: dict):
            if rounds:
                return rounds["ratios"][key]["median"]
            return ref / o["median_epoch_seconds"] if o["median_epoch_seconds"] else None
        if rounds:
            print(f"speed rounds: {len(rounds['rounds'])} x {rounds['epochs']} epoch(s), order reversed every other "
                  f"round; ratio = reference / latent median epoch seconds")
            for key, sp_ in rounds["ratios"].items():
                ref = "PyTorch bfloat16 autocast" if key == "medium_vs_torch_bf16" else "PyTorch float32"
                prec = "medium" if key == "medium_vs_torch_bf16" else key
                print(f"    {prec:8s} vs {ref:26s} median {sp_['median']:.2f}x (min {sp_['min']:.2f}, max {sp_['max']:.2f}): "
                      + ", ".join(f"{v:.2f}" for v in sp_["values"]))
        speedup = ratio(ours["matmul_precision"], fv["median_epoch_seconds"], ours)
        quality_ok = o_elbo is not None and o_elbo >= t_elbo - ELBO_TOLERANCE
        speed_ok = speedup is not None and speedup >= TARGET_SPEEDUP
        agree = [a["agree"] for c in cross.values() for a in c["agreement"].values() if a is not None]
        agree_ok = all(agree) if agree else None
        scaling = (ours["median_epoch_seconds"] / ours2["median_epoch_seconds"]
                   if ours2 and ours2["median_epoch_seconds"] else None)
        ok = quality_ok and speed_ok and agree_ok is not False
        result.update(speedup=speedup, speed_pass=speed_ok, quality_pass=quality_ok,
                      elbo_difference=None if o_elbo is None else o_elbo - t_elbo,
                      evaluators_agree=agree_ok, scaling_2ranks=scaling, **{"pass": ok})
        how = (f"median of {len(rounds['rounds'])} speed rounds" if rounds else
               f"PyTorch ({faster} BLAS) {fv['median_epoch_seconds']:.2f} s / latent "
               f"{ours['median_epoch_seconds']:.2f} s per epoch")
        print(f"speed:   {how} = {fmt(speedup, '.2f')}x (bar >= {TARGET_SPEEDUP:g}x): {'ok' if speed_ok else 'LOW'}")
        print(f"quality: latent test ELBO {fmt(o_elbo)} vs PyTorch {fmt(t_elbo)} "
              f"(bar >= PyTorch - {ELBO_TOLERANCE:g}): {'ok' if quality_ok else 'WORSE'}")
        if agree_ok is not None:
            print(f"evaluators: {'agree' if agree_ok else 'DISAGREE'} within {AGREE_SIGMAS:g} s.e.")
        if scaling is not None:
            print(f"scaling: 1-rank / 2-rank epoch seconds = {scaling:.2f}x")
        per_precision = {}
        for o in [ours] + others:
            sp = ratio(o["matmul_precision"], fv["median_epoch_seconds"], o)
            el = o["score"].get("elbo")
            q = el is not None and el >= t_elbo - ELBO_TOLERANCE
            per_precision[o["matmul_precision"]] = {"speedup": sp, "elbo": el, "elbo_difference": None if el is None else el - t_elbo,
                                                    "speed_pass": sp is not None and sp >= TARGET_SPEEDUP, "quality_pass": q}
            print(f"--matmul-precision {o['matmul_precision']}: {o['median_epoch_seconds']:.2f} s per epoch; "
                  f"{fmt(sp, '.2f')}x PyTorch float32{' (rounds median)' if rounds else ''} (bar >= {TARGET_SPEEDUP:g}x: {'ok' if sp and sp >= TARGET_SPEEDUP else 'LOW'}); "
                  f"test ELBO {fmt(el)} ({'ok' if q else 'WORSE'})")
            # Of the measured peak: the speed rounds' median epoch when there are rounds.
            secs = (common.median([rd["epoch_seconds"][f"latent_{o['matmul_precision']}"] for rd in rounds["rounds"]])
                    if rounds else o["median_epoch_seconds"])
            share = peak_share(o["matmul_precision"], secs, n_train, (o.get("attrs") or {}).get("kernel_variant"))
            per_precision[o["matmul_precision"]]["peak"] = share
            if share:
                print(f"    {share['epoch_gflop']:.1f} GFLOP per epoch in {secs:.2f} s: {share['gflops']:.0f} GFLOP/s, "
                      f"{100 * share['fraction_of_peak']:.0f} % of the measured {share['peak_key']} peak "
                      f"({share['peak_gflops']:.0f} GFLOP/s, one core)")
            ac = tr["autocast_bf16"]
            if ac and o["matmul_precision"] == "medium" and o["median_epoch_seconds"]:
                sp_bf = ratio("medium_vs_torch_bf16", ac["median_epoch_seconds"], o)
                q_bf = el is not None and el >= ac["elbo"] - ELBO_TOLERANCE
                per_precision[o["matmul_precision"]].update(speedup_vs_torch_bf16=sp_bf, torch_bf16_elbo=ac["elbo"],
                                                            speed_pass_vs_torch_bf16=sp_bf >= TARGET_SPEEDUP,
                                                            quality_pass_vs_torch_bf16=q_bf)
                print(f"    like for like: PyTorch bfloat16 autocast {ac['median_epoch_seconds']:.2f} s per epoch, test ELBO "
                      f"{fmt(ac['elbo'])}: {sp_bf:.2f}x (bar >= {TARGET_SPEEDUP:g}x: {'ok' if sp_bf >= TARGET_SPEEDUP else 'LOW'}); "
                      f"ELBO {'ok' if q_bf else 'WORSE'}")
        result["per_precision"] = per_precision
        if args.quick or args.train_rows or args.test_rows:
            print("NOTE: subset / quick run; this is not the bar.")
        print(f"{'PASS' if ok else 'FAIL'}: ratio {fmt(speedup, '.2f')}x PyTorch epoch time "
              f"(bar >= {TARGET_SPEEDUP:g}x), test ELBO {fmt(o_elbo)} vs {fmt(t_elbo)} (bar >= {t_elbo - ELBO_TOLERANCE:.3f})")
    else:
        print(f"PyTorch only (--skip-latent): faster BLAS '{faster}', {fv['median_epoch_seconds']:.2f} s per epoch, "
              f"test ELBO {fmt(fv['elbo'])}, IWAE(K={args.iw_samples}) {fmt(torch_sc['iwae_log_likelihood'])}")
    common.write_results(args.results_name, result)
    return 0 if ok in (True, None) else 1


if __name__ == "__main__":
    sys.exit(main())
