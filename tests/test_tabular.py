"""Typed tables: categorical, integer, boolean, bounded and missing values in, the same out."""

import io
import pickle
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest

import sklfm
from sklfm import LocalFlowMatching, LocalFlowMatchingOutlierDetector
from sklfm._tabular import TabularEncoder

from ._helpers import TINY

# Trained a little: enough for rates and bounds, well under a minute for the module.
FAST = {**TINY, "hidden_layer_sizes": (32,), "max_iter": 200, "batch_size": 128, "ode_steps": 4}


def mixed_table(n=300, seed=0):
    rng = np.random.RandomState(seed)
    size = rng.choice(["S", "M", "L"], n, p=[0.5, 0.3, 0.2])
    return pd.DataFrame({
        "x": rng.normal(size=n),
        "price": np.round(rng.lognormal(3, 1, size=n), 2),  # positive, long tail
        "share": rng.beta(2, 5, size=n),  # inside [0, 1]
        "count": rng.poisson(3, size=n) * 5,  # integers on a grid of step 5
        "flag": rng.rand(n) < 0.3,
        "size": pd.Categorical(size, categories=["S", "M", "L"], ordered=True),
        "town": pd.Series(rng.choice(["north", "south", "east"], n), dtype=object),
    })  # fmt: skip


@lru_cache
def fitted():
    return LocalFlowMatching(**FAST).fit(mixed_table())


def test_sample_keeps_columns_dtypes_and_categories():
    X = mixed_table()
    samples = fitted().sample(400, random_state=1)
    assert list(samples.columns) == list(X.columns)
    assert samples.dtypes.to_dict() == X.dtypes.to_dict()
    assert samples["size"].cat.categories.tolist() == ["S", "M", "L"]
    assert samples["size"].cat.ordered
    assert set(samples["town"]) <= set(X["town"]) and set(samples["flag"]) == {False, True}
    # Categories are sampled at roughly their rates, not collapsed onto one.
    rates = samples["size"].value_counts(normalize=True)
    assert abs(rates["S"] - 0.5) < 0.15 and rates["L"] > 0.05


def test_integers_are_sampled_on_their_grid():
    X, samples = mixed_table(), fitted().sample(400, random_state=2)
    assert samples["count"].dtype == np.int64
    assert (samples["count"] % 5 == 0).all()
    assert samples["count"].min() >= X["count"].min() and samples["count"].max() <= X["count"].max()
    assert samples["count"].nunique() > 3


def test_bounded_columns_stay_in_their_training_range():
    X, samples = mixed_table(), fitted().sample(1000, random_state=3)
    assert (samples["price"] > 0).all() and (samples["price"] <= X["price"].max()).all()
    assert samples["share"].between(X["share"].min(), X["share"].max()).all()
    assert samples["share"].between(0, 1).all()


def test_inverse_transform_of_transform_gives_the_rows_back():
    X = mixed_table().iloc[:50]
    model = fitted()
    Z = model.transform(X)
    assert Z.shape == (50, model.tabular_.n_encoded_)
    np.testing.assert_array_equal(Z, model.transform(X))  # deterministic: cell midpoints
    back = model.inverse_transform(Z)
    for name in ["flag", "size", "town", "count"]:
        assert (back[name] == X[name]).all(), name
    np.testing.assert_allclose(back["x"], X["x"], atol=1e-3)


def test_score_samples_is_finite_and_carries_the_jacobian():
    X = mixed_table()
    model = fitted()
    scores = model.score_samples(X)
    assert scores.shape == (len(X),) and np.isfinite(scores).all()
    # Scaling a continuous column by c shifts the scores by -log c: a density in its units.
    c = 10.0
    rescaled = LocalFlowMatching(**FAST).fit(X.assign(share=X["share"] * c))
    shifted = rescaled.score_samples(X.assign(share=X["share"] * c))
    np.testing.assert_allclose(shifted, scores - np.log(c), atol=1e-3)


