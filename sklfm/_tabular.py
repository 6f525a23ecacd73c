"""Typed tables in front of the flow: column types, a continuous encoding, and the way back.

A DataFrame with integer, boolean, categorical or string columns is encoded
column by column into continuous "encoded" columns E that the flow models, and
decoded from E into a DataFrame of the same columns, dtypes and category sets.

Encoding (the grid value g of a row, then E = phi(g)):

- categorical (category, object, string or bool dtype): g = ordinal code
  0..K-1 in the order of the dtype's categories (most frequent first for object
  and string columns, the values seen, False first, for bool); cell width 1.
- integer (integer dtype): g = the value, on a grid of step s (the greatest
  common divisor of the gaps between training values); cell width s.
- float: g = the value; a float column whose training values all have at most
  6 decimals (prices in cents, depths to 0.1) is on a grid like an integer
  column (step s a multiple of 10**-decimals) and has a cell; other floats none.
- missing values (``missing="indicator"``): a categorical column gets one more
  code for "missing"; a numeric column gets an extra 0/1 indicator column (cell
  width 1) after the table's columns.
- point masses: a numeric column whose minimum holds >= 10 % of the training
  rows (zero-inflated amounts) gets a 0/1 "at the minimum" column after those.
  The value of a flagged cell (missing or at the minimum) is the median of the
  column's other values when scoring; in training its encoded value is a draw
  from N(0, 1), the column's marginal.
- phi, a Gaussian copula map: E = ndtri(F(g)), F a continuous, piecewise-linear
  estimate of the column's CDF, so every encoded column is close to N(0, 1)
  and the flow has only the dependence between columns left to learn. F is the
  CDF of the training values (flagged cells left out) with each value spread
  uniformly over its cell, at its mid-rank for a column without cells, mixed
  with 0.1 % of a uniform over the training range (values of the range never
  seen keep a positive density), squeezed into [eps, 1 - eps] (eps = 1 / (2 (n
  + 1))) and cut to at most 256 knots. A category (or integer value, or
  indicator) therefore fills the slice of N(0, 1) of its training frequency.
  Beyond the knots E goes on linearly in g (a Gaussian tail), so every finite
  value has a finite E.

The flow trains on E with every cell filled by uniform noise (dequantization),
which keeps each encoded column marginally N(0, 1). The fill is stratified and
ordered: a cell of n training rows gets one uniform point in each of its n
equal strata, handed out in the order of a draw of the column from its linear
Gaussian conditional given the other encoded columns. Where a row sits in its
cell then follows the other columns, as a latent variable behind a category
would, instead of being independent noise that the flow would have to model as
sharp steps between cells; that independence washed out the dependence between
discrete and other columns (benchmarks/synthetic.py, credit_data).
Decoding inverts phi, rounds codes and grid values to their grid (and floats
on a grid to their decimals) and clips every numeric column to its training
range, so samples are valid values of the table.

``log_det`` is log |dE/dg| = log F'(g) - log N(E; 0, 1) (the tail slope
beyond the knots) plus the log widths of the cells: with it, the score of a row
is the log-density of the flow's continuous model at the cell midpoint times
the cell volume, a midpoint estimate of log P(discrete columns) + log
p(continuous columns | discrete columns), the continuous columns' density in
their own units. (Averaged over uniform noise in the cell instead of taken at
its midpoint, it would be a lower bound on that log-probability, by Jensen's
inequality.)
"""

from numbers import Integral

import numpy as np
import pandas as pd
import torch

CATEGORICAL, INTEGER, FLOAT = "categorical", "integer", "float"
# A numeric column whose minimum holds at least this share of the rows (zero-inflated
# amounts, counts) models "at the minimum" as a 0/1 column: a smooth flow cannot put a
# point mass there.
ATOM_SHARE = 0.1
# A float column whose training values all have at most this many decimals is modelled
# on their grid, like an integer column (prices in cents, depths to 0.1).
_MAX_DECIMALS = 6
# Knots of a column's CDF estimate: enough to follow the steps of a discrete column
# exactly and the shape of a continuous one closely, few enough to smooth it.
_N_KNOTS = 256
# Share of a column's CDF spread uniformly over its training range, so that values of
# the range not seen in fit (e.g. an integer between two seen ones) keep a positive density.
_RANGE_SHARE = 1e-3
# A category must be a plain value: the model file stores categories as JSON.
_CATEGORY_TYPES = (str, bool, np.bool_, Integral, float, np.floating)


