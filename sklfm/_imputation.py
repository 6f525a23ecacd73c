"""LocalFlowMatchingImputer: multiple imputation of missing cells from a conditional LFM."""

from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin, _fit_context, clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _runtime
from ._base import (
    MAX_VALIDATION_ROWS,
    _check_finite_rows,
    _unchanged_on_error,
    check_standardized,
    validation_size,
)
from ._density import LocalFlowMatching
from ._preprocessing import Standardizer
from ._progress import ProgressLog
from .core import train_chain


def _reveal_masks(observed, n_masks, rng):
    """`n_masks` copies of each row's observed cells, each with a random share of them hidden.

    Each copy hides its cells at its own rate, drawn uniformly in [0, 1], so
    that the model sees every number of revealed cells, from none to all.
    """
    observed = np.repeat(observed, n_masks, axis=0)
    rate = rng.uniform(size=(len(observed), 1))
    return observed & (rng.uniform(size=observed.shape) >= rate)


def _conditions(U, revealed):
    """Condition columns of standardized rows U: the revealed cells (0 elsewhere), the mask."""
    return np.hstack([np.where(revealed, U, 0.0), revealed])


class LocalFlowMatchingImputer(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Multiple imputation of missing values with a conditional Local Flow Matching model.

    One flow learns the distribution of all columns of a row given any
    subset of its cells: its blocks read, beside the row, the revealed cells
    (0 where hidden) and the 0/1 mask of which cells are revealed. It is
    trained on the observed cells only: each training row appears
    ``n_masks`` times, each time with a random share of its observed cells
    hidden (the share itself uniform in [0, 1]); missing cells are never
    revealed and add nothing to the loss. A missing cell is then imputed by
    drawing its row from the flow given the row's observed cells; observed
    cells are kept as they are.

    Read more in the :ref:`User Guide <user_guide>`.

    Parameters
    ----------
    estimator : LocalFlowMatching, default=None
        Gives the training parameters of the flow (``step_sizes``,
        ``hidden_layer_sizes``, ``max_iter``, ``batch_size``,
        ``learning_rate``, early stopping, solver, ``device``, ``verbose``);
        its ``condition`` must be None, and its other parameters (typed
        tables, warm start, checkpoints, data-parallel fits) are not used.
        None: ``LocalFlowMatching()``. ``max_iter="auto"`` counts the
        ``n_masks`` copies of the rows.
    n_imputations : int, default=10
        Draws per missing cell averaged by :meth:`transform`; the default
        number of draws of :meth:`sample_imputations`.
    n_masks : int, default=4
        Copies of each training row, each with its own random reveal mask.
    random_state : int, RandomState instance or None, default=None
        Seeds the validation split, the masks, the training and the draws
        of :meth:`transform`. An integer gives identical results on the CPU.

    Attributes
    ----------
    estimator_ : LocalFlowMatching
        The unfitted clone of ``estimator`` whose parameters were used.
    chain_ : sklfm.core.FlowChain
        The trained blocks; their rows are [x, revealed cells, mask] in
        standardized units.
    mean_ : ndarray of shape (`n_features_in_`,)
        Mean of the observed cells of each column.
    scale_ : ndarray of shape (`n_features_in_`,)
        Standard deviation of the observed cells of each column (1 for a
        constant column).
    step_sizes_ : tuple of float
        The OU step sizes used.
    loss_curve_ : list of ndarray
        Training loss per step, one array per block (the free block last).
    validation_scores_ : list of ndarray
        Negated validation loss at each check, one array per block.
    n_iter_ : int
        Gradient steps run in all blocks together (with ``step_sizes="auto"``,
        those of a dropped OU block included).
    device_ : torch.device
        Device the model was trained and is evaluated on.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    sklearn.impute.IterativeImputer : Imputes each column from the others in turn.
    sklearn.impute.KNNImputer : Imputes from the nearest complete neighbours.

    Notes
    -----
    :meth:`transform` returns, for each missing cell, the mean of
    ``n_imputations`` draws from the learnt conditional distribution: an
    estimate of the conditional mean, the value that minimises the expected
    squared error. For multiple imputation (e.g. Rubin's rules), use the
    draws themselves, from :meth:`sample_imputations`.

    Examples
    --------
    >>> import numpy as np
    >>> from sklfm import LocalFlowMatching, LocalFlowMatchingImputer
    >>> rng = np.random.RandomState(0)
    >>> x0 = rng.standard_normal(2000)
    >>> X = np.column_stack([x0, x0 + 0.3 * rng.standard_normal(2000)])
    >>> X[::10, 1] = np.nan
    >>> imputer = LocalFlowMatchingImputer(
    ...     LocalFlowMatching(max_iter=300), n_imputations=5, random_state=0
    ... ).fit(X)
    >>> Xt = imputer.transform(X)
    >>> bool(np.isnan(Xt).any())
    False
    >>> imputer.sample_imputations(X[:3], n_imputations=4).shape
    (4, 3, 2)
    """

    _parameter_constraints = {
        "estimator": [None, LocalFlowMatching],
        "n_imputations": [Interval(Integral, 1, None, closed="left")],
        "n_masks": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, estimator=None, *, n_imputations=10, n_masks=4, random_state=None):
        self.estimator = estimator
        self.n_imputations = n_imputations
        self.n_masks = n_masks
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.sparse = False
        return tags

    # --- fitting ---

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the conditional flow on the observed cells of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Numeric rows, with missing values as NaN.
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : object
            The fitted imputer.
        """
        with _unchanged_on_error(self):
            self._fit(X)
        return self

    def _fit(self, X):
        lfm = LocalFlowMatching() if self.estimator is None else clone(self.estimator)
        lfm._validate_params()
        if lfm.condition is not None:
            raise ValueError(
                "The imputer sets the conditions of its flow itself: the estimator's "
                f"condition must be None; got condition={lfm.condition!r}."
            )
        schedule, hidden = lfm._schedule(), lfm._check_hidden_layer_sizes()
        X = validate_data(
            self, X, dtype=np.float64, ensure_all_finite="allow-nan", ensure_min_samples=2
        )
        observed = ~np.isnan(X)
        empty = np.flatnonzero(~observed.any(axis=0))
        if empty.size:
            raise ValueError(
                f"Columns {empty.tolist()} of X have no observed value: there is nothing to "
                "learn their values from. Drop them before imputing."
            )
        # Moments of the observed cells, safe from overflow for huge or subnormal values.
        standardizer = Standardizer().fit(X)
        U = np.where(observed, standardizer.transform(X), 0.0)
        check_standardized(standardizer, U)

        rng = check_random_state(self.random_state)
        device = _runtime.resolve_device(lfm.device)
        train, validation = self._split(len(X), lfm, rng)
        data, weights = self._training_rows(U[train], observed[train], self.n_masks, rng)
        if validation is None:
            validation_rows = validation_weights = probe = None
        else:
            validation_rows, validation_weights = self._training_rows(
                U[validation], observed[validation], 1, rng
            )
            probe = validation_rows
        if schedule.needs_probe and probe is None:
            probe = data[:: max(1, len(data) // MAX_VALIDATION_ROWS)]
        n_features = X.shape[1]
        settings, free_settings = lfm._train_settings(len(data), n_features)

        def tensor(rows, dtype=_runtime.TRAIN_DTYPE):
            return None if rows is None else _runtime.to_tensor(rows, device, dtype)

        with ProgressLog(lfm.verbose, min(lfm.batch_size, len(data))) as reporter:
            chain, histories, _, dropped = train_chain(
                tensor(data),
                schedule,
                network=dict(hidden_layer_sizes=hidden, activation=lfm.activation),
                train=settings,
                free_train=free_settings,
                solver=lfm._solver_settings(),
                generator=_runtime.make_generator(rng, device),
                block_init=lfm.block_init,
                validation=tensor(validation_rows),
                probe=tensor(probe, _runtime.EXACT_DTYPE),
                reporter=reporter,
                n_conditions=2 * n_features,
                weights=tensor(weights),
                validation_weights=tensor(validation_weights),
            )
        self.estimator_ = lfm
        self.mean_, self.scale_ = standardizer.mean_, standardizer.scale_
        self.chain_ = chain
        self.step_sizes_ = tuple(b.step_size for b in chain.blocks[:-1])
        self.loss_curve_ = [h.losses for h in histories]
        self.validation_scores_ = [-h.validation_losses for h in histories]
        self.n_iter_ = int(sum(h.n_iter for h in histories)) + (dropped.n_iter if dropped else 0)
        self.device_ = device

    @staticmethod
    def _split(n_rows, lfm, rng):
        """Indices of the training rows and of the early-stopping rows (None without it)."""
        if not lfm.early_stopping:
            return np.arange(n_rows), None
        n_validation = validation_size(n_rows, lfm.validation_fraction)
        order = rng.permutation(n_rows)
        return order[n_validation:], order[:n_validation]

    @staticmethod
    def _training_rows(U, observed, n_masks, rng):
        """Rows [x, revealed cells, mask] for `n_masks` reveal masks per row, and the cell
        weights: 1 for an observed cell, 0 for a missing one (filled with 0, the mean)."""
        revealed = _reveal_masks(observed, n_masks, rng)
        U = np.repeat(U, n_masks, axis=0)
        weights = np.repeat(observed, n_masks, axis=0).astype(np.float64)
        return np.hstack([U, _conditions(U, revealed)]), weights

    # --- imputation ---

    def _draws(self, X, n_imputations, random_state):
        """The validated rows X, and (n_imputations, n_rows, n_features) copies of them
        with the missing cells drawn."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan", reset=False)
        observed = ~np.isnan(X)
        draws = np.repeat(X[None], n_imputations, axis=0)
        todo = np.flatnonzero(~observed.all(axis=1))
        if todo.size == 0:
            return X, draws
        rng = check_random_state(self.random_state if random_state is None else random_state)
        n_features = X.shape[1]
        U = (X[todo] - self.mean_) / self.scale_
        conditions = np.tile(_conditions(U, observed[todo]), (n_imputations, 1))
        Z = rng.standard_normal((n_imputations * todo.size, n_features))
        rows = _runtime.to_tensor(np.hstack([Z, conditions]), self.device_, _runtime.EXACT_DTYPE)
        pulled = _runtime.to_numpy(self.chain_.pull(rows, self.estimator_._solver_settings()))
        values = _check_finite_rows(
            pulled[:, :n_features] * self.scale_ + self.mean_,
            "X is too far from the training data: its imputed values overflow float64",
        ).reshape(n_imputations, todo.size, n_features)
        draws[:, todo] = np.where(observed[todo], X[todo], values)
        return X, draws

    def transform(self, X):
        """Impute the missing cells of X by the mean of ``n_imputations`` draws.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows with missing values as NaN.

        Returns
        -------
        Xt : ndarray of shape (n_samples, n_features)
            X with each missing cell replaced by the mean of its draws
            (see Notes of the class); observed cells unchanged.
        """
        X, draws = self._draws(X, self.n_imputations, None)
        # Averaging copies of an observed cell could change its last bit: keep it as it is.
        return np.where(np.isnan(X), draws.mean(axis=0), X)

    def sample_imputations(self, X, n_imputations=None, random_state=None):
        """Draw completed copies of X from the learnt conditional distribution.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Rows with missing values as NaN.
        n_imputations : int, default=None
            Number of completed copies; None uses ``n_imputations``.
        random_state : int, RandomState instance or None, default=None
            Seeds the draws; None uses the estimator's ``random_state``.

        Returns
        -------
        imputations : ndarray of shape (n_imputations, n_samples, n_features) or list of DataFrame
            Independent draws of the missing cells given each row's observed
            cells; the observed cells are those of X. For a DataFrame X, a
            list of DataFrames with its index and columns.
        """
        n_imputations = self.n_imputations if n_imputations is None else n_imputations
        if not isinstance(n_imputations, Integral) or isinstance(n_imputations, bool) or (
            n_imputations < 1
        ):
            raise ValueError(f"n_imputations must be a positive integer; got {n_imputations!r}.")
        _, draws = self._draws(X, int(n_imputations), random_state)
        if isinstance(X, pd.DataFrame):
            return [pd.DataFrame(d, index=X.index, columns=X.columns) for d in draws]
        return draws
