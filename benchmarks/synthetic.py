"""Synthetic mixed tables (issue 9): fidelity of samples on diamonds and credit_data.

Protocol
--------
- Data (``../shared/data/density/``, see its README.md): ``diamonds`` (7 numeric
  columns, ``price`` integer, 3 ordered categories) and ``credit_data`` (9 numeric
  columns, 6 of them integer, 5 string columns; 455 missing cells), loaded by
  ``_data.load_mixed``.
- One shuffled 80/20 train/test split per table (seed ``--seed``); diamonds keeps
  ``--max-train`` (10,000) training rows and ``--max-test`` (5,000) test rows at random.
- Each method fits the training rows and samples as many rows; the samples are
  compared with the held-out test rows:
  KS - mean two-sample Kolmogorov-Smirnov statistic over the numeric columns;
  TV - mean total-variation distance over the categorical columns (missing as a
  category); assoc - mean absolute difference of the association matrices
  (Spearman for two numeric columns, Cramer's V for two categorical, the correlation
  ratio for numeric-categorical; pairwise complete rows); TSTR - a
  HistGradientBoostingClassifier trained on the samples predicts ``--target``
  (diamonds ``cut``: accuracy; credit_data ``Status``: ROC AUC) on the test rows,
  next to the same model trained on the real training rows ("real" row).
  Lower is better for KS, TV and assoc; higher for TSTR.
- Missing values: LocalFlowMatching uses ``missing="indicator"``; the baselines fit a
  completed table (a numeric gap becomes the median plus a categorical indicator
  column, a categorical gap its own category) and gaps are put back in their
  samples from it, so every method samples gaps.

Methods
-------
- ``LocalFlowMatching``: the mixed-table encoding of ``sklfm._tabular`` (ordinal codes,
  integers and floats on a decimal grid dequantized over whole cells, then a Gaussian
  copula map of every column: its estimated CDF, then the normal quantile);
  ``max_iter=--max-iter`` (default ``"auto"``), every other parameter default. With early
  stopping the defaults cost about what the earlier CPU budget (``hidden_layer_sizes=
  (128, 128)``, ``max_iter=1500``) did, and gave better marginals on diamonds (KS 0.022 vs
  0.032, one run each).
- ``GaussianCopula``: written here: empirical marginal CDFs, normal scores, their
  correlation matrix; categories as ordinal codes; samples through the empirical
  quantile functions (integers and categories rounded to seen values).
- ``CTGAN`` (``pip install ctgan``; skipped if absent): ``epochs=--ctgan-epochs``,
  other parameters default; a short CPU budget, far below its default 300 epochs.

Usage
-----
    python benchmarks/synthetic.py [--write-docs]

Skips (with a message, exit status 0) when the data are absent.
"""

import argparse
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import accuracy_score, roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import DataUnavailable, load_mixed, train_test_rows  # noqa: E402
from _report import code_version, write_docs  # noqa: E402

from sklfm import LocalFlowMatching  # noqa: E402

SECTION = "## Synthetic data: diamonds and credit_data (issue 9)"
TARGETS = {"diamonds": "cut", "credit_data": "Status"}
NA = "<NA>"


def is_categorical(column):
    return not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)


# --- missing values for the baselines ---


def complete(frame):
    """(frame without gaps, columns with an indicator): see the Protocol."""
    out, flagged = frame.copy(), []
    for name in frame.columns:
        gaps = frame[name].isna()
        if not gaps.any():
            continue
        if is_categorical(frame[name]):
            out[name] = frame[name].astype(object).where(~gaps, NA)
        else:
            out[name] = frame[name].fillna(frame[name].median())
            out[f"{name}__missing"] = np.where(gaps, "1", "0")
            flagged.append(name)
    return out, flagged


def restore(frame, flagged, like):
    out = frame.copy()
    for name in flagged:
        out.loc[out.pop(f"{name}__missing").astype(str) == "1", name] = np.nan
    for name in like.columns:
        if is_categorical(like[name]):
            out[name] = out[name].astype(object).where(out[name].astype(str) != NA, np.nan)
            if isinstance(like[name].dtype, pd.CategoricalDtype):
                out[name] = pd.Categorical(out[name], dtype=like[name].dtype)
    return out[like.columns]


