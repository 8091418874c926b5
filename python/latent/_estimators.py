"""The estimators of the package latent (docs/PYTHON.md).

Every estimator keeps the model file its fit wrote (``_model_file``, bytes): ``save``
writes it, pickling carries it, and the fitted attributes are read from it, so an
estimator, its pickle, its saved file and ``latent fit``'s file hold the same numbers.
"""
import json
import numbers
import os
import tempfile
import warnings

import numpy as np
import scipy.sparse as sp
from scipy.special import digamma
from sklearn.base import BaseEstimator, ClusterMixin, DensityMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from . import _core


def _seed(random_state):
    """The engine's 64-bit seed from scikit-learn's random_state (None: 0)."""
    if random_state is None:
        return 0
    if isinstance(random_state, numbers.Integral):
        if random_state < 0:
            raise ValueError(f"random_state must be >= 0 (got {random_state})")
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    raise ValueError(f"random_state must be None, an int or a RandomState (got {random_state!r})")


def _write_atomically(path, data, overwrite):
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path}: exists (pass overwrite=True to replace it)")
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".latent-", suffix=".h5", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class _LatentEstimator(BaseEstimator):
    """Shared machinery: fit through the registry, the model file, pickling."""

    _model = None          # the registry's model name (`latent fit NAME`)
    _datasets = ()         # the model file's datasets the attributes come from

    # -- fitting ----------------------------------------------------------------------
    def _engine_options(self):
        return dict(**self._runtime(),
                    memory_budget_gib=self.memory_budget_gib or 0.0)

    def _run_fit(self, data, options, vocabulary=()):
        with tempfile.TemporaryDirectory(prefix="latent-") as tmp:
            path = os.path.join(tmp, "model.h5")
            info = _core.fit(self._model, options, data, path, seed=_seed(self.random_state),
                             vocabulary=list(vocabulary), verbose=bool(self.verbose), **self._engine_options())
            with open(path, "rb") as f:
                self._model_file = f.read()
            self._read_model(path)
        if getattr(self, "_warns_unconverged", False) and not info["converged"]:
            warnings.warn(f"{type(self).__name__} did not converge in {info['n_iter']} iterations (tol={self.tol}); "
                          "raise max_iter or tol", ConvergenceWarning)
        return info

    def _runtime(self):
        """The engine's per-call options: oneTBB threads (0: all cores) and block rows."""
        return dict(threads=self.n_threads or 0, block_rows=self.block_rows)

    def _fit_directory(self, X, options):
        """Fits on the shard directory X if X is a path (returns True), else returns False."""
        if isinstance(X, (str, os.PathLike)):
            self._run_fit(os.fspath(X), options)
            return True
        return False

    def _checked(self, X):
        """X (dense rows) validated against the fitted estimator: float64, C order, its D."""
        check_is_fitted(self, "_model_file")
        return _dense(self, X, reset=False)

    def _predict(self, X, proba=False):
        """The engine's (scores, labels, responsibilities if proba) of dense rows X."""
        return self._engine().predict(self._checked(X), proba=proba, **self._runtime())

    def _copy_to(self, sk, names):
        """Sets the scikit-learn object `sk`'s attributes `names` to ours (arrays copied);
        returns sk. Raises NotFittedError if this estimator is not fitted."""
        check_is_fitted(self, "_model_file")
        for name in names:
            value = getattr(self, name)
            setattr(sk, name, value.copy() if isinstance(value, np.ndarray) else value)
        return sk

    # -- the model file ---------------------------------------------------------------
    def _read_model(self, path):
        """Sets the fitted attributes from the model file at `path`."""
        self._attrs = _core.read_attributes(path, text=["model", "config", "covariance_type", "data"],
                                            reals=["lower_bound", "inertia", "reg_covar"],
                                            ints=["n_iter", "converged", "n_features_in", "n_components",
                                                  "n_samples_seen", "vocab_size", "n_topics"])
        if self._attrs.get("model") != self._model:
            raise ValueError(f"{path}: a {self._attrs.get('model')!r} model file, not {self._model!r}")
        self._arrays = _core.read_datasets(path, list(self._datasets))
        self._set_attributes(path)
        # Loaded now, so predicting never changes the estimator's __dict__.
        self._engine_cache = self._load_engine(path)

    def _set_attributes(self, path):
        raise NotImplementedError

    def _engine(self):
        """The engine's loaded model (read from the model file when fitted or unpickled)."""
        return self._engine_cache

    def _load_engine(self, path):
        return _core.Model(path)

    def save(self, path, overwrite=False):
        """Writes the model file (the file `latent fit` writes; `latent score|predict|info`
        read it) atomically. Raises FileExistsError if `path` exists and not `overwrite`."""
        check_is_fitted(self, "_model_file")
        _write_atomically(path, self._model_file, overwrite)

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_engine_cache", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._engine_cache = None
        if "_model_file" in state:
            with tempfile.TemporaryDirectory(prefix="latent-") as tmp:
                path = os.path.join(tmp, "model.h5")
                with open(path, "wb") as f:
                    f.write(self._model_file)
                self._engine_cache = self._load_engine(path)

    def _more_tags(self):
        return {"non_deterministic": False}


def _dense(est, X, reset):
    return est._validate_data(X, reset=reset, dtype=np.float64, order="C", accept_sparse=False)


