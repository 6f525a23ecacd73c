"""Throughput beyond one process (issue 12), with 1 and 2 processes on this machine.

What is measured, in one run:

1. Dask scoring: ``sklfm.dask.score_samples`` of a fitted LocalFlowMatching
   on a dask array, with a ``dask.distributed.LocalCluster`` of 1 and of 2
   worker processes (1 thread each; the nanny sets OMP/MKL threads to 1), next
   to an in-process ``score_samples`` call on the same rows. Rows/s of a
   the best of `--reps` computes after a first one (which starts the workers'
   imports); each compute ships the model once. The values must equal the
   in-process ones partition by partition.

The 2-process figures can only be as good as the free cores: on a machine
shared with other jobs the ratio 2-process / 1-process shows the contention
as much as the scaling, so the load average is recorded with the results.

Usage
-----
    python benchmarks/scale_out.py                 # ~2 min on 2 loaded cores
    python benchmarks/scale_out.py --write-docs
"""

import argparse
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Distributed (issue 12)"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import DOCS, code_version, machine_info, write_docs  # noqa: E402

import torch  # noqa: E402

from sklfm import LocalFlowMatching  # noqa: E402

SCORING_MODEL = dict(hidden_layer_sizes=(64, 64), step_sizes=(0.2,), max_iter=50, device="cpu")


def best_rate(fn, n_rows, reps):
    """Rows/s of the fastest of `reps` calls of fn (the least disturbed by other jobs)."""
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return n_rows / best, out


def dask_scoring(n_rows, n_features, n_partitions, workers, reps, seed=0):
    """Rows/s of in-process scoring and of sklfm.dask on `workers` worker processes each."""
    import dask.array as da
    from distributed import Client, LocalCluster

    import sklfm.dask

    X = np.random.default_rng(seed).standard_normal((n_rows, n_features))
    model = LocalFlowMatching(**SCORING_MODEL, random_state=seed).fit(X[:2000])
    rate, expected = best_rate(lambda: model.score_samples(X), n_rows, reps)
    rows = [("in-process score_samples, 1 process", rate, "")]
    chunk = -(-n_rows // n_partitions)
    parts = np.concatenate([model.score_samples(X[i : i + chunk]) for i in range(0, n_rows, chunk)])
    for n_workers in workers:
        with LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster, Client(cluster) as client:
            threads = set(client.run(torch.get_num_threads).values())
            collection = da.from_array(X, chunks=(chunk, n_features))
            sklfm.dask.score_samples(model, collection).compute()  # warm-up
            rate, result = best_rate(
                lambda: sklfm.dask.score_samples(model, collection).compute(), n_rows, reps
            )
        same = bool(np.array_equal(result, parts))
        rows.append(
            (
                f"sklfm.dask.score_samples, LocalCluster {n_workers} worker process(es)",
                rate,
                f"torch threads per worker {sorted(threads)}; equal to in-process per "
                f"partition: {same}; max |diff| vs one call {np.abs(result - expected).max():.1e}",
            )
        )
    return rows


def markdown(scoring, setup, command, machine, code, date, total):
    base = scoring[0][1]
    lines = [
        SECTION,
        "",
        f"Command: `{command}`  ",
        f"Date: {date}; total run time {total / 60:.1f} min  ",
        f"Machine: {machine}  ",
        f"Code: {code}",
        "",
        f"Dask scoring: {setup}.",
        "",
        "| measurement | rows/s | vs in-process | notes |",
        "|---|---:|---:|---|",
    ]
    for name, rate, notes in scoring:
        lines.append(f"| {name} | {rate:,.0f} | {rate / base:.2f}x | {notes} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=40_000, help="rows scored")
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--reps", type=int, default=3, help="timed repeats; the best is kept")
    parser.add_argument(
        "--write-docs", action="store_true", help=f"replace the section in {DOCS.relative_to(ROOT)}"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    command = "python benchmarks/scale_out.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    machine, code = machine_info(1), code_version()
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    start = time.perf_counter()
    scoring = dask_scoring(args.rows, args.features, args.partitions, workers=(1, 2), reps=args.reps)
    setup = (
        f"{args.rows:,} x {args.features} rows in {args.partitions} partitions, "
        f"LocalFlowMatching({', '.join(f'{k}={v!r}' for k, v in SCORING_MODEL.items())}), "
        "RK4 with 8 steps per block"
    )
    section = markdown(
        scoring, setup, command.strip(), machine, code, date, time.perf_counter() - start
    )
    print(section)
    if args.write_docs:
        write_docs(section)
        print(f"wrote {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