def missing_error(columns, fitted=False):
    """The error for missing values when they are not modelled."""
    if fitted:
        return ValueError(
            f"Input X contains NaN in columns {columns}, which had no missing values in fit: "
            "the model has no missingness indicator for them."
        )
    return ValueError(
        f"Input X contains NaN in columns {columns}. Missing values are not modelled by "
        "default: impute them in a Pipeline, e.g. make_pipeline(SimpleImputer(), "
        "LocalFlowMatching()) (a ColumnTransformer for mixed columns), or set "
        "missing='indicator' to model the gaps."
    )


def is_typed_table(X):
    """A DataFrame with a column that is not a number: boolean, categorical, string, object.

    A DataFrame of numbers alone is modelled like its array (scikit-learn expects the
    same model from both); datetimes are left to the numeric check, which refuses them.
    """
    return isinstance(X, pd.DataFrame) and any(dtype.kind not in "iufMm" for dtype in X.dtypes)


def _select(spec, columns, name):
    """Positions named by spec: "auto" or None (none), names, indices or a boolean mask."""
    if spec is None or isinstance(spec, str):
        return set()
    spec = list(spec)
    if spec and all(isinstance(v, (bool, np.bool_)) for v in spec):
        if len(spec) != len(columns):
            raise ValueError(f"{name} mask has {len(spec)} entries for {len(columns)} columns.")
        return {j for j, flag in enumerate(spec) if flag}
    positions = set()
    for v in spec:
        if isinstance(v, Integral) and not isinstance(v, bool) and v not in columns:
            if not -len(columns) <= v < len(columns):
                raise ValueError(f"{name}: index {v} is out of range for {len(columns)} columns.")
            positions.add(int(v) % len(columns))
        elif v in columns:
            positions.add(columns.index(v))
        else:
            raise ValueError(f"{name}: {v!r} is not a column of X; columns: {columns}.")
    return positions


def _grid_step(values):
    gaps = np.diff(np.unique(values))
    if not gaps.size:
        return 1.0
    if np.array_equal(values, np.round(values)):
        return float(np.gcd.reduce(gaps.astype(np.int64)))
    return float(gaps.min())


def _decimals(values):
    """The fewest decimals (at most _MAX_DECIMALS) that write every value exactly, or None;
    None too where the scaled values leave float64's exact integers."""
    largest = np.abs(values).max()
    for decimals in range(_MAX_DECIMALS + 1):
        if largest * 10.0**decimals >= 2**53:
            return None
        if np.array_equal(values, np.round(values, decimals)):
            return decimals
    return None


def _cdf_knots(values, width):
    """Knots (x, u), both strictly increasing inside (0, 1), of a column's CDF estimate.

    The CDF of the training values with each value spread uniformly over its cell
    (``width``; a value at its mid-rank for a float column), mixed with a uniform over
    the training range (``_RANGE_SHARE``), squeezed into [eps, 1 - eps] to leave room
    for the tails, and cut to at most ``_N_KNOTS`` knots at equally spaced levels.
    """
    v, counts = np.unique(values, return_counts=True)
    cum = np.concatenate([[0.0], np.cumsum(counts)]) / counts.sum()
    if width > 0:
        x = np.column_stack([v - width / 2, v + width / 2]).ravel()
        u = np.column_stack([cum[:-1], cum[1:]]).ravel()
    else:
        x, u = v, (cum[:-1] + cum[1:]) / 2
    x, u = _distinct(x, u)  # neighbouring cells share an edge
    if len(x) < 2:  # one value (or one cell lost in the rounding of huge values)
        half = 0.5 * max(1.0, abs(x[0]))
        limit = np.finfo(np.float64).max
        x, u = np.clip([x[0] - half, x[0] + half], -limit, limit), np.array([0.0, 1.0])
    with np.errstate(over="ignore", invalid="ignore"):
        spread = (x - x[0]) / (x[-1] - x[0])
    if not np.isfinite(spread).all():  # a range beyond float64: spread by rank instead
        spread = np.linspace(0, 1, len(x))
    eps = 0.5 / (counts.sum() + 1)
    u = eps + (1 - 2 * eps) * ((1 - _RANGE_SHARE) * u + _RANGE_SHARE * spread)
    if len(x) > _N_KNOTS:
        levels = np.linspace(u[0], u[-1], _N_KNOTS)
        x, u = _distinct(_interp(levels, u, x), levels)  # huge values may round together
    return x, u


