"""Conditional generation, part 1: over-sampling for imbalanced classification (issue 13).

The ADBench "Classical" sets serve as imbalanced two-class tasks (y == 1, the
anomalies, is the minority class). For each set and each seed: a stratified
70/30 split; a HistGradientBoostingClassifier (fixed settings, below) is
trained on the training rows as they are, or topped up to balanced classes by

- ``random``: imbalanced-learn's RandomOverSampler (copies of minority rows);
- ``SMOTE``: imbalanced-learn's SMOTE (``k_neighbors=min(5, n_minority - 1)``);
- ``LFM``: ``sklfm.LocalFlowMatchingOversampler`` with its defaults: a
  LocalFlowMatching of the minority rows alone (``per_class=True``);
- ``LFM (shared)``: the same with ``per_class=False``, one class-conditional
  model of all training rows, to see whether sharing one model with the
  majority class helps;

and we report the average precision of its probabilities on the held-out rows.
Every method sees the same splits and the same classifier settings.

Usage
-----
    python benchmarks/conditional.py                       # all sets, 3 seeds
    python benchmarks/conditional.py --sets 29_Pima --seeds 0
    python benchmarks/conditional.py --write-docs          # replace the docs section

Every finished job is appended to ``--results`` (JSONL, default
/tmp/sklfm_conditional.jsonl); jobs already there are not rerun. Needs
imbalanced-learn (``pip install -e .[bench]``). Data: ``../shared/data/adbench/``
(or ``$SKLFM_DATA/adbench``); skipped with a message when absent.
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _report  # noqa: E402
from _data import DataUnavailable, adbench_names, load_adbench  # noqa: E402

SECTION = "## Conditional generation: oversampling (issue 13)"
METHODS = ["none", "random", "SMOTE", "LFM", "LFM (shared)"]
CLASSIFIER = dict(max_iter=200, learning_rate=0.1, max_leaf_nodes=15)


def _resampled(method, X, y, seed):
    """Training rows topped up by `method` to balanced classes."""
    if method == "none":
        return X, y
    if method == "random":
        from imblearn.over_sampling import RandomOverSampler

        return RandomOverSampler(random_state=seed).fit_resample(X, y)
    if method == "SMOTE":
        from imblearn.over_sampling import SMOTE

        k = int(min(5, np.bincount(y).min() - 1))
        return SMOTE(k_neighbors=k, random_state=seed).fit_resample(X, y)
    from sklfm import LocalFlowMatchingOversampler

    sampler = LocalFlowMatchingOversampler(per_class=method == "LFM", random_state=seed)
    return sampler.fit_resample(X, y)


def run_job(method, name, seed):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import average_precision_score
    from sklearn.model_selection import train_test_split

    begin = time.perf_counter()
    X, y = load_adbench(name)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=seed
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        X_res, y_res = _resampled(method, X_train, y_train, seed)
    seconds = time.perf_counter() - start
    classifier = HistGradientBoostingClassifier(**CLASSIFIER, random_state=seed)
    proba = classifier.fit(X_res, y_res).predict_proba(X_test)[:, 1]
    return dict(
        method=method,
        dataset=name,
        seed=seed,
        ap=float(average_precision_score(y_test, proba)),
        seconds=seconds,
        added=int(len(y_res) - len(y_train)),
        job_seconds=time.perf_counter() - begin,
    )


def markdown(rows, names, seeds, run):
    from scipy.stats import rankdata

    ap = np.array(
        [[np.mean([r["ap"] for r in rows if r["method"] == m and r["dataset"] == n]) for n in names]
         for m in METHODS]
    )
    seconds = [sum(r["seconds"] for r in rows if r["method"] == m) for m in METHODS]
    ranks = np.array([rankdata(-ap[:, j]) for j in range(len(names))]).T
    wins = [int(np.sum(np.isclose(ap[i], ap.max(axis=0)))) for i in range(len(METHODS))]
    lines = _report.header(SECTION, run["command"], run["date"], run["elapsed"], run["machine"], run["code"])
    lines += [
        "",
        f"The {len(names)} ADBench sets as imbalanced two-class tasks (the anomalies, y == 1, "
        f"are the minority class); seeds {list(seeds)}, a stratified 70/30 split each. A "
        f"`HistGradientBoostingClassifier({_kwargs(CLASSIFIER)})` is trained on the training "
        "rows, as they are (`none`) or with the minority class topped up to the majority's "
        "count by imbalanced-learn's `RandomOverSampler` (`random`), `SMOTE` "
        "(`k_neighbors=min(5, n_minority - 1)`), or `LocalFlowMatchingOversampler` with its "
        "defaults (`LFM`: a model of the minority rows alone, `per_class=True`) or with "
        "`per_class=False` (`LFM (shared)`: one class-conditional model of all training "
        f"rows); its default model is `{' '.join(repr(_default_estimator()).split())}`, on "
        "the CPU. "
        "Score: average precision "
        "of the classifier's probabilities on the held-out 30 %, mean over seeds. Time: the "
        "sampler's `fit_resample`, summed over all sets and seeds (one thread).",
        "",
        "| method | mean AP | mean rank | sets won | sampler time (s) |",
        "|---|---|---|---|---|",
    ]
    for i, m in enumerate(METHODS):
        lines.append(
            f"| {m} | {ap[i].mean():.4f} | {ranks[i].mean():.2f} | {wins[i]} | {seconds[i]:.0f} |"
        )
    lines += ["", "Average precision per set (best in bold; ties count as wins for each):", ""]
    lines += ["| set | " + " | ".join(METHODS) + " |", "|---" * (len(METHODS) + 1) + "|"]
    for j, n in enumerate(names):
        best = ap[:, j].max()
        cells = [f"**{v:.3f}**" if np.isclose(v, best) else f"{v:.3f}" for v in ap[:, j]]
        lines.append(f"| {n.split('_', 1)[1]} | " + " | ".join(cells) + " |")
    if DISCUSSION:
        lines += ["", DISCUSSION.strip()]
    return "\n".join(lines) + "\n"


def _default_estimator():
    from sklfm._oversampling import _default_estimator

    return _default_estimator()


def _kwargs(params):
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


# Written after reading the recorded run; kept here so that --write-docs keeps it.
DISCUSSION = """
The over-sampler with its defaults (a small LocalFlowMatching of the minority rows, 400 steps
per block, two OU blocks) has the best mean average precision (0.868 against 0.844 for SMOTE,
0.845 for random over-sampling and 0.810 without over-sampling) and the best mean rank, and
wins 9 of the 20 sets (ties counted), SMOTE 7. Its gains come mostly from small sets with few
minority rows (WDBC, wine, Hepatitis, Stamps: +0.05 to +0.4 over SMOTE); on the larger sets
(mammography, satellite, cardio, thyroid) SMOTE or no over-sampling stays ahead by 0.01 to
0.05. One class-conditional model of all rows (`per_class=False`) ranked worse on average
(3.10 against 2.65) and won 3 sets (glass, vowels, wine): with the minority a few per cent of
each minibatch, its conditional for the minority learns less in the same number of steps, so
`per_class=True` is the default. With 3 seeds and 2 to 40 minority rows in the test part of
the small sets, differences below about 0.03 AP are within the noise. The sampler times are
from a shared 2-core machine (load average about 10) and are for the comparison only.
The rows of `none`, `random` and `SMOTE` were run at git 53ae19f, the LFM rows at d566f05
(the same sampler code as the commit named above, up to documentation).
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="*", default=None, help="set names (default: all)")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--results", default="/tmp/sklfm_conditional.jsonl")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    try:
        names = args.sets or adbench_names()
        for name in names:
            load_adbench(name)
        import imblearn  # noqa: F401
    except (DataUnavailable, ImportError) as exc:
        print(f"skipped: {exc}")
        return 0
    command, date = _report.start_run("conditional.py", argv, threads=1)
    path = Path(args.results)
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    done = {(r["method"], r["dataset"], r["seed"]) for r in rows}
    for name in names:
        for seed in args.seeds:
            for method in METHODS:
                if (method, name, seed) in done:
                    continue
                row = run_job(method, name, seed)
                print(json.dumps(row), flush=True)
                with path.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                rows.append(row)
    rows = [r for r in rows if r["dataset"] in names and r["seed"] in args.seeds]
    run = dict(
        command=command,
        date=date,
        # Sum of the recorded jobs' times, so a resumed run reports the whole run.
        elapsed=sum(r["job_seconds"] for r in rows),
        machine=_report.machine_info(threads=1),
        code=_report.code_version(),
    )
    _report.report(markdown(rows, names, args.seeds, run), args.write_docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
