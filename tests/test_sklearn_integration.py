"""LocalFlowMatching as a scikit-learn citizen: pandas, set_output, Pipeline,
model selection, cloning and parameters, output types, batch invariance."""

import inspect
import os
import pickle
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
import sklearn
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import QuantileTransformer
from sklearn.utils.validation import check_is_fitted

from sklfm import LocalFlowMatching
from sklfm.datasets import make_pinwheel, make_rings

from ._helpers import TINY

COLUMNS = ["width", "height"]


@pytest.fixture(scope="module")
def X():
    return make_rings(300, random_state=0)


@pytest.fixture(scope="module")
def df(X):
    return pd.DataFrame(X, columns=COLUMNS, index=np.arange(100, 100 + len(X)))


@pytest.fixture(scope="module")
def fitted_df(df):
    return LocalFlowMatching(**TINY).fit(df)


# --- pandas and set_output ------------------------------------------------------


def test_dataframe_input_records_feature_names(fitted_df, df, X):
    assert fitted_df.n_features_in_ == 2
    assert_array_equal(fitted_df.feature_names_in_, COLUMNS)
    # Same numbers as the plain array.
    from_array = LocalFlowMatching(**TINY).fit(X)
    assert_array_equal(fitted_df.score_samples(df), from_array.score_samples(X))


def test_get_feature_names_out(fitted_df):
    names = fitted_df.get_feature_names_out()
    assert_array_equal(names, ["localflowmatching0", "localflowmatching1"])
    assert_array_equal(fitted_df.get_feature_names_out(COLUMNS), names)
    with pytest.raises(ValueError, match="input_features is not equal to feature_names_in_"):
        fitted_df.get_feature_names_out(["a", "b"])


def test_fitted_with_names_called_without_warns(fitted_df, X):
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        fitted_df.score_samples(X[:3])


def test_fitted_without_names_called_with_names_warns(X, df):
    model = LocalFlowMatching(**TINY).fit(X)
    match = "X has feature names, but LocalFlowMatching was fitted without"
    with pytest.warns(UserWarning, match=match):
        model.score_samples(df[:3])


def test_mismatched_feature_names_raise(fitted_df, df):
    with pytest.raises(ValueError, match="feature names should match"):
        fitted_df.score_samples(df[COLUMNS[::-1]])


def test_no_pandas_output_by_default(fitted_df, df):
    outputs = [
        fitted_df.transform(df),
        fitted_df.sample(4),
        fitted_df.inverse_transform(np.zeros((2, 2))),
    ]
    for out in outputs:
        assert type(out) is np.ndarray and out.dtype == np.float64


def test_set_output_pandas(df):
    model = clone(LocalFlowMatching(**TINY)).set_output(transform="pandas").fit(df)
    Z = model.transform(df)
    assert isinstance(Z, pd.DataFrame)
    assert_array_equal(Z.columns, model.get_feature_names_out())
    assert_array_equal(Z.index, df.index)

    samples = model.sample(5, random_state=0)
    assert isinstance(samples, pd.DataFrame)
    assert list(samples.columns) == COLUMNS
    assert (samples.dtypes == np.float64).all()

    back = model.inverse_transform(Z)
    assert isinstance(back, pd.DataFrame)
    assert list(back.columns) == COLUMNS
    assert_array_equal(back.index, df.index)  # index of the codes is kept
    assert_allclose(back.to_numpy(), df.to_numpy(), atol=1e-4)

    # fit_transform goes through the same wrapping
    assert isinstance(clone(model).fit_transform(df), pd.DataFrame)
    # switching back gives arrays again
    model.set_output(transform="default")
    assert type(model.sample(2)) is np.ndarray


def test_global_config_pandas_output(fitted_df, df):
    with sklearn.config_context(transform_output="pandas"):
        Z = fitted_df.transform(df)
        samples = fitted_df.sample(3)
        back = fitted_df.inverse_transform(Z.to_numpy())
    assert isinstance(Z, pd.DataFrame)
    assert isinstance(samples, pd.DataFrame) and list(samples.columns) == COLUMNS
    assert isinstance(back, pd.DataFrame) and list(back.columns) == COLUMNS


def test_pandas_output_when_fitted_without_names(X):
    model = LocalFlowMatching(**TINY).set_output(transform="pandas").fit(X)
    assert list(model.sample(2).columns) == ["x0", "x1"]


# --- Pipeline ---------------------------------------------------------------------


