"""Density estimation on protein and house_16H (issue 2): fit time and held-out log-likelihood.

Protocol
--------
- Data (``../shared/data/density/``, see its README.md; ``SKLFM_DATA`` overrides):
  ``protein`` - all 10 columns (9 features and the target; the table is the object
  whose density is estimated); ``house_16H`` - all 17 columns (16 features and
  ``target``), for the same reason.
- One shuffled 80/20 train/test split per table, seed ``--seed`` (default 0), the
  same rows for every method. ``--max-train N`` keeps the first N training rows
  of that shuffle (the test rows do not change).
- ``house_16H`` is reported twice: on the raw columns, and after ``log1p`` of
  every column whose training minimum is >= 0 (all 17 here), applied identically
  for all methods. In that row the densities are in the transformed space: its
  log-likelihoods are not comparable with the raw row's.
- Metric: mean log-likelihood of the test rows, nats per row, in the units of the
  (possibly transformed) columns; higher is better. Fit time is wall-clock time
  of ``fit`` (including hyperparameter selection for the baselines); score time
  is ``score_samples`` on the test rows.

Methods
-------
- ``LocalFlowMatching``: default parameters (``random_state=seed``); it
  standardizes columns itself and uses no validation split.
- ``GaussianMixture``: full covariance, other parameters default, on columns
  standardized with the training mean and std (log-densities are carried back
  to column units with the scaler's log-Jacobian). ``n_components`` is picked
  from ``GMM_GRID`` by mean log-likelihood on a validation split (a random 10 %
  of the training rows, fitted on the other 90 %); the chosen model is then
  refitted on all training rows.
- ``KernelDensity``: Gaussian kernel on the same standardized columns;
  ``bandwidth`` (standardized units) picked from ``KDE_GRID`` on the same
  validation split, then refitted on all training rows.

Usage
-----
    python benchmarks/density.py                   # print the Markdown section
    python benchmarks/density.py --write-docs      # and replace it in docs/benchmarks.md
    python benchmarks/density.py --max-train 5000 --tables protein   # quick look

Skips (with a message, exit status 0) when the data are absent.
"""

import argparse
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import DataUnavailable, load_house_16h, load_protein, train_test_rows  # noqa: E402
from _report import DOCS, code_version, machine_info, report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Density: protein and house_16H (issue 2)"

GMM_GRID = (1, 2, 5, 10, 20, 40, 80)
KDE_GRID = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
METHODS = ("LocalFlowMatching", "GaussianMixture", "KernelDensity")

# Caveats printed under the table (facts about the data, checked on the files).
NOTES = [
    "Notes:",
    "",
    "- house_16H is not a continuous table: several columns are proportions with large point "
    "masses (exact zeros in 56 % of rows for P15p3, 40 % for H8p2, 33 % for P6p2 and P18p2; "
    "exact ones in 27 % for H10p1; 70 % of rows have at least one exact 0 or 1). A continuous "
    "density can grow without bound on such atoms, so its log-likelihoods there largely "
    "measure how tightly a model concentrates on them; no dequantization is applied, for any "
    "method. protein is closer to continuous (its 8th column has 341 distinct values).",
    '- A selected grid value marked "(grid edge)" means a wider grid might have given that '
    "baseline a better score.",
    "- Times are wall-clock seconds on the machine above (its load average at start shows "
    "other jobs sharing it): compare them within this table only. Scoring LocalFlowMatching "
    "integrates the exact divergence in float64 with its fixed-step solver (`solver`, "
    "`ode_steps` above), which can cost as much as its fit.",
]


# --- the methods: each returns (score_samples function, settings string) ---


class _Standardized:
    """A scikit-learn density fitted on standardized columns, scored in column units."""

    def __init__(self, scaler, model):
        self.scaler, self.model = scaler, model
        self.log_jac = -float(np.sum(np.log(scaler.scale_)))

    def score_samples(self, X):
        return self.model.score_samples(self.scaler.transform(X)) + self.log_jac


