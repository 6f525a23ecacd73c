"""LocalFlowMatchingOversampler: tops up classes with rows drawn from LFM models of them."""

from collections.abc import Mapping
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, _fit_context, clone
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from ._conditions import as_labels
from ._density import LocalFlowMatching
from ._tabular import missing_error

_STRATEGIES = {"auto", "minority", "not minority", "not majority", "all"}


def _default_estimator():
    # Small and quick: a class to top up may have a handful of rows. The settings
    # of benchmarks/conditional.py.
    return LocalFlowMatching(hidden_layer_sizes=(64, 64), step_sizes=(0.2, 0.3), max_iter=400)


def _rows_to_add(strategy, classes, counts):
    """{class: rows to generate} of the targeted classes, imbalanced-learn's meanings."""
    majority, minority = classes[np.argmax(counts)], classes[np.argmin(counts)]
    top = counts.max()
    if isinstance(strategy, str):
        targeted = {
            "auto": classes[classes != majority],
            "not majority": classes[classes != majority],
            "not minority": classes[classes != minority],
            "minority": [minority],
            "all": classes,
        }[strategy]
        return {c: int(top - counts[classes == c][0]) for c in targeted}
    if isinstance(strategy, Mapping):
        unknown = [c for c in strategy if c not in set(classes.tolist())]
        if unknown:
            raise ValueError(
                f"sampling_strategy names classes not in y: {unknown}; classes: {classes.tolist()}."
            )
        added = {}
        for c, target in strategy.items():
            have = int(counts[classes == c][0])
            if not isinstance(target, Integral) or isinstance(target, bool) or target < have:
                raise ValueError(
                    "sampling_strategy as a dict gives the number of rows each class should "
                    f"have after over-sampling: an integer at least its current count; class "
                    f"{c!r} has {have} rows, got {target!r}."
                )
            added[c] = int(target) - have
        return added
    if len(classes) != 2:
        raise ValueError(
            "sampling_strategy as a float (the minority-to-majority ratio after "
            f"resampling) is for two classes; y has {len(classes)}. Use a str or a dict."
        )
    target = int(strategy * top)
    have = int(counts.min())
    if target < have:
        raise ValueError(
            f"sampling_strategy={strategy} asks for {target} rows of the minority class, "
            f"which already has {have}: over-sampling cannot remove rows. Increase the ratio."
        )
    return {minority: target - have}