class _DenseMixture(DensityMixin, _LatentEstimator):
    """Methods of the dense mixtures (gmm, bgmm, bmm) through the engine's FittedModel."""
    _warns_unconverged = True  # ConvergenceWarning as scikit-learn's mixtures

    def fit(self, X, y=None):
        """Fits on X (array (N, D); or a dense shard directory, streamed). Returns self."""
        if self._fit_directory(X, self._options()):
            return self
        X = _dense(self, X, reset=True)
        if X.shape[0] < self.n_components:
            raise ValueError(f"Expected n_samples >= n_components but got n_components = {self.n_components}, "
                             f"n_samples = {X.shape[0]}")
        self._run_fit(X, self._options())
        return self

    def score_samples(self, X):
        """Log-likelihood of each row (N), nats."""
        return self._predict(X, False)[0]

    def score(self, X, y=None):
        """Mean log-likelihood per row, nats."""
        return float(np.mean(self.score_samples(X)))

    def predict(self, X):
        """Most probable component of each row (N)."""
        return self._predict(X, False)[1]

    def predict_proba(self, X):
        """Responsibilities (N, K), rows summing to 1."""
        return self._predict(X, True)[2]

    def fit_predict(self, X, y=None):
        return self.fit(X).predict(X)

    def sample(self, n_samples=1):
        """(X (n_samples, D), labels (n_samples)): draws keyed by random_state (`latent sample`)."""
        check_is_fitted(self, "_model_file")
        if n_samples < 1:
            raise ValueError(f"Invalid value for 'n_samples': {n_samples}. The sampling requires at least one sample.")
        return self._engine().sample(int(n_samples), _seed(self.random_state))

    def _n_parameters(self):
        return self._engine().n_parameters

    def bic(self, X):
        """Bayesian information criterion on X (lower is better)."""
        n = np.asarray(X).shape[0]
        return -2 * self.score(X) * n + self._n_parameters() * np.log(n)

    def aic(self, X):
        """Akaike information criterion on X (lower is better)."""
        n = np.asarray(X).shape[0]
        return -2 * self.score(X) * n + 2 * self._n_parameters()

    def _set_gaussian_attributes(self):
        a = self._arrays
        self.weights_ = a["weights"]
        self.means_ = a["means"]
        self.covariances_ = a["covariances"]
        self.precisions_cholesky_ = a["precisions_cholesky"]
        u = self.precisions_cholesky_
        ct = self._attrs["covariance_type"]
        if ct == "full":
            self.precisions_ = np.einsum("kij,klj->kil", u, u)
        elif ct == "tied":
            self.precisions_ = u @ u.T
        else:
            self.precisions_ = u ** 2
        self.converged_ = bool(self._attrs["converged"])
        self.n_iter_ = int(self._attrs["n_iter"])
        self.lower_bound_ = float(self._attrs["lower_bound"])
        self.n_features_in_ = int(self.means_.shape[1])


class GaussianMixture(_DenseMixture):
    """Gaussian mixture by EM (`latent fit gmm`), scikit-learn's GaussianMixture.

    Parameters are scikit-learn's (n_components, covariance_type, tol, reg_covar,
    max_iter, n_init, init_params, random_state, verbose) plus the engine's n_threads
    (oneTBB threads; None: all cores), block_rows (rows per block: results depend on it,
    never on the thread count), memory_budget_gib and matmul_precision ("high", the
    default: diag, spherical and full EM iterations with float32 products and double
    sums, the lower bound within about 1e-7 relative of "highest", double throughout). ``fit(X)`` takes an array
    (n_samples, n_features) or a shard directory (str). Fitted: weights_ (K),
    means_ (K, D), covariances_ and precisions_cholesky_ (scikit-learn's shapes),
    precisions_, converged_, n_iter_, lower_bound_ (mean log-likelihood, nats/sample).
    Raises ValueError for bad options or data, FloatingPointError for a numerical failure.
    """
    _model = "gmm"
    _datasets = ("weights", "means", "covariances", "precisions_cholesky")

    def __init__(self, n_components=1, *, covariance_type="full", tol=1e-3, reg_covar=1e-6, max_iter=100,
                 n_init=1, init_params="kmeans", random_state=None, verbose=0, n_threads=None, block_rows=2048,
                 memory_budget_gib=None, matmul_precision="high"):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.matmul_precision = matmul_precision
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.random_state = random_state
        self.verbose = verbose
        self.n_threads = n_threads
        self.block_rows = block_rows
        self.memory_budget_gib = memory_budget_gib

    def _options(self):
        return {"n-components": int(self.n_components), "covariance-type": str(self.covariance_type),
                "tol": float(self.tol), "reg-covar": float(self.reg_covar), "max-iter": int(self.max_iter),
                "n-init": int(self.n_init), "init-params": str(self.init_params),
                "matmul-precision": str(self.matmul_precision)}

    def _set_attributes(self, path):
        self._set_gaussian_attributes()

    def to_sklearn(self):
        """A fitted sklearn.mixture.GaussianMixture with these parameters."""
        from sklearn.mixture import GaussianMixture as SkGaussianMixture
        check_is_fitted(self, "_model_file")
        sk = SkGaussianMixture(n_components=self.n_components, covariance_type=self.covariance_type, tol=self.tol,
                               reg_covar=self.reg_covar, max_iter=self.max_iter, n_init=self.n_init,
                               init_params=self.init_params, random_state=self.random_state)
        self._copy_to(sk, ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_", "converged_",
                           "n_iter_", "lower_bound_", "n_features_in_"))
        return sk


class BayesianGaussianMixture(_DenseMixture):
    """Variational Bayesian Gaussian mixture (`latent fit bgmm`), scikit-learn's
    BayesianGaussianMixture: mean-field VB (Bishop PRML §10.2) with a Dirichlet-process
    (stick-breaking) or Dirichlet-distribution prior on the weights.

    Parameters are scikit-learn's; the priors None take scikit-learn's defaults
    (weight_concentration_prior 1/K, mean_precision_prior 1, degrees_of_freedom_prior D);
    mean_prior and covariance_prior must be None (the engine uses the data's mean and
    covariance, as scikit-learn's defaults). Fitted: the plug-in mixture weights_, means_,
    covariances_, precisions_cholesky_, precisions_ (what predict, predict_proba and
    score_samples use), weight_concentration_ (DP: a pair of K arrays; else K),
    mean_precision_ (K), degrees_of_freedom_ (K), converged_, n_iter_, lower_bound_
    (scikit-learn's bound divided by N).
    """
    _model = "bgmm"
    _datasets = ("weights", "means", "covariances", "precisions_cholesky", "weight_concentration", "mean_precision",
                 "degrees_of_freedom")

    def __init__(self, *, n_components=1, covariance_type="full", tol=1e-3, reg_covar=1e-6, max_iter=100, n_init=1,
                 init_params="kmeans", weight_concentration_prior_type="dirichlet_process",
                 weight_concentration_prior=None, mean_precision_prior=None, mean_prior=None,
                 degrees_of_freedom_prior=None, covariance_prior=None, random_state=None, verbose=0, n_threads=None,
                 block_rows=2048, memory_budget_gib=None):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.verbose = verbose
        self.n_threads = n_threads
        self.block_rows = block_rows
        self.memory_budget_gib = memory_budget_gib

    def _options(self):
        if self.mean_prior is not None or self.covariance_prior is not None:
            raise ValueError("mean_prior and covariance_prior are not supported (None: the data's mean and covariance)")
        o = {"n-components": int(self.n_components), "covariance-type": str(self.covariance_type),
             "tol": float(self.tol), "reg-covar": float(self.reg_covar), "max-iter": int(self.max_iter),
             "n-init": int(self.n_init), "init-params": str(self.init_params),
             "weight-concentration-prior-type": str(self.weight_concentration_prior_type)}
        for name in ("weight_concentration_prior", "mean_precision_prior", "degrees_of_freedom_prior"):
            value = getattr(self, name)
            if value is not None:
                o[name.replace("_", "-")] = float(value)
        return o

    def _set_attributes(self, path):
        self._set_gaussian_attributes()
        wc = self._arrays["weight_concentration"]
        self.weight_concentration_ = (wc[0], wc[1]) if wc.shape[0] == 2 else wc[0]
        self.mean_precision_ = self._arrays["mean_precision"]
        self.degrees_of_freedom_ = self._arrays["degrees_of_freedom"]
        self._n_samples_seen = int(self._attrs.get("n_samples_seen", 0))

    def to_sklearn(self):
        """A fitted sklearn.mixture.BayesianGaussianMixture holding this variational
        posterior (weight_concentration_, mean_precision_, means_, degrees_of_freedom_,
        covariances_ and precisions_cholesky_; lower_bound_ times N, scikit-learn's scale).
        Its predict_proba and score_samples are scikit-learn's: they use E_q[log π_k] and
        the expected log-determinant of each precision (ψ terms and D/β_k), while ours (and
        `latent predict|score`) use the plug-in mixture; per component the weighted
        log-densities differ by a constant of the posterior, so they agree closely on
        separated data (0.01 in predict_proba, 0.14 nats in score_samples in the tests)
        but not to 1e-10 (docs/PYTHON.md "Agreement with scikit-learn")."""
        from sklearn.mixture import BayesianGaussianMixture as SkBGMM
        check_is_fitted(self, "_model_file")
        sk = SkBGMM(n_components=self.n_components, covariance_type=self.covariance_type, tol=self.tol,
                    reg_covar=self.reg_covar, max_iter=self.max_iter, n_init=self.n_init,
                    init_params=self.init_params,
                    weight_concentration_prior_type=self.weight_concentration_prior_type,
                    weight_concentration_prior=self.weight_concentration_prior,
                    mean_precision_prior=self.mean_precision_prior,
                    degrees_of_freedom_prior=self.degrees_of_freedom_prior, random_state=self.random_state)
        self._copy_to(sk, ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_", "converged_",
                           "n_iter_", "n_features_in_", "weight_concentration_", "mean_precision_",
                           "degrees_of_freedom_"))
        sk.lower_bound_ = self.lower_bound_ * self._n_samples_seen
        return sk


