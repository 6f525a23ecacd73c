"""Configurations and small utilities shared by the tests."""

import numpy as np

# Small enough for the scikit-learn common checks and the API tests; public
# parameters only.
TINY = dict(
    hidden_layer_sizes=(8,),
    step_sizes=(0.2,),
    max_iter=5,
    batch_size=32,
    ode_steps=2,
    device="cpu",
    random_state=0,
)

# Small but trained: enough for shape-level behaviour on the 2-D toys.
SMALL = dict(
    hidden_layer_sizes=(32, 32),
    step_sizes=(0.2,),
    max_iter=300,
    batch_size=256,
    device="cpu",
    random_state=0,
)


def energy_distance(X, Y):
    """Squared energy distance 2 E|X-Y| - E|X-X'| - E|Y-Y'| (V-statistic)."""

    def mean_dist(A, B):
        sq = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2 * A @ B.T
        return np.sqrt(np.maximum(sq, 0)).mean()

    return 2 * mean_dist(X, Y) - mean_dist(X, X) - mean_dist(Y, Y)