def test_float_columns_on_a_decimal_grid_are_discrete():
    # price has 2 decimals: a cell of 0.01, scored as log P(cell) (scaling it changes no
    # score) and sampled with 2 decimals; x and share have full precision: no cell.
    X = mixed_table()
    encoder = TabularEncoder().fit(X)
    assert encoder.widths_[X.columns.get_loc("price")] == pytest.approx(0.01)
    for name in ["x", "share"]:
        assert encoder.widths_[X.columns.get_loc(name)] == 0, name
    samples = fitted().sample(200, random_state=0)
    np.testing.assert_array_equal(samples["price"], samples["price"].round(2))
    tenfold = X.assign(price=(X["price"] * 10).round(1))  # on a grid of 0.1
    rescaled = LocalFlowMatching(**FAST).fit(tenfold)
    scores = fitted().score_samples(X)
    np.testing.assert_allclose(rescaled.score_samples(tenfold), scores, atol=1e-3)


def test_decimal_grid_holds_every_training_value():
    # 0.29 * 100 is not an integer in float64; the grid must still be 0.01 apart from 0.23,
    # so that every training value is decoded as itself.
    X = pd.DataFrame({"x": [0.23, 0.29, 0.33, 0.23], "c": ["a", "b", "a", "b"]})
    encoder = TabularEncoder().fit(X)
    assert encoder.widths_[0] == pytest.approx(0.02)
    pd.testing.assert_frame_equal(encoder.inverse_transform(encoder.transform(X)), X)


def test_copula_log_det_is_the_derivative_of_the_encoding():
    X = mixed_table()
    encoder = TabularEncoder().fit(X)
    rng = np.random.RandomState(0)
    G = encoder.grid(X.iloc[:40])
    continuous = encoder.widths_ == 0
    # Inside, between and beyond the training values of the continuous columns.
    low, high = G[:, continuous].min(axis=0), G[:, continuous].max(axis=0)
    span = high - low
    G[:, continuous] = rng.uniform(low - span, high + span, size=(len(G), continuous.sum()))
    h = 1e-6 * np.maximum(np.abs(G), 1)
    E = encoder.forward(G)
    steps = np.eye(G.shape[1])
    jacobian = np.stack(
        [(encoder.forward(G + h * e) - encoder.forward(G - h * e)) / (2 * h) for e in steps], axis=2
    )  # rows, dE_i, dg_j
    sign, log_abs_det = np.linalg.slogdet(jacobian)
    assert (sign > 0).all()
    expected = log_abs_det + np.log(encoder.widths_[~continuous]).sum()
    np.testing.assert_allclose(encoder.log_det(E), expected, rtol=1e-5)
    np.testing.assert_allclose(encoder.backward(E), G, rtol=1e-9, atol=1e-9)


def test_encoded_training_columns_are_standard_normal():
    from scipy import stats

    X = mixed_table(2000)
    encoder = TabularEncoder().fit(X)
    E = encoder.dequantize(encoder.transform(X), np.random.RandomState(0))
    for j, name in enumerate(encoder.columns_):
        assert stats.kstest(E[:, j], "norm").statistic < 0.03, name
    # Without noise, a code sits in the middle of its category's share of N(0, 1).
    town = X.columns.get_loc("town")
    share = X["town"].value_counts(normalize=True).iloc[0]
    first = encoder.transform(X)[X["town"] == encoder.categories_[town][0], town]
    np.testing.assert_allclose(first, stats.norm.ppf(share / 2), atol=1e-3)


def test_fill_is_one_uniform_draw_per_stratum_of_each_cell():
    from sklfm._tabular import _ranked_offsets

    rng = np.random.RandomState(0)
    g = rng.choice([0.0, 1.0, 5.0], 500)
    offsets = _ranked_offsets(g, rng.normal(size=500), rng)
    for value in np.unique(g):
        cell = np.sort(offsets[g == value] + 0.5)
        # The n rows of a cell hold one point in each of its n equal strata: uniform fill.
        np.testing.assert_array_equal(np.floor(cell * len(cell)), np.arange(len(cell)))