class BernoulliMixture(_DenseMixture):
    """Bernoulli mixture by EM for binary (or [0, 1]) data (`latent fit bmm`; PRML §9.3.3),
    MAP with additive smoothing alpha; no scikit-learn counterpart.

    Fitted: weights_ (K), means_ (K, D: Bernoulli means), converged_, n_iter_,
    lower_bound_ (mean log posterior, nats/sample).
    """
    _model = "bmm"
    _datasets = ("weights", "means")

    def __init__(self, n_components=2, *, alpha=1.0, weight_alpha=0.0, tol=1e-3, max_iter=100, n_init=1,
                 init_params="kmeans", random_state=None, verbose=0, n_threads=None, block_rows=2048,
                 memory_budget_gib=None):
        self.n_components = n_components
        self.alpha = alpha
        self.weight_alpha = weight_alpha
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.random_state = random_state
        self.verbose = verbose
        self.n_threads = n_threads
        self.block_rows = block_rows
        self.memory_budget_gib = memory_budget_gib

    def _options(self):
        return {"n-components": int(self.n_components), "alpha": float(self.alpha),
                "weight-alpha": float(self.weight_alpha), "tol": float(self.tol), "max-iter": int(self.max_iter),
                "n-init": int(self.n_init), "init-params": str(self.init_params)}

    def _set_attributes(self, path):
        self.weights_ = self._arrays["weights"]
        self.means_ = self._arrays["means"]
        self.converged_ = bool(self._attrs["converged"])
        self.n_iter_ = int(self._attrs["n_iter"])
        self.lower_bound_ = float(self._attrs["lower_bound"])
        self.n_features_in_ = int(self.means_.shape[1])


class MixtureOfFactorAnalysers(_DenseMixture):
    """Mixture of factor analysers by EM (`latent fit mfa`; Ghahramani & Hinton 1996;
    McLachlan & Peel 2000 ch. 8): component k is N(means_[k], W_kᵀW_k + Ψ_k), with diagonal
    (noise="diag") or isotropic (noise="isotropic": mixture of PPCA) noise; no scikit-learn
    counterpart.

    Fitted: weights_ (K), means_ (K, D), components_ (K, L, D), noise_variance_ (K, D;
    isotropic: every entry of a row σ²_k), converged_, n_iter_, lower_bound_ (mean
    log-likelihood, nats/sample). The methods of GaussianMixture; transform gives the
    responsibilities (N, K). matmul_precision "high" (the default) runs the E-step's products
    in float32 with the statistics summed in double (the lower bound agrees with "highest",
    double throughout, to about 1e-7 relative; `latent fit mfa --matmul-precision`).
    """
    _model = "mfa"
    _datasets = ("weights", "means", "components", "noise_variance")

    def __init__(self, n_components=1, *, n_factors=2, noise="diag", reg_covar=1e-6, noise_variance_floor=1e-12,
                 tol=1e-3, max_iter=100, n_init=1, init_params="kmeans", random_state=None, verbose=0,
                 n_threads=None, block_rows=2048, memory_budget_gib=None, matmul_precision="high"):
        self.n_components = n_components
        self.n_factors = n_factors
        self.matmul_precision = matmul_precision
        self.noise = noise
        self.reg_covar = reg_covar
        self.noise_variance_floor = noise_variance_floor
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.random_state = random_state
        self.verbose = verbose
        self.n_threads = n_threads
        self.block_rows = block_rows
        self.memory_budget_gib = memory_budget_gib

    def _options(self):
        return {"n-components": int(self.n_components), "n-factors": int(self.n_factors), "noise": str(self.noise),
                "reg-covar": float(self.reg_covar), "noise-variance-floor": float(self.noise_variance_floor),
                "tol": float(self.tol), "max-iter": int(self.max_iter), "n-init": int(self.n_init),
                "init-params": str(self.init_params), "matmul-precision": str(self.matmul_precision)}

    def _set_attributes(self, path):
        a = self._arrays
        self.weights_ = a["weights"]
        self.means_ = a["means"]
        self.components_ = a["components"]
        nv = a["noise_variance"]
        self.noise_variance_ = np.repeat(nv[:, None], self.means_.shape[1], axis=1) if nv.ndim == 1 else nv
        self.converged_ = bool(self._attrs["converged"])
        self.n_iter_ = int(self._attrs["n_iter"])
        self.lower_bound_ = float(self._attrs["lower_bound"])
        self.n_features_in_ = int(self.means_.shape[1])

    def transform(self, X):
        """Responsibilities (N, K)."""
        return self.predict_proba(X)