class GaussianCopula:
    """Empirical marginals joined by a Gaussian copula (categories as ordinal codes)."""

    def fit(self, frame):
        self.frame = frame
        categorical = [n for n in frame if is_categorical(frame[n])]
        self.levels = {n: sorted(frame[n].astype(str).unique()) for n in categorical}
        self.values = {n: np.sort(self._codes(n, frame[n])) for n in frame}
        ranks = np.column_stack([stats.rankdata(self._codes(n, frame[n])) for n in frame])
        scores = stats.norm.ppf((ranks - 0.5) / len(frame))
        self.corr = np.corrcoef(scores, rowvar=False)
        return self

    def _codes(self, name, column):
        if name in self.levels:
            return np.searchsorted(self.levels[name], column.astype(str).to_numpy()).astype(float)
        return column.to_numpy(dtype=float)

    def sample(self, n, rng):
        z = rng.multivariate_normal(np.zeros(len(self.corr)), self.corr, size=n)
        u = stats.norm.cdf(z)
        out = {}
        for j, name in enumerate(self.frame):
            discrete = name in self.levels or pd.api.types.is_integer_dtype(self.frame[name])
            method = "inverted_cdf" if discrete else "linear"
            values = np.quantile(self.values[name], u[:, j], method=method)
            if name in self.levels:
                values = np.asarray(self.levels[name], dtype=object)[values.astype(int)]
            out[name] = pd.Series(values).astype(self.frame[name].dtype)
        return pd.DataFrame(out)


def fit_sample_baseline(make, train, n, seed):
    completed, flagged = complete(train)
    return restore(make(completed, seed).sample_rows(n), flagged, train)


class _Copula:
    def __init__(self, frame, seed):
        self.model, self.rng = GaussianCopula().fit(frame), np.random.RandomState(seed)

    def sample_rows(self, n):
        return self.model.sample(n, self.rng)


class _CTGAN:
    epochs = 50

    def __init__(self, frame, seed):
        from ctgan import CTGAN

        torch.manual_seed(seed)  # CTGAN takes no generator
        self.frame = frame.astype({n: str for n in frame if is_categorical(frame[n])})
        self.model = CTGAN(epochs=self.epochs)
        self.model.fit(self.frame, [n for n in frame if is_categorical(frame[n])])

    def sample_rows(self, n):
        out = self.model.sample(n)
        for name in self.frame:
            if pd.api.types.is_integer_dtype(self.frame[name]):
                out[name] = np.round(out[name]).astype(self.frame[name].dtype)
        return out


# --- metrics ---


def _association(x, y, cat_x, cat_y):
    keep = x.notna().to_numpy() & y.notna().to_numpy()
    x, y = x[keep], y[keep]
    if not cat_x and not cat_y:
        return abs(stats.spearmanr(x, y).statistic)
    if cat_x and cat_y:
        table = pd.crosstab(x.astype(str), y.astype(str)).to_numpy()
        if min(table.shape) < 2:
            return 0.0
        chi2 = stats.chi2_contingency(table, correction=False).statistic
        return np.sqrt(chi2 / table.sum() / (min(table.shape) - 1))
    groups, values = (x, y) if cat_x else (y, x)
    values = values.to_numpy(dtype=float)
    means = pd.Series(values).groupby(groups.astype(str).to_numpy()).agg(["mean", "size"])
    between = (means["size"] * (means["mean"] - values.mean()) ** 2).sum()
    total = ((values - values.mean()) ** 2).sum()
    return np.sqrt(between / total) if total > 0 else 0.0


def association_matrix(frame):
    names = list(frame.columns)
    cat = [is_categorical(frame[n]) for n in names]
    return np.array([
        _association(frame[a], frame[b], cat[i], cat[j])
        for i, a in enumerate(names) for j, b in enumerate(names) if i < j
    ])  # fmt: skip


def _with_categories(frame, levels):
    """Categorical columns as pandas categories over `levels` (their values as strings)."""
    out = frame.copy()
    for name, values in levels.items():
        column = out[name].astype(object)
        out[name] = pd.Categorical(column.where(column.isna(), column.astype(str)), values)
    return out


def tstr(train, test, target):
    """Accuracy (ROC AUC for two classes) on `test` of a model trained on `train`."""
    features = [n for n in test if n != target]
    levels = {
        n: sorted(set(pd.concat([train[n], test[n]]).dropna().astype(str)))
        for n in features
        if is_categorical(test[n])
    }
    train, test = _with_categories(train, levels), _with_categories(test, levels)
    train = train[train[target].notna()]
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
    model.fit(train[features], train[target].astype(str))
    y = test[target].astype(str)
    if y.nunique() == 2:
        return roc_auc_score(y == model.classes_[1], model.predict_proba(test[features])[:, 1])
    return accuracy_score(y, model.predict(test[features]))


