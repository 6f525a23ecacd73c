"""Anomaly detection on the 20 ADBench "Classical" sets (issue 4).

Protocol (../shared/data/README.md): for each set and each seed, a stratified
70/30 split; every detector is fitted on the training part WITHOUT labels (it
contains anomalies, as in practice) and ranks the held-out part; we report ROC
AUC and average precision of that ranking. Every method sees the same splits.
One fixed set of hyperparameters per method for all sets: no per-set tuning.

Methods and their preprocessing
-------------------------------
- ``LFM-OD``: ``sklfm.LocalFlowMatchingOutlierDetector`` with its defaults
  (MCD whitening with the flow trained on the MCD's support, noise smoothing
  and dequantization are built in).
- ``LFM-OD (robust scaling)``: the detector with ``scaling="robust"`` (median /
  IQR + asinh per column, all training rows), the default before "mcd";
  ablation only, as are the next ones.
- ``LFM-OD (plain)``: the same detector with the robustness measures off
  (``scaling="standard", noise_scale=0, dequantize=False``); ablation only,
  run with ``--ablation``.
- ``IsolationForest``: scikit-learn defaults, raw features (scale-invariant).
- ``LOF``: ``LocalOutlierFactor(novelty=True)``, defaults (20 neighbours), on
  StandardScaler features.
- ``EllipticEnvelope``: defaults (MCD, support_fraction=None), on
  StandardScaler features.
- ``GMM``: ``GaussianMixture`` with full covariances and ``reg_covar=1e-3``;
  the number of components (1 to 5) is picked by BIC on the training part; on
  StandardScaler features.
- ``KDE``: Gaussian ``KernelDensity`` with Scott's bandwidth, on StandardScaler
  features.
- ``ECOD``: PyOD's ECOD (parameter-free), raw features.
- ``AutoEncoder``: PyOD's AutoEncoder with its defaults (its own
  standardization, hidden 64-32, 10 epochs).
The PyOD methods run only when ``pyod`` imports (``pip install -e .[bench]``).

Usage
-----
    python benchmarks/adbench.py                     # all methods, 3 seeds
    python benchmarks/adbench.py --ablation          # + LFM-OD variants
    python benchmarks/adbench.py --write-docs        # replace the section in docs/benchmarks.md

With ``--results FILE`` every finished job is appended to FILE as one JSON
line and jobs already there are not rerun (resume; the reported total run time
then covers the new jobs only). The Markdown section is printed, and replaces
this benchmark's section of docs/benchmarks.md with ``--write-docs``. Data:
``../shared/data/adbench/`` (or ``$SKLFM_DATA/adbench``); skipped with a
message when absent.
"""

import argparse
import json
import shlex
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import DataUnavailable, adbench_names, load_adbench  # noqa: E402
import _report  # noqa: E402
from _report import code_version, report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Anomaly detection: ADBench (issue 4)"

# Ablations of the detector's robustness measures (each one switched off alone,
# and all of them off). Keys are the method names used in the tables.
ABLATIONS = {
    "LFM-OD (robust scaling)": dict(scaling="robust"),  # the default before scaling="mcd"
    "LFM-OD (plain)": dict(scaling="standard", noise_scale=0.0, dequantize=False),
    "LFM-OD (no noise)": dict(noise_scale=0.0),
    "LFM-OD (no dequant.)": dict(dequantize=False),
    "LFM-OD (standard scaling)": dict(scaling="standard"),
}

# --- the detectors: each returns a fitted object and an "abnormality" scorer ---


def _scaled(model):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), model)


def _lfm(seed, **params):
    from sklfm import LocalFlowMatchingOutlierDetector

    return LocalFlowMatchingOutlierDetector(random_state=seed, **params)


class _BICGaussianMixture(BaseEstimator):
    """GaussianMixture whose number of components (1..5) is chosen by BIC."""

    def __init__(self, seed=0):
        self.seed = seed

    def fit(self, X, y=None):
        from sklearn.mixture import GaussianMixture

        best = None
        for k in range(1, 6):
            if k > len(X) // 2:
                break
            gmm = GaussianMixture(
                k, covariance_type="full", reg_covar=1e-3, random_state=self.seed
            ).fit(X)
            bic = gmm.bic(X)
            if best is None or bic < best[0]:
                best = (bic, gmm)
        self.model_ = best[1]
        return self

    def score_samples(self, X):
        return self.model_.score_samples(X)


