"""Conditional models: p(x | y) from fit(X, y) with condition= set."""

import io

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import sklfm
from sklfm import LocalFlowMatching

from ._helpers import SMALL, TINY, energy_distance


def _two_classes(n, random_state):
    """A 2-D table whose two classes sit apart, with different shapes."""
    rng = np.random.RandomState(random_state)
    y = np.where(rng.rand(n) < 0.3, "b", "a")
    angle = rng.uniform(0, 2 * np.pi, n)
    ring = np.column_stack([np.cos(angle), np.sin(angle)]) * 1.5 + 0.25 * rng.randn(n, 2)
    blob = rng.randn(n, 2) * [0.6, 0.2] + [3.0, 2.0]
    return np.where((y == "a")[:, None], ring, blob), y


@pytest.fixture(scope="module")
def two_classes():
    return _two_classes(4000, 0)


@pytest.fixture(scope="module")
def class_model(two_classes):
    X, y = two_classes
    params = dict(SMALL, hidden_layer_sizes=(64, 64), max_iter=600)
    return LocalFlowMatching(condition="categorical", **params).fit(X, y)


def test_class_samples_match_their_own_class(class_model):
    X, y = _two_classes(4000, 1)  # held out
    for label, other in (("a", "b"), ("b", "a")):
        own, others = X[y == label][:600], X[y == other][:600]
        sample = class_model.sample(600, y=label, random_state=0)
        # Two-sample statistic (energy distance): the samples are twenty times
        # closer to their own class than the two classes are to each other.
        assert energy_distance(sample, own) < 0.05 * energy_distance(own, others)


def test_sample_without_y_draws_classes_at_training_frequencies(class_model):
    sample = class_model.sample(2000, random_state=0)
    # The blob class (30 %) is the only one with x0 > 2.2.
    assert np.mean(sample[:, 0] > 2.2) == pytest.approx(0.3, abs=0.04)


def test_conditional_density_normalises_over_x_1d():
    rng = np.random.RandomState(0)
    y = rng.randint(0, 2, 3000)
    X = np.where(y == 0, rng.normal(-2.0, 0.5, 3000), rng.gamma(2.0, 1.0, 3000))[:, None]
    model = LocalFlowMatching(condition="categorical", **SMALL).fit(X, y)
    grid, dx = np.linspace(-8, 16, 3001, retstep=True)
    for label in (0, 1):
        density = np.exp(model.score_samples(grid[:, None], np.full(len(grid), label)))
        assert density[0] < 1e-4 * density.max() and density[-1] < 1e-4 * density.max()
        mass = dx * (density.sum() - 0.5 * (density[0] + density[-1]))
        assert mass == pytest.approx(1.0, abs=0.02)


def test_marginal_score_is_the_class_mixture(class_model, two_classes):
    X, y = two_classes
    rows = X[:50]
    per_class = [class_model.score_samples(rows, np.full(50, k)) for k in ("a", "b")]
    prior = np.array([np.mean(y == "a"), np.mean(y == "b")])
    expected = np.logaddexp(per_class[0] + np.log(prior[0]), per_class[1] + np.log(prior[1]))
    assert_allclose(class_model.score_samples(rows), expected, rtol=1e-12)
    # One label for all rows is the same as that label repeated.
    assert_allclose(class_model.score_samples(rows, "b"), per_class[1])


def test_transform_round_trip_given_y(class_model, two_classes):
    X, y = two_classes
    Z = class_model.transform(X[:100], y[:100])
    assert_allclose(class_model.inverse_transform(Z, y[:100]), X[:100], atol=1e-4)
    # The code depends on the condition.
    assert np.abs(class_model.transform(X[:100], np.full(100, "b")) - Z).max() > 0.1


def test_continuous_condition_moves_the_samples():
    rng = np.random.RandomState(0)
    y = rng.uniform(-2, 2, (3000, 2))
    X = (y[:, :1] - 2 * y[:, 1:]) + 0.5 * rng.randn(3000, 1)  # spread 2.4 overall
    model = LocalFlowMatching(condition="continuous", **dict(SMALL, max_iter=600)).fit(X, y)
    for condition in ([1.0, -1.0], [-1.5, 0.5]):
        sample = model.sample(1000, y=condition, random_state=0)[:, 0]
        assert sample.mean() == pytest.approx(condition[0] - 2 * condition[1], abs=0.25)
        # The condition explains most of the spread (0.5 left of 2.4).
        assert 0.35 < sample.std() < 0.3 * X.std()
    # Scoring needs the condition of each row.
    with pytest.raises(ValueError, match="pass y"):
        model.score_samples(X)
    with pytest.raises(ValueError, match="fitted with 2"):
        model.score_samples(X[:5], y[:5, :1])


