"""
Choosing step sizes with GridSearchCV
=====================================

``step_sizes`` is an ordinary parameter, and
:meth:`~sklfm.LocalFlowMatching.score` is the mean log-likelihood, so
scikit-learn's :class:`~sklearn.model_selection.GridSearchCV` picks a schedule
by cross-validated held-out likelihood, like any other hyperparameter. The
candidates: plain flow matching (the free block only), one OU block, and
three OU blocks (the ``"auto"`` schedule). The budgets are tiny so that the
search runs in seconds; compare candidates at the budget you will use.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GridSearchCV

from sklfm import LocalFlowMatching
from sklfm.datasets import make_spirals

X = make_spirals(1500, random_state=0)
candidates = [(), (0.3,), "auto"]
search = GridSearchCV(
    LocalFlowMatching(hidden_layer_sizes=(64, 64), activation="relu", max_iter=200, random_state=0),
    param_grid={"step_sizes": candidates},
    cv=3,
).fit(X)
print("best step_sizes:", search.best_params_["step_sizes"])

# %%
# Mean held-out log-likelihood per candidate, with its spread over the folds.
# The fit time grows with the number of blocks.
results = search.cv_results_
labels = ["() free block only", "(0.3,)", '"auto" (3 OU blocks)']
fig, (ax_score, ax_time) = plt.subplots(1, 2, figsize=(10, 3.2))
rows = np.arange(len(labels))
ax_score.errorbar(results["mean_test_score"], rows, xerr=results["std_test_score"], fmt="o",
                  capsize=4)
ax_score.set_yticks(rows, labels)
ax_score.set_ylim(-0.5, len(labels) - 0.5)
ax_score.set_xlabel("held-out log-likelihood (nats per point; higher is better)")
ax_time.barh(rows, results["mean_fit_time"], color="C1")
ax_time.set_xlabel("fit time (s)")
ax_time.set_yticks([])
fig.tight_layout()
plt.show()