class KMeans(ClusterMixin, TransformerMixin, _LatentEstimator):
    """k-means, Lloyd's algorithm with k-means|| seeding (`latent fit kmeans`),
    scikit-learn's KMeans.

    Parameters are scikit-learn's (n_clusters, init: "k-means||" | "k-means++" |
    "random", n_init, max_iter, tol, random_state, verbose, algorithm: "elkan" (default:
    per-row distance bounds skip work, 8 + 4 K bytes a row) | "lloyd" (no per-row state);
    the same fit either way) plus n_threads, block_rows and memory_budget_gib. Fitted: cluster_centers_ (K, D), labels_ (N; on an array),
    inertia_ (sum of squared distances), n_iter_. transform gives the distances to the
    centres (N, K); score is minus the sum of squared distances to the nearest centre.
    """
    _model = "kmeans"
    _datasets = ("cluster_centers",)

    def __init__(self, n_clusters=8, *, init="k-means||", n_init=1, max_iter=300, tol=1e-4, random_state=None,
                 verbose=0, algorithm="elkan", n_threads=None, block_rows=2048, memory_budget_gib=None):
        self.n_clusters = n_clusters
        self.algorithm = algorithm
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.n_threads = n_threads
        self.block_rows = block_rows
        self.memory_budget_gib = memory_budget_gib

    def _options(self):
        return {"n-clusters": int(self.n_clusters), "init": str(self.init), "n-init": int(self.n_init),
                "max-iter": int(self.max_iter), "tol": float(self.tol), "algorithm": str(self.algorithm)}

    def fit(self, X, y=None, sample_weight=None):
        """Fits on X (array (N, D); or a dense shard directory). Returns self.
        sample_weight is not supported (ValueError unless None)."""
        if sample_weight is not None:
            raise ValueError("sample_weight is not supported by latent's KMeans")
        if self._fit_directory(X, self._options()):
            return self
        X = _dense(self, X, reset=True)
        if X.shape[0] < self.n_clusters:
            raise ValueError(f"n_samples={X.shape[0]} should be >= n_clusters={self.n_clusters}.")
        self._run_fit(X, self._options())
        self.labels_ = self.predict(X)
        return self

    def _set_attributes(self, path):
        self.cluster_centers_ = self._arrays["cluster_centers"]
        self.inertia_ = float(self._attrs["inertia"])
        self.n_iter_ = int(self._attrs["n_iter"])
        self.n_features_in_ = int(self.cluster_centers_.shape[1])
        self._n_features_out = self.cluster_centers_.shape[0]

    def predict(self, X, sample_weight=None):
        """The nearest centre of each row (N)."""
        return self._predict(X)[1]

    def score(self, X, y=None, sample_weight=None):
        """Minus the sum of squared distances to the nearest centres (scikit-learn's score)."""
        return float(np.sum(self._predict(X)[0]))

    def transform(self, X):
        """Euclidean distances to every centre (N, K)."""
        X = self._checked(X)
        c = self.cluster_centers_
        d2 = (X * X).sum(1)[:, None] - 2 * X @ c.T + (c * c).sum(1)[None, :]
        return np.sqrt(np.maximum(d2, 0))

    def fit_transform(self, X, y=None, sample_weight=None):
        return self.fit(X, sample_weight=sample_weight).transform(X)

    def to_sklearn(self):
        """A fitted sklearn.cluster.KMeans with these centres."""
        from sklearn.cluster import KMeans as SkKMeans
        check_is_fitted(self, "_model_file")
        init = "random" if self.init == "random" else "k-means++"
        sk = SkKMeans(n_clusters=self.n_clusters, init=init, n_init=self.n_init, max_iter=self.max_iter, tol=self.tol,
                      random_state=self.random_state)
        self._copy_to(sk, ("cluster_centers_", "inertia_", "n_iter_", "n_features_in_", "_n_features_out")
                      + (("labels_",) if hasattr(self, "labels_") else ()))
        sk._n_threads = 1
        return sk


class _FactorModel(DensityMixin, TransformerMixin, _LatentEstimator):
    """Factor analysis and PPCA (`latent fit fa|ppca`): EM (Tipping & Bishop 1999;
    Ghahramani & Hinton 1996), parameter-expanded. matmul_precision "high" (the default)
    computes the covariance solver's scatter matrix with float32 products and double sums
    (the lower bound within about 1e-7 relative of "highest", double throughout)."""
    _datasets = ("components", "mean", "noise_variance")
    _warns_unconverged = True

    def __init__(self, n_components=None, *, tol=1e-6, max_iter=1000, solver="auto", noise_variance_floor=1e-12,
                 random_state=None, verbose=0, n_threads=None, block_rows=2048, memory_budget_gib=None,
                 matmul_precision="high"):
        self.n_components = n_components
        self.tol = tol
        self.max_iter = max_iter
        self.solver = solver
        self.noise_variance_floor = noise_variance_floor
        self.matmul_precision = matmul_precision
        self.random_state = random_state
        self.verbose = verbose
        self.n_threads = n_threads
        self.block_rows = block_rows
        self.memory_budget_gib = memory_budget_gib

    def _options(self, n_features):
        n = self.n_components if self.n_components is not None else n_features - 1
        return {"n-components": int(n), "tol": float(self.tol), "max-iter": int(self.max_iter),
                "solver": str(self.solver), "noise-variance-floor": float(self.noise_variance_floor),
                "matmul-precision": str(self.matmul_precision)}

    def fit(self, X, y=None):
        """Fits on X (array (N, D), D >= 2; or a dense shard directory). n_components None:
        D − 1 (the largest latent dimension the model allows). Returns self."""
        if isinstance(X, (str, os.PathLike)):
            if self.n_components is None:
                raise ValueError("n_components must be given to fit a shard directory")
            self._run_fit(os.fspath(X), self._options(0))
            return self
        X = self._validate_data(X, reset=True, dtype=np.float64, order="C", ensure_min_features=2,
                                ensure_min_samples=2)
        self._run_fit(X, self._options(X.shape[1]))
        return self

    def _set_attributes(self, path):
        self.components_ = self._arrays["components"]
        self.mean_ = self._arrays["mean"]
        nv = self._arrays["noise_variance"]
        self.noise_variance_ = np.full(self.mean_.shape[0], nv[0]) if nv.shape[0] == 1 else nv
        self.n_iter_ = int(self._attrs["n_iter"])
        self.converged_ = bool(self._attrs["converged"])
        self.lower_bound_ = float(self._attrs["lower_bound"])
        self.n_features_in_ = int(self.mean_.shape[0])
        self._n_features_out = int(self.components_.shape[0])

    def transform(self, X):
        """Posterior means E[z | x] (N, L)."""
        return self._engine().transform(self._checked(X), **self._runtime())

    def score_samples(self, X):
        """Log-likelihood of each row under N(mean_, WᵀW + Ψ) (N), nats."""
        return self._predict(X)[0]

    def score(self, X, y=None):
        """Mean log-likelihood per row, nats."""
        return float(np.mean(self.score_samples(X)))

    def get_covariance(self):
        """The model covariance WᵀW + Ψ (D, D)."""
        check_is_fitted(self, "_model_file")
        return self.components_.T @ self.components_ + np.diag(self.noise_variance_)

    def get_precision(self):
        """The inverse of get_covariance() (D, D)."""
        return np.linalg.inv(self.get_covariance())

    def sample(self, n_samples=1):
        """Draws (n_samples, D) keyed by random_state (`latent sample`)."""
        check_is_fitted(self, "_model_file")
        return self._engine().sample(int(n_samples), _seed(self.random_state))[0]


