"""LocalFlowMatchingOutlierDetector: outlier semantics, robustness on messy tables, ADBench."""

from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from sklfm import LocalFlowMatching, LocalFlowMatchingOutlierDetector

ADBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "adbench"

# Tiny and fast: one OU block plus the free block, a few dozen steps each.
TINY = dict(step_sizes=(0.2,), hidden_layer_sizes=(16,), max_iter=40, batch_size=128)


def make_detector(**params):
    return LocalFlowMatchingOutlierDetector(**{**TINY, "random_state": 0, **params})


def blobs(n=200, n_outliers=10, seed=0):
    rng = np.random.RandomState(seed)
    inliers = rng.normal(size=(n - n_outliers, 3))
    outliers = rng.uniform(-8, 8, size=(n_outliers, 3))
    return np.r_[inliers, outliers]


@pytest.fixture(scope="module")
def fitted():
    X = blobs()
    return make_detector(contamination=0.1).fit(X), X


def test_predict_returns_plus_minus_one_ints(fitted):
    detector, X = fitted
    labels = detector.predict(X)
    assert labels.shape == (X.shape[0],)
    assert np.issubdtype(labels.dtype, np.integer)
    assert set(np.unique(labels).tolist()) == {-1, 1}


@pytest.mark.parametrize("contamination", [0.05, 0.1, 0.25, 0.5])
def test_fraction_flagged_matches_contamination(contamination):
    X = blobs()
    detector = make_detector(contamination=contamination).fit(X)
    flagged = np.mean(detector.predict(X) == -1)
    # As in scikit-learn's tests: the training fraction below offset_ is the contamination.
    assert_allclose(flagged, contamination, atol=1.5 / X.shape[0])


def test_offset_and_decision_function(fitted):
    detector, X = fitted
    scores = detector.score_samples(X)
    assert_allclose(detector.offset_, np.percentile(scores, 10.0))
    assert_allclose(detector.decision_function(X), scores - detector.offset_)
    assert_allclose(detector.predict(X) == -1, detector.decision_function(X) < 0)


def test_fit_predict_matches_fit_then_predict():
    X = blobs()
    labels = make_detector().fit_predict(X)
    assert_allclose(labels, make_detector().fit(X).predict(X))


def test_outliers_score_lower_than_inliers(fitted):
    detector, X = fitted
    truth = np.r_[np.zeros(190), np.ones(10)]
    assert roc_auc_score(truth, -detector.score_samples(X)) > 0.95


@pytest.mark.parametrize(
    "params",
    [{}, dict(scaling="standard", noise_scale=0.0, dequantize=False)],
    ids=["defaults", "no-robustness"],
)
def test_scores_finite_on_messy_tables(params):
    rng = np.random.RandomState(0)
    # Integer-valued columns (a binary flag and a count), a constant column, a
    # heavy-tailed column, and 50 % of the rows exact duplicates of others.
    base = np.c_[
        rng.randint(0, 2, 100),
        rng.poisson(3, 100),
        np.full(100, 7.0),
        rng.standard_cauchy(100),
    ].astype(float)
    X = np.r_[base, base[rng.randint(0, 100, 100)]]
    detector = make_detector(**params).fit(X)
    X_new = np.r_[X[:20], [[1, 50, 7.0, 1e4]], [[0, 3, 8.0, 0.0]]]
    scores = detector.score_samples(X_new)
    assert np.all(np.isfinite(scores))
    assert np.isfinite(detector.offset_)
    # The row far off the grid and in the tail scores lowest.
    assert scores[-2] < scores[:20].min()


@pytest.mark.parametrize("contamination", [0.0, -0.1, 0.6, 1.0, "auto", None])
def test_bad_contamination_raises(contamination):
    with pytest.raises(ValueError):
        make_detector(contamination=contamination).fit(blobs(50, 5))


