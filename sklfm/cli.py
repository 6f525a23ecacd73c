"""The ``sklfm`` command: fit, score, sample and flag outliers from the shell.

::

    sklfm fit DATA -o MODEL [--param NAME=VALUE ...] [--detector]
    sklfm score MODEL DATA [-o SCORES]
    sklfm sample MODEL -n N [-o OUT] [--random-state SEED]
    sklfm outliers MODEL DATA [-o FLAGS]
    sklfm demo [options]

Tables are CSV with a header row, or Parquet (needs pyarrow), chosen by the
file suffix (``.parquet`` / ``.pq``); ``-`` reads standard input (CSV or
Parquet, told apart by content) or writes standard output (CSV unless
``--format parquet``). Expected failures (a missing or unreadable file, a
missing column, a file that holds no model, a bad parameter) print one line on
stderr and exit with status 1; usage errors exit with status 2.

Model files are written and read by :func:`_save_model` and
:func:`_load_model` only, in sklfm's safe format (``est.save`` /
``sklfm.load``: JSON and numeric arrays; loading never runs code from the file).
"""

import argparse
import ast
import io
import logging
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils.validation import _check_feature_names_in

from . import _persistence

_PARQUET_SUFFIXES = (".parquet", ".pq")
_PARQUET_MAGIC = b"PAR1"
# Rows per scoring call: small enough for a smooth progress bar, large enough
# that the per-call overhead does not show. Rows are scored independently, so
# the chunking does not change the scores.
_CHUNK_ROWS = 4096


class CLIError(Exception):
    """An expected failure: reported as one line on stderr, exit status 1."""


# --- model files: the only two functions that know the on-disk format ---


def _save_model(model, path):
    """Write the fitted estimator `model` to `path` (the safe format)."""
    model.save(path)


def _load_model(path):
    """Read a fitted sklfm estimator from `path`; CLIError for anything else."""
    if not Path(path).exists():
        raise CLIError(f"{path}: no such model file")
    try:
        return _persistence.load(path)
    except ValueError as exc:
        raise CLIError(f"{path} is not an sklfm model file ({exc})") from exc


# --- tables ---


def _read_table(path, header=True):
    """A DataFrame from a CSV or Parquet file, or from stdin when `path` is '-'."""
    if path == "-":
        raw = sys.stdin.buffer.read()
        if not raw:
            raise CLIError("no data on standard input")
        source, name, parquet = io.BytesIO(raw), "standard input", raw[:4] == _PARQUET_MAGIC
    else:
        if not Path(path).exists():
            raise CLIError(f"{path}: no such file")
        source, name = path, path
        parquet = Path(path).suffix.lower() in _PARQUET_SUFFIXES
    try:
        if parquet:
            table = pd.read_parquet(source)
        else:
            table = pd.read_csv(source, header=0 if header else None)
    except ImportError as exc:
        raise CLIError("Parquet files need pyarrow: pip install pyarrow") from exc
    except (ValueError, OSError) as exc:
        kind = "Parquet" if parquet else "CSV"
        raise CLIError(f"cannot read {name} as {kind}: {exc}") from exc
    if not header:
        table.columns = [f"x{i}" for i in range(table.shape[1])]
    return table


def _write_table(table, path, fmt=None):
    """Write `table` as CSV or Parquet to `path`, or to stdout when `path` is '-'."""
    if fmt is None:
        fmt = "parquet" if Path(path).suffix.lower() in _PARQUET_SUFFIXES else "csv"
    if fmt == "csv":
        table.to_csv(sys.stdout if path == "-" else path, index=False)
        return
    buffer = io.BytesIO()
    try:
        table.to_parquet(buffer, index=False)
    except ImportError as exc:
        raise CLIError("Parquet files need pyarrow: pip install pyarrow") from exc
    if path == "-":
        sys.stdout.buffer.write(buffer.getvalue())
        sys.stdout.buffer.flush()
    else:
        Path(path).write_bytes(buffer.getvalue())


def _columns(table, columns, name):
    """The given columns of `table`, in that order; CLIError naming any that are missing."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise CLIError(f"{name} lacks column(s) {missing}; it has {list(table.columns)}")
    return table[list(columns)]


def _model_input(model, table, name):
    """The rows of `table` that `model` expects: its fitted columns by name when it has them."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return table.to_numpy()
    return _columns(table, names, name)