class FactorAnalysis(_FactorModel):
    """Factor analysis (`latent fit fa`), scikit-learn's FactorAnalysis: x = Wᵀz + mean + ε,
    ε ~ N(0, diag(Ψ)). Fitted: components_ (L, D), mean_ (D), noise_variance_ (D: Ψ),
    n_iter_, lower_bound_ (mean log-likelihood, nats/sample). tol is on the mean
    log-likelihood per sample (scikit-learn's on the total)."""
    _model = "fa"

    def to_sklearn(self):
        """A fitted sklearn.decomposition.FactorAnalysis with these parameters."""
        from sklearn.decomposition import FactorAnalysis as SkFactorAnalysis
        check_is_fitted(self, "_model_file")
        sk = SkFactorAnalysis(n_components=self.components_.shape[0], max_iter=self.max_iter)
        return self._copy_to(sk, ("components_", "mean_", "noise_variance_", "n_iter_", "n_features_in_"))


class PPCA(_FactorModel):
    """Probabilistic PCA (`latent fit ppca`; Tipping & Bishop 1999): factor analysis with
    isotropic noise σ². Fitted: components_ (L, D), mean_ (D), noise_variance_ (D, every
    entry σ²), n_iter_, lower_bound_."""
    _model = "ppca"


def _csr(X, n_features=None):
    """(indptr int64, indices int64, counts float64, n_features) of a document-term matrix."""
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float64, copy=True)
    else:
        X = sp.csr_matrix(np.asarray(X, dtype=np.float64))
    X.sum_duplicates()
    X.eliminate_zeros()
    X.sort_indices()
    if X.data.size and (X.data.min() < 0):
        raise ValueError("Negative values in data passed to LatentDirichletAllocation (counts must be >= 0)")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"X has {X.shape[1]} features, but LatentDirichletAllocation is expecting "
                         f"{n_features} features as input")
    return (np.ascontiguousarray(X.indptr, dtype=np.int64), np.ascontiguousarray(X.indices, dtype=np.int64),
            np.ascontiguousarray(X.data, dtype=np.float64), X.shape[1])


