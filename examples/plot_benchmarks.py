"""
Benchmark plots
===============

Pictures of the tables on the :doc:`Benchmarks page </benchmarks>`. The
benchmark scripts in ``benchmarks/`` write their tables into
``docs/benchmarks.md``; this example reads them back from that file and plots
them, so the plots follow the latest run. A table that is not there is
skipped with a message, and any PNG figure that a benchmark script saved
under ``docs/`` is shown at the end.
"""

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
docs = here.parent / "docs"
text = (docs / "benchmarks.md").read_text()


def markdown_table(heading):
    """The first Markdown table under the line ``heading`` (before the next heading)."""
    lines = text.splitlines()
    if heading not in lines:
        return None
    rows = []
    for line in lines[lines.index(heading) + 1 :]:
        if line.startswith("|"):
            rows.append([cell.strip().strip("*") for cell in line.strip("|").split("|")])
        elif rows or line.startswith("#"):
            break
    if len(rows) < 3:
        return None
    return pd.DataFrame(rows[2:], columns=rows[0])  # rows[1] is the |---| line


# %%
# Anomaly detection: ROC AUC on the ADBench tables
# ------------------------------------------------
# One row per table; each marker is a method's mean held-out ROC AUC.
auroc = markdown_table("### ROC AUC per set (mean over seeds; best in bold)")
if auroc is None:
    print("no ADBench ROC AUC table in docs/benchmarks.md: skipped")
else:
    auroc = auroc.set_index("set").astype(float)
    auroc = auroc.loc[auroc.max(axis=1).sort_values().index]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(auroc) + 1.2))
    rows = np.arange(len(auroc))
    for k, method in enumerate(auroc.columns):
        lfm = method.startswith("LFM")
        ax.scatter(auroc[method], rows, s=60 if lfm else 18, zorder=3 if lfm else 2,
                   marker="D" if lfm else "o", color="k" if lfm else f"C{k % 10}",
                   label=method)
    ax.set_yticks(rows, auroc.index)
    ax.set_xlabel("ROC AUC (held-out, mean over seeds)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    plt.show()

# %%
# Density estimation: held-out log-likelihood
# -------------------------------------------
# Mean log-likelihood of the test rows (nats per row, higher is better), per
# table and method; compare bars within one table only.
density = markdown_table("## Density: protein and house_16H (issue 2)")
if density is None:
    print("no density table in docs/benchmarks.md: skipped")
else:
    scores = density.pivot(index="data", columns="method", values="test log-lik").astype(float)
    ax = scores.plot.barh(figsize=(7, 0.9 * len(scores) + 1))
    ax.set_xlabel("held-out log-likelihood (nats per row)")
    ax.set_ylabel("")
    plt.tight_layout()
    plt.show()

# %%
# Figures saved by the benchmark scripts
# --------------------------------------
figures = sorted(
    path for path in docs.rglob("*.png")
    if not {"_build", "_static", "auto_examples"} & set(path.relative_to(docs).parts)
)
if not figures:
    print("no benchmark figures (PNG files) under docs/: skipped")
for path in figures:
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.imshow(plt.imread(path))
    ax.set_title(path.name)
    ax.axis("off")
    plt.show()