# --- progress on stderr ---


class _Progress:
    """A progress bar on stderr: redrawn in place on a terminal, one line per update otherwise."""

    def __init__(self, label, total, enabled):
        self.label, self.total, self.enabled = label, total, enabled
        self.start = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.done = 0
        self.advance(0)

    def advance(self, amount=1, note=""):
        self.done += amount
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        filled = int(20 * self.done / max(self.total, 1))
        bar = f"[{'#' * filled}{'.' * (20 - filled)}] {self.done}/{self.total}"
        line = f"{self.label} {bar} {elapsed:.0f}s {note}".rstrip()
        sys.stderr.write(f"\r{line}\x1b[K" if self.tty else f"{line}\n")
        if self.tty and self.done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


@contextmanager
def _fit_log(estimator, enabled):
    """While fitting, send the estimator's own progress lines (``verbose``) to stderr."""
    if not enabled:
        yield
        return
    logger, verbose = logging.getLogger("sklfm"), estimator.verbose
    level, handler = logger.level, logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("fit: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    estimator.set_params(verbose=max(1, verbose))
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        estimator.set_params(verbose=verbose)


def _scored(args, model, score, progress):
    """The table args.data and score(rows) of its rows, computed in chunks with a progress bar."""
    table = _read_table(args.data, header=not args.no_header)
    rows = _model_input(model, table, args.data)
    bar = _Progress("score", len(rows), progress)
    rows_at = rows.iloc if isinstance(rows, pd.DataFrame) else rows
    parts = []
    for start in range(0, len(rows), _CHUNK_ROWS):
        parts.append(score(rows_at[start : start + _CHUNK_ROWS]))
        bar.advance(len(parts[-1]))
    return table, np.concatenate(parts) if parts else np.empty(0)


# --- commands ---


def _parse_param(text):
    """NAME=VALUE, VALUE a Python literal (or else a plain string): ('NAME', value)."""
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


def _fit(args, progress):
    from . import LocalFlowMatching, LocalFlowMatchingOutlierDetector

    if args.output == "-":
        raise CLIError("a model is written to a file: give -o a path")
    estimator = LocalFlowMatchingOutlierDetector() if args.detector else LocalFlowMatching()
    estimator.set_params(**dict(args.param))
    # Parameter errors first, before reading the data (maybe a long stream).
    estimator._validate_params()
    table = _read_table(args.data, header=not args.no_header)
    if args.columns:
        table = _columns(table, args.columns, args.data)
    if progress:
        print(f"fit: {type(estimator).__name__} on {table.shape[0]} rows x "
              f"{table.shape[1]} columns", file=sys.stderr)
    with _fit_log(estimator, progress):
        estimator.fit(table)
    _save_model(estimator, args.output)


def _score(args, progress):
    model = _load_model(args.model)
    table, scores = _scored(args, model, model.score_samples, progress)
    _write_result(args, table, pd.DataFrame({"log_density": scores}))


def _outliers(args, progress):
    model = _load_model(args.model)
    if not hasattr(model, "offset_"):
        raise CLIError(
            f"{args.model} holds a {type(model).__name__}; outliers needs a detector "
            "(sklfm fit --detector)"
        )
    table, decision = _scored(args, model, model.decision_function, progress)
    # The rule of predict: a negative decision is an outlier.
    flags = pd.DataFrame({"decision": decision, "outlier": (decision < 0).astype(int)})
    _write_result(args, table, flags)


def _sample(args, progress):
    model = _load_model(args.model)
    if not hasattr(model, "sample"):
        raise CLIError(
            f"{args.model} holds a {type(model).__name__}; sample needs a LocalFlowMatching "
            "model (sklfm fit without --detector)"
        )
    bar = _Progress("sample", 1, progress)
    rows = model.sample(args.n_samples, random_state=args.random_state)
    bar.advance(note=f"{args.n_samples} rows")
    table = pd.DataFrame(rows, columns=_check_feature_names_in(model, None))
    _write_table(table, args.output, args.format)


def _write_result(args, table, result):
    if args.append:
        result = pd.concat([table.reset_index(drop=True), result], axis=1)
    _write_table(result, args.output, args.format)


# --- argument parsing ---


def _parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: only when stderr is a terminal)",
    )
    common.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's choice)"
    )
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("model", metavar="MODEL", help="model file written by sklfm fit")
    reading = argparse.ArgumentParser(add_help=False)
    reading.add_argument(
        "--no-header", action="store_true", help="the CSV has no header row (columns x0, x1, ...)"
    )
    rows = argparse.ArgumentParser(add_help=False, parents=[reading])
    rows.add_argument("data", metavar="DATA", help="table of rows to score ('-' for stdin)")
    writing = argparse.ArgumentParser(add_help=False)
    writing.add_argument(
        "-o", "--output", default="-", help="output table, '-' for stdout (default: %(default)s)"
    )
    writing.add_argument(
        "--format", choices=["csv", "parquet"], help="output format (default: from the suffix)"
    )
    appending = argparse.ArgumentParser(add_help=False)
    appending.add_argument(
        "--append", action="store_true", help="write the input columns too, then the new ones"
    )

    parser = argparse.ArgumentParser(
        prog="sklfm",
        description="Local Flow Matching density models and outlier detection from the shell. "
        "Tables: CSV with a header row, or Parquet (.parquet/.pq, needs pyarrow); '-' is "
        "stdin/stdout. Model files are sklfm's safe format (est.save / sklfm.load): loading never runs code.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fit = commands.add_parser(
        "fit",
        parents=[common, reading],
        help="fit a model on a table and save it",
        description="Fit LocalFlowMatching (or, with --detector, "
        "LocalFlowMatchingOutlierDetector) on the numeric columns of DATA and save it.",
    )
    fit.add_argument("data", metavar="DATA", help="training table ('-' for stdin)")
    fit.add_argument("-o", "--output", required=True, metavar="MODEL", help="model file to write")
    fit.add_argument(
        "--param",
        type=_parse_param,
        nargs="+",
        action="extend",
        default=[],
        metavar="NAME=VALUE",
        help="estimator parameter, VALUE a Python literal, e.g. max_iter=500 "
        "'hidden_layer_sizes=(64, 64)' step_sizes=() activation=relu (repeatable)",
    )
    fit.add_argument(
        "--detector", action="store_true", help="fit LocalFlowMatchingOutlierDetector"
    )
    fit.add_argument(
        "--columns", nargs="+", metavar="NAME", help="use these columns only (default: all)"
    )
    fit.set_defaults(run=_fit)

    score = commands.add_parser(
        "score",
        parents=[model, rows, common, writing, appending],
        help="exact log-density of each row",
        description="Write the column log_density: the model's log-density of each row of "
        "DATA, in nats (lower = more unusual). DATA must hold the model's training columns; "
        "other columns are ignored.",
    )
    score.set_defaults(run=_score)

    sample = commands.add_parser(
        "sample",
        parents=[model, common, writing],
        help="draw new rows from a model",
        description="Draw N rows from a LocalFlowMatching model, with the training columns.",
    )
    sample.add_argument("-n", "--n-samples", type=int, required=True, metavar="N")
    sample.add_argument(
        "--random-state", type=int, default=None, help="seed (default: the model's random_state)"
    )
    sample.set_defaults(run=_sample)

    outliers = commands.add_parser(
        "outliers",
        parents=[model, rows, common, writing, appending],
        help="flag outlying rows with a detector model",
        description="Write the columns decision (log-density minus the model's threshold) and "
        "outlier (1 where decision < 0, else 0) for each row of DATA. MODEL must come from "
        "sklfm fit --detector; its parameter contamination sets the threshold.",
    )
    outliers.set_defaults(run=_outliers)

    # Listed for --help only: main() hands "demo" to sklfm._demo before parsing.
    commands.add_parser("demo", help="LFM next to scikit-learn baselines (sklfm demo --help)")
    return parser


def _one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv=None):
    """Run the ``sklfm`` command; return its exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["demo"]:
        from ._demo import main as demo

        return demo(argv[1:])
    args = _parser().parse_args(argv)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    try:
        args.run(args, progress)
    except BrokenPipeError:
        # The reader of stdout went away (e.g. `| head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (CLIError, ValueError, OSError) as exc:
        # ValueError covers the estimators' parameter and input checks.
        print(f"sklfm {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
