"""latent from Python: scikit-learn estimators over latent's engine (docs/PYTHON.md).

Each estimator's ``fit`` runs the registry's fit function in this process -- the code
``latent fit MODEL`` runs -- on a NumPy array or SciPy sparse matrix held in memory, or on
a shard directory (a ``str``), streamed block by block as by the command line. The process
is one rank (no MPI call is made); the E-steps run on oneTBB threads (``n_threads``); the
GIL is released while the engine computes. Fitted parameters are the bits ``latent fit``
gives on the same data (imported as one shard), seed and options. The model file the fit
writes is kept with the estimator: ``est.save(path)`` writes it (the CLI reads it), and
``latent.load(path)`` returns the fitted estimator of a file the CLI wrote.
"""
from ._estimators import (PPCA, BayesianGaussianMixture, BernoulliMixture, FactorAnalysis, GaussianMixture, KMeans,
                          LatentDirichletAllocation, MixtureOfFactorAnalysers, MultinomialMixture, VAE, load)
from ._distributed import fit_distributed

__all__ = ["GaussianMixture", "BayesianGaussianMixture", "BernoulliMixture", "KMeans", "LatentDirichletAllocation",
           "FactorAnalysis", "PPCA", "MixtureOfFactorAnalysers", "MultinomialMixture", "VAE", "load", "fit_distributed"]
