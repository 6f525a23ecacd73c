"""The condition y of a conditional model, as the columns its velocity fields read."""

import numpy as np
import pandas as pd
from sklearn.utils import check_array


def as_labels(y):
    """y as a numpy array, a one-column y (array or DataFrame) as 1-D."""
    labels = np.asarray(y.to_numpy() if isinstance(y, (pd.Series, pd.DataFrame)) else y)
    return labels[:, 0] if labels.ndim == 2 and labels.shape[1] == 1 else labels


def _rows_of(y, n_rows, what):
    if len(y) != n_rows:
        raise ValueError(f"y has {len(y)} rows, but {what} has {n_rows}.")
    return y


def _broadcast(columns, n_rows, what):
    """Rows as they are (n_rows None), else one for each of n_rows, repeating a single one."""
    if n_rows is None:
        return columns
    if len(columns) == 1:
        columns = np.repeat(columns, n_rows, axis=0)
    return _rows_of(columns, n_rows, what)


class ConditionEncoder:
    """Encodes y as condition columns: one-hot classes, or standardized numbers.

    ``kind`` is "categorical" (any hashable labels, one column per class) or
    "continuous" (numbers, 1-D or 2-D, centred and scaled per column).
    """

    def __init__(self, kind):
        self.kind = kind

    def fit(self, y, n_rows):
        """Learn the classes (with their frequencies) or the scale of y, given for n_rows rows."""
        if self.kind == "categorical":
            labels = self._labels(y)
            _rows_of(labels, n_rows, "X")
            try:
                classes, counts = np.unique(labels, return_counts=True)
            except TypeError as exc:
                raise ValueError(f"y mixes labels that cannot be ordered: {exc}") from exc
            self.classes_ = classes
            self.class_prior_ = counts / counts.sum()
            return self
        values = _rows_of(self._numbers(y), n_rows, "X")
        self.mean_ = values.mean(axis=0)
        scale = values.std(axis=0)
        # A constant condition carries no information: leave it centred, unscaled.
        self.scale_ = np.where(scale > 0, scale, 1.0)
        return self

    def transform(self, y, n_rows=None, what="X"):
        """Condition columns (float64, one row per row of y).

        With `n_rows`, y must give one condition per row, or a single one
        (a scalar label or value, or one row of a 2-D condition) for them all.
        """
        if self.kind == "categorical":
            labels = self._labels(y)
            codes = self.codes(labels)
            columns = np.eye(len(self.classes_))[codes]
        else:
            values = self._numbers(y, single=n_rows is not None)
            columns = (values - self.mean_) / self.scale_
        return _broadcast(columns, n_rows, what)

    def values(self, y, n_rows, what="X"):
        """The numbers of a continuous y as float64 rows, one for each of n_rows (as transform)."""
        return _broadcast(self._numbers(y, single=True), n_rows, what)

    def codes(self, labels):
        """Index of each label in classes_; ValueError naming labels not seen in fit."""
        codes = np.searchsorted(self.classes_, labels)
        codes = np.minimum(codes, len(self.classes_) - 1)
        unseen = self.classes_[codes] != labels
        if np.any(unseen):
            raise ValueError(
                f"y contains labels not seen in fit: {sorted(set(labels[unseen].tolist()))[:5]}; "
                f"known labels: {self.classes_.tolist()}."
            )
        return codes

    def _labels(self, y):
        labels = as_labels(y)
        if labels.ndim == 0:
            labels = labels.reshape(1)
        if labels.ndim != 1:
            raise ValueError(
                f"condition='categorical' takes one label per row (1-D y); got y of shape "
                f"{labels.shape}. Use condition='continuous' for several numeric conditions."
            )
        if len(labels) and pd.isna(labels).any():
            raise ValueError("y contains missing labels (NaN or None).")
        return labels

    def _numbers(self, y, single=False):
        fitted = getattr(self, "mean_", None)
        if np.ndim(y) == 0:
            y = [y]
        values = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        if values.ndim == 1:
            # One row of a fitted multi-column condition, else one value per row.
            wide = single and fitted is not None and len(fitted) > 1
            values = values.reshape(1, -1) if wide else values.reshape(-1, 1)
        if fitted is not None and values.shape[1] != len(fitted):
            raise ValueError(
                f"y has {values.shape[1]} condition columns, but the model was fitted with "
                f"{len(fitted)}."
            )
        return values