@pytest.mark.parametrize(
    "params", [dict(scaling="quantile"), dict(noise_scale=-0.1), dict(dequantize="yes")]
)
def test_bad_robustness_params_raise(params):
    with pytest.raises(ValueError):
        make_detector(**params).fit(blobs(50, 5))


@pytest.mark.parametrize("method", ["predict", "decision_function", "score_samples"])
def test_not_fitted_error(method):
    with pytest.raises(NotFittedError):
        getattr(LocalFlowMatchingOutlierDetector(), method)(blobs(20, 2))


def test_parameters_are_explicit_and_clonable():
    detector = LocalFlowMatchingOutlierDetector(contamination=0.2, max_iter=5)
    params = detector.get_params()
    # Every LocalFlowMatching hyperparameter is a detector hyperparameter too, but the
    # conditions (on y or on columns of X): the detector scores whole rows.
    conditions = {"condition", "conditional_columns"}
    assert set(LocalFlowMatching().get_params()) - conditions <= set(params)
    assert {"contamination", "scaling", "noise_scale", "dequantize"} <= set(params)
    assert clone(detector).get_params() == params
    assert params["contamination"] == 0.2


@pytest.mark.parametrize("scaling", ["mcd", "robust", "standard"])
def test_scores_are_log_densities_in_data_units(scaling):
    # 1-D: exp(score) must integrate to about 1 over the line, which checks the
    # log-Jacobian of the preprocessing (asinh included), for heavy-tailed data too.
    rng = np.random.RandomState(0)
    X = 5.0 + 3.0 * rng.standard_t(3, size=(300, 1))
    detector = make_detector(scaling=scaling, max_iter=80).fit(X)
    grid = np.linspace(-150, 160, 8001)[:, None]
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has trapz only
    mass = trapezoid(np.exp(detector.score_samples(grid)), grid[:, 0])
    assert mass == pytest.approx(1.0, abs=0.05)


def test_adbench_small_set_ranks_anomalies():
    path = ADBENCH / "42_WBC.npz"
    if not path.exists():
        pytest.skip(f"ADBench data not found at {ADBENCH}")
    data = np.load(path)
    X, y = data["X"].astype(float), data["y"].astype(int)
    X_train, X_test, _, y_test = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=0
    )
    detector = make_detector(hidden_layer_sizes=(32,), max_iter=100).fit(X_train)
    auroc = roc_auc_score(y_test, -detector.score_samples(X_test))
    assert auroc > 0.8


def test_a_cluster_of_training_outliers_gets_no_density_of_its_own():
    # 5 % of the training rows form a tight cluster away from the bulk: a flexible
    # density fitted to all rows gives that cluster a high density; scaling="mcd"
    # trains on the MCD's support only, so new rows of the cluster score low.
    rng = np.random.RandomState(0)
    cov = np.array([[1.0, 0.8, 0.0], [0.8, 1.0, 0.3], [0.0, 0.3, 1.0]])
    inliers = rng.multivariate_normal(np.zeros(3), cov, size=400)
    cluster = np.array([2.5, -2.5, 0.0]) + 0.05 * rng.randn(20, 3)
    detector = make_detector(max_iter=100).fit(np.r_[inliers, cluster])
    assert detector.standardizer_.core(cluster).sum() == 0
    assert detector.standardizer_.core(inliers).mean() > 0.9
    new_inliers = rng.multivariate_normal(np.zeros(3), cov, size=200)
    new_cluster = np.array([2.5, -2.5, 0.0]) + 0.05 * rng.randn(20, 3)
    # Far below the inliers (with scaling="robust" the gap is about 5 nats).
    gap = np.median(detector.score_samples(new_inliers)) - detector.score_samples(new_cluster).max()
    assert gap > 15


def test_mcd_scaling_falls_back_on_too_few_rows():
    X = np.random.RandomState(0).normal(size=(10, 6))
    detector = make_detector(max_iter=5).fit(X)
    assert detector.standardizer_.whitening_ is None
    assert np.isfinite(detector.score_samples(X)).all()