def _rates(column):
    return column.astype(object).fillna(NA).astype(str).value_counts(normalize=True)


def fidelity(samples, test, target):
    numeric = [n for n in test if not is_categorical(test[n])]
    categorical = [n for n in test if is_categorical(test[n])]
    ks = np.mean([stats.ks_2samp(samples[n].dropna(), test[n].dropna()).statistic for n in numeric])
    tv = np.mean([
        0.5 * _rates(samples[n]).sub(_rates(test[n]), fill_value=0).abs().sum() for n in categorical
    ])  # fmt: skip
    assoc = np.mean(np.abs(association_matrix(samples) - association_matrix(test)))
    return {"KS": ks, "TV": tv, "assoc": assoc, "TSTR": tstr(samples, test, target)}


# --- run ---


def run_table(name, args):
    frame = load_mixed(name)
    train_idx, test_idx = train_test_rows(len(frame), seed=args.seed)
    rng = np.random.RandomState(args.seed)  # the files are sorted: subsample at random
    train = frame.iloc[rng.permutation(train_idx)[: args.max_train]]
    test = frame.iloc[rng.permutation(test_idx)[: args.max_test]]
    train, test = train.reset_index(drop=True), test.reset_index(drop=True)
    target, n = TARGETS[name], len(train)
    rows = []
    real = {"method": "real training rows", "fit_s": 0.0, **fidelity(train, test, target)}
    rows.append(real)
    methods = {
        "LocalFlowMatching": lambda: LocalFlowMatching(
            max_iter=args.max_iter, missing="indicator",
            device="cpu", random_state=args.seed,
        ).fit(train).sample(n, random_state=args.seed),
        "GaussianCopula": lambda: fit_sample_baseline(_Copula, train, n, args.seed),
    }  # fmt: skip
    try:
        import ctgan  # noqa: F401

        _CTGAN.epochs = args.ctgan_epochs
        methods["CTGAN"] = lambda: fit_sample_baseline(_CTGAN, train, n, args.seed)
    except ImportError:
        print("CTGAN not installed: skipped (pip install ctgan)", file=sys.stderr)
    for method, fit_sample in methods.items():
        start = time.perf_counter()
        samples = fit_sample()
        seconds = time.perf_counter() - start
        rows.append({"method": method, "fit_s": seconds, **fidelity(samples, test, target)})
        print(name, rows[-1], file=sys.stderr, flush=True)
    return {"table": name, "n_train": n, "n_test": len(test), "target": target, "rows": rows}


def render(results, args):
    lines = [
        SECTION,
        "",
        "Fidelity of `sample` against held-out real rows (see the Protocol in "
        "`benchmarks/synthetic.py`). KS, TV, assoc: lower is better; TSTR (train on "
        "synthetic, test on real; diamonds `cut` accuracy, credit_data `Status` ROC AUC): "
        "higher is better. The \"real training rows\" line is the reference a perfect "
        "generator would reach. Time: fit plus sampling, one CPU thread on a shared machine.",
        "",
        f"Command: `python benchmarks/synthetic.py {shlex.join(sys.argv[1:])}`; code "
        f"{code_version()}; {datetime.now(timezone.utc):%Y-%m-%d}, "
        f"{platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}.",
        "",
    ]
    for result in results:
        lines += [
            f"**{result['table']}** ({result['n_train']} training rows, {result['n_test']} test "
            f"rows; TSTR target `{result['target']}`)",
            "",
            "| method | KS | TV | assoc | TSTR | time (s) |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['method']} | {r['KS']:.3f} | {r['TV']:.3f} | {r['assoc']:.3f} "
            f"| {r['TSTR']:.3f} | {r['fit_s']:.0f} |"
            for r in result["rows"]
        ]
        lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-train", type=int, default=10_000)
    parser.add_argument("--max-test", type=int, default=5_000)
    parser.add_argument(
        "--max-iter", type=lambda v: v if v == "auto" else int(v), default="auto"
    )
    parser.add_argument("--ctgan-epochs", type=int, default=50)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        results = [run_table(name, args) for name in args.tables]
    except DataUnavailable as exc:
        print(f"skipped: {exc}")
        return
    section = render(results, args)
    print(section)
    if args.write_docs:
        write_docs(section)


if __name__ == "__main__":
    main()
