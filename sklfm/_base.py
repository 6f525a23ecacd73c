"""The scikit-learn facade shared by the public estimators: parameters, validation, fit."""

import logging
from contextlib import contextmanager
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils import check_array
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils._set_output import _get_container_adapter
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted, validate_data

from . import _runtime
from ._preprocessing import Standardizer
from .core import (
    ACTIVATIONS,
    INTERPOLANTS,
    SOLVERS,
    SolverSettings,
    TrainSettings,
    train_chain,
)

logger = logging.getLogger("sklfm")

# "auto" schedule: h_n = c * rho**(n - 1), the geometric rule of the reference
# POWER run (0.15, 0.2, 0.26 with c = 0.15, rho = 1.3).
AUTO_STEP_SIZES = dict(first=0.15, ratio=1.3, n_blocks=3)


def auto_step_sizes(first, ratio, n_blocks):
    return tuple(first * ratio**k for k in range(n_blocks))


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


class BaseLocalFlowMatching(BaseEstimator):
    """Parameters, validation and training shared by the public LFM estimators."""

    _parameter_constraints = {
        "step_sizes": [StrOptions({"auto"}), tuple, list],
        "hidden_layer_sizes": [tuple, list, Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "interpolant": [StrOptions(set(INTERPOLANTS))],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "block_init": ["boolean"],
        "solver": [StrOptions(set(SOLVERS))],
        "ode_steps": [Interval(Integral, 1, None, closed="left")],
        "device": [str, _runtime.Device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        *,
        step_sizes="auto",
        hidden_layer_sizes=(128, 128, 128),
        activation="softplus",
        interpolant="trigonometric",
        max_iter=2000,
        batch_size=512,
        learning_rate=2e-3,
        block_init=True,
        solver="rk4",
        ode_steps=8,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.step_sizes = step_sizes
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.interpolant = interpolant
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.block_init = block_init
        self.solver = solver
        self.ode_steps = ode_steps
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

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

    def _check_step_sizes(self):
        if isinstance(self.step_sizes, str):
            return auto_step_sizes(**AUTO_STEP_SIZES)
        steps = tuple(self.step_sizes)
        if not all(_is_number(h, Real) and np.isfinite(h) and h > 0 for h in steps):
            raise ValueError(
                "step_sizes must be 'auto' or a tuple of positive finite OU step sizes "
                f"(empty for global flow matching); got {self.step_sizes!r}."
            )
        return tuple(float(h) for h in steps)

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

    # --- fitting ---

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the blocks in sequence on X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data, continuous columns.
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        with _unchanged_on_error(self):
            self._fit(X)
        return self

    def _fit(self, X):
        step_sizes = self._check_step_sizes()
        hidden = self._check_hidden_layer_sizes()
        device = _runtime.resolve_device(self.device)
        X = self._validate_X(X, reset=True)

        standardizer, rows = self._fit_preprocessing(X)
        data = _runtime.to_tensor(rows, device, _runtime.TRAIN_DTYPE)
        chain, losses = train_chain(
            data,
            step_sizes,
            network=dict(hidden_layer_sizes=hidden, activation=self.activation),
            train=TrainSettings(
                max_iter=self.max_iter,
                batch_size=self.batch_size,
                learning_rate=self.learning_rate,
                interpolant=self.interpolant,
            ),
            solver=self._solver_settings(),
            generator=_runtime.make_generator(self.random_state, device),
            block_init=self.block_init,
            on_block_end=self._log_block if self.verbose else None,
        )
        self.standardizer_ = standardizer
        self.chain_ = chain
        self.step_sizes_ = step_sizes
        self.loss_curve_ = losses
        self.n_iter_ = self.max_iter
        self.device_ = device

    # --- preprocessing hooks (LocalFlowMatchingOutlierDetector overrides them) ---

    def _fit_preprocessing(self, X):
        """Fit the column preprocessing on X; return it and the rows the blocks train on."""
        standardizer = Standardizer().fit(X)
        return standardizer, standardizer.transform(X)

    def _preprocessing_log_det(self, X):
        """Log-Jacobian of the fitted preprocessing at the rows of X (scalar or per row)."""
        return self.standardizer_.log_det_

    def _log_block(self, index, block, losses):
        kind = "free block" if block.step_size is None else f"OU block h={block.step_size:.4g}"
        tail = losses[-max(1, len(losses) // 10) :].mean()
        logger.info("block %d (%s): final loss %.5f", index + 1, kind, tail)

    # --- input and output containers ---

    def _validate_X(self, X, reset):
        """validate_data with float64 output and a clear message for non-numeric columns."""
        try:
            # C order: the same numbers whether X came as an array or a DataFrame
            # (column means are summed in a layout-dependent order).
            return validate_data(
                self,
                X,
                dtype=np.float64,
                order="C",
                reset=reset,
                ensure_min_samples=2 if reset else 1,
            )
        except ValueError as exc:
            if not str(exc).startswith("could not convert"):
                raise
            dtypes = getattr(X, "dtypes", None)
            columns = (
                [str(name) for name, dtype in dtypes.items() if dtype.kind not in "biuf"]
                if hasattr(dtypes, "items")
                else []
            )
            where = f" Non-numeric columns: {columns}." if columns else ""
            raise ValueError(
                f"{type(self).__name__} requires numeric input ({exc}).{where} Encode "
                "categorical or string columns first, e.g. with "
                "sklearn.preprocessing.OrdinalEncoder in a ColumnTransformer."
            ) from exc

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
        adapter = _get_container_adapter("transform", self)
        if adapter is None:
            return X
        columns = _check_feature_names_in(self, None)
        return adapter.create_container(X, X_original, columns=columns, inplace=False)

    # --- exact paths shared by the public estimators ---

    def _exact_tensor(self, U):
        return _runtime.to_tensor(U, self.device_, _runtime.EXACT_DTYPE)

    def score_samples(self, X):
        """Exact log-density of each row, in nats, in the units of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to score.

        Returns
        -------
        log_density : ndarray of shape (n_samples,)
            float64 log-density of each row.
        """
        X = self._validated(X)
        U = self._exact_tensor(self.standardizer_.transform(X))
        log_prob = self.chain_.log_prob(U, self._solver_settings())
        return _runtime.to_numpy(log_prob) + self._preprocessing_log_det(X)

    def _latent_to_data(self, Z):
        X = self.chain_.pull(self._exact_tensor(Z), self._solver_settings())
        return self.standardizer_.inverse_transform(_runtime.to_numpy(X))

    def _check_latent(self, Z):
        check_is_fitted(self)
        Z = check_array(Z, dtype=np.float64, order="C", input_name="Z")
        if Z.shape[1] != self.n_features_in_:
            raise ValueError(
                f"Z has {Z.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        return Z