class LatentDirichletAllocation(TransformerMixin, _LatentEstimator):
    """Latent Dirichlet allocation (`latent fit lda`), scikit-learn's
    LatentDirichletAllocation: variational EM (learning_method "batch"), stochastic
    variational inference ("online"), or collapsed Gibbs sampling ("gibbs").

    ``fit(X)`` takes a document-term count matrix (SciPy sparse or array, N × V; counts
    integral and >= 0) or a count dataset directory (str). Fitted: components_ (K, V: λ),
    exp_dirichlet_component_ (K, V: exp E[log β]), doc_topic_prior_, topic_word_prior_,
    n_iter_, n_batch_iter_, bound_ (the last bound per token, nats; gibbs: log p(w, z)
    per token). transform gives topic proportions (N, K; rows sum to 1); perplexity is
    exp(−bound / tokens) (Hoffman et al. 2010).
    """
    _model = "lda"
    _datasets = ("components", "doc_topic_prior", "topic_word_prior")

    def __init__(self, n_components=10, *, doc_topic_prior=None, topic_word_prior=None, learning_method="batch",
                 learning_decay=0.7, learning_offset=10.0, max_iter=10, batch_size=128, evaluate_every=-1,
                 perp_tol=1e-1, mean_change_tol=1e-3, max_doc_update_iter=100, random_state=None, verbose=0,
                 exact_transform=True, n_threads=None, block_rows=2048, memory_budget_gib=None):
        self.n_components = n_components
        self.doc_topic_prior = doc_topic_prior
        self.topic_word_prior = topic_word_prior
        self.learning_method = learning_method
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.evaluate_every = evaluate_every
        self.perp_tol = perp_tol
        self.mean_change_tol = mean_change_tol
        self.max_doc_update_iter = max_doc_update_iter
        self.random_state = random_state
        self.verbose = verbose
        self.exact_transform = exact_transform
        self.n_threads = n_threads
        self.block_rows = block_rows
        self.memory_budget_gib = memory_budget_gib

    def _options(self):
        o = {"n-topics": int(self.n_components), "method": str(self.learning_method),
             "learning-decay": float(self.learning_decay), "learning-offset": float(self.learning_offset),
             "max-iter": int(self.max_iter), "batch-size": int(self.batch_size), "tol": float(self.perp_tol),
             "max-doc-update-iter": int(self.max_doc_update_iter), "mean-change-tol": float(self.mean_change_tol)}
        if self.doc_topic_prior is not None:
            o["doc-topic-prior"] = float(self.doc_topic_prior)
        if self.topic_word_prior is not None:
            o["topic-word-prior"] = float(self.topic_word_prior)
        if self.evaluate_every is not None and self.evaluate_every != 1:
            o["evaluate-every"] = int(self.evaluate_every) if self.evaluate_every > 0 else 0
        return o

    def fit(self, X, y=None, vocabulary=None):
        """Fits on X (counts, N × V; or a count dataset directory). `vocabulary`: V words
        stored in the model file (default w0, w1, ...). Returns self."""
        if self._fit_directory(X, self._options()):
            return self
        X = self._validate_data(X, reset=True, accept_sparse="csr", dtype=np.float64)
        self._run_fit(_csr(X), self._options(), vocabulary or ())
        return self

    def _set_attributes(self, path):
        a = self._arrays
        self.components_ = a["components"]
        self.doc_topic_prior_ = float(a["doc_topic_prior"][0])
        self._alpha = a["doc_topic_prior"]  # K: not symmetric after learn_priors
        self.topic_word_prior_ = float(a["topic_word_prior"][0])
        lam = self.components_
        self.exp_dirichlet_component_ = np.exp(digamma(lam) - digamma(lam.sum(axis=1))[:, None])
        self.n_iter_ = int(self._attrs["n_iter"])
        config = json.loads(self._attrs.get("config", "{}"))
        n = int(self._attrs.get("n_samples_seen", 0))
        if config.get("method") == "online":
            self.n_batch_iter_ = self.n_iter_ * -(-n // int(config.get("batch_size", self.batch_size)))
        else:
            self.n_batch_iter_ = self.n_iter_
        self.bound_ = float(self._attrs["lower_bound"])
        self.n_features_in_ = int(lam.shape[1])
        self._n_features_out = int(lam.shape[0])
        self.vocabulary_ = _core.read_strings(path, "vocabulary")

    def _load_engine(self, path):
        return _core.Lda(path)

    def _more_tags(self):
        # Counts: non-negative integers (scikit-learn's checks then draw integer data).
        return {"requires_positive_X": True, "X_types": ["2darray", "categorical"], "non_deterministic": False}

    def _docs(self, X):
        check_is_fitted(self, "_model_file")
        X = self._validate_data(X, reset=False, accept_sparse="csr", dtype=np.float64)
        indptr, indices, counts, _ = _csr(X, self.n_features_in_)
        return indptr, indices, counts

    def transform(self, X):
        """Topic proportions (N, K), rows summing to 1 (documents with no words: α / Σα).
        exact_transform (default): the E-step in double precision, in scikit-learn's order;
        False: the training kernel of `latent transform` (float32 exp(E[log β]), within about
        1e-7; the same bits as the command line at the same block_rows)."""
        return self._engine().transform(*self._docs(X), max_doc_update_iter=self.max_doc_update_iter,
                                        mean_change_tol=self.mean_change_tol, exact=bool(self.exact_transform),
                                        **self._runtime())

    def _score(self, X):
        return self._engine().score(*self._docs(X), max_doc_update_iter=self.max_doc_update_iter,
                                    mean_change_tol=self.mean_change_tol, **self._runtime())

    def score(self, X, y=None):
        """The variational bound on log p(X) (nats; Hoffman et al. 2010 eq. 16)."""
        return float(self._score(X)["bound"])

    def perplexity(self, X):
        """exp(−bound / tokens)."""
        return float(self._score(X)["bound_perplexity"])

    def to_sklearn(self):
        """A fitted sklearn.decomposition.LatentDirichletAllocation with these topics
        (components_, priors, counters; exp_dirichlet_component_ computed from components_
        as scikit-learn's fit computes it, with its own ψ). Its transform agrees with ours
        (exact_transform) to 1e-9 (4e-10 in the tests), not 1e-10: scikit-learn's E-step
        uses an approximate ψ (sklearn/decomposition/_online_lda_fast.pyx, off by up to
        2.4e-9), ours the exact one; written out with the exact ψ, scikit-learn's E-step
        equals ours to 1e-13. Its perplexity agrees to about 1e-7 (our bound's E-step is the
        training kernel, float32 exp(E[log β]))."""
        from sklearn.decomposition import LatentDirichletAllocation as SkLDA
        from sklearn.decomposition._online_lda_fast import _dirichlet_expectation_2d
        check_is_fitted(self, "_model_file")
        method = self.learning_method if self.learning_method in ("batch", "online") else "batch"
        sk = SkLDA(n_components=self.components_.shape[0], doc_topic_prior=self.doc_topic_prior_,
                   topic_word_prior=self.topic_word_prior_, learning_method=method,
                   learning_decay=self.learning_decay, learning_offset=self.learning_offset, max_iter=self.max_iter,
                   batch_size=self.batch_size, perp_tol=self.perp_tol, mean_change_tol=self.mean_change_tol,
                   max_doc_update_iter=self.max_doc_update_iter, random_state=self.random_state)
        self._copy_to(sk, ("components_", "doc_topic_prior_", "topic_word_prior_", "n_iter_", "n_batch_iter_",
                           "n_features_in_", "bound_"))
        sk.exp_dirichlet_component_ = np.exp(_dirichlet_expectation_2d(sk.components_))
        return sk

    def to_pyldavis(self, X, path=None):
        """The inputs of pyLDAvis.prepare for documents X (N × V counts): topic_term_dists
        (K, V: λ rows normalised), doc_topic_dists (N, K: transform(X)), doc_lengths (N:
        tokens), vocab (V words), term_frequency (V: corpus counts), as a dict (use
        ``pyLDAvis.prepare(**est.to_pyldavis(X))``); with `path`, also written as JSON (lists)."""
        check_is_fitted(self, "_model_file")
        indptr, indices, counts = self._docs(X)
        v = self.n_features_in_
        # Integers, as `latent export --format ldavis` writes them (counts are integral).
        cumulative = np.concatenate([[0], np.cumsum(counts.astype(np.int64))])
        lengths = cumulative[indptr[1:]] - cumulative[indptr[:-1]]
        term_frequency = np.bincount(indices, weights=counts, minlength=v).astype(np.int64)
        vocab = list(self.vocabulary_) or [f"w{j}" for j in range(v)]
        out = {"topic_term_dists": self.components_ / self.components_.sum(axis=1, keepdims=True),
               "doc_topic_dists": self.transform(X), "doc_lengths": lengths, "vocab": vocab,
               "term_frequency": term_frequency}
        if path is not None:
            text = json.dumps({k: (val.tolist() if isinstance(val, np.ndarray) else val) for k, val in out.items()})
            _write_atomically(path, text.encode(), overwrite=True)
        return out

    def to_gensim(self, path=None, X=None, dictionary=None, overwrite=True):
        """A gensim.models.LdaModel holding this model: its state's sufficient statistics
        (λ − η), η, α, expElogbeta = exp(E[log β]) and the id2word Dictionary of
        vocabulary_, so training can continue in gensim; get_topics() equals components_
        normalised. The Dictionary's document frequencies come from X (N × V counts) when
        given, or `dictionary` (a gensim Dictionary built by the caller, as `latent export
        --format gensim` does from its pass over a corpus). With `path`, also saved with
        LdaModel.save (LdaModel.load(path) reads it) atomically: the files (path and its
        companions path.state, path.id2word, path.*.npy) are written in a temporary
        directory beside path and renamed into place, path last; raises FileExistsError if
        path exists and not overwrite."""
        from gensim.corpora import Dictionary
        from gensim.models import LdaModel
        check_is_fitted(self, "_model_file")
        k, v = self.components_.shape
        vocab = list(self.vocabulary_) or [f"w{j}" for j in range(v)]
        if dictionary is not None and X is not None:
            raise ValueError("to_gensim: pass X or dictionary, not both")
        if dictionary is None:
            corpus = []
            if X is not None:
                indptr, indices, counts = self._docs(X)
                corpus = [list(zip(indices[indptr[i]:indptr[i + 1]].tolist(), counts[indptr[i]:indptr[i + 1]].tolist()))
                          for i in range(len(indptr) - 1)]
            dictionary = Dictionary.from_corpus(corpus, id2word=dict(enumerate(vocab)))
        elif len(dictionary) != v:
            raise ValueError(f"to_gensim: the dictionary has {len(dictionary)} words but the model {v}")
        eta = float(self.topic_word_prior_)
        lda = LdaModel(num_topics=k, id2word=dictionary, alpha=np.asarray(self._alpha, dtype=np.float64), eta=eta,
                       dtype=np.float64, random_state=0)
        lda.state.sstats = self.components_ - eta
        lda.sync_state()
        lda.expElogbeta = np.exp(digamma(self.components_) - digamma(self.components_.sum(axis=1))[:, None])
        if path is not None:
            _save_gensim_atomically(lda, os.fspath(path), overwrite)
        return lda


def _save_gensim_atomically(lda, path, overwrite):
    """LdaModel.save into a temporary directory beside `path`, then its files renamed into
    place, `path` itself last (so LdaModel.load(path) never finds a partial set)."""
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path}: exists (pass overwrite=True to replace it)")
    directory, base = os.path.split(os.path.abspath(path))
    tmp = tempfile.mkdtemp(prefix=".latent-gensim-", dir=directory)
    try:
        lda.save(os.path.join(tmp, base))
        names = sorted(os.listdir(tmp))
        for name in names:
            with open(os.path.join(tmp, name), "rb") as f:
                os.fsync(f.fileno())
        for name in [n for n in names if n != base] + [base]:
            os.replace(os.path.join(tmp, name), os.path.join(directory, name))
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        for name in os.listdir(tmp):
            os.unlink(os.path.join(tmp, name))
        os.rmdir(tmp)


