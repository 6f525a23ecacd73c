"""LocalFlowMatchingOversampler: imbalanced-learn style fit_resample with conditional samples."""

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.dummy import DummyClassifier

from sklfm import LocalFlowMatching, LocalFlowMatchingOversampler

from ._helpers import SMALL, TINY, energy_distance


def _three_classes(random_state=0, sizes=(300, 30, 60)):
    rng = np.random.RandomState(random_state)
    centres = ([0.0, 0.0], [3.0, 2.0], [-3.0, 1.0])
    X = np.vstack([rng.randn(n, 2) * 0.5 + c for n, c in zip(sizes, centres)])
    y = np.repeat(np.arange(3), sizes)
    return X, y


def _tiny_sampler(**params):
    return LocalFlowMatchingOversampler(LocalFlowMatching(**TINY), random_state=0, **params)


@pytest.mark.parametrize(
    "strategy, counts, added",
    [
        ("auto", [300, 300, 300], {1: 270, 2: 240}),
        ("not majority", [300, 300, 300], {1: 270, 2: 240}),
        ("minority", [300, 300, 60], {1: 270}),
        ("not minority", [300, 30, 300], {0: 0, 2: 240}),
        ("all", [300, 300, 300], {0: 0, 1: 270, 2: 240}),
        ({1: 100, 2: 60}, [300, 100, 60], {1: 70, 2: 0}),
    ],
)
def test_fit_resample_gives_the_requested_balance(strategy, counts, added):
    X, y = _three_classes()
    sampler = _tiny_sampler(sampling_strategy=strategy)
    X_res, y_res = sampler.fit_resample(X, y)
    assert_array_equal(np.bincount(y_res), counts)
    assert sampler.sampling_strategy_ == added
    # The original rows come first, unchanged.
    assert_array_equal(X_res[: len(X)], X)
    assert_array_equal(y_res[: len(y)], y)
    assert X_res.shape == (sum(counts), 2)


def test_float_strategy_is_the_minority_to_majority_ratio():
    X, y = _three_classes(sizes=(300, 30, 0))
    _, y_res = _tiny_sampler(sampling_strategy=0.5).fit_resample(X, y)
    assert_array_equal(np.bincount(y_res), [300, 150])


def test_generated_rows_resemble_their_class():
    X, y = _three_classes(0, sizes=(2000, 200, 400))
    held_out, y_held = _three_classes(1, sizes=(600, 600, 0))
    model = LocalFlowMatching(**dict(SMALL, max_iter=600))
    X_res, y_res = LocalFlowMatchingOversampler(model, sampling_strategy="minority").fit_resample(
        X, y
    )
    generated = X_res[len(X) :]
    assert len(generated) == 1800 and np.all(y_res[len(X) :] == 1)
    minority, majority = held_out[y_held == 1], held_out[y_held == 0]
    # Two-sample statistic: the new rows are far closer to held-out rows of
    # their class than the majority class is.
    assert energy_distance(generated[:600], minority) < 0.05 * energy_distance(majority, minority)


def test_per_class_models_or_one_conditional_model():
    X, y = _three_classes()
    per_class = _tiny_sampler().fit(X, y)
    models = per_class.estimators_
    assert list(models) == [1, 2] and models[1] is not models[2]
    # Each model was fitted on its own class alone, unconditionally.
    assert all(m.condition is None and m.condition_encoder_ is None for m in models.values())
    for label, centre in ((1, [3.0, 2.0]), (2, [-3.0, 1.0])):
        assert_allclose(models[label].standardizer_.mean_, centre, atol=0.3)
    shared = _tiny_sampler(per_class=False).fit(X, y)
    model = shared.estimators_[1]
    assert shared.estimators_[2] is model and model.condition == "categorical"
    assert_array_equal(model.condition_encoder_.classes_, [0, 1, 2])
    assert_array_equal(shared.classes_, [0, 1, 2])
    # The parameter is left untouched.
    assert shared.estimator.condition is None and not hasattr(shared.estimator, "chain_")


def test_per_class_needs_two_rows_per_class():
    X, y = _three_classes(sizes=(300, 1, 60))
    with pytest.raises(ValueError, match=r"Classes \[1\] have one row.*per_class=False"):
        _tiny_sampler().fit_resample(X, y)
    _, y_res = _tiny_sampler(per_class=False).fit_resample(X, y)
    assert_array_equal(np.bincount(y_res), [300, 300, 300])