def test_fill_follows_the_other_columns():
    # A category that shifts x: within a cell, rows with larger x sit higher, as a latent
    # variable behind the category would; an independent fill would leave them unrelated.
    rng = np.random.RandomState(0)
    x = rng.normal(size=3000)
    X = pd.DataFrame({"x": x, "level": pd.Categorical(np.where(x + rng.normal(size=3000) > 0, "hi", "lo"))})
    encoder = TabularEncoder().fit(X)
    E = encoder.dequantize(encoder.transform(X), np.random.RandomState(1))
    level = X.columns.get_loc("level")
    for code in ("hi", "lo"):
        inside = (X["level"] == code).to_numpy()
        within = np.corrcoef(E[inside, level], x[inside])[0, 1]
        assert within * np.sign(np.corrcoef(E[:, level], x)[0, 1]) > 0.2, code


def test_rows_beyond_the_training_range_score_finite():
    X = mixed_table().iloc[:4].copy()
    X["x"] = [-50.0, 50.0, 1e6, 0.0]
    X["share"] = [-3.0, 2.0, 0.5, 40.0]
    X["count"] = [-100, 1000, 0, 5]
    scores = fitted().score_samples(X)
    assert np.isfinite(scores).all()
    assert (scores < fitted().score_samples(mixed_table()).min()).all()


def test_score_includes_the_integer_cell_width():
    # The score of a discrete column is log P(cell): integers on a grid of step 5,
    # scaled by 2, give the same scores (cells are 10 wide, densities half as high).
    X = mixed_table()[["x", "count"]]
    params = {**FAST, "integer_features": ["count"]}  # numbers only: typed when asked
    a = LocalFlowMatching(**params).fit(X).score_samples(X)
    b = LocalFlowMatching(**params).fit(X.assign(count=X["count"] * 2))
    np.testing.assert_allclose(b.score_samples(X.assign(count=X["count"] * 2)), a, atol=1e-3)


def test_unseen_category_is_a_clear_error():
    X = mixed_table().iloc[:5].copy()
    X.loc[2, "town"] = "west"
    with pytest.raises(ValueError, match=r"Column 'town' holds the category 'west'.*not seen"):
        fitted().score_samples(X)


def test_missing_values_error_names_the_columns():
    X = mixed_table()
    X.loc[3, "price"] = np.nan
    X.loc[4, "town"] = None
    with pytest.raises(ValueError, match=r"NaN in columns \['price', 'town'\].*SimpleImputer"):
        LocalFlowMatching(**FAST).fit(X)
    with pytest.raises(ValueError, match=r"NaN in columns \['price', 'town'\]"):
        fitted().score_samples(X)
    # A float-only frame names its columns too.
    with pytest.raises(ValueError, match=r"NaN in columns \['b'\]"):
        LocalFlowMatching(**FAST).fit(pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [1.0, np.nan, 2.0]}))


def test_missing_indicator_samples_gaps_at_the_real_rate():
    X = mixed_table(400)
    rng = np.random.RandomState(1)
    X.loc[rng.rand(400) < 0.25, "price"] = np.nan
    X.loc[rng.rand(400) < 0.15, "town"] = np.nan
    model = LocalFlowMatching(**{**FAST, "missing": "indicator"}).fit(X)
    assert model.tabular_.n_encoded_ == X.shape[1] + 1  # one indicator, for price
    samples = model.sample(1000, random_state=0)
    assert abs(samples["price"].isna().mean() - 0.25) < 0.08
    assert abs(samples["town"].isna().mean() - 0.15) < 0.08
    assert set(samples["town"].dropna()) <= {"north", "south", "east"}
    assert np.isfinite(model.score_samples(X)).all()
    with pytest.raises(ValueError, match=r"NaN in columns \['x'\], which had no missing"):
        model.score_samples(X.assign(x=np.nan))