class MultinomialMixture(DensityMixin, _LatentEstimator):
    """Multinomial mixture (mixture of unigrams) by EM on count data (`latent fit mmm`;
    Nigam et al. 2000), MAP with additive smoothing alpha; no scikit-learn counterpart.

    ``fit(X)`` takes a document-term count matrix (SciPy sparse or array) or a count
    dataset directory. Fitted: weights_ (K), components_ (K, V: word probabilities, rows
    sum to 1), converged_, n_iter_, lower_bound_ (mean log posterior per document).
    score_samples is log p(x_d) without the multinomial coefficient (nats), as
    `latent score`.
    """
    _model = "mmm"
    _datasets = ("weights", "components")

    def __init__(self, n_components=2, *, alpha=1.0, weight_alpha=0.0, tol=1e-3, max_iter=100, n_init=1,
                 random_state=None, verbose=0, n_threads=None, block_rows=2048, memory_budget_gib=None):
        self.n_components = n_components
        self.alpha = alpha
        self.weight_alpha = weight_alpha
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.random_state = random_state
        self.verbose = verbose
        self.n_threads = n_threads
        self.block_rows = block_rows
        self.memory_budget_gib = memory_budget_gib

    def _options(self):
        return {"n-components": int(self.n_components), "alpha": float(self.alpha),
                "weight-alpha": float(self.weight_alpha), "tol": float(self.tol), "max-iter": int(self.max_iter),
                "n-init": int(self.n_init)}

    def fit(self, X, y=None, vocabulary=None):
        """Fits on X (counts, N × V; or a count dataset directory). Returns self."""
        if self._fit_directory(X, self._options()):
            return self
        X = self._validate_data(X, reset=True, accept_sparse="csr", dtype=np.float64)
        self._run_fit(_csr(X), self._options(), vocabulary or ())
        return self

    def _set_attributes(self, path):
        self.weights_ = self._arrays["weights"]
        self.components_ = self._arrays["components"]
        self.converged_ = bool(self._attrs["converged"])
        self.n_iter_ = int(self._attrs["n_iter"])
        self.lower_bound_ = float(self._attrs["lower_bound"])
        self.n_features_in_ = int(self.components_.shape[1])
        self.vocabulary_ = _core.read_strings(path, "vocabulary")

    def _load_engine(self, path):
        return _core.Mmm(path)

    def _posterior(self, X):
        check_is_fitted(self, "_model_file")
        X = self._validate_data(X, reset=False, accept_sparse="csr", dtype=np.float64)
        indptr, indices, counts, _ = _csr(X, self.n_features_in_)
        return self._engine().posterior(indptr, indices, counts, **self._runtime())

    def predict_proba(self, X):
        """Responsibilities (N, K)."""
        return self._posterior(X)[0]

    def predict(self, X):
        """Most probable component of each document (N)."""
        return self.predict_proba(X).argmax(axis=1)

    def transform(self, X):
        """Responsibilities (N, K)."""
        return self.predict_proba(X)

    def score_samples(self, X):
        """log p(x_d) of each document without the multinomial coefficient (N), nats."""
        return self._posterior(X)[1]

    def score(self, X, y=None):
        """Mean of score_samples, nats per document."""
        return float(np.mean(self.score_samples(X)))

    def _more_tags(self):
        return {"requires_positive_X": True, "X_types": ["2darray", "categorical"], "non_deterministic": False}


