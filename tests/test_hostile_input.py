"""Hostile and odd input, property-based: shapes, dtypes, containers and values for every
public method. Each input gets a correct result (finite where it must be) or a clear
scikit-learn-style error raised before any torch code runs, and no input changes a
fitted estimator. The outcomes are tabulated in docs/robustness.md."""

import hashlib
import os
import pickle
import traceback
import warnings
from functools import lru_cache
from numbers import Integral

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
import scipy.sparse
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sklfm import LocalFlowMatching, LocalFlowMatchingOutlierDetector

from ._helpers import TINY

# Small budgets: the whole module runs in well under a minute on two cores.
SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI stays deterministic
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
COLUMNS = ["a", "b", "c"]
# Values every column may meet, on top of ordinary numbers in [-10, 10].
SPECIAL = [
    np.nan, np.inf, -np.inf, 1e300, -1e300, np.finfo(np.float64).max, 5e-324, -2.5e-310,
    1e-300, 0.0, -0.0, 1e20,
]  # fmt: skip
# Beyond this magnitude, float64 may overflow inside the flow: see docs/robustness.md.
HUGE = 1e100
KINDS = [
    "float64", "float32", "float16", "int8", "uint8", "bool", "object", "list", "strings",
    "datetime", "datetime64", "sparse", "frame", "frame-renamed", "frame-int-names", "read-only",
    "non-contiguous", "fortran",
]  # fmt: skip
TORCH_DIR = os.path.dirname(torch.__file__)


@lru_cache
def detector_training_rows():
    return pd.DataFrame(np.random.RandomState(0).normal(size=(150, 3)), columns=COLUMNS)


def fitted(name):
    cls = LocalFlowMatching if name == "density" else LocalFlowMatchingOutlierDetector
    return cls(**TINY).fit(detector_training_rows())


def fingerprint(model):
    """A hash of everything a model holds (its pickled state: parameters, weights, arrays)."""
    return hashlib.sha256(pickle.dumps(model.__getstate__())).hexdigest()


# --- inputs ------------------------------------------------------------------------


def _container(kind, values):
    """(X, effective): `values` in the container `kind`, and the float64 array the
    estimator should see (None when the input is not numeric)."""
    n, d = values.shape
    names = (COLUMNS + [f"x{j}" for j in range(3, d)])[:d]
    with np.errstate(over="ignore", invalid="ignore"):
        if kind in ("float32", "float16"):
            X = values.astype(kind)
            return X, X.astype(np.float64)
        if kind in ("int8", "uint8"):
            info = np.iinfo(kind)
            X = np.clip(np.nan_to_num(values), info.min, info.max).astype(kind)
            return X, X.astype(np.float64)
    if kind == "bool":
        return values > 0, (values > 0).astype(np.float64)
    if kind == "object":
        return values.astype(object), values
    if kind == "list":
        return values.tolist(), values
    if kind == "strings":
        X = values.astype(object)
        if X.size:
            X[0, 0] = "x"
            return X, None
        return X, values
    if kind == "datetime":
        if not values.size:
            return np.empty(values.shape, dtype="datetime64[ns]"), None
        X = pd.DataFrame(values, columns=names)
        X[names[0]] = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n), unit="D")
        return X, None
    if kind == "datetime64":
        return (values * 1e6).astype("datetime64[s]"), None
    if kind == "sparse":
        return scipy.sparse.csr_matrix(values), None
    if kind == "frame":
        return pd.DataFrame(values, columns=names), values
    if kind == "frame-renamed":
        return pd.DataFrame(values, columns=[f"z{j}" for j in range(d)]), values
    if kind == "frame-int-names":
        return pd.DataFrame(values), values
    if kind == "read-only":
        X = values.copy()
        X.setflags(write=False)
        return X, values
    if kind == "non-contiguous":
        return np.repeat(values, 2, axis=1)[:, ::2], values
    if kind == "fortran":
        return np.asfortranarray(values), values
    return values, values


@st.composite
def tables(draw, rows=(0, 1, 2, 5), columns=(3, 3, 3, 0, 1, 4, 200)):
    n, d = draw(st.sampled_from(rows)), draw(st.sampled_from(columns))
    values = draw(arrays(np.float64, (n, d), elements=st.floats(-10, 10)))
    pattern = draw(st.sampled_from(["random", "constant column", "identical rows"]))
    if n and d and pattern == "constant column":
        values[:, 0] = values[0, 0]
    if n and d and pattern == "identical rows":
        values[:] = values[0]
    if n and d:
        for _ in range(draw(st.integers(0, 2))):
            i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, d - 1))
            values[i, j] = draw(st.sampled_from(SPECIAL))
    kind = draw(st.sampled_from(KINDS))
    X, effective = _container(kind, values)
    return kind, X, effective