def _make(method, seed):
    """(estimator, scorer): scorer(est, X) gives higher = more abnormal."""
    from sklearn.covariance import EllipticEnvelope
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import KernelDensity, LocalOutlierFactor

    neg = lambda est, X: -est.score_samples(X)  # noqa: E731
    if method == "LFM-OD":
        return _lfm(seed), neg
    if method in ABLATIONS:
        return _lfm(seed, **ABLATIONS[method]), neg
    if method == "IsolationForest":
        return IsolationForest(random_state=seed), neg
    if method == "LOF":
        return _scaled(LocalOutlierFactor(novelty=True)), neg
    if method == "EllipticEnvelope":
        return _scaled(EllipticEnvelope(random_state=seed)), neg
    if method == "GMM":
        return _scaled(_BICGaussianMixture(seed)), neg
    if method == "KDE":
        return _scaled(KernelDensity(bandwidth="scott")), neg
    if method == "ECOD":
        from pyod.models.ecod import ECOD

        return ECOD(), lambda est, X: est.decision_function(X)
    if method == "AutoEncoder":
        from pyod.models.auto_encoder import AutoEncoder

        return AutoEncoder(random_state=seed, verbose=0), lambda est, X: est.decision_function(X)
    raise ValueError(f"unknown method {method!r}")


def _pyod_available():
    try:
        import pyod.models.auto_encoder  # noqa: F401
        import pyod.models.ecod  # noqa: F401
    except Exception:  # any import failure: optional extra missing or broken
        return False
    return True


# --- one job: one method on one split ---


def split(X, y, seed):
    from sklearn.model_selection import train_test_split

    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)


def run_job(method, name, seed, threads=1):
    import torch
    from sklearn.metrics import average_precision_score, roc_auc_score
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)
    X, y = load_adbench(name)
    X_train, X_test, _, y_test = split(X, y, seed)
    est, scorer = _make(method, seed)
    start = time.perf_counter()
    error = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X_train)
            score = np.asarray(scorer(est, X_test), dtype=np.float64)
    except Exception as exc:  # a baseline that fails on a set is recorded, not fatal
        error = f"{type(exc).__name__}: {exc}"
        score = np.zeros(len(X_test))
    seconds = time.perf_counter() - start
    finite = bool(np.all(np.isfinite(score)))
    # Largest |score| on the held-out rows: for the density models, a log-density
    # blowing up on ties shows here long before it overflows.
    max_abs_score = float(np.max(np.abs(score[np.isfinite(score)]), initial=0.0))
    # Non-finite scores rank as the most abnormal (+inf) or least (-inf/NaN): explicit.
    score = np.nan_to_num(score, nan=-np.inf)
    score = np.clip(score, -np.finfo(float).max, np.finfo(float).max)
    return dict(
        method=method,
        dataset=name,
        seed=seed,
        auroc=float(roc_auc_score(y_test, score)),
        ap=float(average_precision_score(y_test, score)),
        seconds=seconds,
        finite=finite,
        max_abs_score=max_abs_score,
        error=error,
    )


# --- tables ---


def _short(name):
    return name.split("_", 1)[1]


def summarize(rows, methods, names):
    """Per-set means, overall means, average ranks and total times."""
    from scipy.stats import rankdata

    table = {m: {n: {} for n in names} for m in methods}
    seconds = {m: 0.0 for m in methods}
    errors = {m: 0 for m in methods}
    for r in rows:
        if r["method"] in table and r["dataset"] in table[r["method"]]:
            cell = table[r["method"]][r["dataset"]]
            cell.setdefault("auroc", []).append(r["auroc"])
            cell.setdefault("ap", []).append(r["ap"])
            seconds[r["method"]] += r["seconds"]
            errors[r["method"]] += r["error"] is not None
    mean = {
        key: np.array([[np.mean(table[m][n][key]) for n in names] for m in methods])
        for key in ("auroc", "ap")
    }
    ranks = {
        key: np.array([rankdata(-mean[key][:, j]) for j in range(len(names))]).T
        for key in ("auroc", "ap")
    }
    return mean, ranks, seconds, errors


# Written after reading the recorded run; kept in the script so that --write-docs keeps it.
DISCUSSION = ""