class VAE(TransformerMixin, _LatentEstimator):
    """Variational autoencoder (`latent fit vae`; Kingma & Welling 2014): MLP encoder and
    decoder trained on minibatch ELBO gradients with Adam (Kingma & Ba 2015); Bernoulli or
    Gaussian decoder. No scikit-learn counterpart.

    Parameters are the CLI's options with underscores (latent_dim=20, hidden=(512, 256),
    activation, likelihood="bernoulli" | "gaussian", gaussian_variance, batch_size,
    micro_batch_rows, matmul_precision, epochs, shuffle, learning_rate, beta1, beta2,
    adam_epsilon, lr_schedule, lr_step_size, lr_gamma, max_grad_norm, validation_fraction,
    n_iter_no_change, tol). Fitted: encoder_weights_ / encoder_biases_ and decoder_weights_
    / decoder_biases_ (lists, layer i's weight out × in), log_variance_ (Gaussian with
    learned variance), n_iter_ (epochs), lower_bound_. transform gives the posterior means
    (N, L); score_samples the per-row ELBO (nats; with iw_samples > 0 the IWAE estimate of
    log p(x)); sample(n) decoded prior draws.
    """
    _model = "vae"

    def __init__(self, latent_dim=20, *, hidden=(512, 256), activation="relu", likelihood="bernoulli",
                 gaussian_variance="learned", batch_size=128, micro_batch_rows=64, matmul_precision="highest",
                 epochs=10, shuffle=False, learning_rate=1e-3, beta1=0.9, beta2=0.999, adam_epsilon=1e-8,
                 lr_schedule="constant", lr_step_size=10, lr_gamma=0.1, max_grad_norm=0.0, validation_fraction=0.0,
                 n_iter_no_change=10, tol=1e-4, iw_samples=0, random_state=None, verbose=0, n_threads=None,
                 block_rows=2048, memory_budget_gib=None):
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.activation = activation
        self.likelihood = likelihood
        self.gaussian_variance = gaussian_variance
        self.batch_size = batch_size
        self.micro_batch_rows = micro_batch_rows
        self.matmul_precision = matmul_precision
        self.epochs = epochs
        self.shuffle = shuffle
        self.learning_rate = learning_rate
        self.beta1 = beta1
        self.beta2 = beta2
        self.adam_epsilon = adam_epsilon
        self.lr_schedule = lr_schedule
        self.lr_step_size = lr_step_size
        self.lr_gamma = lr_gamma
        self.max_grad_norm = max_grad_norm
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.iw_samples = iw_samples
        self.random_state = random_state
        self.verbose = verbose
        self.n_threads = n_threads
        self.block_rows = block_rows
        self.memory_budget_gib = memory_budget_gib

    def _options(self):
        hidden = self.hidden if isinstance(self.hidden, str) else ",".join(str(int(h)) for h in self.hidden)
        return {"latent-dim": int(self.latent_dim), "hidden": hidden, "activation": str(self.activation),
                "likelihood": str(self.likelihood), "gaussian-variance": str(self.gaussian_variance),
                "batch-size": int(self.batch_size), "micro-batch-rows": int(self.micro_batch_rows),
                "matmul-precision": str(self.matmul_precision), "epochs": int(self.epochs),
                "shuffle": bool(self.shuffle), "learning-rate": float(self.learning_rate), "beta1": float(self.beta1),
                "beta2": float(self.beta2), "adam-epsilon": float(self.adam_epsilon),
                "lr-schedule": str(self.lr_schedule), "lr-step-size": int(self.lr_step_size),
                "lr-gamma": float(self.lr_gamma), "max-grad-norm": float(self.max_grad_norm),
                "validation-fraction": float(self.validation_fraction),
                "n-iter-no-change": int(self.n_iter_no_change), "tol": float(self.tol)}

    @property
    def _datasets(self):
        names = ["log_variance"]
        for part in ("encoder", "decoder"):
            for i in range(64):
                names += [f"{part}/{i}/weight", f"{part}/{i}/bias"]
        return names

    def fit(self, X, y=None):
        """Fits on X (array (N, D); or a dense shard directory). Returns self."""
        if self._fit_directory(X, self._options()):
            return self
        X = _dense(self, X, reset=True)
        self._run_fit(X, self._options())
        return self

    def _set_attributes(self, path):
        a = self._arrays
        for part in ("encoder", "decoder"):
            layers = sorted({int(k.split("/")[1]) for k in a if k.startswith(part + "/")})
            setattr(self, f"{part}_weights_", [a[f"{part}/{i}/weight"] for i in layers])
            setattr(self, f"{part}_biases_", [a[f"{part}/{i}/bias"] for i in layers])
        self.log_variance_ = a.get("log_variance")
        self.n_iter_ = int(self._attrs["n_iter"])
        self.lower_bound_ = float(self._attrs["lower_bound"])
        self.n_features_in_ = int(self.encoder_weights_[0].shape[1])

    def _load_engine(self, path):
        return _core.Vae(path)

    def transform(self, X):
        """Posterior means of q(z | x) (N, L)."""
        return self._engine().transform(self._checked(X), **self._runtime())[0]

    def score_samples(self, X):
        """Per-row ELBO (iw_samples = 0) or IWAE estimate of log p(x) (N), nats; noise keyed
        by random_state and the row."""
        elbo, iwae = self._engine().score(self._checked(X), iw_samples=int(self.iw_samples),
                                          seed=_seed(self.random_state), **self._runtime())
        return elbo if iwae is None else iwae

    def score(self, X, y=None):
        """Mean of score_samples, nats per row."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples=1):
        """(decoded means (n_samples, D), latent draws (n_samples, L)), keyed by random_state."""
        check_is_fitted(self, "_model_file")
        return self._engine().sample(int(n_samples), _seed(self.random_state))


_CLASSES = {"gmm": GaussianMixture, "bgmm": BayesianGaussianMixture, "bmm": BernoulliMixture, "kmeans": KMeans,
            "lda": LatentDirichletAllocation, "fa": FactorAnalysis, "ppca": PPCA, "mfa": MixtureOfFactorAnalysers,
            "mmm": MultinomialMixture, "vae": VAE}


def load(path):
    """The fitted estimator of a model file (written by `latent fit` or est.save), its
    constructor parameters from the file's configuration. Raises FileNotFoundError,
    ValueError for a model this package has no estimator for."""
    path = os.fspath(path)
    attrs = _core.read_attributes(path, text=["model", "config"])
    model = attrs.get("model")
    if model not in _CLASSES:
        raise ValueError(f"{path}: model {model!r} has no Python estimator yet (have: {', '.join(_CLASSES)})")
    config = json.loads(attrs.get("config", "{}"))
    cls = _CLASSES[model]
    params = {}
    names = cls().get_params()
    renames = {"n_topics": "n_components", "method": "learning_method", "tol": "tol", "seed": "random_state",
               "block_rows": "block_rows"}
    for key, value in config.items():
        name = renames.get(key, key)
        if model == "lda" and key == "tol":
            name = "perp_tol"
        if name in names:
            # -1 is the CLI's sentinel for a documented default (1/K, 1, D): None here.
            params[name] = None if name.endswith("_prior") and value == -1 else value
    est = cls(**params)
    with open(path, "rb") as f:
        est._model_file = f.read()
    est._read_model(path)
    return est