def _distinct(x, u):
    """The knots whose x is above the previous one's (x is sorted)."""
    keep = np.concatenate([[True], np.diff(x) > 0])
    return x[keep], u[keep]


def _interp(t, knots_t, knots_y):
    """np.interp written as a weighted mean: a slope near the float64 limit overflows."""
    right = np.clip(np.searchsorted(knots_t, t, side="right"), 1, len(knots_t) - 1)
    left = right - 1
    with np.errstate(over="ignore", invalid="ignore"):
        weight = np.clip((t - knots_t[left]) / (knots_t[right] - knots_t[left]), 0, 1)
    weight = np.nan_to_num(weight, nan=0.0)
    return knots_y[left] * (1 - weight) + knots_y[right] * weight


def _ndtr(E):
    return torch.special.ndtr(torch.from_numpy(np.asarray(E, dtype=np.float64))).numpy()


def _ndtri(u):
    return torch.special.ndtri(torch.from_numpy(np.asarray(u, dtype=np.float64))).numpy()


def _log_phi(E):
    return -0.5 * E**2 - 0.5 * np.log(2 * np.pi)


def _conditional_draws(E, columns, rng):
    """A draw of each of `columns` of E from its linear Gaussian conditional given the other
    columns: the least-squares prediction (a small ridge) plus noise of the residual variance."""
    noise = rng.standard_normal(E.shape)[:, columns]
    if len(E) == 0:
        return noise
    centred = E - E.mean(axis=0)
    covariance = np.cov(centred, rowvar=False, bias=True).reshape(E.shape[1], -1)
    precision = np.linalg.inv(covariance + 1e-3 * np.eye(E.shape[1]))[:, columns]
    residual = 1 / precision[columns, np.arange(len(columns))]
    return E[:, columns] - centred @ precision * residual + np.sqrt(residual) * noise


def _ranked_offsets(g, order_by, rng):
    """Offsets in [-0.5, 0.5) within each cell (rows of equal g), increasing with `order_by`.

    Within a cell of n rows the offsets are (rank + U) / n - 0.5 with U uniform: together
    exactly a uniform fill, placed so that the position in the cell follows the other columns.
    """
    n = len(g)
    u = rng.uniform(size=n)
    order = np.lexsort((u, order_by, g))
    starts = np.r_[0, np.flatnonzero(np.diff(g[order])) + 1]
    counts = np.diff(np.r_[starts, n])
    group = np.repeat(np.arange(len(starts)), counts)
    offsets = np.empty(n)
    offsets[order] = (np.arange(n) - starts[group] + u[order]) / counts[group] - 0.5
    return offsets


class _CopulaColumn:
    """E = ndtri(F(g)) for one column, F the piecewise-linear CDF through the knots (x, u);
    beyond the knots E goes on linearly in g with the slope of the outer segment (a
    Gaussian tail), so every finite value has a finite E and log |dE/dg|."""

    def __init__(self, x, u):
        self.x, self.u, self.e = x, u, _ndtri(u)
        with np.errstate(over="ignore", divide="ignore"):
            self.slope_u = np.diff(u) / np.diff(x)
            self.tails = np.array([
                (self.e[1] - self.e[0]) / (x[1] - x[0]), (self.e[-1] - self.e[-2]) / (x[-1] - x[-2])
            ])  # fmt: skip

    def forward(self, g):
        E = _ndtri(_interp(g, self.x, self.u))
        with np.errstate(over="ignore", invalid="ignore"):
            below, above = g < self.x[0], g > self.x[-1]
            E[below] = self.e[0] - (self.x[0] - g[below]) * self.tails[0]
            E[above] = self.e[-1] + (g[above] - self.x[-1]) * self.tails[1]
        return E

    def backward(self, E):
        g = _interp(_ndtr(E), self.u, self.x)
        with np.errstate(over="ignore", invalid="ignore"):
            below, above = E < self.e[0], E > self.e[-1]
            g[below] = self.x[0] - (self.e[0] - E[below]) / self.tails[0]
            g[above] = self.x[-1] + (E[above] - self.e[-1]) / self.tails[1]
        return g

    def log_det(self, E):
        """log |dE/dg| = log F'(g) - log phi(E) inside the knots; the tail slope beyond."""
        segment = np.clip(np.searchsorted(self.e, E, side="right") - 1, 0, len(self.e) - 2)
        with np.errstate(divide="ignore"):
            out = np.log(self.slope_u[segment]) - _log_phi(E)
            out[E < self.e[0]] = np.log(self.tails[0])
            out[E > self.e[-1]] = np.log(self.tails[1])
        return out


