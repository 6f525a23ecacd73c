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
- float: g = the value; no cell.
- missing values (``missing="indicator"``): a categorical column gets one more
  code for "missing"; a numeric column gets an extra 0/1 indicator column (cell
  width 1) after the table's columns.
- point masses: a numeric column whose minimum holds >= 10 % of the training
  rows (zero-inflated amounts) gets a 0/1 "at the minimum" column after those.
  The value of a flagged cell (missing or at the minimum) is the median of the
  column's other values when scoring, and a draw from their quantiles in
  training.
- phi: numeric columns whose training minimum is >= 0 are modelled on a log
  scale, E = log(g + shift) (shift = half a cell plus half the 5th percentile
  of the positive values), so long right tails look Gaussian to the flow.
  Other columns: E = g.

The flow trains on E with the central half of each cell filled by uniform noise
(dequantization, ``CELL_FILL``).
Decoding rounds codes and integers to their grid and clips every numeric
column to its training range, so samples are valid values of the table.

``log_det`` is log |dE/dg| plus the log widths of the filled cells: with it,
the score of a row is the log-density of the flow's continuous model at the
cell midpoint times the filled volume, a midpoint estimate of log P(discrete columns) +
log p(continuous columns | discrete columns). (Averaged over uniform noise in
the cell instead of taken at its midpoint, it would be a lower bound on that
log-probability, by Jensen's inequality.)
"""

from numbers import Integral

import numpy as np
import pandas as pd

CATEGORICAL, INTEGER, FLOAT = "categorical", "integer", "float"
# A numeric column whose minimum holds at least this share of the rows (zero-inflated
# amounts, counts) models "at the minimum" as a 0/1 column: a smooth flow cannot put a
# point mass there.
ATOM_SHARE = 0.1
# Share of each cell that the dequantization noise fills, centred: the flow keeps a gap
# between neighbouring cells, so fewer sampled rows round into the wrong cell (credit_data,
# same blocks: "Records = yes" sampled at 14 % with 0.5, 22 % with 1.0; real 15 %).
CELL_FILL = 0.5
# Quantiles kept of the values of a column with an indicator, to fill its gaps in training.
_N_QUANTILES = 101
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


def _between_quantiles(u, quantiles):
    """Linear interpolation of equally spaced quantiles at levels u in [0, 1].

    Written as a weighted mean, not np.interp's slope form: a slope between
    quantiles near the float64 limit overflows.
    """
    position = u * (len(quantiles) - 1)
    low = np.minimum(np.floor(position).astype(int), len(quantiles) - 2)
    weight = position - low
    return quantiles[low] * (1 - weight) + quantiles[low + 1] * weight


class TabularEncoder:
    """Column types of a DataFrame and their continuous encoding (see the module notes).

    Parameters
    ----------
    categorical_features, integer_features : "auto", None, or list of names,
        indices or a boolean mask. "auto" takes the types from the dtypes;
        named columns are forced to that type.
    missing : {"error", "indicator"}
    """

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
        self.fill_, quantiles = [], []
        # Columns with missing values in fit; the numeric ones get an indicator column.
        self.missing_columns_, self.indicators_ = [], []
        # Numeric columns with a point mass at their minimum (ATOM_SHARE), and its value.
        self.atoms_, self.atom_values_ = [], []
        widths, shifts, low, high = [], [], [], []
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
                self.fill_.append(float(len(categories)))  # the "missing" code
                widths.append(1.0)
                shifts.append(np.nan)
                low.append(0.0)
                high.append(len(categories) - (0 if na.any() else 1))
                quantiles.append(np.full(_N_QUANTILES, np.nan))
                continue
            values = self._numbers(name, column[~na])
            if not values.size:
                raise ValueError(f"Column {name!r} has no values, only missing ones.")
            self.categories_.append(None)
            width = _grid_step(values) if kind == INTEGER else 0.0
            at_min = values == values.min()
            if ATOM_SHARE <= at_min.mean() < 1:
                self.atoms_.append(j)
                self.atom_values_.append(float(values.min()))
            rest = values[~at_min] if j in self.atoms_ else values
            median = np.median(rest)
            if kind == INTEGER:
                median = values.min() + width * np.round((median - values.min()) / width)
            self.fill_.append(float(median))
            quantiles.append(np.percentile(rest, np.linspace(0, 100, _N_QUANTILES)))
            if na.any():
                self.indicators_.append(j)
            widths.append(width)
            low.append(float(values.min()))
            high.append(float(values.max()))
            shifts.append(self._log_shift(values, width))
        self.quantiles_ = np.array(quantiles)
        n_indicators = len(self.indicators_) + len(self.atoms_)
        self.widths_ = np.array(widths + [1.0] * n_indicators)
        self.shifts_ = np.array(shifts + [np.nan] * n_indicators)
        self.low_ = np.array(low + [0.0] * n_indicators)
        self.high_ = np.array(high + [1.0] * n_indicators)
        self.n_encoded_ = len(self.widths_)
        return self

    @staticmethod
    def _log_shift(values, width):
        """The shift of the log map of a non-negative column; NaN for no log map."""
        if values.min() < 0:
            return np.nan
        positive = values[values > 0]
        shift = 0.5 * width + 0.5 * (np.percentile(positive, 5) if positive.size else 1.0)
        # Subnormal columns: half of their values may round to 0.
        return shift if shift > 0 and np.isfinite(np.log(values.min() + shift)) else np.nan

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
        E = G.copy()
        logged = np.isfinite(self.shifts_)
        with np.errstate(divide="ignore", invalid="ignore"):
            E[:, logged] = np.log(G[:, logged] + self.shifts_[logged])
        # Below the log map's support: zero density (-inf), never NaN.
        E[np.isnan(E)] = -np.inf
        return E

    def backward(self, E):
        G = E.copy()
        logged = np.isfinite(self.shifts_)
        with np.errstate(over="ignore"):
            G[:, logged] = np.exp(E[:, logged]) - self.shifts_[logged]
        return G

    def dequantize(self, E, rng):
        """The rows the flow trains on: every cell filled by uniform noise, and the value of
        a flagged cell (missing, or at a point mass) drawn from the column's other values
        rather than left at one fill value, which would be a point mass of its own."""
        G = self.backward(E)
        # Only the cells changed here go through backward and forward again: a round
        # trip of an untouched log-mapped cell near the float64 limit would overflow.
        changed = np.broadcast_to(self.widths_ > 0, E.shape).copy()
        for indicator, j in self._flagged():
            flagged = G[:, indicator] == 1
            u = rng.uniform(size=flagged.sum())
            G[flagged, j] = _between_quantiles(u, self.quantiles_[j])
            changed[flagged, j] = True
        noise = rng.uniform(-0.5, 0.5, size=E.shape) * self.widths_ * CELL_FILL
        return np.where(changed, self.forward(G + noise), E)

    def log_det(self, E):
        """Per row: log |dE/dg| + sum of the log cell widths (see the module notes)."""
        logged = np.isfinite(self.shifts_)
        cells = self.widths_ > 0
        return -E[:, logged].sum(axis=1) + np.log(self.widths_[cells] * CELL_FILL).sum()

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
            values = pd.Series(g)
            if missing is not None:
                values[missing] = np.nan
        try:
            return values.astype(dtype)
        except (ValueError, TypeError):  # e.g. a gap in a column of a numpy integer dtype
            return values