def _is_valid(kind, effective, n_columns=None, min_rows=1, names_matter=True):
    """Whether a correct estimator must accept this input."""
    if effective is None or kind == "sparse":
        return False
    n, d = effective.shape
    if n < min_rows or d == 0 or (n_columns is not None and d != n_columns):
        return False
    if names_matter and kind == "frame-renamed":
        return False
    return bool(np.isfinite(effective).all())


def _is_huge(effective):
    return effective is not None and effective.size and np.abs(effective).max() > HUGE


# --- outcome checks -------------------------------------------------------------------


def _check_error(exc):
    """A scikit-learn-style error with a message, raised outside torch."""
    assert isinstance(exc, (ValueError, TypeError)), repr(exc)  # NotFittedError is a ValueError
    assert len(str(exc)) > 20, repr(exc)
    raised_in = traceback.extract_tb(exc.__traceback__)[-1].filename
    assert not raised_in.startswith(TORCH_DIR), f"torch error: {exc!r} in {raised_in}"


def _check_scores(scores, n, huge):
    scores = np.asarray(scores)
    assert scores.shape == (n,) and scores.dtype == np.float64
    assert not np.isnan(scores).any() and not (scores == np.inf).any()
    if not huge:
        assert np.isfinite(scores).all()


def _check_result(method, out, n, huge):
    if method in ("score_samples", "decision_function"):
        _check_scores(out, n, huge)
    elif method == "score":
        assert isinstance(out, float) and not np.isnan(out) and out != np.inf
        assert huge or np.isfinite(out)
    elif method in ("transform", "inverse_transform"):
        out = np.asarray(out)
        assert out.shape == (n, 3) and out.dtype == np.float64 and np.isfinite(out).all()
    elif method == "predict":
        assert out.shape == (n,) and set(out.tolist()) <= {-1, 1}


def _call(call):
    with warnings.catch_warnings():
        # "X has feature names, but ..." and the like are fine; errors are what is checked.
        warnings.simplefilter("ignore", UserWarning)
        return call()


# --- fitted estimators -----------------------------------------------------------------

METHODS = [
    ("density", "score_samples"),
    ("density", "score"),
    ("density", "transform"),
    ("density", "inverse_transform"),
    ("detector", "score_samples"),
    ("detector", "decision_function"),
    ("detector", "predict"),
]


@pytest.mark.parametrize("name, method", METHODS)
@SETTINGS
@given(table=tables())
def test_fitted_methods_on_hostile_input(name, method, table):
    kind, X, effective = table
    model = fitted(name)
    before = fingerprint(model)
    valid = _is_valid(kind, effective, 3, names_matter=method != "inverse_transform")
    huge = _is_huge(effective)
    event("valid" if valid else "invalid")
    try:
        out = _call(lambda: getattr(model, method)(X))
    except (ValueError, TypeError) as exc:
        _check_error(exc)
        # A valid input may only fail when it overflows float64 inside the flow.
        # ("... overflows float64", or transform's "its latent codes overflow float64")
        assert not valid or (huge and "overflow" in str(exc) and "float64" in str(exc)), repr(exc)
    else:
        assert valid, f"accepted invalid input {kind}"
        _check_result(method, out, effective.shape[0], huge)
    assert fingerprint(model) == before


N_SAMPLES = [1, 3, np.int8(2), np.uint64(2), 0, -1, 2.5, "3", None, True, np.float64(2.0)]
RANDOM_STATES = [None, 0, np.int64(5), 2**32 - 1, -1, 2**40, 1.5, "seed", np.random.RandomState(0)]


@SETTINGS
@given(n_samples=st.sampled_from(N_SAMPLES), random_state=st.sampled_from(RANDOM_STATES))
def test_sample_on_hostile_arguments(n_samples, random_state):
    model = fitted("density")
    before = fingerprint(model)
    valid_n = isinstance(n_samples, Integral) and not isinstance(n_samples, bool) and n_samples > 0
    valid_state = random_state is None or isinstance(random_state, np.random.RandomState) or (
        isinstance(random_state, Integral) and 0 <= random_state < 2**32
    )
    try:
        out = model.sample(n_samples, random_state=random_state)
    except (ValueError, TypeError) as exc:
        _check_error(exc)
        assert not (valid_n and valid_state), repr(exc)
    else:
        assert valid_n and valid_state
        assert out.shape == (int(n_samples), 3) and np.isfinite(out).all()
    assert fingerprint(model) == before