class LocalFlowMatchingOversampler(BaseEstimator):
    """Over-sample classes with rows drawn from LFM models of each class.

    Each class to top up gets a :class:`LocalFlowMatching` of its own rows
    (``per_class=True``), or one class-conditional model p(x | class) is
    fitted on all rows, so that the classes share what they have in common
    (``per_class=False``); the new rows of a class are drawn from its model.
    The interface follows imbalanced-learn's samplers (``fit_resample``), and
    the sampler works in ``imblearn.pipeline.Pipeline`` (imbalanced-learn is
    not needed otherwise).

    Read more in :doc:`/conditional`.

    Parameters
    ----------
    estimator : LocalFlowMatching or None, default=None
        The model to clone: for each class to top up, or once with
        ``condition="categorical"``. None: ``LocalFlowMatching(
        hidden_layer_sizes=(64, 64), step_sizes=(0.2, 0.3), max_iter=400)``,
        small and quick for classes of a few rows.
    sampling_strategy : float, str or dict, default="auto"
        How many rows each class has after resampling, as in imbalanced-learn:

        - "auto" or "not majority": every class but the majority grows to the
          majority's count; "not minority": every class but the minority;
          "minority": the minority class only; "all": every class.
        - float in (0, 1], two classes only: the minority grows to this
          fraction of the majority's count.
        - dict {class: count}: the listed classes grow to the given counts
          (at least their current counts).
    per_class : bool, default=True
        True: one model per class to top up, fitted on that class's rows
        alone (each needs at least 2 rows). False: one class-conditional model
        of all rows. On the 20 ADBench sets (``benchmarks/conditional.py``)
        per-class models gave the better mean average precision and rank.
    random_state : int, RandomState instance or None, default=None
        Seeds the models' fits (when the estimator's own ``random_state`` is
        None) and the rows drawn. An integer gives identical results on the CPU.

    Attributes
    ----------
    estimators_ : dict
        {class: the fitted model its rows are drawn from} for each class that
        gets rows; with ``per_class=False`` every value is the one
        class-conditional model.
    sampling_strategy_ : dict
        {class: number of rows added} for each targeted class.
    classes_ : ndarray of shape (n_classes,)
        The classes of y.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    LocalFlowMatching : The density model whose conditionals give the rows.

    Examples
    --------
    >>> import numpy as np
    >>> from sklfm import LocalFlowMatching, LocalFlowMatchingOversampler
    >>> rng = np.random.RandomState(0)
    >>> X = np.vstack([rng.randn(300, 2), rng.randn(30, 2) + 3])
    >>> y = np.array([0] * 300 + [1] * 30)
    >>> sampler = LocalFlowMatchingOversampler(
    ...     LocalFlowMatching(max_iter=100), random_state=0)
    >>> X_res, y_res = sampler.fit_resample(X, y)
    >>> np.bincount(y_res)
    array([300, 300])
    >>> sampler.sampling_strategy_
    {1: 270}
    """

    _parameter_constraints = {
        "estimator": [None, HasMethods(["fit", "sample"])],
        "sampling_strategy": [
            Interval(Real, 0, 1, closed="right"),
            StrOptions(_STRATEGIES),
            Mapping,
        ],
        "per_class": ["boolean"],
        "random_state": ["random_state"],
    }

    def __init__(
        self, estimator=None, *, sampling_strategy="auto", per_class=True, random_state=None
    ):
        self.estimator = estimator
        self.sampling_strategy = sampling_strategy
        self.per_class = per_class
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.input_tags.allow_nan = False
        return tags

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Decide how many rows to add per class and fit the models they come from.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Training rows (anything :class:`LocalFlowMatching` fits).
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        self : object
            The fitted sampler.
        """
        if not isinstance(X, pd.DataFrame):
            # A per-class model sees only its class: every row is checked here.
            X = check_array(X, dtype=np.float64)
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        labels = as_labels(y)
        check_classification_targets(labels)
        if labels.ndim != 1 or len(labels) != len(X):
            raise ValueError(
                f"y must hold one class label per row of X ({len(X)}); got shape {labels.shape}."
            )
        classes, counts = np.unique(labels, return_counts=True)
        if len(classes) < 2:
            raise ValueError(
                f"Over-sampling needs at least two classes in y; got one class: {classes.tolist()}."
            )
        # Python scalars as keys, as the labels a user would type.
        added = {
            (c.item() if isinstance(c, np.generic) else c): n
            for c, n in _rows_to_add(self.sampling_strategy, classes, counts).items()
        }
        growing = [c for c, n in added.items() if n > 0]
        rng = check_random_state(self.random_state)
        if self.per_class:
            if isinstance(X, pd.DataFrame):
                # Typed columns are the models' to check, rows of classes not modelled here.
                _check_rows(X, (self.estimator or _default_estimator()).missing)
            small = [c for c in growing if counts[classes == c][0] < 2]
            if small:
                raise ValueError(
                    f"Classes {small} have one row: too few for a model of their own. Set "
                    "per_class=False to draw them from one model of all classes."
                )
            models = {
                c: self._new_model(rng).set_params(condition=None).fit(X[labels == c])
                for c in growing
            }
        else:
            model = self._new_model(rng).set_params(condition="categorical").fit(X, labels)
            models = dict.fromkeys(growing, model)
        validate_data(self, X, skip_check_array=True)
        self.estimators_ = models
        self.classes_ = classes
        self.sampling_strategy_ = added
        return self

    def _new_model(self, rng):
        model = clone(_default_estimator() if self.estimator is None else self.estimator)
        if model.get_params().get("random_state") is None:
            model.set_params(random_state=rng.randint(np.iinfo(np.int32).max))
        return model

    def fit_resample(self, X, y):
        """Fit, then return the rows of X and y followed by the generated rows.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Training rows.
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        X_resampled : ndarray or DataFrame of shape (n_samples_new, n_features)
            The rows of X, then the generated rows, class by class (in the
            order of ``sampling_strategy_``). A DataFrame X gives a DataFrame
            with its columns and dtypes and a fresh index.
        y_resampled : ndarray or Series of shape (n_samples_new,)
            The labels of those rows; a Series when y is one.
        """
        self.fit(X, y)
        rng = check_random_state(self.random_state)
        new_X, new_y = [], []
        for label, model in self.estimators_.items():
            # y picks the class of a conditional model; a per-class model ignores it.
            n_rows = self.sampling_strategy_[label]
            new_X.append(model.sample(n_rows, random_state=rng, y=label))
            new_y.append(np.full(n_rows, label))
        return _append_rows(X, new_X), _append_labels(y, new_y)


def _check_rows(frame, missing):
    """ValueError for infinite numbers, and for gaps unless `missing` models them."""
    numbers = frame.select_dtypes("number")
    infinite = [
        name for name, column in numbers.items()
        if np.isinf(column.to_numpy(dtype=np.float64, na_value=np.nan)).any()
    ]
    if infinite:
        raise ValueError(f"Input X contains infinity in columns {infinite}.")
    gaps = [name for name, na in frame.isna().any().items() if na]
    if gaps and missing == "error":
        raise missing_error(gaps)


def _append_rows(X, parts):
    if not isinstance(X, pd.DataFrame):
        X = np.asarray(X)
        return np.vstack([X, *parts]).astype(np.result_type(X.dtype, np.float64), copy=False)
    frames = [X.reset_index(drop=True)]
    for part in parts:
        frame = part if isinstance(part, pd.DataFrame) else pd.DataFrame(part, columns=X.columns)
        frames.append(_like(frame.reset_index(drop=True), X.dtypes))
    return pd.concat(frames, ignore_index=True)


def _like(frame, dtypes):
    """Generated numeric columns in the dtypes of the training columns (integers rounded)."""
    out = {}
    for name, dtype in dtypes.items():
        column = frame[name]
        if dtype.kind in "iu" and column.dtype.kind == "f":
            column = column.round()
        out[name] = column.astype(dtype) if dtype.kind in "biuf" else column
    return pd.DataFrame(out)


def _append_labels(y, parts):
    labels = as_labels(y)
    if parts:
        labels = np.concatenate([labels, *parts])
    if isinstance(y, pd.Series):
        return pd.Series(labels, name=y.name, dtype=y.dtype)
    return labels
