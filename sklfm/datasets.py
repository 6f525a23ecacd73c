"""Built-in 2-D toy distributions for demos, tests and docs.

Each ``make_*`` function returns an ndarray of shape (n_samples, 2), float64,
drawn from its own ``random_state`` (global numpy state is never used).
"""

import numpy as np
from sklearn.utils import check_random_state


def make_checkerboard(n_samples=1000, *, random_state=None):
    """Uniform on the dark squares of a 4 x 4 checkerboard on [-2, 2]^2."""
    rng = check_random_state(random_state)
    x1 = rng.uniform(-2, 2, n_samples)
    x2 = rng.uniform(0, 1, n_samples) - 2 * rng.randint(0, 2, n_samples)
    x2 = x2 + np.floor(x1) % 2
    return np.column_stack([x1, x2]) * 1.0


def make_pinwheel(n_samples=1000, *, n_arms=5, radial_std=0.3, tangential_std=0.1, random_state=None):
    """Gaussian blobs sheared into the arms of a pinwheel."""
    rng = check_random_state(random_state)
    arm = rng.randint(0, n_arms, n_samples)
    points = rng.standard_normal((n_samples, 2)) * [radial_std, tangential_std] + [1.0, 0.0]
    angle = 2 * np.pi * arm / n_arms + 0.25 * np.exp(points[:, 0])
    cos, sin = np.cos(angle), np.sin(angle)
    rotation = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    return 2.0 * np.einsum("nij,nj->ni", rotation, points)


def make_spirals(n_samples=1000, *, noise=0.1, random_state=None):
    """Two interleaved spirals."""
    rng = check_random_state(random_state)
    r = np.sqrt(rng.uniform(0, 1, n_samples)) * 3 * np.pi
    sign = np.where(rng.uniform(size=n_samples) < 0.5, 1.0, -1.0)
    points = sign[:, None] * np.column_stack([-np.cos(r) * r, np.sin(r) * r]) / 3.0
    return points + noise * rng.standard_normal((n_samples, 2))


def make_rings(n_samples=1000, *, radii=(1.0, 2.0, 3.0), noise=0.08, random_state=None):
    """Concentric rings, each with a share of the points proportional to its radius."""
    rng = check_random_state(random_state)
    radii = np.asarray(radii, dtype=float)
    ring = rng.choice(len(radii), size=n_samples, p=radii / radii.sum())
    angle = rng.uniform(0, 2 * np.pi, n_samples)
    radius = radii[ring] + noise * rng.standard_normal(n_samples)
    return np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])


TOYS = {
    "checkerboard": make_checkerboard,
    "pinwheel": make_pinwheel,
    "spirals": make_spirals,
    "rings": make_rings,
}

__all__ = ["TOYS", "make_checkerboard", "make_pinwheel", "make_rings", "make_spirals"]