def test_dataframe_in_dataframe_out():
    X, y = _three_classes(sizes=(80, 20, 0))
    frame = pd.DataFrame(X, columns=["u", "v"], index=np.arange(100, 200))
    frame["count"] = np.arange(100) % 7
    labels = pd.Series(np.where(y == 1, "rare", "common"), name="label", index=frame.index)
    X_res, y_res = _tiny_sampler().fit_resample(frame, labels)
    assert list(X_res.columns) == ["u", "v", "count"]
    assert X_res.dtypes.to_dict() == frame.dtypes.to_dict()
    assert_array_equal(X_res.index, np.arange(160))
    pd.testing.assert_frame_equal(X_res.iloc[:100], frame.reset_index(drop=True))
    assert isinstance(y_res, pd.Series) and y_res.name == "label"
    assert (y_res.iloc[100:] == "rare").all() and y_res.value_counts().to_dict() == {
        "common": 80,
        "rare": 80,
    }


def test_integer_random_state_is_reproducible():
    X, y = _three_classes()
    first = LocalFlowMatchingOversampler(LocalFlowMatching(**dict(TINY, random_state=None)), random_state=3)
    second = LocalFlowMatchingOversampler(LocalFlowMatching(**dict(TINY, random_state=None)), random_state=3)
    X_a, _ = first.fit_resample(X, y)
    X_b, _ = second.fit_resample(X, y)
    assert_array_equal(X_a, X_b)
    X_c, _ = LocalFlowMatchingOversampler(
        LocalFlowMatching(**dict(TINY, random_state=None)), random_state=4
    ).fit_resample(X, y)
    assert not np.array_equal(X_a[len(X) :], X_c[len(X) :])


@pytest.mark.parametrize(
    "strategy, y, message",
    [
        ("auto", np.zeros(390, dtype=int), "two classes in y; got one class"),
        ("auto", None, "requires y"),
        ("auto", np.zeros(7, dtype=int), "one class label per row"),
        ("auto", np.linspace(0, 1, 390), "Unknown label type"),
        (0.5, None, "for two classes; y has 3"),
        ({1: 10}, None, "at least its current count; class 1 has 30 rows"),
        ({5: 400}, None, r"classes not in y: \[5\]"),
    ],
)
def test_errors_leave_the_sampler_unchanged(strategy, y, message):
    X, labels = _three_classes()
    sampler = _tiny_sampler().fit(X, labels)
    before = dict(sampler.sampling_strategy_)
    y = labels if y is None and message != "requires y" else y
    sampler.set_params(sampling_strategy=strategy)
    with pytest.raises(ValueError, match=message):
        sampler.fit_resample(X, y)
    assert sampler.sampling_strategy_ == before


def test_float_strategy_cannot_remove_rows():
    X, y = _three_classes(sizes=(300, 200, 0))
    with pytest.raises(ValueError, match="cannot remove rows"):
        _tiny_sampler(sampling_strategy=0.5).fit_resample(X, y)


def test_inside_an_imblearn_pipeline():
    pipeline = pytest.importorskip("imblearn.pipeline")
    X, y = _three_classes(sizes=(300, 30, 0))
    model = pipeline.Pipeline([("over", _tiny_sampler()), ("clf", DummyClassifier())])
    model.fit(X, y)
    # The classifier saw the balanced rows; prediction uses the rows as they are.
    assert_array_equal(model.named_steps["clf"].class_prior_, [0.5, 0.5])
    assert model.predict(X).shape == (330,)


@pytest.mark.parametrize("bad, message", [(np.nan, "contains NaN in columns"), (np.inf, "infinity")])
def test_rows_of_classes_not_modelled_are_checked_too(bad, message):
    # Per class, only the classes topped up get a model: a bad majority row must still fail.
    rng = np.random.RandomState(0)
    X = pd.DataFrame(rng.normal(size=(60, 2)), columns=["a", "b"])
    y = np.r_[np.zeros(50, dtype=int), np.ones(10, dtype=int)]
    X.iloc[3, 0] = bad
    with pytest.raises(ValueError, match=message):
        LocalFlowMatchingOversampler(random_state=0).fit_resample(X, y)