def markdown(rows, methods, names, seeds, run):
    main = [m for m in methods if m not in ABLATIONS]
    variants = [m for m in methods if m == "LFM-OD" or m in ABLATIONS]
    mean, ranks, seconds, errors = summarize(rows, main, names)
    lines = [SECTION, ""]
    lines += [
        f"Command: `{run['command']}`  ",
        f"Date: {run['date']}; total run time {run['elapsed'] / 60:.1f} min "
        f"({run['jobs']} parallel jobs, one thread each)  ",
        f"Machine: {run['machine']}  ",
        f"Code: {run['code']}  ",
        f"LocalFlowMatchingOutlierDetector defaults used: {run['defaults']}",
        "",
        f"Protocol (`../shared/data/README.md`): for each of the {len(names)} ADBench "
        f"\"Classical\" sets and each seed in {list(seeds)}, a stratified 70/30 split; every "
        "detector is fitted on the unlabeled training part (anomalies included) and ranks the "
        "held-out part. Numbers are means over the seeds. All methods see the same splits; one "
        "fixed set of hyperparameters per method for every set (no per-set tuning).",
        "",
        "Baselines and their preprocessing: IsolationForest (sklearn defaults, raw features); "
        "LOF (`novelty=True`, 20 neighbours), EllipticEnvelope (defaults), GMM (full "
        "covariance, `reg_covar=1e-3`, 1-5 components picked by BIC) and KDE (Gaussian, "
        "Scott bandwidth) on StandardScaler features; PyOD ECOD (raw features) and PyOD "
        "AutoEncoder (its defaults, including its own standardization).",
        "",
        "### Summary",
        "",
        "| method | mean AUROC | mean AP | avg rank (AUROC) | avg rank (AP) | wall time (s) |",
        "|---|---|---|---|---|---|",
    ]
    order = np.argsort(ranks["auroc"].mean(axis=1), kind="stable")
    for i in order:
        m = main[i]
        note = f" ({errors[m]} failed fits)" if errors[m] else ""
        lines.append(
            f"| {m}{note} | {mean['auroc'][i].mean():.4f} | {mean['ap'][i].mean():.4f} | "
            f"{ranks['auroc'][i].mean():.2f} | {ranks['ap'][i].mean():.2f} | "
            f"{seconds[m]:.0f} |"
        )
    lines += [
        "",
        "Wall time: fit + scoring of every split, summed over all sets and seeds (each job on "
        "one thread; LFM-OD's fit includes scoring its training rows for `offset_`). Average "
        "rank: per set, the methods of this table ranked by mean AUROC (resp. AP), 1 = best, "
        "ties averaged.",
        "",
    ]
    for key, title in (("auroc", "ROC AUC"), ("ap", "Average precision")):
        lines += [f"### {title} per set (mean over seeds; best in bold)", ""]
        lines.append("| set | " + " | ".join(main[i] for i in order) + " |")
        lines.append("|---" * (len(main) + 1) + "|")
        for j, n in enumerate(names):
            best = mean[key][:, j].max()
            cells = []
            for i in order:
                v = mean[key][i, j]
                cells.append(f"**{v:.3f}**" if np.isclose(v, best) else f"{v:.3f}")
            lines.append(f"| {_short(n)} | " + " | ".join(cells) + " |")
        lines.append("")
    if "LFM-OD" in main:
        lines += _where_others_win(mean, main, names)
    if len(variants) > 1:
        lines += _ablation(rows, variants, names)
    if DISCUSSION:
        lines += ["### Discussion", "", DISCUSSION.strip(), ""]
    return "\n".join(lines)


def _where_others_win(mean, main, names):
    lfm = main.index("LFM-OD")
    lines = ["### Sets where another method beats LFM-OD by 0.02 AUROC or more", ""]
    lines += ["| set | LFM-OD | best other | its AUROC |", "|---|---|---|---|"]
    for j, n in enumerate(names):
        others = [(mean["auroc"][i, j], main[i]) for i in range(len(main)) if i != lfm]
        value, winner = max(others)
        if value >= mean["auroc"][lfm, j] + 0.02:
            lines.append(f"| {_short(n)} | {mean['auroc'][lfm, j]:.3f} | {winner} | {value:.3f} |")
    if len(lines) == 4:
        lines = lines[:2] + ["None."]
    return lines + [""]