# --- fitting -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["density", "detector"])
@SETTINGS
@given(table=tables(rows=(0, 1, 2, 3, 8), columns=(3, 3, 1, 2, 0, 200)))
def test_fit_on_hostile_input(name, table):
    kind, X, effective = table
    model = pickle.loads(pickle.dumps(fitted(name)))  # a refit must keep it on failure
    before = fingerprint(model)
    valid = _is_valid(kind, effective, min_rows=2, names_matter=False)
    event("valid" if valid else "invalid")
    try:
        if name == "detector":
            labels = _call(lambda: model.fit_predict(X))
        else:
            _call(lambda: model.fit(X))
    except (ValueError, TypeError) as exc:
        _check_error(exc)
        assert not valid or (_is_huge(effective) and "too large to standardize" in str(exc))
        assert fingerprint(model) == before
        return
    assert valid, f"fitted on invalid input {kind}"
    n, d = effective.shape
    assert model.n_features_in_ == d
    for curve in model.loss_curve_:
        assert np.isfinite(curve).all()
    _check_scores(_call(lambda: model.score_samples(X)), n, _is_huge(effective))
    if name == "detector":
        assert set(labels.tolist()) <= {-1, 1} and np.isfinite(model.offset_)


@st.composite
def typed_tables(draw):
    """(X, valid): a DataFrame of two float columns and one typed column, and whether a
    correct estimator must fit it."""
    n = draw(st.sampled_from([0, 1, 2, 5, 8]))
    values = draw(arrays(np.float64, (n, 2), elements=st.floats(-10, 10)))
    for _ in range(draw(st.integers(0, 2)) if n else 0):
        values[draw(st.integers(0, n - 1)), draw(st.integers(0, 1))] = draw(st.sampled_from(SPECIAL))
    X = pd.DataFrame(values, columns=["a", "b"])
    kind = draw(st.sampled_from(["strings", "category", "bool", "string-dtype", "gap"]))
    labels = np.where(np.nan_to_num(values[:, 0]) > 0, "p", "n").astype(object)
    if kind == "gap" and n:
        labels[0] = None
    X["c"] = {
        "category": pd.Categorical(labels), "bool": labels == "p",
        "string-dtype": pd.array(labels, dtype="string"),
    }.get(kind, labels)  # fmt: skip
    return X, n >= 2 and kind != "gap" and bool(np.isfinite(values).all())


@pytest.mark.parametrize("name", ["density", "detector"])
@SETTINGS
@given(table=typed_tables())
def test_fit_on_hostile_typed_tables(name, table):
    X, valid = table
    model = pickle.loads(pickle.dumps(fitted(name)))
    before = fingerprint(model)
    event("valid" if valid else "invalid")
    try:
        _call(lambda: model.fit(X))
    except (ValueError, TypeError) as exc:
        _check_error(exc)
        huge = _is_huge(X[["a", "b"]].to_numpy())
        assert not valid or (huge and "too large to standardize" in str(exc)), repr(exc)
        assert fingerprint(model) == before
        return
    assert valid, "fitted on invalid input"
    _check_scores(model.score_samples(X), len(X), _is_huge(X[["a", "b"]].to_numpy()))
    if name == "density":
        samples = model.sample(4, random_state=0)
        assert samples.dtypes.to_dict() == X.dtypes.to_dict()
        assert set(samples["c"]) <= set(X["c"])


