"""
Density contours and samples
============================

:class:`~sklfm.LocalFlowMatching` gives an exact log-density at any point and
draws new points. Here it is fitted to two 2-D toys; for each, the training
data, the model's samples, and contours of the learned density on a grid.
The budget is small (a few seconds per fit); sharper densities need more
``max_iter`` and wider networks.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np

from sklearn.datasets import make_moons

from sklfm import LocalFlowMatching
from sklfm.datasets import make_checkerboard


def moons(n_samples, random_state):
    return make_moons(n_samples, noise=0.06, random_state=random_state)[0]


toys = {"two moons": moons, "checkerboard": make_checkerboard}
fig, axes = plt.subplots(len(toys), 3, figsize=(10, 3.4 * len(toys)))

for row, (name, make) in zip(axes, toys.items()):
    X = make(3000, random_state=0)
    X_test = make(1000, random_state=1)
    model = LocalFlowMatching(
        step_sizes=(0.03, 0.08, 0.2, 0.5),
        hidden_layer_sizes=(128, 128),
        activation="relu",
        max_iter=800,
        batch_size=256,
        random_state=0,
    ).fit(X)
    print(f"{name}: held-out log-likelihood {model.score(X_test):.3f} nats per point")

    # The density on a grid: exp(score_samples) is the exact model density.
    lo, hi = X.min(axis=0) - 0.5, X.max(axis=0) + 0.5
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 70), np.linspace(lo[1], hi[1], 70))
    density = np.exp(model.score_samples(np.c_[gx.ravel(), gy.ravel()])).reshape(gx.shape)
    samples = model.sample(3000, random_state=0)

    row[0].scatter(*X.T, s=1, color="k", alpha=0.5)
    row[0].set_title(f"{name}: training data")
    row[1].scatter(*samples.T, s=1, color="C0", alpha=0.5)
    row[1].set_title("LocalFlowMatching samples")
    row[2].contourf(gx, gy, density, levels=12, cmap="magma")
    row[2].set_title("learned density")
    for ax in row:
        ax.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]), xticks=[], yticks=[], aspect="equal")

fig.tight_layout()
plt.show()
