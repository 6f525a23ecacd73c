"""Bad input and bad parameters give clear scikit-learn style errors, and a
failing call leaves a fitted estimator as it was."""

import warnings

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_array_equal
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

from sklfm import LocalFlowMatching
from sklfm.datasets import make_rings

from ._helpers import TINY


@pytest.fixture(scope="module")
def X():
    return make_rings(200, random_state=0)


@pytest.fixture(scope="module")
def fitted(X):
    return LocalFlowMatching(**TINY).fit(X)


# --- unfitted -------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda m, X: m.score_samples(X),
        lambda m, X: m.score(X),
        lambda m, X: m.sample(3),
        lambda m, X: m.transform(X),
        lambda m, X: m.inverse_transform(X),
        lambda m, X: m.get_feature_names_out(),
    ],
    ids=["score_samples", "score", "sample", "transform", "inverse_transform", "names_out"],
)
def test_not_fitted_error(call, X):
    with pytest.raises(NotFittedError, match="not fitted yet"):
        call(LocalFlowMatching(**TINY), X)


# --- bad data --------------------------------------------------------------------

BAD_FIT_DATA = [
    (np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 1.0]]), "Input X contains NaN"),
    (np.array([[0.0, 1.0], [np.inf, 2.0], [1.0, 1.0]]), "Input X contains infinity"),
    (np.array([[0.0, 1.0], [-np.inf, 2.0], [1.0, 1.0]]), "Input X contains infinity"),
    (np.empty((0, 2)), r"0 sample\(s\)"),
    (np.empty((5, 0)), r"0 feature\(s\)"),
    (np.array([[1.0, 2.0]]), r"1 sample\(s\).*minimum of 2"),
    (np.zeros((4, 2, 2)), "dim 3"),
    (np.arange(5.0), "Expected 2D array"),
    (np.array([[1, 2], [3, 4]]) + 1j, "Complex data not supported"),
    (
        pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", None, "z"]}),
        r"NaN in columns \['b'\].*SimpleImputer",
    ),
    (
        pd.DataFrame({"a": [1.0, 2.0, 3.0], "c": pd.Categorical(["x", "y", None])}),
        r"NaN in columns \['c'\]",
    ),
    (np.array([["1", "2"], ["3", "x"]]), "requires numeric input"),
]


@pytest.mark.parametrize("data, match", BAD_FIT_DATA)
def test_bad_fit_data(data, match):
    with pytest.raises(ValueError, match=match):
        LocalFlowMatching(**TINY).fit(data)


def test_object_array_of_numbers_is_accepted(X):
    model = LocalFlowMatching(**TINY).fit(X.astype(object))
    assert model.score_samples(X[:3].astype(object)).dtype == np.float64


@pytest.mark.parametrize("method", ["score_samples", "score", "transform", "inverse_transform"])
def test_bad_data_after_fit(fitted, X, method):
    call = getattr(fitted, method)
    name = "Z" if method == "inverse_transform" else "X"
    with pytest.raises(
        ValueError, match=f"{name} has 3 features, but LocalFlowMatching is expecting 2"
    ):
        call(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=f"Input {name} contains NaN"):
        call(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match=f"Input {name} contains infinity"):
        call(np.array([[0.0, np.inf]]))
    with pytest.raises(ValueError, match=r"0 sample\(s\)"):
        call(np.empty((0, 2)))
    with pytest.raises(ValueError, match="Expected 2D array"):
        call(np.zeros(2))
    with pytest.raises(ValueError, match="dim 3"):
        call(np.zeros((2, 2, 2)))


@pytest.mark.parametrize("n_samples", [0, -1, 2.5, "3", None, True])
def test_bad_n_samples(fitted, n_samples):
    with pytest.raises(ValueError, match="n_samples must be a positive integer"):
        fitted.sample(n_samples)


def test_sample_accepts_numpy_integer(fitted):
    assert fitted.sample(np.int64(3)).shape == (3, 2)


# --- bad parameters --------------------------------------------------------------

BAD_PARAMS = [
    (dict(step_sizes=(-0.1,)), "step_sizes must be 'auto' or a tuple of positive"),
    (dict(step_sizes=(0.1, 0.0)), "step_sizes must be 'auto' or a tuple of positive"),
    (dict(step_sizes=(0.1, np.nan)), "step_sizes must be 'auto' or a tuple of positive"),
    (dict(step_sizes=(0.1, np.inf)), "step_sizes must be 'auto' or a tuple of positive"),
    (dict(step_sizes=("0.1",)), "step_sizes must be 'auto' or a tuple of positive"),
    (dict(step_sizes=(True,)), "step_sizes must be 'auto' or a tuple of positive"),
    (dict(step_sizes="geometric"), "The 'step_sizes' parameter of LocalFlowMatching must be"),
    (dict(step_sizes=0.1), "The 'step_sizes' parameter of LocalFlowMatching must be"),
    (dict(hidden_layer_sizes=()), "hidden_layer_sizes must be a positive integer or"),
    (dict(hidden_layer_sizes=(16, 0)), "hidden_layer_sizes must be a positive integer or"),
    (dict(hidden_layer_sizes=(16, -4)), "hidden_layer_sizes must be a positive integer or"),
    (dict(hidden_layer_sizes=(16.5,)), "hidden_layer_sizes must be a positive integer or"),
    (dict(hidden_layer_sizes=(True,)), "hidden_layer_sizes must be a positive integer or"),
    (dict(hidden_layer_sizes=0), "The 'hidden_layer_sizes' parameter"),
    (dict(hidden_layer_sizes="wide"), "The 'hidden_layer_sizes' parameter"),
    (dict(activation="sigmoid"), "The 'activation' parameter of LocalFlowMatching must be"),
    (dict(interpolant="cubic"), "The 'interpolant' parameter"),
    (dict(solver="dopri5"), "The 'solver' parameter"),
    (dict(max_iter=0), "The 'max_iter' parameter"),
    (dict(max_iter=1.5), "The 'max_iter' parameter"),
    (dict(batch_size=0), "The 'batch_size' parameter"),
    (dict(learning_rate=0.0), "The 'learning_rate' parameter"),
    (dict(learning_rate=-1e-3), "The 'learning_rate' parameter"),
    (dict(ode_steps=0), "The 'ode_steps' parameter"),
    (dict(block_init="yes"), "The 'block_init' parameter"),
    (dict(random_state="seed"), "The 'random_state' parameter"),
    (dict(device=3.0), "The 'device' parameter"),
    (dict(device="not-a-device"), "device='not-a-device' is not a valid torch device"),
]