def test_pipeline_with_quantile_transformer():
    X = make_pinwheel(1000, random_state=0)
    pipe = Pipeline(
        [
            ("scale", QuantileTransformer(output_distribution="normal", n_quantiles=200)),
            ("lfm", LocalFlowMatching(**{**TINY, "hidden_layer_sizes": (16, 16), "max_iter": 50})),
        ]
    ).fit(X)
    # Scores are log-densities in the space after the earlier steps (the
    # QuantileTransformer's Jacobian is not included).
    scores = pipe.score_samples(X[:10])
    assert scores.shape == (10,) and np.isfinite(scores).all()
    assert np.isfinite(pipe.score(X))
    # Sampling: draw in the flow's space, map back through the earlier steps.
    samples = pipe[:-1].inverse_transform(pipe[-1].sample(200, random_state=0))
    assert samples.shape == (200, 2) and np.isfinite(samples).all()
    # A QuantileTransformer's inverse never leaves the training range.
    assert (samples >= X.min(0) - 1e-9).all() and (samples <= X.max(0) + 1e-9).all()
    # Round trip of the whole pipeline.
    assert_allclose(pipe.inverse_transform(pipe.transform(X[:20])), X[:20], atol=1e-2)


# --- model selection --------------------------------------------------------------


def test_grid_search_selects_by_held_out_log_likelihood():
    X = make_rings(1500, random_state=0)
    base = LocalFlowMatching(**{**TINY, "step_sizes": (), "max_iter": 150, "batch_size": 256})
    # A width-1 network cannot bend the rings; the (32, 32) one can.
    grid = GridSearchCV(base, {"hidden_layer_sizes": [(1,), (32, 32)]}, cv=3, n_jobs=2).fit(X)
    assert grid.best_params_ == {"hidden_layer_sizes": (32, 32)}
    scores = grid.cv_results_["mean_test_score"]
    assert scores[1] > scores[0] + 0.1  # nats per row
    # The default scorer is the estimator's score: mean held-out log-likelihood.
    assert grid.best_score_ == pytest.approx(scores[1])
    best = grid.best_estimator_
    check_is_fitted(best)
    assert best.sample(10, random_state=0).shape == (10, 2)


def test_cross_val_score_uses_mean_log_likelihood():
    X = make_rings(600, random_state=0)
    model = LocalFlowMatching(**{**TINY, "max_iter": 20})
    scores = cross_val_score(model, X, cv=3)
    assert scores.shape == (3,) and np.isfinite(scores).all()
    # Fold 1's score equals the model's mean score_samples on that fold.
    fold = np.arange(len(X)) < len(X) // 3
    refit = clone(model).fit(X[~fold])
    assert scores[0] == pytest.approx(refit.score_samples(X[fold]).mean())


def _fit_and_report_threads(X):
    # Runs inside a joblib worker.
    LocalFlowMatching(**TINY).fit(X)
    return torch.get_num_threads()


