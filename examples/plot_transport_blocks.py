"""
Data to noise, block by block
=============================

Local Flow Matching carries the data to a standard Gaussian in short legs.
Here a model is fitted to a 2-D pinwheel, and the training points are pushed
through the blocks of its ``chain_`` one at a time: each Ornstein-Uhlenbeck
(OU) block moves the points a little towards noise, and the last, "free" block
lands on N(0, I). The bottom row runs the chain backwards: Gaussian noise
pulled through the blocks in reverse order becomes new data.
"""

# %%
# Fit a small model
# -----------------
# Four OU blocks with growing step sizes (as in the reference runs on 2-D
# toys, fewer of them), then the free block; a small budget (ReLU learns the
# toys fastest at this budget).
import matplotlib.pyplot as plt
import numpy as np
import torch

from sklfm import LocalFlowMatching
from sklfm.core import SolverSettings
from sklfm.datasets import make_pinwheel

X = make_pinwheel(3000, random_state=0)
model = LocalFlowMatching(
    step_sizes=(0.03, 0.08, 0.2, 0.5),
    hidden_layer_sizes=(128, 128),
    activation="relu",
    max_iter=800,
    random_state=0,
).fit(X)
print("OU step sizes:", np.round(model.step_sizes_, 3), "+ the free block")

# %%
# Push the data through each block
# --------------------------------
# The blocks work on standardized columns (``standardizer_``). Each block is a
# torch module whose ``push`` solves its ODE from the data side (t = 0) to the
# noise side (t = 1), and ``pull`` the other way.
solver = SolverSettings(method=model.solver, n_steps=model.ode_steps)
blocks = list(model.chain_.blocks)
forward = [torch.as_tensor(model.standardizer_.transform(X))]
for block in blocks:
    forward.append(block.push(forward[-1], solver))

rng = np.random.RandomState(1)
backward = [torch.as_tensor(rng.standard_normal(X.shape))]
for block in reversed(blocks):
    backward.append(block.pull(backward[-1], solver))
backward = backward[::-1]  # stage k = after block k, as in the top row

# %%
# Plot every stage
# ----------------
# Points keep the colour of their angle in the data, so you can follow them.
titles = ["data"] + [
    "after free block" if block.step_size is None else f"after OU block h={block.step_size:.2f}"
    for block in blocks
]
colour = np.arctan2(X[:, 1], X[:, 0])
fig, axes = plt.subplots(2, len(forward), figsize=(3 * len(forward), 6.2))
for k, (top, bottom) in enumerate(zip(forward, backward)):
    axes[0, k].scatter(*top.numpy().T, c=colour, cmap="twilight", s=2, linewidths=0)
    axes[0, k].set_title(titles[k], fontsize=10)
    axes[1, k].scatter(*bottom.numpy().T, color="C0", s=2, linewidths=0, alpha=0.6)
for ax in axes.flat:
    ax.set(xlim=(-3.5, 3.5), ylim=(-3.5, 3.5), xticks=[], yticks=[], aspect="equal")
axes[0, 0].set_ylabel("data → noise (push)")
axes[1, 0].set_ylabel("noise → data (pull)")
fig.tight_layout()
plt.show()
