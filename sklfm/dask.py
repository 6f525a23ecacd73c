"""Score and sample fitted sklfm estimators on Dask collections, partition by partition.

The fitted estimator is shipped to the workers once per call: scattered to
every worker (``Client.scatter(..., broadcast=True)``) when a
``dask.distributed`` Client is active, else held once in the task graph as a
single ``dask.delayed`` object. Each partition is then an ordinary in-memory
call of the estimator's method, so a partition's values are exactly those of
an in-process call on its rows. Scoring is row-wise (fixed-step solvers,
float64): other chunkings change a value only in its last bits, where the
BLAS kernels treat a row differently by its position in a tile.

A collection built while a Client is active refers to the model scattered
on that cluster: compute it there.

Requires the optional ``dask`` extra: ``pip install "sklfm[dask]"``.

Examples
--------
>>> import dask.array as da
>>> from sklfm import LocalFlowMatching
>>> from sklfm.datasets import make_rings
>>> import sklfm.dask
>>> X = make_rings(1000, random_state=0)
>>> model = LocalFlowMatching(hidden_layer_sizes=(16,), max_iter=50, random_state=0).fit(X)
>>> log_density = sklfm.dask.score_samples(model, da.from_array(X, chunks=250))
>>> log_density.shape, log_density.numblocks
((1000,), (4,))
>>> bool(abs(log_density.compute() - model.score_samples(X)).max() < 1e-12)
True
>>> rows = sklfm.dask.sample(model, 10_000, chunks=2_500, random_state=0)
>>> rows.shape, rows.numblocks
((10000, 2), (4, 1))
"""

from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

try:
    import dask
    import dask.array as da
    import dask.dataframe as dd
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        'sklfm.dask requires dask: pip install "sklfm[dask]" '
        "(dask[array,dataframe] and distributed)."
    ) from exc

__all__ = ["decision_function", "predict", "sample", "score_samples", "transform"]


def _broadcast(estimator):
    """One handle on the fitted estimator that every partition task depends on."""
    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):  # no distributed, or no Client active
        return dask.delayed(estimator, traverse=False)
    return client.scatter(estimator, broadcast=True, hash=False)


# --- row-wise methods: score_samples, decision_function, predict, transform ---


def _apply(X, estimator, method, n_out, dtype):
    """`estimator.method(X)` as an ndarray; an empty partition gives an empty result."""
    if X.shape[0] == 0:
        return np.empty((0,) if n_out is None else (0, n_out), dtype=dtype)
    return np.asarray(getattr(estimator, method)(X), dtype=dtype)


def _apply_partition(X, estimator, method, n_out, dtype, columns):
    out = _apply(X, estimator, method, n_out, dtype)
    if columns is None:
        return pd.Series(out, index=X.index, name=method)
    return pd.DataFrame(out, index=X.index, columns=columns)


def _map_rows(estimator, X, method, n_out=None, dtype=np.float64):
    """Run a row-wise method over the partitions of X.

    `n_out` is the number of output columns, None for one value per row.
    Returns a dask array (1-D or 2-D) for a dask array, a dask Series or
    DataFrame with X's index for a dask DataFrame.
    """
    check_is_fitted(estimator)
    if not hasattr(estimator, method):
        raise TypeError(f"{type(estimator).__name__} has no method {method!r}.")
    n_features = estimator.n_features_in_
    if isinstance(X, da.Array):
        if X.ndim != 2 or X.shape[1] != n_features:
            raise ValueError(
                f"X must be a 2-D dask array with {n_features} columns, as seen in fit; "
                f"got shape {X.shape}."
            )
        X = X.rechunk({1: -1})  # a partition holds whole rows
        shape = dict(drop_axis=1) if n_out is None else dict(chunks=(X.chunks[0], (n_out,)))
        meta = np.empty((0,) if n_out is None else (0, n_out), dtype=dtype)
        return X.map_blocks(
            _apply, _broadcast(estimator), method, n_out, dtype, dtype=dtype, meta=meta, **shape
        )
    if isinstance(X, dd.DataFrame):
        if len(X.columns) != n_features:
            raise ValueError(
                f"X has {len(X.columns)} columns, but {type(estimator).__name__} is "
                f"expecting {n_features} columns as input."
            )
        if n_out is None:
            columns, meta = None, pd.Series(dtype=dtype, name=method)
        else:
            columns = list(estimator.get_feature_names_out())
            meta = pd.DataFrame({c: pd.Series(dtype=dtype) for c in columns})
        return X.map_partitions(
            _apply_partition, _broadcast(estimator), method, n_out, dtype, columns, meta=meta
        )
    raise TypeError(
        f"X must be a dask array or a dask DataFrame, got {type(X).__name__}; for "
        f"in-memory data call the estimator's {method} directly."
    )


def score_samples(estimator, X):
    """Exact log-density of each row of a Dask collection, partition by partition.

    Parameters
    ----------
    estimator : fitted LocalFlowMatching or LocalFlowMatchingOutlierDetector
        The model; sent to the workers once.
    X : dask.array.Array of shape (n_samples, n_features) or dask.dataframe.DataFrame
        Rows to score, chunked along the rows (column chunks are merged).

    Returns
    -------
    log_density : dask.array.Array of shape (n_samples,) or dask.dataframe.Series
        float64 log-densities, lazily; a Series with X's index for a DataFrame.
        Each partition's values equal ``estimator.score_samples`` on its rows.
    """
    return _map_rows(estimator, X, "score_samples")


