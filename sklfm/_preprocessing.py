"""Column preprocessing in front of the flow, with the log-Jacobian it adds."""

import numpy as np

from .core import LocalRows


class Standardizer:
    """Centre and scale each column; densities are carried back to user units.

    If u = (x - mean) / scale, then log p_x(x) = log p_u(u) - sum(log scale):
    `log_det_` is that constant term. Constant columns keep scale 1, as in
    scikit-learn's StandardScaler.

    The moments are computed on each column divided by its largest magnitude,
    so that columns of huge (1e300) or subnormal (1e-310) values neither
    overflow nor underflow (StandardScaler squares the raw values: its variance
    of 1e200 is inf, of 1e-170 is 0).
    """

    def fit(self, X, rows=None):
        """Fit on the rows X: all of them, or this rank's shard of `rows` (core.shards).

        Missing cells (NaN) are left out of their column's moments.
        """
        rows = LocalRows(len(X)) if rows is None else rows
        peak = rows.largest(np.nanmax(np.abs(X), axis=0, initial=0.0))
        peak = np.where(peak > 0, peak, 1.0)
        scaled = X / peak
        count = rows.total((~np.isnan(X)).sum(axis=0))
        # scaled.mean(axis=0) and .std(axis=0), with the sums taken over all ranks.
        mean = rows.total(np.nansum(scaled, axis=0)) / count
        std = np.sqrt(rows.total(np.nansum((scaled - mean) ** 2, axis=0)) / count)
        # As StandardScaler: a spread within rounding error of the mean is a constant column.
        constant = std <= count * np.finfo(X.dtype).eps * np.abs(mean)
        self.mean_ = mean * peak
        scale = std * peak
        # A spread below the smallest subnormal underflows to 0: constant at float64 precision.
        self.scale_ = np.where(constant | (scale == 0), 1.0, scale)
        self.log_det_ = -float(np.sum(np.log(self.scale_)))
        return self

    # Rows near the float64 limit may overflow to inf here; callers handle it (a score
    # of -inf, an error from the transforms, an error from fit), so numpy's warning goes.

    def transform(self, X):
        with np.errstate(over="ignore"):
            return (X - self.mean_) / self.scale_

    def inverse_transform(self, U):
        with np.errstate(over="ignore"):
            return U * self.scale_ + self.mean_