def test_condition_none_ignores_y():
    X, y = _two_classes(300, 0)
    with_y = LocalFlowMatching(**TINY).fit(X, y)
    without = LocalFlowMatching(**TINY).fit(X)
    assert with_y.condition_encoder_ is None
    assert_array_equal(with_y.score_samples(X, y), without.score_samples(X))


def test_fit_transform_passes_y():
    X, y = _two_classes(300, 0)
    model = LocalFlowMatching(condition="categorical", **TINY)
    Z = model.fit_transform(X, y)
    assert_allclose(Z, model.transform(X, y))


def test_pandas_labels_and_frames():
    X, y = _two_classes(300, 0)
    frame = pd.DataFrame(X, columns=["u", "v"])
    model = LocalFlowMatching(condition="categorical", **TINY).fit(frame, pd.Series(y))
    assert_array_equal(model.condition_encoder_.classes_, ["a", "b"])
    assert model.sample(3, y="a", random_state=0).shape == (3, 2)


@pytest.mark.parametrize(
    "y, message",
    [
        (None, "needs y"),
        (np.zeros(7), "y has 7 rows, but X has 300"),
        (np.array([0.0, np.nan] * 150), "missing labels"),
    ],
)
def test_fit_errors(y, message):
    X, _ = _two_classes(300, 0)
    with pytest.raises(ValueError, match=message):
        LocalFlowMatching(condition="categorical", **TINY).fit(X, y)


def test_errors_at_use_leave_the_model_working(class_model, two_classes):
    X, y = two_classes
    before = class_model.score_samples(X[:5], y[:5])
    with pytest.raises(ValueError, match="not seen in fit"):
        class_model.sample(3, y="c")
    with pytest.raises(ValueError, match="pass y"):
        class_model.transform(X[:5])
    with pytest.raises(ValueError, match="y has 2 rows, but n_samples has 5"):
        class_model.sample(5, y=["a", "b"])
    with pytest.raises(ValueError, match="conditional"):
        class_model.distill(max_iter=1)
    assert_array_equal(class_model.score_samples(X[:5], y[:5]), before)


def test_failed_refit_keeps_the_fitted_condition():
    X, y = _two_classes(300, 0)
    model = LocalFlowMatching(condition="categorical", **TINY).fit(X, y)
    encoder, chain = model.condition_encoder_, model.chain_
    with pytest.raises(ValueError):
        model.fit(X, np.arange(5))
    assert model.condition_encoder_ is encoder and model.chain_ is chain


def test_reproducible_and_persisted(two_classes):
    X, y = two_classes
    first = LocalFlowMatching(condition="categorical", **TINY).fit(X[:500], y[:500])
    second = LocalFlowMatching(condition="categorical", **TINY).fit(X[:500], y[:500])
    assert_array_equal(first.sample(20, y="b", random_state=3), second.sample(20, y="b", random_state=3))
    buffer = io.BytesIO()
    first.save(buffer)
    buffer.seek(0)
    loaded = sklfm.load(buffer)
    assert_array_equal(loaded.score_samples(X[:20], y[:20]), first.score_samples(X[:20], y[:20]))
    assert_array_equal(loaded.condition_encoder_.classes_, ["a", "b"])


def test_warm_start_adds_conditional_blocks():
    X, y = _two_classes(300, 0)
    model = LocalFlowMatching(condition="categorical", warm_start=True, **TINY).fit(X, y)
    first = [p.detach().clone() for p in model.chain_.blocks[0].parameters()]
    model.set_params(step_sizes=(0.2, 0.3)).fit(X, y)
    assert model.step_sizes_ == (0.2, 0.3)
    for before, after in zip(first, model.chain_.blocks[0].parameters()):
        assert_array_equal(before.numpy(), after.detach().numpy())
    assert model.score_samples(X[:3], y[:3]).shape == (3,)
    with pytest.raises(ValueError, match="condition='categorical'"):
        model.set_params(condition="continuous", step_sizes=(0.2, 0.3, 0.4)).fit(X, np.ones(300))
    with pytest.raises(ValueError, match="read 2 condition columns; this fit has 0"):
        model.set_params(condition=None, step_sizes=(0.2, 0.3, 0.4)).fit(X)