def _select_and_refit(make, grid, X, seed):
    """Pick the grid value with the best validation log-likelihood; refit on all of X."""
    from sklearn.preprocessing import StandardScaler

    rng = np.random.RandomState(seed + 1)
    order = rng.permutation(len(X))
    n_val = max(1, len(X) // 10)
    fit_rows, val_rows = order[n_val:], order[:n_val]
    scaler = StandardScaler().fit(X[fit_rows])
    U_fit, U_val = scaler.transform(X[fit_rows]), scaler.transform(X[val_rows])
    scores = {}
    for value in grid:
        try:
            scores[value] = float(np.mean(make(value).fit(U_fit).score_samples(U_val)))
        except (ValueError, np.linalg.LinAlgError) as exc:  # e.g. a collapsed GMM component
            print(f"    {value}: failed ({exc})", flush=True)
            scores[value] = -np.inf
    best = max(scores, key=scores.get)
    scaler = StandardScaler().fit(X)
    return _Standardized(scaler, make(best).fit(scaler.transform(X))), best


def _edge(value, grid):
    """Flag a selected value at either end of its grid (a wider grid might do better)."""
    return " (grid edge)" if value in (min(grid), max(grid)) else ""


def fit_method(method, X, seed):
    if method == "LocalFlowMatching":
        from sklfm import LocalFlowMatching

        model = LocalFlowMatching(random_state=seed).fit(X)
        return model.score_samples, "default parameters"
    if method == "GaussianMixture":
        from sklearn.mixture import GaussianMixture

        def make(k):
            return GaussianMixture(k, covariance_type="full", random_state=seed)

        model, k = _select_and_refit(make, GMM_GRID, X, seed)
        return model.score_samples, f"full, n_components={k}{_edge(k, GMM_GRID)}"
    if method == "KernelDensity":
        from sklearn.neighbors import KernelDensity

        model, bw = _select_and_refit(lambda bw: KernelDensity(bandwidth=bw), KDE_GRID, X, seed)
        return model.score_samples, f"gaussian, bandwidth={bw:g}{_edge(bw, KDE_GRID)}"
    raise ValueError(method)


# --- the tables ---


def _log1p_nonnegative(X_train, X_test):
    """log1p of the columns whose training minimum is >= 0; returns the new arrays and count."""
    cols = np.flatnonzero(X_train.min(axis=0) >= 0)
    X_train, X_test = X_train.copy(), X_test.copy()
    X_train[:, cols] = np.log1p(X_train[:, cols])
    X_test[:, cols] = np.log1p(X_test[:, cols])
    return X_train, X_test, len(cols)


def tables(names, seed, max_train):
    """Yield (label, X_train, X_test) for each table variant; skip absent data with a message."""
    loaders = {
        "protein": lambda: load_protein(),
        "house_16H": lambda: load_house_16h(include_target=True).to_numpy(),
    }
    for name in names:
        try:
            X = loaders[name]()
        except DataUnavailable as exc:
            print(f"{name}: skipped, {exc}", flush=True)
            continue
        train, test = train_test_rows(len(X), test_size=0.2, seed=seed)
        train = np.random.RandomState(seed).permutation(train)[:max_train]
        X_train, X_test = X[train], X[test]
        yield f"{name} (raw)", X_train, X_test
        if name == "house_16H":
            X_train, X_test, n_cols = _log1p_nonnegative(X_train, X_test)
            yield f"{name} (log1p of {n_cols} cols)", X_train, X_test


def run(names, methods, seed, max_train):
    rows = []
    for label, X_train, X_test in tables(names, seed, max_train):
        print(
            f"{label}: {len(X_train):,} train / {len(X_test):,} test rows x {X_train.shape[1]}",
            flush=True,
        )
        for method in methods:
            t0 = time.perf_counter()
            score_samples, settings = fit_method(method, X_train, seed)
            fit_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            log_lik = score_samples(X_test)
            score_s = time.perf_counter() - t0
            n_bad = int(np.sum(~np.isfinite(log_lik)))
            value = float(np.mean(log_lik)) if n_bad == 0 else float("nan")
            median = float(np.median(log_lik))
            row = dict(
                table=label,
                n_train=len(X_train),
                n_test=len(X_test),
                d=X_train.shape[1],
                method=method,
                settings=settings,
                loglik=value,
                median=median,
                n_bad=n_bad,
                fit_s=fit_s,
                score_s=score_s,
            )
            rows.append(row)
            print(
                f"  {method:<18} test loglik {value:10.3f} (median {median:.3f})"
                f"  fit {fit_s:7.1f} s  score {score_s:6.1f} s"
                f"  ({settings}{f'; {n_bad} non-finite' if n_bad else ''})",
                flush=True,
            )
    return rows


# --- reporting ---


def lfm_defaults():
    """The LocalFlowMatching defaults in force (they may be retuned; the record keeps them)."""
    from sklfm import LocalFlowMatching

    skip = {"random_state", "verbose", "device"}
    params = LocalFlowMatching().get_params()
    return ", ".join(f"{k}={v!r}" for k, v in sorted(params.items()) if k not in skip)



def markdown(rows, command, machine, code, date, elapsed):
    lines = [
        SECTION,
        "",
        f"Command: `{command}`  ",
        f"Date: {date}; total run time {elapsed / 60:.1f} min  ",
        f"Machine: {machine}  ",
        f"Code: {code}  ",
        f"LocalFlowMatching defaults used: `{lfm_defaults()}`",
        "",
        "Protocol: one shuffled 80/20 train/test split per table (same rows for every method). "
        "protein: all 10 columns (9 features + target). house_16H: all 17 columns (16 features + "
        "`target`), once on the raw columns and once after `log1p` of every column with a "
        "non-negative training minimum (all 17), applied identically for all methods; the "
        "log1p row's densities are in the transformed space, so it is not comparable with the "
        "raw row. LocalFlowMatching runs with its default parameters. GaussianMixture (full "
        f"covariance, n_components in {list(GMM_GRID)}) and KernelDensity (Gaussian kernel, "
        f"bandwidth in {list(KDE_GRID)}) work on standardized columns (log-densities carried back "
        "to column units); their grid value is picked by log-likelihood on a random 10 % of the "
        "training rows, then the model is refitted on all training rows; their fit time includes "
        "that selection. Metric: mean log-likelihood of the test rows in nats per row (higher "
        "is better); the median over test rows is shown too, as a few rows with extreme "
        "log-densities can dominate the mean.",
        "",
        "| data | train / test rows | d | method | settings | test log-lik | median "
        "| fit (s) | score (s) |",
        "|---|---|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        value = f"{r['loglik']:.3f}" if r["n_bad"] == 0 else f"n/a ({r['n_bad']} non-finite)"
        lines.append(
            f"| {r['table']} | {r['n_train']:,} / {r['n_test']:,} | {r['d']} | {r['method']} | "
            f"{r['settings']} | {value} | {r['median']:.3f} | {r['fit_s']:.1f} "
            f"| {r['score_s']:.1f} |"
        )
    return "\n".join(lines + ["", *NOTES]) + "\n"



def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--tables", nargs="+", default=["protein", "house_16H"], choices=["protein", "house_16H"]
    )
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-train", type=int, default=None, help="cap on training rows (default: all)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch and BLAS threads (default: %(default)s: the networks are small, and on a "
        "shared 2-core machine more threads are far slower)",
    )
    parser.add_argument(
        "--write-docs", action="store_true", help=f"replace the section in {DOCS.relative_to(ROOT)}"
    )
    args = parser.parse_args(argv)

    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    command = "python benchmarks/density.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    machine = machine_info(args.threads)
    code = code_version()
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    start = time.perf_counter()
    rows = run(args.tables, args.methods, args.seed, args.max_train)
    if not rows:
        print("No data found: nothing to report.")
        return 0
    section = markdown(rows, command.strip(), machine, code, date, time.perf_counter() - start)
    print()
    report(section, args.write_docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
