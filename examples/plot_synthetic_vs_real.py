"""
Synthetic data next to real data
================================

A fitted :class:`~sklfm.LocalFlowMatching` model draws new rows with
:meth:`~sklfm.LocalFlowMatching.sample`. Do they look like the real ones?
Here the model is fitted to four columns of the UCI protein table (physico-
chemical properties of protein structures), and its samples are compared with
held-out real rows: the marginal distribution of each column (diagonal), and
every pair of columns (real rows below the diagonal, synthetic rows above).

The table is read from the project's shared data folder (``../shared/data``
beside the repository, or the folder named by ``SKLFM_DATA``). Where it is
absent the example says so and uses scikit-learn's bundled diabetes table.
"""

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.datasets import load_diabetes

from sklfm import LocalFlowMatching

here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
data_dir = Path(os.environ.get("SKLFM_DATA", here.parents[1] / "shared" / "data"))
path = data_dir / "density" / "protein.csv.gz"
if path.is_file():
    table = pd.read_csv(path, header=None).iloc[:, [0, 2, 6, 8]]
    table.columns = ["F1", "F3", "F7", "F9"]
    name = "protein"
else:
    print(f"{path} not found: using scikit-learn's diabetes table instead")
    table = load_diabetes(as_frame=True, scaled=False).data[["bmi", "bp", "s1", "s5"]]
    name = "diabetes"
table = table.sample(n=min(len(table), 5000), random_state=0)
train, test = table.iloc[: len(table) * 4 // 5], table.iloc[len(table) * 4 // 5 :]
print(f"{name}: {len(train)} training rows, {len(test)} held-out rows, columns {list(table)}")

# %%
# Fit and sample
# --------------
# With pandas output configured, samples come back as a DataFrame with the
# training column names.
model = LocalFlowMatching(
    hidden_layer_sizes=(128, 128), activation="relu", max_iter=600, batch_size=256,
    random_state=0,
).set_output(transform="pandas").fit(train)
synthetic = model.sample(len(test), random_state=1)
print(synthetic.head())

# %%
# Marginals and pairs
# -------------------
columns = list(table)
k = len(columns)
fig, axes = plt.subplots(k, k, figsize=(2.4 * k, 2.4 * k))
for i, row in enumerate(columns):
    for j, col in enumerate(columns):
        ax = axes[i, j]
        if i == j:
            bins = np.linspace(*np.percentile(test[col], [0.5, 99.5]), 40)
            ax.hist(test[col], bins=bins, density=True, color="k", alpha=0.4, label="real")
            ax.hist(synthetic[col], bins=bins, density=True, histtype="step", color="C0",
                    linewidth=1.5, label="synthetic")
        else:
            shown = test if i > j else synthetic
            ax.scatter(shown[col], shown[row], s=1, alpha=0.4, color="k" if i > j else "C0")
            ax.set_xlim(np.percentile(test[col], [0.5, 99.5]))
            ax.set_ylim(np.percentile(test[row], [0.5, 99.5]))
        ax.set_xticks([])
        ax.set_yticks([])
        if i == k - 1:
            ax.set_xlabel(col)
        if j == 0:
            ax.set_ylabel(row)
axes[0, 0].legend(fontsize=7, loc="upper right")
fig.suptitle(f"{name}: real held-out rows (lower left) and LocalFlowMatching samples (upper right)")
fig.tight_layout()
plt.show()

# %%
# Column means, standard deviations and correlations, real against synthetic.
summary = pd.DataFrame(
    {"real mean": test.mean(), "synthetic mean": synthetic.mean(),
     "real std": test.std(), "synthetic std": synthetic.std()}
)
print(summary.round(3))
gap = (test.corr() - synthetic.corr()).abs().to_numpy().max()
print(f"largest difference between the correlation matrices: {gap:.3f}")