class TabularEncoder:
    """Column types of a DataFrame and their continuous encoding (see the module notes).

    Parameters
    ----------
    categorical_features, integer_features : "auto", None, or list of names,
        indices or a boolean mask. "auto" takes the types from the dtypes;
        named columns are forced to that type.
    missing : {"error", "indicator"}
    """

    # Fitted state that encoders saved by an earlier sklfm (before the copula map) lack:
    # loading such a model must fail clearly, not at its first use.
    _required_state = ("knots_x_", "knots_u_", "knot_ends_", "decimals_")

    def __init__(self, categorical_features="auto", integer_features="auto", missing="error"):
        self.categorical_features = categorical_features
        self.integer_features = integer_features
        self.missing = missing

    # --- fit ---

    def fit(self, X):
        columns = list(X.columns)
        forced_categorical = _select(self.categorical_features, columns, "categorical_features")
        forced_integer = _select(self.integer_features, columns, "integer_features")
        if forced_categorical & forced_integer:
            both = [columns[j] for j in sorted(forced_categorical & forced_integer)]
            raise ValueError(f"Columns {both} are named both categorical and integer.")
        gaps = [name for j, name in enumerate(columns) if X.iloc[:, j].isna().any()]
        if gaps and self.missing == "error":
            raise missing_error(gaps)
        self.columns_ = columns
        self.dtypes_, self.kinds_, self.categories_, self.ordered_ = [], [], [], []
        self.fill_, self.decimals_ = [], []
        # Columns with missing values in fit; the numeric ones get an indicator column.
        self.missing_columns_, self.indicators_ = [], []
        # Numeric columns with a point mass at their minimum (ATOM_SHARE), and its value.
        self.atoms_, self.atom_values_ = [], []
        widths, low, high = [], [], []
        for j, name in enumerate(columns):
            column = X.iloc[:, j]
            dtype = column.dtype
            kind = (
                CATEGORICAL if j in forced_categorical
                else INTEGER if j in forced_integer
                else self._auto_kind(name, dtype)
            )  # fmt: skip
            na = column.isna().to_numpy()
            if na.any():
                self.missing_columns_.append(j)
            self.dtypes_.append(str(dtype))
            self.kinds_.append(kind)
            self.ordered_.append(bool(getattr(dtype, "ordered", False)))
            if kind == CATEGORICAL:
                categories = self._categories(name, column[~na], dtype)
                self.categories_.append(categories)
                self.decimals_.append(0)
                self.fill_.append(float(len(categories)))  # the "missing" code
                widths.append(1.0)
                low.append(0.0)
                high.append(len(categories) - (0 if na.any() else 1))
                continue
            values = self._numbers(name, column[~na])
            if not values.size:
                raise ValueError(f"Column {name!r} has no values, only missing ones.")
            self.categories_.append(None)
            decimals = 0 if kind == INTEGER else _decimals(values)
            width = 0.0
            if decimals is not None:
                # Rounded: 0.29 * 100 is 28.999999999999996, whose gaps have no integer gcd.
                width = _grid_step(np.round(values * 10.0**decimals)) / 10.0**decimals
            self.decimals_.append(decimals)
            at_min = values == values.min()
            if ATOM_SHARE <= at_min.mean() < 1:
                self.atoms_.append(j)
                self.atom_values_.append(float(values.min()))
            rest = values[~at_min] if j in self.atoms_ else values
            median = np.median(rest)
            if kind == INTEGER:
                median = values.min() + width * np.round((median - values.min()) / width)
            self.fill_.append(float(median))
            if na.any():
                self.indicators_.append(j)
            widths.append(width)
            low.append(float(values.min()))
            high.append(float(values.max()))
        n_indicators = len(self.indicators_) + len(self.atoms_)
        self.widths_ = np.array(widths + [1.0] * n_indicators)
        self.low_ = np.array(low + [0.0] * n_indicators)
        self.high_ = np.array(high + [1.0] * n_indicators)
        self.n_encoded_ = len(self.widths_)
        self._fit_copula(self.grid(X))
        return self

    def _fit_copula(self, G):
        """The knots of each encoded column's CDF, from its training values; a flagged cell
        (missing, or at a point mass) is left out of its column's CDF."""
        modelled = np.ones(G.shape, dtype=bool)
        for indicator, j in self._flagged():
            modelled[:, j] &= G[:, indicator] == 0
        knots = [_cdf_knots(G[modelled[:, j], j], self.widths_[j]) for j in range(G.shape[1])]
        self.knots_x_ = np.concatenate([x for x, _ in knots])
        self.knots_u_ = np.concatenate([u for _, u in knots])
        self.knot_ends_ = np.cumsum([len(x) for x, _ in knots])

    def _copula(self, j):
        start = self.knot_ends_[j - 1] if j else 0
        end = self.knot_ends_[j]
        return _CopulaColumn(self.knots_x_[start:end], self.knots_u_[start:end])

    @staticmethod
    def _auto_kind(name, dtype):
        if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(dtype):
            return CATEGORICAL
        if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
            return CATEGORICAL
        if pd.api.types.is_integer_dtype(dtype):
            return INTEGER
        if pd.api.types.is_float_dtype(dtype):
            return FLOAT
        raise TypeError(
            f"Column {name!r} has dtype {dtype}, which sklfm cannot model: use numbers, "
            "booleans, strings or categories (convert dates to numbers, e.g. days since "
            "a reference date)."
        )

    @staticmethod
    def _categories(name, values, dtype):
        if isinstance(dtype, pd.CategoricalDtype):
            categories = list(dtype.categories)
        elif pd.api.types.is_bool_dtype(dtype):
            # The values seen, so that samples of a constant bool column stay constant.
            seen = set(np.asarray(values, dtype=bool).tolist())
            categories = [v for v in (False, True) if v in seen]
        else:
            bad = next((v for v in values if not isinstance(v, _CATEGORY_TYPES)), None)
            if bad is not None:
                raise TypeError(
                    f"Categorical column {name!r} holds values that are not strings, numbers "
                    f"or booleans, e.g. {bad!r} of type {type(bad).__name__}."
                )
            # Most frequent first: the density over the codes then falls off steadily,
            # with no rare category between two frequent ones for the flow to fill in.
            counts = pd.Series(values, dtype=object).value_counts(sort=False)
            categories = sorted(counts.index, key=lambda v: (-counts[v], str(v)))
        return [v.item() if isinstance(v, np.generic) else v for v in categories]

    @staticmethod
    def _numbers(name, values):
        try:
            numbers = pd.to_numeric(values).to_numpy(dtype=np.float64)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"Column {name!r} is numeric in the model but holds {exc}") from exc
        if not np.isfinite(numbers).all():
            raise ValueError(f"Input X contains infinity in column {name!r}.")
        return numbers

    # --- rows to encoded columns and back ---

    def grid(self, X):
        """Grid values g (float64, n_encoded_ columns): codes, integers, numbers."""
        if not isinstance(X, pd.DataFrame):
            raise ValueError(
                "The model was fitted on a DataFrame with typed columns: pass a DataFrame "
                f"with the columns {self.columns_}."
            )
        G = np.empty((len(X), self.n_encoded_))
        gaps = []
        for j, name in enumerate(self.columns_):
            column = X.iloc[:, j]
            na = column.isna().to_numpy()
            if na.any() and j not in self.missing_columns_:
                gaps.append(name)
                continue
            if self.kinds_[j] == CATEGORICAL:
                G[:, j] = self._codes(name, column, na, self.categories_[j])
            else:
                G[~na, j] = self._numbers(name, column[~na])
            G[na, j] = self.fill_[j]
        if gaps:
            raise missing_error(gaps, fitted=self.missing == "indicator")
        for k, j in enumerate(self.indicators_):
            G[:, len(self.columns_) + k] = X.iloc[:, j].isna().to_numpy()
        for k, (j, value) in enumerate(zip(self.atoms_, self.atom_values_)):
            at_min = G[:, j] == value
            G[:, len(self.columns_) + len(self.indicators_) + k] = at_min
            G[at_min, j] = self.fill_[j]
        return G

    def _flagged(self):
        """(indicator column, source column) pairs: missing values, then point masses."""
        first = len(self.columns_)
        return list(enumerate(self.indicators_ + self.atoms_, start=first))

    @staticmethod
    def _codes(name, column, na, categories):
        index = {value: code for code, value in enumerate(categories)}
        codes = np.full(len(column), float(len(categories)))
        for i, value in enumerate(column.to_numpy(dtype=object)):
            if na[i]:
                continue
            code = index.get(value.item() if isinstance(value, np.generic) else value)
            if code is None:
                raise ValueError(
                    f"Column {name!r} holds the category {value!r}, which was not seen in "
                    f"fit; known categories: {categories}."
                )
            codes[i] = code
        return codes

    def transform(self, X):
        """Encoded columns E at the cell midpoints (deterministic)."""
        return self.forward(self.grid(X))

    def forward(self, G):
        return np.column_stack([self._copula(j).forward(G[:, j]) for j in range(G.shape[1])])

    def backward(self, E):
        return np.column_stack([self._copula(j).backward(E[:, j]) for j in range(E.shape[1])])

    def dequantize(self, E, rng):
        """The rows the flow trains on: every cell filled by uniform noise ordered by the
        other columns (see the module notes), and the encoded value of a flagged cell
        (missing, or at a point mass) drawn from N(0, 1), its column's marginal, rather
        than left at one fill value, a point mass of its own."""
        E = E.copy()
        cells = np.flatnonzero(self.widths_ > 0)
        draws = _conditional_draws(E, cells, rng)
        grid = {}  # each cell column's values at the cell midpoints (indicators among them)
        for j, draw in zip(cells, draws.T):
            copula = self._copula(j)
            grid[j] = copula.backward(E[:, j])
            E[:, j] = copula.forward(grid[j] + self.widths_[j] * _ranked_offsets(grid[j], draw, rng))
        for indicator, j in self._flagged():
            flagged = np.round(grid[indicator]) == 1
            E[flagged, j] = rng.standard_normal(flagged.sum())
        return E

    def log_det(self, E):
        """Per row: log |dE/dg| + sum of the log cell widths (see the module notes)."""
        log_det = sum(self._copula(j).log_det(E[:, j]) for j in range(E.shape[1]))
        return log_det + np.log(self.widths_[self.widths_ > 0]).sum()

    def inverse_transform(self, E, index=None):
        """A DataFrame of the fitted columns and dtypes from encoded columns E."""
        G = np.clip(self.backward(E), self.low_, self.high_)
        cells = self.widths_ > 0
        G[:, cells] = self.low_[cells] + self.widths_[cells] * np.round(
            (G[:, cells] - self.low_[cells]) / self.widths_[cells]
        )
        G = np.clip(G, self.low_, self.high_)
        first_atom = len(self.columns_) + len(self.indicators_)
        for k, (j, value) in enumerate(zip(self.atoms_, self.atom_values_)):
            G[G[:, first_atom + k] == 1, j] = value
        missing = {j: G[:, len(self.columns_) + k] == 1 for k, j in enumerate(self.indicators_)}
        out = pd.DataFrame(
            {j: self._column(j, G[:, j], missing.get(j)) for j in range(len(self.columns_))}
        )
        out.columns = pd.Index(self.columns_)
        if index is not None:
            out.index = index
        return out

    def _column(self, j, g, missing):
        """One output column as a Series of the fitted dtype."""
        dtype = self.dtypes_[j]
        if self.kinds_[j] == CATEGORICAL:
            categories = self.categories_[j]
            codes = g.astype(np.int64)
            if dtype == "category":
                codes[codes == len(categories)] = -1  # missing
                ordered = self.ordered_[j]
                return pd.Series(pd.Categorical.from_codes(codes, categories, ordered=ordered))
            values = pd.Series(np.array(categories + [np.nan], dtype=object)[codes], dtype=object)
        else:
            if self.decimals_[j] is not None:  # k * step, written with the data's decimals
                g = np.round(g, self.decimals_[j])
            values = pd.Series(g)
            if missing is not None:
                values[missing] = np.nan
        try:
            return values.astype(dtype)
        except (ValueError, TypeError):  # e.g. a gap in a column of a numpy integer dtype
            return values