@pytest.mark.parametrize("params, match", BAD_PARAMS)
def test_bad_parameters(params, match, X):
    model = LocalFlowMatching(**{**TINY, **params})  # constructing never raises
    with pytest.raises(ValueError, match=match):
        model.fit(X)


def test_declarative_errors_are_invalid_parameter_errors(X):
    with pytest.raises(InvalidParameterError):
        LocalFlowMatching(**{**TINY, "activation": "sigmoid"}).fit(X)


def test_cuda_requested_without_cuda(X):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        LocalFlowMatching(**{**TINY, "device": "cuda"}).fit(X)


@pytest.mark.parametrize("hidden", [(8,), [8, 8], 8, np.int64(8)])
def test_hidden_layer_sizes_forms(hidden, X):
    model = LocalFlowMatching(**{**TINY, "hidden_layer_sizes": hidden}).fit(X)
    assert np.isfinite(model.score_samples(X[:5])).all()


@pytest.mark.parametrize("activation", ["softplus", "silu", "elu", "tanh", "relu"])
@pytest.mark.parametrize("solver", ["rk4", "midpoint", "euler"])
def test_all_activations_and_solvers_run(activation, solver, X):
    model = LocalFlowMatching(**{**TINY, "activation": activation, "solver": solver}).fit(X)
    assert np.isfinite(model.score_samples(X[:5])).all()
    assert np.isfinite(model.sample(5)).all()


@pytest.mark.parametrize("interpolant", ["trigonometric", "linear", "auto"])
def test_interpolants_run(interpolant, X):
    model = LocalFlowMatching(**{**TINY, "interpolant": interpolant}).fit(X)
    assert np.isfinite(model.score_samples(X[:5])).all()


# --- a failing call leaves the fitted estimator unchanged -----------------------


def _state(model, X):
    return (
        model.score_samples(X),
        model.sample(5, random_state=0),
        model.n_features_in_,
        list(getattr(model, "feature_names_in_", [])),
    )


def _assert_same_state(before, after):
    assert_array_equal(before[0], after[0])
    assert_array_equal(before[1], after[1])
    assert before[2:] == after[2:]


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_failed_calls_leave_fitted_estimator_unchanged(X):
    df = pd.DataFrame(X, columns=["u", "v"])
    model = LocalFlowMatching(**TINY).fit(df)
    before = _state(model, df)

    failing = [
        lambda: model.score_samples(np.zeros((3, 3))),
        lambda: model.transform(df.assign(v=np.nan)),
        lambda: model.inverse_transform(np.zeros((3, 5))),
        lambda: model.sample(0),
        # refits that fail on their input must not keep any of it
        lambda: model.fit(np.array([[0.0, np.nan, 1.0], [1.0, 2.0, 3.0]])),
        lambda: model.fit(pd.DataFrame({"p": [1.0, np.inf], "q": [1.0, 2.0]})),
        lambda: model.fit(pd.DataFrame({"p": [1.0, 2.0], "q": ["a", None]})),
        lambda: model.fit(np.zeros((1, 4))),
    ]
    for call in failing:
        with pytest.raises(ValueError):
            call()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. "X has feature names, but ..."
            after = _state(model, df)
        _assert_same_state(before, after)


def test_failed_refit_with_bad_parameters_keeps_fitted_state(X):
    model = LocalFlowMatching(**TINY).fit(X)
    before = _state(model, X)
    for params in [dict(step_sizes=(-1.0,)), dict(activation="nope"), dict(device="nowhere")]:
        model.set_params(**params)
        with pytest.raises(ValueError):
            model.fit(X)
        model.set_params(**{k: TINY.get(k, "auto") for k in params})
        _assert_same_state(before, _state(model, X))


def test_interrupted_fit_keeps_previous_model(X, monkeypatch):
    import sklfm._base as base

    model = LocalFlowMatching(**TINY).fit(X)
    before = _state(model, X)

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(base, "train_chain", boom)
    with pytest.raises(KeyboardInterrupt):
        model.fit(np.random.RandomState(0).normal(size=(50, 3)))
    monkeypatch.undo()
    _assert_same_state(before, _state(model, X))
