"""sklfm.dask: scoring and sampling Dask collections, on a 2-worker LocalCluster."""

from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from sklfm import LocalFlowMatching, LocalFlowMatchingOutlierDetector
from sklfm.datasets import make_rings

da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
sklfm_dask = pytest.importorskip("sklfm.dask")

FAST = dict(hidden_layer_sizes=(16,), step_sizes=(0.2,), max_iter=30, batch_size=128,
            ode_steps=2, device="cpu", random_state=0)
CHUNK = 100


@pytest.fixture(scope="module")
def X():
    return make_rings(400, random_state=0)


@pytest.fixture(scope="module")
def model(X):
    return LocalFlowMatching(**FAST).fit(X)


@pytest.fixture(scope="module")
def frame(X):
    return pd.DataFrame(X, columns=["a", "b"], index=np.arange(1000, 1000 + len(X)))


@pytest.fixture(scope="module")
def named_model(frame):
    return LocalFlowMatching(**FAST).fit(frame)


@contextmanager
def local_cluster():
    """A 2-worker cluster and its Client, the default client while open.

    Workers are threads of this process (processes=False): a process cluster
    starts in 10-20 s on the shared CI machine; scatter and scheduling are the same.
    """
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        yield client


@pytest.fixture
def client():
    # Per test (it starts in well under a second): tests without it run with no Client.
    with local_cluster() as client:
        yield client


def per_partition(method, rows, chunk=CHUNK):
    """The in-process method on each partition's rows, concatenated."""
    return np.concatenate([method(rows[i : i + chunk]) for i in range(0, len(rows), chunk)])


def test_dask_score_samples_on_local_cluster_matches_in_process(client, model, X):
    keys_before = set(client.who_has())
    log_density = sklfm_dask.score_samples(model, da.from_array(X, chunks=(CHUNK, 1)))
    assert isinstance(log_density, da.Array)
    assert log_density.shape == (len(X),) and log_density.numblocks == (len(X) // CHUNK,)
    result = log_density.compute()
    # Exactly the in-process values of each partition's rows...
    np.testing.assert_array_equal(result, per_partition(model.score_samples, X))
    # ...and of one call on all rows up to the last bits of the BLAS kernels,
    # whose results for a row can depend on its position in a tile.
    np.testing.assert_allclose(result, model.score_samples(X), rtol=1e-13, atol=1e-13)
    # The model was scattered to both workers, not copied into every task.
    new = {key: who for key, who in client.who_has().items() if key not in keys_before}
    held = [who for key, who in new.items() if str(key).startswith("LocalFlowMatching")]
    assert len(held) == 1 and len(held[0]) == 2


def test_dask_dataframe_scoring_keeps_index_and_names(client, named_model, frame):
    ddf = dd.from_pandas(frame, npartitions=4)
    log_density = sklfm_dask.score_samples(named_model, ddf)
    assert isinstance(log_density, dd.Series)
    result = log_density.compute()
    pd.testing.assert_index_equal(result.index, frame.index)
    expected = [named_model.score_samples(ddf.get_partition(k).compute()) for k in range(4)]
    np.testing.assert_array_equal(result.to_numpy(), np.concatenate(expected))


def test_dask_score_without_distributed_client(model, X):
    # No Client: the model is one dask.delayed object in the graph.
    result = sklfm_dask.score_samples(model, da.from_array(X, chunks=CHUNK)).compute(
        scheduler="sync"
    )
    np.testing.assert_array_equal(result, per_partition(model.score_samples, X))


def test_dask_transform_matches_in_process(client, model, named_model, X, frame):
    Z = sklfm_dask.transform(model, da.from_array(X, chunks=CHUNK))
    assert Z.shape == X.shape
    np.testing.assert_array_equal(Z.compute(), per_partition(model.transform, X))
    codes = sklfm_dask.transform(named_model, dd.from_pandas(frame, npartitions=2)).compute()
    assert list(codes.columns) == list(named_model.get_feature_names_out())
    pd.testing.assert_index_equal(codes.index, frame.index)


def test_dask_outlier_detector_predict_and_decision(client, X):
    detector = LocalFlowMatchingOutlierDetector(**FAST, contamination=0.1).fit(X)
    rows = da.from_array(X, chunks=CHUNK)
    labels = sklfm_dask.predict(detector, rows).compute()
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, per_partition(detector.predict, X))
    assert set(labels.tolist()) == {-1, 1}
    decision = sklfm_dask.decision_function(detector, rows).compute()
    np.testing.assert_array_equal(decision, per_partition(detector.decision_function, X))


