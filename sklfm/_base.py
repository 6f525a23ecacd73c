"""The scikit-learn facade shared by the public estimators: parameters, validation, fit."""

import os
from contextlib import contextmanager
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils._set_output import _get_container_adapter
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted, validate_data

from . import _persistence, _runtime
from ._checkpoint import Checkpointer, fingerprint
from ._distributed import check_same_columns, on_every_rank, shared_random_state, use_data_parallel
from ._preprocessing import Standardizer
from ._progress import ProgressLog
from ._tabular import TabularEncoder, is_typed_table, missing_error
from .core import (
    ACTIVATIONS,
    INTERPOLANT_CHOICES,
    SOLVERS,
    AutoSchedule,
    FixedSchedule,
    LocalRows,
    ShardedRows,
    SolverSettings,
    TrainSettings,
    train_chain,
)

# max_iter="auto": steps per OU block = AUTO_EPOCHS passes over the training rows,
# clipped to [AUTO_MIN_ITER + AUTO_ITER_PER_FEATURE * n_features, AUTO_MAX_ITER];
# the free block, which carries the data all the way to N(0, I), gets
# AUTO_FREE_SCALE times that. Early stopping ends most blocks of small tables
# well before their cap. 100 passes stopped the first blocks of 10,000-row tables
# short of what they could use, and more, weaker blocks followed (issue 8 in
# docs/benchmarks.md).
AUTO_EPOCHS = 300
AUTO_MIN_ITER = 1000
AUTO_ITER_PER_FEATURE = 100
AUTO_MAX_ITER = 5_000
AUTO_FREE_SCALE = 2.5
# Validation rows beyond this many add little to the checks and cost time.
MAX_VALIDATION_ROWS = 4096
# Early-stopping checks: every this many steps.
CHECK_INTERVAL = 50
# After early stopping's plateau, the learning rate decays to its floor over this
# share of max_iter before the block stops (see TrainSettings.cooldown).
COOLDOWN_FRACTION = 0.2


