"""scikit-learn's own estimator checks (sklearn.utils.estimator_checks, Debian's
scikit-learn 1.2) on every estimator with a scikit-learn counterpart. Every check runs
except those listed in NOT_APPLICABLE, each with the reason it cannot apply."""
import unittest
import warnings

from sklearn.utils.estimator_checks import check_estimator

import latent

# Checks that cannot apply, by estimator: {check name: reason}.
_NO_WEIGHTS = "sample_weight is not supported: the engine's k-means is unweighted (fit raises ValueError)"
_EMPTY = ("scikit-learn draws uniform [0, 1) data and casts it to integers for count data (the 'categorical' "
          "tag), which gives an all-zero corpus; latent refuses a corpus without tokens (ValueError: the corpus "
          "has no tokens) where scikit-learn fits an empty model")
NOT_APPLICABLE = {
    "GaussianMixture": {},
    "BayesianGaussianMixture": {},
    "FactorAnalysis": {},
    "KMeans": {
        "check_sample_weights_pandas_series": _NO_WEIGHTS,
        "check_sample_weights_not_an_array": _NO_WEIGHTS,
        "check_sample_weights_list": _NO_WEIGHTS,
        "check_sample_weights_shape": _NO_WEIGHTS,
        "check_sample_weights_not_overwritten": _NO_WEIGHTS,
        "check_sample_weights_invariance": _NO_WEIGHTS,
    },
    "LatentDirichletAllocation": {
        "check_fit_score_takes_y": _EMPTY,
        "check_dtype_object": _EMPTY,
        "check_estimators_nan_inf": _EMPTY,
        "check_estimator_sparse_data": _EMPTY,
    },
}


def check_name(check):
    func = getattr(check, "func", check)
    return func.__name__


class CheckEstimator(unittest.TestCase):
    def run_checks(self, estimator):
        skipped = NOT_APPLICABLE[type(estimator).__name__]
        ran = 0
        for est, check in check_estimator(estimator, generate_only=True):
            name = check_name(check)
            if name in skipped:
                continue
            with self.subTest(check=name):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        check(est)
                    except unittest.SkipTest as e:  # every check must run (pandas is a dependency)
                        self.fail(f"{name} was skipped: {e}")
                ran += 1
        self.assertGreater(ran, 20)

    def test_gaussian_mixture(self):
        self.run_checks(latent.GaussianMixture(n_threads=1))

    def test_bayesian_gaussian_mixture(self):
        self.run_checks(latent.BayesianGaussianMixture(n_threads=1))

    def test_factor_analysis(self):
        self.run_checks(latent.FactorAnalysis(n_threads=1))

    def test_kmeans(self):
        self.run_checks(latent.KMeans(n_threads=1))

    def test_latent_dirichlet_allocation(self):
        self.run_checks(latent.LatentDirichletAllocation(n_threads=1))


if __name__ == "__main__":
    unittest.main()