# --- named cases ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        [1.0, 2.0, 1.79e308, 3.0, 4.0, 5.0] * 5,  # a heaped column reaching the float64 limit
        [4.9e-324, -1.0, 0.0] * 10,  # a spread that underflows when scaled back
    ],
)
def test_typed_tables_at_the_float64_limits_fit_and_sample(values):
    # Found by the property test's extra search: fit refused them, or sample overflowed.
    X = pd.DataFrame({"a": values, "c": list("xyz") * (len(values) // 3)})
    model = LocalFlowMatching(**TINY).fit(X)
    samples = model.sample(20, random_state=0)
    assert np.isfinite(samples["a"]).all() and set(samples["c"]) <= {"x", "y", "z"}
    assert not np.isnan(model.score_samples(X)).any()


@pytest.mark.parametrize("cls", [LocalFlowMatching, LocalFlowMatchingOutlierDetector])
@pytest.mark.parametrize("factor", [1e-310, 1e-200, 1e200, 1e300])
def test_huge_and_subnormal_data_are_modelled_in_their_units(cls, factor):
    # Scaling the data by c shifts every log-density by -d log c, down to subnormal
    # and up to near-overflow values (scikit-learn's StandardScaler overflows from
    # about 1e155 and calls columns below about 1e-154 constant).
    X = np.random.RandomState(0).normal(size=(200, 2))
    params = {**TINY, **({"dequantize": False} if cls is LocalFlowMatchingOutlierDetector else {})}
    base = cls(**params).fit(X).score_samples(X)
    scaled = cls(**params).fit(X * factor).score_samples(X * factor)
    np.testing.assert_allclose(scaled, base - 2 * np.log(factor), rtol=1e-6)


def test_far_rows_score_minus_inf_or_finite_never_nan():
    far = pd.DataFrame(
        [[1e300, 0.0, 0.0], [np.finfo(np.float64).max, -1e308, 5.0], [0.0, 0.1, 0.2]],
        columns=COLUMNS,
    )
    density, detector = fitted("density"), fitted("detector")
    scores = density.score_samples(far)
    assert not np.isnan(scores).any() and (scores[:2] < -1e10).all() and np.isfinite(scores[2])
    # All far rows are outliers; the "robust" scaling's asinh keeps a 1e300 row finite.
    scores = detector.score_samples(far)
    assert not np.isnan(scores).any() and (scores[:2] < -1e10).all()
    assert detector.predict(far)[:2].tolist() == [-1, -1]
    robust = clone(detector).set_params(scaling="robust").fit(detector_training_rows())
    assert np.isfinite(robust.score_samples(far)[0])


def test_transforms_that_overflow_raise():
    density = fitted("density")
    with pytest.raises(ValueError, match="Z is too far from the latent Gaussian.*overflows float64"):
        density.inverse_transform(np.full((2, 3), np.finfo(np.float64).max))


def test_standardization_overflow_is_a_clear_error():
    # One training row (the other validates): the validation row is 1e300 standard
    # deviations away, beyond float32 training precision.
    with pytest.raises(ValueError, match=r"too large to standardize: columns \[0\]"):
        LocalFlowMatching(**TINY).fit([[0.0], [1e300]])
    top = np.finfo(np.float64).max
    X = np.array([[-top, 1.0], [-top, 2.0], [top, 3.0], [top, 4.0], [0.0, 5.0]])
    with pytest.raises(ValueError, match=r"too large to standardize: columns \[0\]"):
        LocalFlowMatchingOutlierDetector(**{**TINY, "early_stopping": False}).fit(X)


DATES = pd.date_range("2024-01-01", periods=4)
TEMPORAL = {
    "datetime column": pd.DataFrame({"a": DATES, "b": 1.0, "c": 2.0}),
    "timedelta column": pd.DataFrame({"a": DATES - DATES[0], "b": 1.0, "c": 2.0}),
    "tz-aware column": pd.DataFrame({"a": DATES.tz_localize("UTC"), "b": 1.0, "c": 2.0}),
    "datetime64 array": np.tile(DATES.values[:, None], (1, 3)),
}


@pytest.mark.parametrize("X", TEMPORAL.values(), ids=TEMPORAL.keys())
def test_dates_are_refused_with_a_clear_message(X):
    # numpy alone would turn datetime64 into counts of its unit: a silent unit choice.
    match = r"requires numeric input \(got datetime or timedelta values\).*convert dates"
    with pytest.raises(ValueError, match=match):
        LocalFlowMatching(**TINY).fit(X)
    with pytest.raises(ValueError, match=match):
        fitted("detector").score_samples(X)
    with pytest.raises(ValueError, match=match):
        fitted("density").inverse_transform(X)


def test_objects_that_are_not_numbers_name_the_column():
    X = pd.DataFrame({"a": [1.0, 2.0, 3.0], "when": [pd.Timestamp("2024"), 1, 2]})
    with pytest.raises(TypeError, match=r"Categorical column 'when' holds values that are not"):
        LocalFlowMatching(**TINY).fit(X)


def test_wide_constant_and_degenerate_tables_fit():
    rng = np.random.RandomState(0)
    wide = rng.normal(size=(40, 200))
    model = LocalFlowMatching(**TINY).fit(wide)
    assert np.isfinite(model.score_samples(wide)).all() and model.sample(3).shape == (3, 200)
    with_constant = np.c_[rng.normal(size=(40, 2)), np.full(40, 7.0)]
    model = LocalFlowMatching(**TINY).fit(with_constant)
    assert np.isfinite(model.score_samples(with_constant)).all()
    assert np.isfinite(model.sample(5, random_state=0)).all()
    identical = np.tile([[1.0, -2.0, 3.0]], (30, 1))
    for cls in (LocalFlowMatching, LocalFlowMatchingOutlierDetector):
        scores = cls(**TINY).fit(identical).score_samples(identical)
        assert np.isfinite(scores).all() and np.ptp(scores) == 0


def test_two_rows_fit_with_the_auto_schedule():
    # One training row and one validation row: the schedule's Gaussian probe has a
    # single row to fit (it raised a torch LinAlgError).
    model = LocalFlowMatching(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    model.fit(np.array([[0.0, 1.0], [1.0, 3.0]]))
    assert np.isfinite(model.probe_scores_).all()