def decision_function(estimator, X):
    """``score_samples(X) - offset_`` of an outlier detector, partition by partition.

    Parameters
    ----------
    estimator : fitted LocalFlowMatchingOutlierDetector
    X : dask.array.Array or dask.dataframe.DataFrame

    Returns
    -------
    decision : dask.array.Array of shape (n_samples,) or dask.dataframe.Series
        Negative for outliers, positive for inliers.
    """
    return _map_rows(estimator, X, "decision_function")


def predict(estimator, X):
    """Inlier (+1) / outlier (-1) labels of an outlier detector, partition by partition.

    Parameters
    ----------
    estimator : fitted LocalFlowMatchingOutlierDetector
    X : dask.array.Array or dask.dataframe.DataFrame

    Returns
    -------
    labels : dask.array.Array of shape (n_samples,) or dask.dataframe.Series
        int labels.
    """
    return _map_rows(estimator, X, "predict", dtype=np.int64)


def transform(estimator, X):
    """Latent Gaussian codes of each row, partition by partition.

    Parameters
    ----------
    estimator : fitted LocalFlowMatching
    X : dask.array.Array or dask.dataframe.DataFrame

    Returns
    -------
    Z : dask.array.Array of shape (n_samples, n_features) or dask.dataframe.DataFrame
        float64 codes; a DataFrame with X's index and the columns
        ``estimator.get_feature_names_out()`` for a DataFrame.
    """
    check_is_fitted(estimator)
    return _map_rows(estimator, X, "transform", n_out=estimator.n_features_in_)


# --- sampling ---


def _row_chunks(n_samples, chunks):
    if isinstance(chunks, Integral) and not isinstance(chunks, bool):
        if chunks < 1:
            raise ValueError(f"chunks must be a positive integer; got {chunks!r}.")
        full, rest = divmod(n_samples, int(chunks))
        return (int(chunks),) * full + ((rest,) if rest else ())
    sizes = tuple(chunks)
    if not all(isinstance(s, Integral) and s >= 1 for s in sizes) or sum(sizes) != n_samples:
        raise ValueError(
            "chunks must be a positive integer (rows per partition) or a tuple of "
            f"positive row counts summing to n_samples={n_samples}; got {chunks!r}."
        )
    return tuple(int(s) for s in sizes)


def _seed_sequence(random_state):
    """A numpy SeedSequence from a scikit-learn random_state (None: fresh entropy)."""
    if random_state is None:
        return np.random.SeedSequence()
    if isinstance(random_state, Integral) and not isinstance(random_state, bool):
        return np.random.SeedSequence(int(random_state))
    return np.random.SeedSequence(int(check_random_state(random_state).randint(2**31 - 1)))


def _sample_rows(estimator, n_rows, seed):
    Z = np.random.default_rng(seed).standard_normal((n_rows, estimator.n_features_in_))
    return np.asarray(estimator.inverse_transform(Z), dtype=np.float64)


def _sample_frame(estimator, n_rows, seed, start, columns):
    rows = _sample_rows(estimator, n_rows, seed)
    return pd.DataFrame(rows, columns=columns, index=pd.RangeIndex(start, start + n_rows))


def sample(estimator, n_samples, *, chunks=100_000, random_state=None):
    """Draw rows from a fitted LocalFlowMatching as a Dask collection.

    Partition k draws its latent noise from the k-th child of
    ``numpy.random.SeedSequence(random_state).spawn(n_partitions)``: the
    partitions are statistically independent, and the same ``random_state``
    and ``chunks`` give the same rows whatever the scheduler and the number of
    workers. (The rows differ from ``estimator.sample``, which draws all rows
    from one stream.)

    Parameters
    ----------
    estimator : fitted LocalFlowMatching
        The model; sent to the workers once.
    n_samples : int
        Number of rows.
    chunks : int or tuple of int, default=100_000
        Rows per partition, or the row count of each partition.
    random_state : int, RandomState instance or None, default=None
        Seeds the partitions; None uses the estimator's ``random_state``
        (fresh entropy when that is None too).

    Returns
    -------
    X : dask.array.Array of shape (n_samples, n_features) or dask.dataframe.DataFrame
        float64 rows in the units of the training data, lazily; a DataFrame
        (index 0..n_samples-1, columns ``feature_names_in_``) when the model
        was fitted on named columns.
    """
    check_is_fitted(estimator)
    if not hasattr(estimator, "inverse_transform"):
        raise TypeError(
            f"sample needs a fitted LocalFlowMatching; {type(estimator).__name__} cannot "
            "generate rows."
        )
    if not isinstance(n_samples, Integral) or isinstance(n_samples, bool) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer; got {n_samples!r}.")
    sizes = _row_chunks(int(n_samples), chunks)
    seeds = _seed_sequence(
        estimator.random_state if random_state is None else random_state
    ).spawn(len(sizes))
    model = _broadcast(estimator)
    n_features = estimator.n_features_in_
    if hasattr(estimator, "feature_names_in_"):
        columns = list(estimator.feature_names_in_)
        starts = np.cumsum((0,) + sizes)
        parts = [
            dask.delayed(_sample_frame)(model, n, seed, int(start), columns)
            for n, seed, start in zip(sizes, seeds, starts)
        ]
        meta = pd.DataFrame({c: pd.Series(dtype=np.float64) for c in columns})
        return dd.from_delayed(parts, meta=meta, divisions=(*starts[:-1].tolist(), n_samples - 1))
    parts = [
        da.from_delayed(
            dask.delayed(_sample_rows)(model, n, seed),
            shape=(n, n_features),
            dtype=np.float64,
            meta=np.empty((0, 0)),
        )
        for n, seed in zip(sizes, seeds)
    ]
    return da.concatenate(parts)