def auto_max_iter(n_rows, n_features, batch_size):
    """Steps per OU block and for the free block with max_iter="auto"; see AUTO_EPOCHS."""
    steps = AUTO_EPOCHS * -(-n_rows // min(batch_size, n_rows))
    low = AUTO_MIN_ITER + AUTO_ITER_PER_FEATURE * n_features
    steps = int(min(max(steps, low), AUTO_MAX_ITER))
    return steps, int(round(AUTO_FREE_SCALE * steps))


def _is_number(value, kind):
    """`value` is an instance of the numbers ABC `kind`, and not a bool."""
    return isinstance(value, kind) and not isinstance(value, (bool, np.bool_))


@contextmanager
def _unchanged_on_error(estimator):
    """Restore the estimator's attributes if the block raises (e.g. a failed refit).

    ``validate_data(reset=True)`` sets ``n_features_in_`` and ``feature_names_in_``
    before the data are fully checked, so without this a refit that fails on bad
    input would leave a fitted model with the failed input's column names.
    """
    previous = dict(estimator.__dict__)
    try:
        yield
    except BaseException:
        estimator.__dict__.clear()
        estimator.__dict__.update(previous)
        raise


def _column_kinds(X):
    """{column name: numpy dtype kind} of a DataFrame; {None: kind} of an array."""
    dtypes = getattr(X, "dtypes", None)
    if hasattr(dtypes, "items"):
        return {str(name): dtype.kind for name, dtype in dtypes.items()}
    dtype = getattr(X, "dtype", None)
    return {None: dtype.kind} if isinstance(dtype, np.dtype) else {}


def _split_columns(rows, n_conditions):
    """(features, conditions) of rows whose last n_conditions columns are conditions."""
    if rows is None or not n_conditions:
        return rows, None
    return rows[:, :-n_conditions], rows[:, -n_conditions:]


def _join_columns(rows, conditions):
    return rows if conditions is None else np.hstack([rows, conditions])


def check_standardized(preprocessing, *row_sets):
    """ValueError naming the columns whose standardized rows overflow float32 training."""
    limit = np.finfo(_runtime.TRAIN_DTYPE_NUMPY).max
    overflow = ~np.isfinite(preprocessing.scale_)
    for rows in row_sets:
        if rows is not None:
            overflow |= ~(np.abs(rows) <= limit).all(axis=0)
    if overflow.any():
        raise ValueError(
            f"X is too large to standardize: columns {np.flatnonzero(overflow).tolist()} "
            "overflow when centred and scaled. Rescale them (e.g. divide by a power of ten)."
        )


def validation_size(n_rows, fraction):
    """Rows held out for early stopping: a `fraction` of n_rows, at least 1, at most 4096."""
    return min(MAX_VALIDATION_ROWS, max(1, int(round(fraction * n_rows))))


def _check_finite_rows(values, message):
    """Raise ValueError(message) naming the rows of `values` that are not finite."""
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if bad.size:
        raise ValueError(f"{message} ({bad.size} of {len(values)} rows, e.g. row {bad[0]}).")
    return values


class BaseLocalFlowMatching(BaseEstimator):
    """Parameters, validation and training shared by the public LFM estimators."""

    _parameter_constraints = {
        "step_sizes": [StrOptions({"auto"}), tuple, list],
        "hidden_layer_sizes": [tuple, list, Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "interpolant": [StrOptions(set(INTERPOLANT_CHOICES))],
        "max_iter": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "block_init": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, 1, closed="left")],
        "warm_start": ["boolean"],
        "solver": [StrOptions(set(SOLVERS))],
        "ode_steps": [Interval(Integral, 1, None, closed="left")],
        "device": [str, _runtime.Device],
        "distributed": [StrOptions({"auto"}), "boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "checkpoint_dir": [None, str, os.PathLike],
        "categorical_features": [StrOptions({"auto"}), None, list, tuple, np.ndarray],
        "integer_features": [StrOptions({"auto"}), None, list, tuple, np.ndarray],
        "missing": [StrOptions({"error", "indicator"})],
    }

    def __init__(
        self,
        *,
        step_sizes="auto",
        hidden_layer_sizes=(128, 128, 128),
        activation="softplus",
        interpolant="trigonometric",
        max_iter="auto",
        batch_size=512,
        learning_rate=2e-3,
        block_init=True,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        warm_start=False,
        solver="rk4",
        ode_steps=8,
        device="auto",
        distributed="auto",
        random_state=None,
        verbose=0,
        checkpoint_dir=None,
        categorical_features="auto",
        integer_features="auto",
        missing="error",
    ):
        self.step_sizes = step_sizes
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.interpolant = interpolant
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.block_init = block_init
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.warm_start = warm_start
        self.solver = solver
        self.ode_steps = ode_steps
        self.device = device
        self.distributed = distributed
        self.random_state = random_state
        self.verbose = verbose
        self.checkpoint_dir = checkpoint_dir
        self.categorical_features = categorical_features
        self.integer_features = integer_features
        self.missing = missing

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Dense, finite, numeric 2-D input only; no target.
        tags.input_tags.two_d_array = True
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        tags.input_tags.categorical = False
        tags.input_tags.string = False
        tags.target_tags.required = False
        tags.requires_fit = True
        # With an integer random_state a CPU fit is bit-for-bit reproducible, and
        # every output row depends on that row only (fixed-step solvers).
        tags.non_deterministic = False
        return tags

    # --- parameter checks that the declarative constraints cannot express ---

    def _schedule(self):
        if isinstance(self.step_sizes, str):
            return AutoSchedule()
        steps = tuple(self.step_sizes)
        if not all(_is_number(h, Real) and np.isfinite(h) and h > 0 for h in steps):
            raise ValueError(
                "step_sizes must be 'auto' or a tuple of positive finite OU step sizes "
                f"(empty for global flow matching); got {self.step_sizes!r}."
            )
        return FixedSchedule(tuple(float(h) for h in steps))

    def _check_hidden_layer_sizes(self):
        sizes = self.hidden_layer_sizes
        sizes = (sizes,) if _is_number(sizes, Integral) else tuple(sizes)
        if not sizes or not all(_is_number(s, Integral) and s >= 1 for s in sizes):
            raise ValueError(
                "hidden_layer_sizes must be a positive integer or a non-empty tuple of "
                f"positive integers; got {self.hidden_layer_sizes!r}."
            )
        return tuple(int(s) for s in sizes)

    def _solver_settings(self):
        return SolverSettings(method=self.solver, n_steps=self.ode_steps)

    def _train_settings(self, n_rows, n_features):
        """TrainSettings of the OU blocks and of the free block, for n_rows training rows."""
        max_iter, free_max_iter = (
            auto_max_iter(n_rows, n_features, self.batch_size)
            if self.max_iter == "auto"
            else (self.max_iter, self.max_iter)
        )

        def settings(steps):
            return TrainSettings(
                max_iter=steps,
                batch_size=self.batch_size,
                learning_rate=self.learning_rate,
                interpolant=self.interpolant,
                check_interval=CHECK_INTERVAL,
                n_iter_no_change=self.n_iter_no_change if self.early_stopping else None,
                tol=self.tol,
                cooldown=int(COOLDOWN_FRACTION * steps) if self.early_stopping else 0,
            )

        return settings(max_iter), settings(free_max_iter)

    # --- fitting ---

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the blocks in sequence on X.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Training data: numeric columns, or a DataFrame with boolean,
            categorical or string columns besides numbers (see
            ``categorical_features``).
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        with _unchanged_on_error(self):
            self._fit(X, y)
        return self

    def _fit_conditions(self, X, y, warm):
        """(modelled columns, condition columns) of the validated training rows X.

        The base model is unconditional: all of X, no conditions, y ignored.
        """
        return X, None

    def _fit(self, X, y=None):
        schedule = self._schedule()
        hidden = self._check_hidden_layer_sizes()
        warm = self.warm_start and hasattr(self, "chain_")
        if warm:
            self._check_warm_start(schedule)
        device = self.device_ if warm else _runtime.resolve_device(self.device)
        parallel = self._data_parallel()
        if parallel and self.checkpoint_dir is not None:
            raise ValueError(
                "checkpoint_dir is not supported in data-parallel fits (distributed): the "
                "ranks would not checkpoint at the same steps. Set checkpoint_dir=None."
            )
        # A rank that raises alone would leave the others waiting: checks are shared.
        X = on_every_rank(lambda: self._validate_shard(X, warm, parallel), parallel)
        if parallel:
            check_same_columns(X, self)
        X, conditions = self._fit_conditions(X, y, warm)
        if conditions is not None:
            if parallel:
                raise ValueError(
                    "Conditional models are not supported in data-parallel fits "
                    "(distributed): fit on one process."
                )
            # The conditions travel with their rows through the validation split.
            X = np.hstack([X, conditions])
        n_conditions = 0 if conditions is None else conditions.shape[1]
        if warm and self.chain_.n_conditions != n_conditions:
            raise ValueError(
                "warm_start=True keeps the fitted blocks, which read "
                f"{self.chain_.n_conditions} condition columns; this fit has {n_conditions}. "
                "Set warm_start=False to train a new chain."
            )
        rows = ShardedRows.in_rank_order(len(X), device) if parallel else LocalRows(len(X))
        random_state, checkpoint, resume = shared_random_state(self.random_state, rows), None, None
        if self.checkpoint_dir is not None:
            key = fingerprint(self, X, warm_from=self if warm else None)
            checkpoint = Checkpointer(self.checkpoint_dir, key)
            random_state, resume = checkpoint.resume(self.random_state, device)

        rng = check_random_state(random_state)
        train_X, validation_X, rows = self._split_validation(X, rng, rows)
        train_X, train_C = _split_columns(train_X, n_conditions)
        validation_X, validation_C = _split_columns(validation_X, n_conditions)
        preprocessing = self.standardizer_ if warm else self._fit_preprocessing(train_X, rows, rng)
        train_rows = self._training_rows(preprocessing, train_X, rng)
        validation_rows = (
            None if validation_X is None else self._training_rows(preprocessing, validation_X, rng)
        )
        on_every_rank(
            lambda: check_standardized(preprocessing, train_rows, validation_rows), parallel
        )
        train_rows = _join_columns(train_rows, train_C)
        validation_rows = _join_columns(validation_rows, validation_C)
        probe_rows = (
            self._probe_rows(train_rows, validation_rows, rows) if schedule.needs_probe else None
        )
        data = _runtime.to_tensor(train_rows, device, _runtime.TRAIN_DTYPE)
        kept = self.chain_.blocks[: len(self.step_sizes_)] if warm else ()
        train, free_train = self._train_settings(rows.n_rows, X.shape[1] - n_conditions)
        # One progress log: rank 0's (every rank trains the same model).
        verbose = self.verbose if rows.rank == 0 else 0
        with ProgressLog(verbose, min(self.batch_size, rows.n_rows)) as reporter:
            chain, histories, probe_scores, dropped = train_chain(
                data,
                schedule,
                network=dict(hidden_layer_sizes=hidden, activation=self.activation),
                train=train,
                free_train=free_train,
                solver=self._solver_settings(),
                generator=_runtime.make_generator(random_state, device),
                block_init=self.block_init,
                validation=_runtime.to_tensor(validation_rows, device, _runtime.TRAIN_DTYPE)
                if validation_rows is not None
                else None,
                probe=None
                if probe_rows is None
                else _runtime.to_tensor(probe_rows, device, _runtime.EXACT_DTYPE),
                kept_blocks=kept,
                kept_free_block=self.chain_.blocks[-1] if warm else None,
                reporter=reporter,
                resume=resume,
                on_progress=checkpoint and checkpoint.save,
                rows=rows,
                n_conditions=n_conditions,
            )
        n_new = len(chain.blocks) - len(kept)
        old = [] if not warm else list(zip(self.loss_curve_, self.validation_scores_, self.n_iter_per_block_))
        new = [(h.losses, -h.validation_losses, h.n_iter) for h in histories]
        # A reused free block keeps its own history.
        records = old[: len(kept)] + new + (old[-1:] if warm and n_new == 0 else [])
        self.standardizer_ = preprocessing
        self.chain_ = chain
        self.step_sizes_ = tuple(b.step_size for b in chain.blocks[:-1])
        self.loss_curve_ = [r[0] for r in records]
        self.validation_scores_ = [r[1] for r in records]
        self.n_iter_per_block_ = [int(r[2]) for r in records]
        # An int, as scikit-learn's checks expect of n_iter_; a dropped block's steps count.
        self.n_iter_ = sum(self.n_iter_per_block_) + (0 if dropped is None else int(dropped.n_iter))
        self.probe_scores_ = list(probe_scores)
        self.device_ = device
        self._fit_versions = _persistence.versions()
        if checkpoint is not None:
            checkpoint.clear()

    # --- persistence ---

    def __getstate__(self):
        # Plain values and CPU arrays (see _persistence), not torch modules tied to a device.
        return _persistence.get_state(self)

    def __setstate__(self, state):
        _persistence.set_state(self, state)

    def save(self, path):
        """Save the estimator to one file that loads without running code (no pickle).

        Parameters
        ----------
        path : str, path-like or binary file object
            Where to write; a path is written through a temporary file and
            renamed, so it never holds a partial model. Read it back with
            :func:`sklfm.load`.

        Notes
        -----
        The file is a zip archive of ``meta.json`` (class, parameters, fitted
        attributes, library versions) and the weights and arrays as ``.npy``
        files. See ``docs/persistence.md``.
        """
        _persistence.save(self, path)

    def _check_warm_start(self, schedule):
        """A warm start keeps the fitted OU blocks: the schedule must extend them."""
        fitted = self.step_sizes_
        if isinstance(schedule, FixedSchedule) and (
            len(schedule.step_sizes) < len(fitted)
            or not np.allclose(schedule.step_sizes[: len(fitted)], fitted)
        ):
            raise ValueError(
                "warm_start=True keeps the fitted OU blocks, so step_sizes must start with "
                f"the fitted step_sizes_ {fitted}; got {schedule.step_sizes}. Set "
                "warm_start=False to train a new chain."
            )

    def _validate_shard(self, X, warm, parallel):
        X = self._validate_X(X, reset=not warm)
        if parallel and getattr(self, "tabular_", None) is not None:
            # Each rank would fit its own category codes from its own rows.
            raise ValueError(
                "Typed tables (categorical, integer or missing-value columns) are not "
                "supported in data-parallel fits: encode the columns the same way on every "
                "rank (e.g. with an OrdinalEncoder fitted once) and pass numeric rows."
            )
        return X

    def _data_parallel(self):
        """Whether this fit trains data-parallel over torch.distributed ranks."""
        return use_data_parallel(self.distributed)

    def _split_validation(self, X, rng, rows):
        """Training rows, held-out rows for early stopping (None without it), training layout.

        The held-out rows are drawn over all ranks' rows and end up on every
        rank; each rank keeps its other rows, numbered in the shuffled order.
        """
        if not self.early_stopping:
            return X, None, rows
        n_rows = rows.n_rows
        n_validation = validation_size(n_rows, self.validation_fraction)
        if n_validation >= n_rows:
            raise ValueError(
                f"early_stopping=True needs at least 2 rows (one to train, one to validate) "
                f"after validation_fraction={self.validation_fraction}; got {n_rows}."
            )
        order = rng.permutation(n_rows)
        local, train_rows = rows.reordered(order[n_validation:])
        return X[local], rows.take(X, order[:n_validation]), train_rows

    @staticmethod
    def _probe_rows(train_rows, validation_rows, rows):
        """Held-out rows for the AutoSchedule: the validation rows, else some training rows."""
        if validation_rows is not None:
            return validation_rows
        stride = max(1, rows.n_rows // MAX_VALIDATION_ROWS)
        return rows.take(train_rows, np.arange(0, rows.n_rows, stride))

    # --- preprocessing hooks (LocalFlowMatchingOutlierDetector overrides them) ---

    def _fit_preprocessing(self, X, rows, rng):
        """The column preprocessing, fitted on the training rows X (a shard of `rows`)."""
        return Standardizer().fit(X, rows)

    def _training_rows(self, preprocessing, X, rng):
        """The rows the blocks train on, from rows X in user units."""
        return preprocessing.transform(self._dequantized(X, rng))

    def _dequantized(self, X, rng):
        """Encoded rows X with the cells of their discrete columns filled by uniform noise."""
        tabular = getattr(self, "tabular_", None)
        return X if tabular is None else tabular.dequantize(X, rng)

    def _tabular_log_det(self, X):
        tabular = getattr(self, "tabular_", None)
        return 0.0 if tabular is None else tabular.log_det(X)

    @property
    def _n_latent(self):
        """Columns of the flow: the encoded columns of a typed table, else the features."""
        tabular = getattr(self, "tabular_", None)
        return self.n_features_in_ if tabular is None else tabular.n_encoded_

    def _preprocessing_log_det(self, X):
        """Log-Jacobian of the fitted preprocessing at the rows of X (scalar or per row)."""
        return self.standardizer_.log_det_

    # --- input and output containers ---

    def _validate_X(self, X, reset):
        """Rows as a float64 array: a typed DataFrame encoded (see _tabular), else validate_data
        with a clear message for non-numeric columns."""
        if reset:
            self.tabular_ = self._typed_table_encoder(X)
        tabular = getattr(self, "tabular_", None)
        if tabular is not None:
            if not isinstance(X, pd.DataFrame):
                tabular.grid(X)  # raises: a typed model needs a DataFrame
            validate_data(self, X, skip_check_array=True, reset=reset)
            min_rows = 2 if reset else 1
            if X.shape[1] == 0 or len(X) < min_rows:
                raise ValueError(
                    f"Found a DataFrame of shape {X.shape}, while a minimum of {min_rows} "
                    "rows and 1 column is required."
                )
            if reset:
                tabular.fit(X)
            return tabular.transform(X)
        # C order: the same numbers whether X came as an array or a DataFrame
        # (column means are summed in a layout-dependent order).
        try:
            return self._numeric(
                X,
                lambda X: validate_data(
                    self,
                    X,
                    dtype=np.float64,
                    order="C",
                    reset=reset,
                    ensure_min_samples=2 if reset else 1,
                ),
            )
        except ValueError as exc:
            # After the feature-name checks: a DataFrame's gaps get their column names.
            if not (isinstance(X, pd.DataFrame) and "contains NaN" in str(exc)):
                raise
            raise missing_error([name for name, na in X.isna().any().items() if na]) from exc

    def _typed_table_encoder(self, X):
        """A TabularEncoder for a DataFrame that needs one (not fitted yet), else None."""
        options = (self.categorical_features, self.integer_features)
        asked = self.missing != "error" or any(
            o is not None and not isinstance(o, str) for o in options
        )
        if not isinstance(X, pd.DataFrame):
            if asked:
                raise ValueError(
                    "categorical_features, integer_features and missing='indicator' apply to "
                    f"pandas DataFrames; got X of type {type(X).__name__}."
                )
            return None
        if not (asked or is_typed_table(X)):
            return None
        return TabularEncoder(self.categorical_features, self.integer_features, self.missing)

    def _numeric(self, X, convert):
        """convert(X) to a float64 array, with a clear error for non-numeric columns."""
        kinds = _column_kinds(X)
        if set(kinds.values()) & set("Mm"):
            # numpy would silently turn datetime64 arrays into counts of their own unit.
            raise self._non_numeric_error(kinds, "got datetime or timedelta values", ValueError)
        try:
            return convert(X)
        except (ValueError, TypeError) as exc:
            if not str(exc).startswith(("could not convert", "float() argument")):
                raise
            # Same class as the original: TypeError for objects that are not numbers.
            raise self._non_numeric_error(kinds, exc, type(exc)) from exc

    def _non_numeric_error(self, kinds, reason, error):
        columns = [name for name, kind in kinds.items() if name is not None and kind not in "biuf"]
        where = f" Non-numeric columns: {columns}." if columns else ""
        return error(
            f"{type(self).__name__} requires numeric input ({reason}).{where} Encode "
            "categorical or string columns first, e.g. with "
            "sklearn.preprocessing.OrdinalEncoder in a ColumnTransformer, and convert "
            "dates to numbers, e.g. days since a reference date."
        )

    def _validated(self, X):
        check_is_fitted(self)
        return self._validate_X(X, reset=False)

    def _wrap_data_output(self, X, X_original=None):
        """Return rows in data space in the container configured by set_output.

        scikit-learn's set_output only wraps ``transform``; samples and inverse
        transforms live in the space of the fitted columns, so with pandas (or
        polars) output configured they come back as a DataFrame whose columns are
        ``feature_names_in_`` (``x0, x1, ...`` when fitted without names).
        """
        tabular = getattr(self, "tabular_", None)
        if tabular is not None:
            return tabular.inverse_transform(X, index=getattr(X_original, "index", None))
        adapter = _get_container_adapter("transform", self)
        if adapter is None:
            return X
        columns = _check_feature_names_in(self, None)
        return adapter.create_container(X, X_original, columns=columns, inplace=False)

    # --- exact paths shared by the public estimators ---

    def _exact_tensor(self, U, conditions=None):
        return _runtime.to_tensor(_join_columns(U, conditions), self.device_, _runtime.EXACT_DTYPE)

    def score_samples(self, X):
        """Exact log-density of each row, in nats, in the units of X.

        Integrates the blocks' ODEs and the exact trace of their Jacobians
        (distilled students, if any, play no part).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to score.

        Returns
        -------
        log_density : ndarray of shape (n_samples,)
            float64 log-density of each row. For a model of a typed table:
            the log-density of the continuous columns plus, for the discrete
            (integer, categorical, few-decimal float, missingness) columns, the
            log-probability of their cell, estimated at the cell midpoint (the
            dequantized log-likelihood; see ``docs/tabular.md``).
        """
        return self._log_density(self._validated(X))

    def _log_density(self, X, conditions=None):
        """Exact log-density of validated rows X (given their condition columns, if any)."""
        U = self._exact_tensor(self.standardizer_.transform(X), conditions)
        log_prob = self.chain_.log_prob(U, self._solver_settings())
        scores = (
            _runtime.to_numpy(log_prob) + self._preprocessing_log_det(X) + self._tabular_log_det(X)
        )
        # Rows so far from the data that float64 overflows on the way have, to float64
        # precision, zero density: -inf, never NaN (an outlier must not pass as an inlier).
        scores[~np.isfinite(scores)] = -np.inf
        return scores

    def _latent_to_data(self, Z, students=None, conditions=None):
        """Latent codes to data rows: the blocks' ODEs, or `students` (a StudentChain) if given."""
        Z = self._exact_tensor(Z, conditions)
        X = self.chain_.pull(Z, self._solver_settings()) if students is None else students.pull(Z)
        X, _ = _split_columns(_runtime.to_numpy(X), 0 if conditions is None else conditions.shape[1])
        return _check_finite_rows(
            self.standardizer_.inverse_transform(X),
            "Z is too far from the latent Gaussian: mapping it to data space overflows float64",
        )

    def _check_latent(self, Z):
        check_is_fitted(self)
        Z = self._numeric(Z, lambda Z: check_array(Z, dtype=np.float64, order="C", input_name="Z"))
        if Z.shape[1] != self._n_latent:
            raise ValueError(
                f"Z has {Z.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self._n_latent} features as input."
            )
        return Z