def test_overrides_name_categorical_and_integer_columns():
    X = mixed_table()[["x", "count"]].assign(code=lambda f: (f["count"] // 5) % 3)
    model = LocalFlowMatching(
        **{**FAST, "max_iter": 20}, categorical_features=["code"], integer_features=[0]
    ).fit(X.assign(x=X["x"].round()))
    assert model.tabular_.kinds_ == ["integer", "integer", "categorical"]
    samples = model.sample(50, random_state=0)
    assert set(samples["code"]) <= {0, 1, 2} and (samples["x"] == samples["x"].round()).all()
    with pytest.raises(ValueError, match="'nope' is not a column"):
        LocalFlowMatching(**FAST, categorical_features=["nope"]).fit(X)
    with pytest.raises(ValueError, match="apply to pandas DataFrames"):
        LocalFlowMatching(**FAST, categorical_features=[0]).fit(X.to_numpy())


def test_arrays_and_frames_of_numbers_are_modelled_as_before():
    X = mixed_table()[["x", "share", "count"]]
    params = {**FAST, "max_iter": 20}
    model = LocalFlowMatching(**params).fit(X.to_numpy())
    assert model.tabular_ is None and isinstance(model.sample(3), np.ndarray)
    frame_model = LocalFlowMatching(**params).fit(X)
    assert frame_model.tabular_ is None
    np.testing.assert_array_equal(frame_model.score_samples(X), model.score_samples(X.to_numpy()))


def test_typed_model_needs_a_dataframe():
    with pytest.raises(ValueError, match="fitted on a DataFrame with typed columns"):
        fitted().score_samples(mixed_table().to_numpy())


def test_save_load_and_pickle_round_trip():
    X = mixed_table().iloc[:40]
    model = fitted()
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    for restored in (sklfm.load(buffer), pickle.loads(pickle.dumps(model))):
        assert isinstance(restored.tabular_, TabularEncoder)
        np.testing.assert_array_equal(restored.score_samples(X), model.score_samples(X))
        pd.testing.assert_frame_equal(
            restored.sample(20, random_state=0), model.sample(20, random_state=0)
        )


def test_detector_on_a_mixed_table():
    X = mixed_table(300)
    outliers = mixed_table(10, seed=5).assign(x=12.0, price=X["price"].max() * 0.99)
    detector = LocalFlowMatchingOutlierDetector(
        hidden_layer_sizes=(16,), max_iter=60, contamination=0.05, random_state=0, device="cpu"
    ).fit(X)
    assert detector.tabular_ is not None
    # The column layer dequantizes the discrete columns; the detector does not again.
    discrete = detector.tabular_.widths_ > 0
    assert not detector.standardizer_.grid_steps_[discrete].any()
    assert np.isfinite(detector.score_samples(X)).all()
    assert (detector.predict(outliers) == -1).mean() >= 0.9
    assert (detector.predict(X) == 1).mean() >= 0.9


def test_point_mass_at_the_minimum_is_kept():
    X = mixed_table(400)
    rng = np.random.RandomState(2)
    X["debt"] = np.where(rng.rand(400) < 0.6, 0.0, np.round(rng.lognormal(6, 1, 400)))
    model = LocalFlowMatching(**FAST).fit(X)
    assert model.tabular_.atoms_ == [X.columns.get_loc("debt")]
    samples = model.sample(1000, random_state=0)
    assert abs((samples["debt"] == 0).mean() - 0.6) < 0.1
    assert (samples["debt"] >= 0).all() and (samples["debt"] > 50).mean() > 0.2
    assert np.isfinite(model.score_samples(X)).all()


def test_unordered_categories_are_coded_most_frequent_first():
    X = mixed_table()
    assert fitted().tabular_.categories_[X.columns.get_loc("size")] == ["S", "M", "L"]
    town = fitted().tabular_.categories_[X.columns.get_loc("town")]
    assert town == X["town"].value_counts().index.tolist()