def test_joblib_workers_do_not_oversubscribe(X):
    # Decision: sklfm does not touch torch's thread count. joblib's loky
    # backend (GridSearchCV's default for n_jobs > 1) starts each worker with
    # OMP_NUM_THREADS etc. set to cpu_count // n_jobs, and torch reads that at
    # start-up, so n_jobs workers x torch threads never exceeds the cores.
    # Setting torch.set_num_threads inside fit would change a process-wide
    # setting for the user and brings nothing on CUDA, where the GPU does the work.
    n_jobs = 2
    threads = joblib.Parallel(n_jobs=n_jobs)(
        joblib.delayed(_fit_and_report_threads)(X) for _ in range(n_jobs)
    )
    assert max(threads) <= max(1, joblib.cpu_count() // n_jobs)


# --- cloning, parameters, repr ----------------------------------------------------


def test_clone_of_fitted_is_unfitted(fitted_df, df):
    copy = clone(fitted_df)
    with pytest.raises(NotFittedError):
        copy.score_samples(df)
    assert copy.get_params() == fitted_df.get_params()
    assert not hasattr(copy, "chain_")


def test_get_set_params_and_repr():
    model = LocalFlowMatching()
    params = model.get_params()
    assert set(params) == set(inspect.signature(LocalFlowMatching).parameters)
    assert repr(model) == "LocalFlowMatching()"
    model.set_params(max_iter=7, step_sizes=(0.1,))
    assert model.max_iter == 7 and model.step_sizes == (0.1,)
    assert repr(model) == "LocalFlowMatching(max_iter=7, step_sizes=(0.1,))"
    with pytest.raises(ValueError, match="Invalid parameter 'n_blocks'"):
        model.set_params(n_blocks=3)


def test_defaults_are_immutable_and_not_mutated(X):
    for name, parameter in inspect.signature(LocalFlowMatching).parameters.items():
        assert isinstance(parameter.default, (str, int, float, bool, tuple, type(None))), name
    hidden = [8]
    steps = [0.2]
    model = LocalFlowMatching(**{**TINY, "hidden_layer_sizes": hidden, "step_sizes": steps})
    model.fit(X)
    assert model.hidden_layer_sizes is hidden and hidden == [8]
    assert model.step_sizes is steps and steps == [0.2]


def test_pickle_round_trip(fitted_df, df):
    restored = pickle.loads(pickle.dumps(fitted_df))
    assert_array_equal(restored.score_samples(df), fitted_df.score_samples(df))
    assert_array_equal(restored.sample(5, random_state=1), fitted_df.sample(5, random_state=1))


# --- outputs and batch invariance ---------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_outputs_are_float64(X, dtype):
    data = (X * 10).astype(dtype)
    model = LocalFlowMatching(**TINY).fit(data)
    assert model.score_samples(data).dtype == np.float64
    assert isinstance(model.score(data), float)
    assert model.transform(data).dtype == np.float64
    assert model.inverse_transform(model.transform(data)).dtype == np.float64
    assert model.sample(3).dtype == np.float64


def test_scores_and_codes_are_batch_invariant():
    X = make_pinwheel(3000, random_state=0)
    model = LocalFlowMatching(**{**TINY, "hidden_layer_sizes": (32, 32), "max_iter": 30}).fit(X)
    batch_scores = model.score_samples(X)
    batch_codes = model.transform(X)
    batch_back = model.inverse_transform(batch_codes)
    tight = dict(rtol=1e-12, atol=1e-12)
    for i in [0, 1, 1234, 2999]:
        row = slice(i, i + 1)
        assert_allclose(model.score_samples(X[row]), batch_scores[row], **tight)
        assert_allclose(model.transform(X[row]), batch_codes[row], **tight)
        assert_allclose(model.inverse_transform(batch_codes[row]), batch_back[row], **tight)
    # Order does not matter either.
    perm = np.random.RandomState(0).permutation(len(X))
    assert_allclose(model.score_samples(X[perm]), batch_scores[perm], **tight)


def test_scores_are_batch_invariant_across_chunks(monkeypatch):
    # Rows split over several internal chunks give the same values.
    import sklfm.core.chain as chain

    X = make_rings(500, random_state=0)
    model = LocalFlowMatching(**TINY).fit(X)
    whole = model.score_samples(X)
    monkeypatch.setattr(chain, "_TANGENT_BUDGET", 7 * 2 * 8)  # 7-row chunks
    assert_allclose(model.score_samples(X), whole, rtol=1e-12, atol=1e-12)
    assert_allclose(model.sample(20, random_state=0), model.sample(20, random_state=0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fit_score_sample_and_pickle(X):
    model = LocalFlowMatching(**{**TINY, "device": "auto"}).fit(X)
    assert model.device_.type == "cuda"
    scores = model.score_samples(X)
    assert scores.dtype == np.float64 and np.isfinite(scores).all()
    assert model.sample(5).shape == (5, 2)
    restored = pickle.loads(pickle.dumps(model))
    assert_allclose(restored.score_samples(X), scores)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = LocalFlowMatching(**{**TINY, "device": "auto"})
        assert np.isfinite(cross_val_score(model, X, cv=2, n_jobs=2)).all()
    assert os.environ.get("CUDA_VISIBLE_DEVICES", "") != "-1"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fit_with_the_default_block_schedule(X):
    # step_sizes="auto" scores a Gaussian probe after each block, on the fit's device.
    model = LocalFlowMatching(**{**TINY, "step_sizes": "auto", "device": "cuda"}).fit(X)
    assert len(model.probe_scores_) == len(model.step_sizes_) + 1
    assert np.isfinite(model.probe_scores_).all()


def test_tags_are_truthful():
    from sklearn.utils import get_tags

    tags = get_tags(LocalFlowMatching())
    assert tags.estimator_type == "density_estimator"
    assert tags.requires_fit
    assert not tags.target_tags.required
    assert tags.input_tags.two_d_array
    assert not tags.input_tags.sparse
    assert not tags.input_tags.allow_nan
    assert not tags.input_tags.string and not tags.input_tags.categorical
    assert tags.transformer_tags is not None
    assert tags.transformer_tags.preserves_dtype == ["float64"]
    assert not tags.non_deterministic