def test_dask_empty_partition_is_scored_as_empty(model, X):
    ddf = dd.from_pandas(pd.DataFrame(X, columns=["x0", "x1"]), npartitions=4)
    ddf = ddf[ddf["x0"] > 1e9]  # every partition empty
    result = sklfm_dask.score_samples(model, ddf).compute(scheduler="sync")
    assert len(result) == 0 and result.dtype == np.float64


def test_dask_sample_reproducible_whatever_the_scheduler(model):
    def draw(**kwargs):
        return sklfm_dask.sample(model, 1000, chunks=300, **kwargs)

    with local_cluster():
        rows = draw(random_state=7)
        assert rows.shape == (1000, 2) and rows.chunks[0] == (300, 300, 300, 100)
        on_cluster = rows.compute()
    np.testing.assert_array_equal(draw(random_state=7).compute(scheduler="sync"), on_cluster)
    np.testing.assert_array_equal(draw(random_state=7).compute(scheduler="threads"), on_cluster)
    # Independent partitions: no two partitions draw the same latent noise.
    firsts = on_cluster[[0, 300, 600, 900]]
    assert len(np.unique(firsts, axis=0)) == 4
    # Each partition is the model's pull of its own child seed's normal draws.
    seeds = np.random.SeedSequence(7).spawn(4)
    Z = np.random.default_rng(seeds[1]).standard_normal((300, 2))
    np.testing.assert_array_equal(on_cluster[300:600], model.inverse_transform(Z))
    # Another random_state gives other rows; the estimator's random_state is the default.
    assert not np.allclose(draw(random_state=8).compute(), on_cluster)
    np.testing.assert_array_equal(
        draw().compute(), draw(random_state=model.random_state).compute()
    )


def test_dask_sample_dataframe_for_named_columns(client, named_model):
    rows = sklfm_dask.sample(named_model, 250, chunks=(100, 100, 50), random_state=0)
    assert isinstance(rows, dd.DataFrame) and rows.npartitions == 3
    out = rows.compute()
    assert list(out.columns) == ["a", "b"]
    pd.testing.assert_index_equal(out.index, pd.RangeIndex(250))
    assert rows.divisions == (0, 100, 200, 249)


def test_dask_errors(model, X):
    with pytest.raises(TypeError, match="dask array or a dask DataFrame"):
        sklfm_dask.score_samples(model, X)
    with pytest.raises(ValueError, match="2 columns"):
        sklfm_dask.score_samples(model, da.from_array(np.c_[X, X], chunks=CHUNK))
    with pytest.raises(ValueError, match="expecting 2 columns"):
        sklfm_dask.score_samples(model, dd.from_pandas(pd.DataFrame(np.c_[X, X]), npartitions=2))
    with pytest.raises(NotFittedError):
        sklfm_dask.score_samples(LocalFlowMatching(), da.from_array(X))
    with pytest.raises(TypeError, match="no method 'predict'"):
        sklfm_dask.predict(model, da.from_array(X))
    detector = LocalFlowMatchingOutlierDetector(**FAST).fit(X)
    with pytest.raises(TypeError, match="sample needs a fitted LocalFlowMatching"):
        sklfm_dask.sample(detector, 10)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="n_samples must be a positive integer"):
            sklfm_dask.sample(model, bad)
    for chunks in (0, (5, 4), (10, -1, 1)):
        with pytest.raises(ValueError, match="chunks must be"):
            sklfm_dask.sample(model, 10, chunks=chunks)
