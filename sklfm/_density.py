"""LocalFlowMatching: density estimation, sampling and latent codes."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import ClassNamePrefixFeaturesOutMixin, DensityMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_parameter_constraints
from sklearn.utils.validation import check_is_fitted

from . import _runtime
from ._base import BaseLocalFlowMatching, _check_finite_rows
from ._conditions import ConditionEncoder
from ._progress import ProgressLog, logger
from .core import DistillSettings, distill_chain

# Options of `distill`, checked like the constructor's parameters.
_DISTILL_CONSTRAINTS = {
    "n_steps": [Interval(Integral, 1, None, closed="left")],
    "max_iter": [Interval(Integral, 1, None, closed="left")],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "learning_rate": [Interval(Real, 0, None, closed="neither")],
    "random_state": ["random_state"],
}


def _is_index(value, n_columns):
    return isinstance(value, Integral) and not isinstance(value, (bool, np.bool_)) and (
        -n_columns <= value < n_columns
    )


class LocalFlowMatching(
    DensityMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseLocalFlowMatching
):
    """Local Flow Matching density model (Xu, Cheng & Xie, 2024).

    The data are carried to N(0, I) by a chain of short flow-matching
    sub-flows. Block n learns the flow from the data pushed through blocks
    1..n-1 to the same data diffused by an Ornstein-Uhlenbeck step of length
    ``h_n``; a last "free" block maps the result to N(0, I). Each block is an
    invertible ODE map, so the model gives exact log-densities, samples and
    invertible latent codes.

    Read more in the :ref:`User Guide <user_guide>`.

    Parameters
    ----------
    step_sizes : "auto" or tuple of float, default="auto"
        OU step sizes h_1..h_L of the blocks before the free block. An empty
        tuple gives plain (global) flow matching: the free block only.
        "auto" decides the number of blocks from the data: steps follow the
        geometric rule h_k = 0.15 * 1.3**k of the reference POWER run, and
        another block is added while the last one raised the held-out
        log-likelihood of "blocks so far + a Gaussian fitted to the pushed
        rows" by at least 0.05 nats per dimension, up to 8 blocks
        (``probe_scores_`` records those values). The block that did not
        raise it that much is dropped, the first one included: far-from-Gaussian
        data get more blocks, near-Gaussian data fewer or none (global flow
        matching).
    hidden_layer_sizes : tuple of int, default=(128, 128, 128)
        Hidden widths of each block's velocity MLP on [t, x].
    activation : {"softplus", "silu", "elu", "tanh", "relu"}, default="softplus"
        Hidden activation. Smooth activations keep the ODE solves accurate.
    interpolant : {"trigonometric", "linear", "auto"}, default="trigonometric"
        Path between the two ends of a block. "auto" takes the straight line
        for the OU blocks and the trigonometric path for the free block. At
        equal steps that gained 0.2 nats per dimension on the pinwheel toy
        but learnt the OU step of the thin rings toy more slowly (fewer
        blocks paid, 0.1 nats per dimension lost), so the reference runs'
        trigonometric path stays the default.
    max_iter : int or "auto", default="auto"
        Gradient steps per block, at most (see ``early_stopping``). "auto"
        gives each OU block 300 passes over the training rows, at least
        1000 + 100 * n_features steps and at most 5,000, and the free block,
        which carries the data all the way to N(0, I), 2.5 times as many.
        Early stopping ends most blocks of small tables well before that.
    batch_size : int, default=512
        Minibatch size (capped at the number of rows).
    learning_rate : float, default=2e-3
        Adam learning rate, cosine-decayed to 1 % over each block.
    block_init : bool, default=True
        Initialise each block from the previous block's weights.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the rows (at most 4096) and check
        each block's flow-matching loss on them every 50 steps, with noise
        and times drawn once per block; a block stops when that loss has not
        improved by a fraction ``tol`` for ``n_iter_no_change`` checks in a
        row, and keeps its best weights (as MLPRegressor does). That plateau
        does not stop the block at once: its learning rate first decays along
        a cosine to its floor over 20 % of ``max_iter`` more steps (when that
        ends before ``max_iter``), as at the end of a full schedule, which
        gains most of the full schedule's likelihood in fewer steps. The
        held-out rows also serve the "auto" step schedule.
    validation_fraction : float, default=0.1
        Share of the rows held out when ``early_stopping`` is on.
    n_iter_no_change : int, default=10
        Checks without improvement before a block's learning rate cools down
        and it stops (see ``early_stopping``).
    tol : float, default=1e-4
        Relative improvement of the validation loss that counts; relative
        because flow-matching losses differ in scale from block to block.
    warm_start : bool, default=False
        On refit, keep the fitted OU blocks and the column preprocessing and
        train only what is new: OU blocks that ``step_sizes`` adds after the
        fitted ones (it must start with ``step_sizes_``), or that the "auto"
        rule finds worth adding (it trains one more candidate block and keeps
        it only if it pays), then a new free block. When nothing is added,
        the fitted model is left as it is.
    solver : {"rk4", "midpoint", "euler"}, default="rk4"
        Fixed-step ODE method used for pushing, pulling and scoring.
    ode_steps : int, default=8
        Solver steps per block.
    device : str or torch.device, default="auto"
        "auto" uses CUDA when available, else the CPU. Under torchrun with
        GPUs, call ``torch.cuda.set_device(local_rank)`` first.
    distributed : {"auto", True, False}, default="auto"
        Data-parallel training over the ranks of the default
        ``torch.distributed`` process group (launched e.g. by ``torchrun``):
        every rank calls ``fit`` with its own shard of the rows, minibatches
        are drawn over all ranks' rows, gradients are summed over the ranks
        (DistributedDataParallel), and every rank ends with the model a single
        process would fit on the shards concatenated in rank order (with an
        integer ``random_state``; up to the order of floating-point sums).
        "auto" does so when a process group with more than one rank is
        initialised; True requires one; False trains on the rows given only.
        See ``docs/distributed.md``.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, minibatches, noise and times. An integer
        gives identical fits on the CPU.
    verbose : int, default=0
        Progress through the ``sklfm`` logger (INFO): 1 logs each block's
        start, about every 10 % of its steps (rows/s, training loss,
        validation loss) and its end; 2 logs every check. When the
        application has configured no logging handler, one writing to
        stderr is attached during the fit.
    checkpoint_dir : str, path-like or None, default=None
        Directory for a checkpoint of the fit in progress, written atomically
        after each block and, within a block, every 50 steps at most every 10
        seconds. A fit that is killed and started again with the same data
        and parameters resumes from it and ends with the same model (bit for
        bit on the CPU with an integer ``random_state``); a checkpoint of
        another fit is ignored with a warning. One fit per directory; the
        file is removed when the fit completes. See ``docs/persistence.md``.
    categorical_features : "auto", None or list of str or int, default="auto"
        Columns of a DataFrame to model as categories (names, indices or a
        boolean mask). "auto": columns of category, object, string or bool
        dtype. Categories are ordinal codes (in the dtype's category order,
        else most frequent first) dequantized with uniform noise; samples hold
        only seen categories, and an unseen category raises ValueError. Every
        column of such a table then goes through a Gaussian copula map (its
        estimated CDF, then the normal quantile). See ``docs/tabular.md``.
    integer_features : "auto", None or list of str or int, default="auto"
        Columns of a DataFrame to model as integers on a grid (the greatest
        common divisor of their gaps), dequantized with uniform noise and
        rounded back. "auto": columns of integer dtype of a DataFrame that
        has a non-numeric column (a DataFrame of numbers only is modelled
        like its array unless this or ``categorical_features`` names columns).
    missing : {"error", "indicator"}, default="error"
        Missing values in a DataFrame. "error": ValueError naming the
        columns (impute them in a Pipeline, e.g. with SimpleImputer).
        "indicator": a numeric column with gaps in fit is filled with its
        median and gets a modelled 0/1 missingness column; a categorical one
        gets a "missing" category; samples then have gaps at the learnt rate.
    condition : {None, "categorical", "continuous"}, default=None
        What ``fit(X, y)`` does with y. None: y is ignored, as density
        estimators in scikit-learn do (a Pipeline or a cross-validation passes
        y to every step). "categorical": y holds class labels and the model
        is p(x | class); "continuous": y holds numbers (1-D, or 2-D for
        several) and the model is p(x | y). Every block's velocity then reads
        the condition (one-hot classes, or standardized numbers) beside
        [t, x], and :meth:`sample`, :meth:`score_samples`, :meth:`transform`
        and :meth:`inverse_transform` take y.
    conditional_columns : None or list of str or int, default=None
        Columns of X that are conditions (names of a DataFrame's columns,
        indices, or a boolean mask), as pzflow's ``conditional_columns``: the
        model is p(other columns | these columns), whose velocity fields read
        the standardized condition columns beside [t, x]. :meth:`score_samples`
        and :meth:`transform` read the conditions from the rows of X;
        :meth:`sample` and :meth:`inverse_transform` take their values as y
        (in the order given here) and return all columns, the conditions
        copied in. Numeric columns only; cannot be combined with ``condition``.
        See ``docs/conditional.md``.

    Attributes
    ----------
    chain_ : sklfm.core.FlowChain
        The trained blocks (torch modules).
    tabular_ : object or None
        The column-type layer fitted on a DataFrame with boolean, categorical
        or string columns (or with ``categorical_features``,
        ``integer_features`` or ``missing`` set); None for arrays and frames
        of numbers, which are modelled as before.
    standardizer_ : object
        Per-column centring and scaling applied before the flow.
    condition_encoder_ : object or None
        With ``condition`` set: the classes (``classes_``, ``class_prior_``)
        or the centring and scale of y; with ``conditional_columns``, the
        centring and scale of those columns; None otherwise.
    conditional_columns_ : ndarray of int or None
        Indices in X of the condition columns, in the order of
        ``conditional_columns``; None without them.
    step_sizes_ : tuple of float
        The OU step sizes used.
    loss_curve_ : list of ndarray
        Training loss per step, one array per block (the free block last).
    validation_scores_ : list of ndarray
        Negated validation flow-matching loss at each check (higher is
        better, as scikit-learn scores), one array per block; empty arrays
        without ``early_stopping``.
    n_iter_per_block_ : list of int
        Gradient steps run in each block.
    n_iter_ : int
        Gradient steps run in all blocks together, those of an OU block that
        ``step_sizes="auto"`` trained and dropped included.
    probe_scores_ : list of float
        With ``step_sizes="auto"``: the held-out log-likelihood per
        dimension of "first k blocks + a fitted Gaussian", k = 0, 1, ... for
        the kept blocks; empty for explicit step sizes.
    device_ : torch.device
        Device the model was trained and is evaluated on.
    students_ : sklfm.core.StudentChain or None
        Few-step students of the blocks, used by :meth:`sample`; None until
        :meth:`distill` is called (and again after a refit).
    distill_steps_ : int or None
        Network evaluations per block of the students; None when not distilled.
    distill_loss_curve_ : list of ndarray or None
        Distillation loss per step, one array per block; None when not distilled.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when X has string column names.

    Notes
    -----
    The training budget grows with the table (``max_iter="auto"``) and early
    stopping ends blocks that stop improving. On a GPU the default batch
    leaves it mostly idle (on an H200, 1.7 times one CPU thread); a GPU-scale
    setting is ``hidden_layer_sizes=(256,) * 4, batch_size=30000,
    learning_rate=2e-3, max_iter=12000``, which fits the 1.66 million POWER
    rows in 2 minutes on an H200 (the reference runs: ``max_iter=100000,
    learning_rate=5e-3``; ``docs/benchmarks.md``). Scoring integrates the
    exact Jacobian trace with ``ode_steps`` fixed RK4 steps per block in
    float64.

    Sampling solves every block's ODE (``4 * ode_steps`` network evaluations
    per block with RK4). :meth:`distill` trains a one- or few-step student
    per block, after which :meth:`sample` needs ``n_steps`` evaluations per
    block (``benchmarks/distill.py`` measures the speed and the fidelity);
    densities and latent codes always use the exact ODE path.

    Examples
    --------
    >>> from sklfm import LocalFlowMatching
    >>> from sklfm.datasets import make_rings
    >>> X = make_rings(2000, random_state=0)
    >>> model = LocalFlowMatching(max_iter=200, random_state=0).fit(X)
    >>> model.score_samples(X[:3]).shape
    (3,)
    >>> model.sample(5, random_state=0).shape
    (5, 2)

    A class-conditional model:

    >>> import numpy as np
    >>> y = np.where(X[:, 0] > 0, "right", "left")
    >>> model = LocalFlowMatching(condition="categorical", max_iter=200, random_state=0)
    >>> bool((model.fit(X, y).sample(100, y="right", random_state=0)[:, 0] > 0).mean() > 0.8)
    True
    """

    _parameter_constraints = {
        **BaseLocalFlowMatching._parameter_constraints,
        "condition": [None, StrOptions({"categorical", "continuous"})],
        "conditional_columns": [None, list, tuple, np.ndarray],
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
        learning_rate=0.002,
        block_init=True,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=0.0001,
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
        condition=None,
        conditional_columns=None,
    ):
        super().__init__(
            step_sizes=step_sizes,
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            interpolant=interpolant,
            max_iter=max_iter,
            batch_size=batch_size,
            learning_rate=learning_rate,
            block_init=block_init,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            tol=tol,
            warm_start=warm_start,
            solver=solver,
            ode_steps=ode_steps,
            device=device,
            distributed=distributed,
            random_state=random_state,
            verbose=verbose,
            checkpoint_dir=checkpoint_dir,
            categorical_features=categorical_features,
            integer_features=integer_features,
            missing=missing,
        )
        self.condition = condition
        self.conditional_columns = conditional_columns

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Latent codes are float64 whatever the input dtype.
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags

    @property
    def _n_latent(self):
        columns = getattr(self, "conditional_columns_", None)
        return super()._n_latent - (0 if columns is None else len(columns))

    @property
    def _n_features_out(self):
        # Used by get_feature_names_out: the latent codes are named
        # "localflowmatching0", ... because each mixes all input columns.
        return self._n_latent

    # --- conditions ---

    def _fit_conditions(self, X, y, warm):
        if self.conditional_columns is not None:
            return self._fit_conditional_columns(X, warm)
        if self.condition is None:
            return X, None
        if y is None:
            raise ValueError(
                f"condition={self.condition!r} models X given y: fit(X, y) needs y. Set "
                "condition=None for a model of X alone."
            )
        fitted = getattr(self, "condition_encoder_", None) if warm else None
        if warm and (fitted is None or fitted.kind != self.condition):
            raise ValueError(
                "warm_start=True keeps the fitted blocks, which were trained with "
                f"condition={None if fitted is None else fitted.kind!r}; got "
                f"condition={self.condition!r}. Set warm_start=False to train a new chain."
            )
        encoder = fitted or ConditionEncoder(self.condition).fit(y, len(X))
        conditions = encoder.transform(y)
        # Set last: a failed fit restores the estimator (see _unchanged_on_error).
        self.condition_encoder_ = encoder
        return X, conditions

    def _fit_conditional_columns(self, X, warm):
        if self.condition is not None:
            raise ValueError(
                "Set condition or conditional_columns, not both: condition models X given "
                "y, conditional_columns models the other columns of X given these."
            )
        if getattr(self, "tabular_", None) is not None:
            raise ValueError(
                "conditional_columns takes tables of numbers: encode categorical, string "
                "or boolean columns first (e.g. with a OneHotEncoder)."
            )
        columns = self._conditional_column_indices()
        fitted = getattr(self, "conditional_columns_", None) if warm else None
        if warm and (fitted is None or not np.array_equal(fitted, columns)):
            raise ValueError(
                "warm_start=True keeps the fitted blocks, which were trained with "
                f"conditional_columns_={fitted}; got columns {columns}. Set "
                "warm_start=False to train a new chain."
            )
        encoder = self.condition_encoder_ if warm else ConditionEncoder("continuous")
        if not warm:
            encoder.fit(X[:, columns], len(X))
        self.condition_encoder_ = encoder
        self.conditional_columns_ = columns
        return np.delete(X, columns, axis=1), encoder.transform(X[:, columns])

    def _conditional_column_indices(self):
        """conditional_columns as indices into the columns of X; ValueError if they are not."""
        spec, n_columns = list(self.conditional_columns), self.n_features_in_
        names = getattr(self, "feature_names_in_", None)
        if not spec:
            columns = np.array([], dtype=np.intp)
        elif len(spec) == n_columns and all(isinstance(c, (bool, np.bool_)) for c in spec):
            columns = np.flatnonzero(spec)
        elif all(isinstance(c, str) for c in spec):
            if names is None:
                raise ValueError(
                    "conditional_columns holds column names, but X has none: pass a "
                    "DataFrame or column indices."
                )
            unknown = [c for c in spec if c not in set(names)]
            if unknown:
                raise ValueError(f"conditional_columns {unknown} are not columns of X.")
            columns = np.array([np.flatnonzero(names == c)[0] for c in spec])
        elif all(_is_index(c, n_columns) for c in spec):
            columns = np.array([int(c) % n_columns for c in spec])
        else:
            raise ValueError(
                "conditional_columns must be column names, indices in "
                f"[-{n_columns}, {n_columns}) or a boolean mask of the {n_columns} columns "
                f"of X; got {self.conditional_columns!r}."
            )
        if len(columns) == 0 or len(set(columns.tolist())) < len(columns):
            raise ValueError(
                f"conditional_columns must name at least one column, each once; got "
                f"{self.conditional_columns!r}."
            )
        if len(columns) >= n_columns:
            raise ValueError(
                "conditional_columns leaves no column to model: at least one column of X "
                "must not be a condition."
            )
        return columns.astype(np.intp)

    def _conditions(self, y, n_rows, what="X", required=True):
        """Condition columns for n_rows rows from y; None for an unconditional model.

        Without y, a class-conditional model returns None when not `required`
        (the caller then averages over the classes).
        """
        encoder = getattr(self, "condition_encoder_", None)
        if encoder is None:
            return None  # condition=None: y is ignored, as in fit
        if y is None:
            columns = getattr(self, "conditional_columns_", None)
            if columns is not None:
                raise ValueError(
                    "This model was fitted with conditional_columns: pass y, the values of "
                    f"the condition columns {self._condition_names()} (one row for all rows "
                    "or one per row)."
                )
            if required or encoder.kind != "categorical":
                raise ValueError(
                    f"This model was fitted with condition={encoder.kind!r}: pass y, the "
                    "condition of each row (or one for all rows)."
                )
            return None
        return encoder.transform(y, n_rows, what)

    def _condition_names(self):
        names = getattr(self, "feature_names_in_", None)
        columns = self.conditional_columns_
        return (columns if names is None else names[columns]).tolist()

    def _rows_and_conditions(self, X, y, required=True):
        """Validated rows of the modelled columns of X, and their condition columns."""
        X = self._validated(X)
        columns = getattr(self, "conditional_columns_", None)
        if columns is None:
            return X, self._conditions(y, len(X), required=required)
        return np.delete(X, columns, axis=1), self.condition_encoder_.transform(X[:, columns])

    def _with_condition_columns(self, rows, y, what):
        """All fitted columns: the modelled `rows` and, with conditional_columns, y copied in."""
        columns = getattr(self, "conditional_columns_", None)
        if columns is None:
            return rows
        full = np.empty((len(rows), self.n_features_in_))
        full[:, columns] = self.condition_encoder_.values(y, len(rows), what)
        full[:, np.setdiff1d(np.arange(self.n_features_in_), columns)] = rows
        return full

    # --- densities ---

    def score_samples(self, X, y=None):
        """Exact log-density of each row, in nats, in the units of X.

        Integrates the blocks' ODEs and the exact trace of their Jacobians
        (distilled students, if any, play no part).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to score.
        y : array-like of shape (n_samples,) or (n_samples, n_conditions), default=None
            The condition of each row (or one for all rows) for a model
            fitted with ``condition``: the score is then log p(x | y).
            Without y, a class-conditional model gives the marginal
            log p(x) = log sum_k p(k) p(x | k) over its classes, with the
            class frequencies of the training data. Ignored when
            ``condition=None``; a model fitted with ``conditional_columns``
            reads them from X and gives log p(other columns | those columns).

        Returns
        -------
        log_density : ndarray of shape (n_samples,)
            float64 log-density of each row. For a model of a typed table:
            the log-density of the continuous columns plus, for the discrete
            (integer, categorical, few-decimal float, missingness) columns, the
            log-probability of their cell, estimated at the cell midpoint (the
            dequantized log-likelihood; see ``docs/tabular.md``).
        """
        X, conditions = self._rows_and_conditions(X, y, required=False)
        encoder = getattr(self, "condition_encoder_", None)
        if conditions is not None or encoder is None:
            return self._log_density(X, conditions)
        per_class = [
            self._log_density(X, encoder.transform([label], len(X))) + np.log(prior)
            for label, prior in zip(encoder.classes_, encoder.class_prior_)
        ]
        return np.logaddexp.reduce(np.column_stack(per_class), axis=1)

    def score(self, X, y=None):
        """Mean log-likelihood of X, in nats (higher is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to score.
        y : array-like, default=None
            Conditions, as in :meth:`score_samples`; ignored when
            ``condition=None``.

        Returns
        -------
        score : float
        """
        return float(np.mean(self.score_samples(X, y)))

    # --- latent codes ---

    def transform(self, X, y=None):
        """Map rows to their latent Gaussian codes through all blocks.

        Always solves the blocks' ODEs, also on a distilled model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like, default=None
            The condition of each row (or one for all rows); required by a
            model fitted with ``condition``, ignored otherwise (a model fitted
            with ``conditional_columns`` reads them from X).

        Returns
        -------
        Z : ndarray of shape (n_samples, n_latent)
            float64 codes (n_latent is n_features, less the
            ``conditional_columns``, plus one per missingness
            indicator of a typed table; discrete columns are taken at their
            cell midpoints, so the codes are deterministic); a DataFrame with
            columns ``get_feature_names_out()``
            under ``set_output(transform="pandas")``.
        """
        X, conditions = self._rows_and_conditions(X, y)
        U = self._exact_tensor(self.standardizer_.transform(X), conditions)
        Z = _runtime.to_numpy(self.chain_.push(U, self._solver_settings()))
        return _check_finite_rows(
            Z[:, : self._n_latent],
            "X is too far from the training data: its latent codes overflow float64",
        )

    def fit_transform(self, X, y=None):
        """Fit the model on X (given y, if ``condition`` is set) and return the codes of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like, default=None
            Conditions, as in :meth:`fit`.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_latent)
            As :meth:`transform`.
        """
        return self.fit(X, y).transform(X, y)

    def inverse_transform(self, Z, y=None):
        """Map latent codes back to data space.

        The exact inverse of :meth:`transform` (the blocks' ODEs solved
        backward), also on a distilled model: the students are not used.

        Parameters
        ----------
        Z : array-like of shape (n_samples, n_features)
        y : array-like, default=None
            The condition of each row (or one for all rows); required by a
            model fitted with ``condition`` or ``conditional_columns`` (the
            values of those columns, copied into the returned rows), ignored
            otherwise.

        Returns
        -------
        X : ndarray or DataFrame of shape (n_samples, n_features)
            float64 rows in the units of the training data; a DataFrame with
            the fitted column names when pandas output is configured
            (``set_output(transform="pandas")`` or the global config).
            A model of a typed table returns a DataFrame of its columns and
            dtypes.
        """
        codes = self._check_latent(Z)
        conditions = self._conditions(y, len(codes), what="Z")
        rows = self._latent_to_data(codes, conditions=conditions)
        return self._wrap_data_output(self._with_condition_columns(rows, y, "Z"), Z)

    def _fit(self, X, y=None):
        blocks = list(self.chain_.blocks) if hasattr(self, "chain_") else None
        if self.conditional_columns is None:
            self.conditional_columns_ = None
            if self.condition is None:
                self.condition_encoder_ = None
        super()._fit(X, y)
        # A refit drops the students, unless it kept every block (a warm start adding none).
        if list(self.chain_.blocks) != blocks:
            self.students_ = None
            self.distill_steps_ = None
            self.distill_loss_curve_ = None

    def distill(
        self, *, n_steps=1, max_iter=4000, batch_size=128, learning_rate=3e-3, random_state=None
    ):
        """Train a few-step student for every block, for fast sampling.

        Each block's student maps the block's noise side to its data side in
        ``n_steps`` network evaluations instead of an ODE solve (``solver``
        with ``ode_steps`` steps). It is trained, last block first, to land on
        the teacher block's ODE solution at ``n_steps`` equally spaced times,
        from noise-side inputs that are N(0, I) draws carried through the
        students already trained for the later blocks. Each student is a copy
        of its block's velocity network at the start.

        After distillation :meth:`sample` uses the students. The students are
        not invertible and give no densities: :meth:`score_samples`,
        :meth:`score`, :meth:`transform` and :meth:`inverse_transform` keep the
        exact ODE path and are unchanged. Calling ``distill`` again replaces
        the students; :meth:`fit` drops them.

        Parameters
        ----------
        n_steps : int, default=1
            Network evaluations per block when sampling.
        max_iter : int, default=4000
            Adam steps per block. The number of steps matters more than the
            batch size; with the defaults, distilling takes time of the order
            of the fit's (``benchmarks/distill.py``).
        batch_size : int, default=128
            Minibatch size, drawn from 16,384 teacher solves per block.
        learning_rate : float, default=3e-3
            Adam learning rate, cosine-decayed to 1 % over each block.
        random_state : int, RandomState instance or None, default=None
            Seeds the noise and minibatches; None uses the estimator's
            ``random_state``. An integer gives identical students on the CPU.

        Returns
        -------
        self : object
            The estimator, with ``students_``, ``distill_steps_`` and
            ``distill_loss_curve_`` set.

        Examples
        --------
        >>> from sklfm import LocalFlowMatching
        >>> from sklfm.datasets import make_rings
        >>> X = make_rings(2000, random_state=0)
        >>> model = LocalFlowMatching(max_iter=200, random_state=0).fit(X)
        >>> model.distill(max_iter=100).distill_steps_
        1
        >>> model.sample(5, random_state=0).shape
        (5, 2)
        """
        check_is_fitted(self)
        if getattr(self, "condition_encoder_", None) is not None:
            raise ValueError(
                "distill does not support conditional models yet: sample with the exact "
                "ODE path (sample(n, y=...))."
            )
        options = dict(
            n_steps=n_steps,
            max_iter=max_iter,
            batch_size=batch_size,
            learning_rate=learning_rate,
            random_state=random_state,
        )
        validate_parameter_constraints(_DISTILL_CONSTRAINTS, options, caller_name="distill")
        seed = self.random_state if random_state is None else random_state
        settings = DistillSettings(n_steps, max_iter, batch_size, learning_rate)
        with ProgressLog(self.verbose, batch_size) as progress:
            students, losses = distill_chain(
                self.chain_,
                settings,
                self._solver_settings(),
                _runtime.make_generator(seed, self.device_),
                on_block_end=progress and self._log_student,
            )
        self.students_ = students
        self.distill_steps_ = n_steps
        self.distill_loss_curve_ = losses
        return self

    def _log_student(self, index, losses):
        tail = losses[-max(1, len(losses) // 10) :].mean()
        logger.info("student of block %d: final loss %.3g", index + 1, tail)

    def sample(self, n_samples=1, random_state=None, y=None):
        """Draw rows from the model.

        Latent N(0, I) draws are carried to data space by the students when
        the model is distilled (:meth:`distill`), else by the blocks' ODEs.

        Parameters
        ----------
        n_samples : int, default=1
            Number of rows.
        random_state : int, RandomState instance or None, default=None
            Seeds the latent noise (and the classes drawn without y); None
            uses the estimator's ``random_state``.
        y : label, array-like or None, default=None
            For a model fitted with ``condition``: draw from p(x | y), with
            one condition for all rows (a label, a number, or one row of a
            multi-column condition) or one per row (``n_samples`` of them).
            Without y, a class-conditional model first draws each row's class
            with the training frequencies. For a model fitted with
            ``conditional_columns``: the values of those columns (one row for
            all rows, or one per row), copied into the returned rows. Ignored
            by an unconditional model.

        Returns
        -------
        X : ndarray or DataFrame of shape (n_samples, n_features)
            float64 rows in the units of the training data; a DataFrame with
            the fitted column names when pandas output is configured. A model
            of a typed table returns a DataFrame with the training columns,
            dtypes and categories: integers on their grid, only seen
            categories, numeric columns inside their training range.
        """
        check_is_fitted(self)
        if not isinstance(n_samples, Integral) or isinstance(n_samples, bool) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer; got {n_samples!r}.")
        n_samples = int(n_samples)
        rng = check_random_state(self.random_state if random_state is None else random_state)
        conditions = self._conditions(y, n_samples, what="n_samples", required=False)
        encoder = getattr(self, "condition_encoder_", None)
        if conditions is None and encoder is not None:
            labels = rng.choice(encoder.classes_, size=n_samples, p=encoder.class_prior_)
            conditions = encoder.transform(labels)
        Z = rng.standard_normal((n_samples, self._n_latent))
        students = getattr(self, "students_", None)
        rows = self._latent_to_data(Z, students, conditions)
        return self._wrap_data_output(self._with_condition_columns(rows, y, "n_samples"))