def _ablation(rows, variants, names):
    mean, ranks, seconds, _ = summarize(rows, variants, names)
    nonfinite = {m: sum(not r["finite"] for r in rows if r["method"] == m) for m in variants}
    lines = [
        "### Ablation: the detector's robustness measures",
        "",
        "Same splits; each variant switches measures off from the defaults "
        f"({', '.join(f'`{m}`: {ABLATIONS[m]}' for m in variants if m in ABLATIONS)}).",
        "",
        "| variant | mean AUROC | mean AP | avg rank (AUROC) among variants | splits with "
        "non-finite scores | wall time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for i, m in enumerate(variants):
        lines.append(
            f"| {m} | {mean['auroc'][i].mean():.4f} | {mean['ap'][i].mean():.4f} | "
            f"{ranks['auroc'][i].mean():.2f} | {nonfinite[m]} | {seconds[m]:.0f} |"
        )
    lines += ["", "AUROC per set:", ""]
    lines.append("| set | " + " | ".join(variants) + " |")
    lines.append("|---" * (len(variants) + 1) + "|")
    for j, n in enumerate(names):
        cells = [f"{mean['auroc'][i, j]:.3f}" for i in range(len(variants))]
        lines.append(f"| {_short(n)} | " + " | ".join(cells) + " |")
    return lines + [""]


def detector_defaults():
    """The detector defaults in force (they may be retuned; the record keeps them)."""
    from sklfm import LocalFlowMatchingOutlierDetector

    skip = {"random_state", "verbose", "device"}
    params = LocalFlowMatchingOutlierDetector().get_params()
    return "`" + ", ".join(f"{k}={v!r}" for k, v in sorted(params.items()) if k not in skip) + "`"



def machine_info():
    try:
        import pyod

        extra = f", pyod {pyod.__version__}"
    except Exception:
        extra = ""
    return _report.machine_info(extra=extra)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", help="subset of set names (default: all)")
    parser.add_argument("--methods", nargs="+", help="subset of methods (default: all)")
    parser.add_argument("--ablation", action="store_true", help="add the LFM-OD ablations")
    parser.add_argument("--jobs", type=int, default=2, help="parallel processes, 1 thread each")
    parser.add_argument(
        "--results", help="JSON-lines file of finished jobs: reused and appended to (resume)"
    )
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)

    try:
        names = adbench_names()
    except DataUnavailable as exc:
        print(f"skipped: {exc}")
        return 0
    if not names:
        print("skipped: no ADBench sets found")
        return 0
    machine = machine_info()
    if args.datasets:
        names = [n for n in names if n in args.datasets or _short(n) in args.datasets]
    methods = ["LFM-OD", "IsolationForest", "LOF", "EllipticEnvelope", "GMM", "KDE"]
    if _pyod_available():
        methods += ["ECOD", "AutoEncoder"]
    else:
        print("pyod not importable: ECOD and AutoEncoder skipped (pip install -e .[bench]).")
    if args.ablation:
        methods += list(ABLATIONS)
    if args.methods:
        methods = [m for m in methods if m in args.methods]

    results = Path(args.results) if args.results else None
    done, runs = [], []
    if results is not None and results.exists():
        done = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    runs = [r["run"] for r in done if "run" in r]
    done = [r for r in done if "run" not in r]
    have = {(r["method"], r["dataset"], r["seed"]) for r in done}
    todo = [
        (m, n, s)
        for m in methods
        for n in names
        for s in args.seeds
        if (m, n, s) not in have
    ]
    # Longest jobs first (the flows on the biggest sets) so the pool stays busy.
    size = {n: np.prod(load_adbench(n)[0].shape) for n in names}
    todo.sort(key=lambda job: (not job[0].startswith("LFM"), -size[job[1]]))
    start = time.perf_counter()
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = results.open("a") if results is not None else None
    with ProcessPoolExecutor(max(1, args.jobs)) as pool:
        futures = [pool.submit(run_job, *job) for job in todo]
        for k, future in enumerate(futures, 1):
            row = future.result()
            if out is not None:
                out.write(json.dumps(row) + "\n")
                out.flush()
            done.append(row)
            print(
                f"[{k}/{len(todo)}] {row['method']:28s} {row['dataset']:18s} seed {row['seed']} "
                f"AUROC {row['auroc']:.3f} AP {row['ap']:.3f} {row['seconds']:.1f}s"
                + (f"  ERROR {row['error']}" if row["error"] else ""),
                flush=True,
            )
    command = shlex.join(
        ["python", "benchmarks/adbench.py", *(argv if argv is not None else sys.argv[1:])]
    )
    run = dict(
        command=command,
        date=started,
        elapsed=time.perf_counter() - start,
        jobs=args.jobs,
        machine=machine,
        code=code_version(),
        defaults=detector_defaults(),
        n_jobs_run=len(todo),
    )
    if out is not None:
        if todo:
            out.write(json.dumps({"run": run}) + "\n")
        out.close()
    if not todo and runs:
        # Nothing new computed: report the run that computed the cached results.
        run = runs[-1]
    rows = [r for r in done if r["seed"] in args.seeds]
    section = markdown(rows, methods, names, args.seeds, run)
    report(section, args.write_docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
