"""conditional_columns: p(other columns | some columns of X), as pzflow does."""

import io

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import sklfm
from sklfm import LocalFlowMatching

from ._helpers import SMALL, TINY


def _linear_table(n, random_state):
    """x1 = 2 x0 + noise, and an independent x2."""
    rng = np.random.RandomState(random_state)
    x0 = rng.uniform(-2, 2, n)
    return pd.DataFrame({"x0": x0, "x1": 2 * x0 + 0.3 * rng.randn(n), "x2": rng.randn(n)})


@pytest.fixture(scope="module")
def linear_model():
    params = dict(SMALL, hidden_layer_sizes=(64, 64), max_iter=600)
    return LocalFlowMatching(conditional_columns=["x0"], **params).fit(_linear_table(4000, 0))


def test_samples_respect_the_given_conditions(linear_model):
    for value in (-1.5, 0.5, 1.5):
        sample = linear_model.sample(1000, y=value, random_state=0)
        # All columns, in the fitted order, with the condition copied in.
        assert sample.shape == (1000, 3)
        assert_array_equal(sample[:, 0], value)
        assert sample[:, 1].mean() == pytest.approx(2 * value, abs=0.1)
        assert 0.2 < sample[:, 1].std() < 0.45  # the noise (0.3), not the spread of x1 (2.3)
        assert sample[:, 2].mean() == pytest.approx(0.0, abs=0.15)
    # One condition per row.
    per_row = linear_model.sample(3, y=[-1.0, 0.0, 1.0], random_state=0)
    assert_array_equal(per_row[:, 0], [-1.0, 0.0, 1.0])


def test_conditional_density_normalises_over_the_rest_1d():
    rng = np.random.RandomState(0)
    c = rng.uniform(-1, 1, 3000)
    x = np.where(c > 0, rng.gamma(2.0, 1.0, 3000), rng.normal(-2.0, 0.5, 3000))
    model = LocalFlowMatching(conditional_columns=[1], **SMALL).fit(np.column_stack([x, c]))
    grid, dx = np.linspace(-8, 16, 3001, retstep=True)
    means = []
    for value in (-0.5, 0.5):
        rows = np.column_stack([grid, np.full(len(grid), value)])
        density = np.exp(model.score_samples(rows))
        assert density[0] < 1e-4 * density.max() and density[-1] < 1e-4 * density.max()
        mass = dx * (density.sum() - 0.5 * (density[0] + density[-1]))
        assert mass == pytest.approx(1.0, abs=0.02)
        means.append(dx * (grid * density).sum())
    # The conditions give the two shapes: mean -2 given c < 0, 2 given c > 0
    # (blurred near the switch at c = 0).
    assert means[0] < -1.4 and means[1] > 1.4


def test_codes_round_trip_and_names(linear_model):
    X = _linear_table(50, 1)
    Z = linear_model.transform(X)
    assert Z.shape == (50, 2)
    assert len(linear_model.get_feature_names_out()) == 2
    back = linear_model.inverse_transform(Z, y=X[["x0"]])
    assert_allclose(back, X.to_numpy(), atol=1e-4)
    assert linear_model.score_samples(X).shape == (50,)


def test_pandas_output_has_all_columns():
    X = _linear_table(300, 0)
    model = LocalFlowMatching(conditional_columns=["x2", "x0"], **TINY).fit(X)
    assert_array_equal(model.conditional_columns_, [2, 0])
    model.set_output(transform="pandas")
    sample = model.sample(4, y=[0.5, -1.0], random_state=0)
    assert list(sample.columns) == ["x0", "x1", "x2"]
    assert (sample["x2"] == 0.5).all() and (sample["x0"] == -1.0).all()


@pytest.mark.parametrize("spec", [[0, 2], [-3, -1], [True, False, True], np.array([0, 2])])
def test_indices_and_masks(spec):
    X = _linear_table(300, 0).to_numpy()
    model = LocalFlowMatching(conditional_columns=spec, **TINY).fit(X)
    assert_array_equal(model.conditional_columns_, [0, 2])
    assert model.transform(X[:5]).shape == (5, 1)


def test_save_and_load(linear_model):
    buffer = io.BytesIO()
    linear_model.save(buffer)
    buffer.seek(0)
    loaded = sklfm.load(buffer)
    X = _linear_table(20, 2)
    assert_array_equal(loaded.score_samples(X), linear_model.score_samples(X))
    assert_array_equal(loaded.sample(5, y=1.0, random_state=0), linear_model.sample(5, y=1.0, random_state=0))


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(conditional_columns=["nope"]), r"\['nope'\] are not columns of X"),
        (dict(conditional_columns=[0, 0]), "each once"),
        (dict(conditional_columns=[]), "at least one column"),
        (dict(conditional_columns=[False, False, False]), "at least one column"),
        (dict(conditional_columns=[3]), r"indices in \[-3, 3\)"),
        (dict(conditional_columns=[0, 1, 2]), "no column to model"),
        (dict(conditional_columns=[0], condition="categorical"), "not both"),
    ],
)
def test_fit_errors_leave_the_model_unchanged(params, message):
    X = _linear_table(300, 0)
    model = LocalFlowMatching(conditional_columns=["x0"], **TINY).fit(X)
    before = model.score_samples(X[:5])
    model.set_params(**params)
    with pytest.raises(ValueError, match=message):
        model.fit(X, X["x0"] > 0)
    assert_array_equal(model.conditional_columns_, [0])
    assert_array_equal(model.score_samples(X[:5]), before)


def test_names_need_a_dataframe_and_numbers():
    X = _linear_table(300, 0)
    with pytest.raises(ValueError, match="X has none"):
        LocalFlowMatching(conditional_columns=["x0"], **TINY).fit(X.to_numpy())
    typed = X.assign(kind=pd.Categorical(np.where(X["x2"] > 0, "a", "b")))
    with pytest.raises(ValueError, match="tables of numbers"):
        LocalFlowMatching(conditional_columns=["x0"], **TINY).fit(typed)


def test_sampling_needs_the_conditions(linear_model):
    with pytest.raises(ValueError, match=r"condition columns \['x0'\]"):
        linear_model.sample(3)
    with pytest.raises(ValueError, match="y has 2 rows, but n_samples has 3"):
        linear_model.sample(3, y=[1.0, 2.0])
    with pytest.raises(ValueError, match="pass y"):
        linear_model.inverse_transform(np.zeros((2, 2)))
