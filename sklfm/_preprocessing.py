"""Column preprocessing in front of the flow, with the log-Jacobian it adds."""

import numpy as np
from sklearn.preprocessing import StandardScaler


class Standardizer:
    """Centre and scale each column; densities are carried back to user units.

    If u = (x - mean) / scale, then log p_x(x) = log p_u(u) - sum(log scale):
    `log_det` is that constant term. Constant columns keep scale 1, as in
    scikit-learn's StandardScaler.
    """

    def fit(self, X):
        self.scaler_ = StandardScaler().fit(X)
        self.log_det_ = -float(np.sum(np.log(self.scaler_.scale_)))
        return self

    def transform(self, X):
        return self.scaler_.transform(X)

    def inverse_transform(self, U):
        return self.scaler_.inverse_transform(U)
