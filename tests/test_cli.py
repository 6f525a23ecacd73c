"""The ``sklfm`` command: every command, its outputs and its error paths.

Each command and each kind of error runs once as a subprocess (``python -m
sklfm``, as a script would call it); variants run in-process through
``sklfm.cli.main``, since each child spends seconds importing torch.
"""

import io
import os
import subprocess
import sys
from pathlib import Path

import joblib
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from sklfm import LocalFlowMatching, LocalFlowMatchingOutlierDetector
from sklfm.cli import _load_model, main
from sklfm.datasets import make_rings

# Tiny fits; the values are Python literals as typed on the command line.
PARAMS = {
    "hidden_layer_sizes": "(8,)",
    "step_sizes": "(0.2,)",
    "max_iter": "5",
    "batch_size": "32",
    "ode_steps": "2",
    "activation": "tanh",  # a plain string, unquoted
    "device": "'cpu'",
    "random_state": "0",
}
PARAM_ARGS = ["--param", *(f"{k}={v}" for k, v in PARAMS.items())]
IN_PROCESS = dict(
    hidden_layer_sizes=(8,), step_sizes=(0.2,), max_iter=5, batch_size=32, ode_steps=2,
    activation="tanh", device="cpu", random_state=0,
)
# One torch thread in every child: fast on small machines, and the same
# arithmetic as the test process (tests/conftest.py).
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def sklfm(*args, stdin=None):
    """Run ``python -m sklfm ARGS``; return the completed process (bytes out and err)."""
    return subprocess.run(
        [sys.executable, "-m", "sklfm", *map(str, args)],
        input=stdin,
        capture_output=True,
        env=ENV,
        timeout=300,
    )


def ok(*args, stdin=None):
    proc = sklfm(*args, stdin=stdin)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc


def fails(*args, stdin=None):
    """Run a command that must fail; return its one-line error message."""
    proc = sklfm(*args, stdin=stdin)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert err.count("\n") == 1 and err.startswith("sklfm ") and "Traceback" not in err, err
    return err


@pytest.fixture
def cli(capsysbinary, monkeypatch):
    """Run sklfm.cli.main in-process: (exit status, stdout bytes, stderr text)."""

    def run(*args, stdin=b""):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        try:
            status = main([str(a) for a in args])
        except SystemExit as exc:  # argparse: --help and usage errors
            status = exc.code
        out, err = capsysbinary.readouterr()
        return status, out, err.decode()

    return run


def read_csv_bytes(data):
    return pd.read_csv(io.BytesIO(data))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A training table (an id and two numeric columns), and two models fitted on it."""
    path = tmp_path_factory.mktemp("cli")
    X = make_rings(300, random_state=0)
    table = pd.DataFrame({"name": [f"row{i}" for i in range(len(X))], "a": X[:, 0], "b": X[:, 1]})
    table.to_csv(path / "train.csv", index=False)

    fit = ok("fit", path / "train.csv", "-o", path / "lfm.model", "--columns", "a", "b",
             *PARAM_ARGS, "--progress")
    ok("fit", path / "train.csv", "-o", path / "detector.model", "--columns", "a", "b",
       "--detector", *PARAM_ARGS, "--param", "contamination=0.05")
    return dict(path=path, table=table, X=table[["a", "b"]], fit_progress=fit.stderr.decode())


# --- subprocesses: each command, stdin/stdout, Parquet, each kind of error ---


def test_fit_and_score_through_stdin_and_stdout(work):
    path = work["path"]
    csv = (path / "train.csv").read_bytes()
    proc = ok("score", path / "lfm.model", "-", "-o", "-", stdin=csv)
    assert proc.stderr == b""  # no progress bar: stderr is not a terminal, no --progress
    scores = read_csv_bytes(proc.stdout)
    assert list(scores.columns) == ["log_density"]
    # The same parameters in Python give the same model: the CLI passes them through.
    expected = LocalFlowMatching(**IN_PROCESS).fit(work["X"]).score_samples(work["X"])
    assert_allclose(scores["log_density"], expected, rtol=1e-9)
    # Fitting from stdin gives the same model as fitting from the file.
    ok("fit", "-", "-o", path / "stdin.model", "--columns", "a", "b", *PARAM_ARGS, stdin=csv)
    assert_allclose(_load_model(path / "stdin.model").score_samples(work["X"]), expected)


def test_progress_on_request(work):
    # --progress: the estimator's per-block progress lines, on stderr.
    lines = work["fit_progress"].splitlines()
    assert lines[0] == "fit: LocalFlowMatching on 300 rows x 2 columns"
    assert any("block 2" in line and "free block" in line for line in lines[1:])


def test_parquet_in_and_out(work):
    pytest.importorskip("pyarrow")
    path = work["path"]
    work["table"].to_parquet(path / "train.parquet")
    ok("score", path / "lfm.model", path / "train.parquet", "-o", path / "scores.parquet")
    expected = _load_model(path / "lfm.model").score_samples(work["X"])
    assert_allclose(pd.read_parquet(path / "scores.parquet")["log_density"], expected)


def test_sample(work):
    out = ok("sample", work["path"] / "lfm.model", "-n", 7, "--random-state", 3).stdout
    sample = read_csv_bytes(out)
    assert list(sample.columns) == ["a", "b"]
    expected = _load_model(work["path"] / "lfm.model").sample(7, random_state=3)
    assert_allclose(sample.to_numpy(), expected)


def test_outliers_flags_a_far_row(work):
    path = work["path"]
    table = pd.concat(
        [work["table"].head(50), pd.DataFrame({"name": ["far"], "a": [40.0], "b": [-40.0]})]
    )
    table.to_csv(path / "check.csv", index=False)
    out = ok("outliers", path / "detector.model", path / "check.csv", "--append").stdout
    flags = read_csv_bytes(out)
    assert list(flags.columns) == ["name", "a", "b", "decision", "outlier"]
    assert flags.set_index("name").loc["far", "outlier"] == 1
    assert_array_equal(flags["outlier"], (flags["decision"] < 0).astype(int))
    expected = LocalFlowMatchingOutlierDetector(**IN_PROCESS, contamination=0.05).fit(work["X"])
    assert_array_equal(flags["outlier"] == 1, expected.predict(table[["a", "b"]]) == -1)


def test_bad_file(work, tmp_path):
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2\n3,4,5,6\n")
    assert "cannot read" in fails("score", work["path"] / "lfm.model", ragged)


def test_missing_column(work, tmp_path):
    other = tmp_path / "other.csv"
    pd.DataFrame({"a": [1.0, 2.0], "c": [3.0, 4.0]}).to_csv(other, index=False)
    assert "lacks column(s) ['b']" in fails("score", work["path"] / "lfm.model", other)


def test_not_a_model_file(work):
    data = work["path"] / "train.csv"
    assert "is not an sklfm model file" in fails("outliers", data, data)


def test_bad_param(work, tmp_path):
    err = fails("fit", work["path"] / "train.csv", "-o", tmp_path / "m", "--param", "max_iter=-1")
    assert "'max_iter' parameter" in err
    assert not (tmp_path / "m").exists()


def test_console_script_and_demo_help():
    script = Path(sys.executable).with_name("sklfm")
    if script.exists():
        proc = subprocess.run([script, "--help"], capture_output=True, env=ENV)
        assert proc.returncode == 0 and b"outliers" in proc.stdout
    assert ok("demo", "--help").stdout.startswith(b"usage: sklfm demo")


# --- in-process variants ---


@pytest.mark.parametrize("command", [[], ["fit"], ["score"], ["sample"], ["outliers"]])
def test_help(cli, command):
    status, out, _ = cli(*command, "--help")
    assert status == 0
    assert out.decode().startswith(f"usage: sklfm {' '.join(command)}".rstrip())


def test_parquet_through_stdin_and_stdout(cli, work):
    pytest.importorskip("pyarrow")
    path = work["path"]
    work["table"].to_parquet(path / "stdin.parquet")
    status, out, _ = cli("score", path / "lfm.model", "-", "--format", "parquet",
                         stdin=(path / "stdin.parquet").read_bytes())
    assert status == 0
    expected = _load_model(path / "lfm.model").score_samples(work["X"])
    assert_allclose(pd.read_parquet(io.BytesIO(out))["log_density"], expected)


def test_append_keeps_the_input_columns(cli, work):
    status, out, _ = cli("score", work["path"] / "lfm.model", work["path"] / "train.csv",
                         "--append")
    scored = read_csv_bytes(out)
    assert list(scored.columns) == ["name", "a", "b", "log_density"]
    assert_array_equal(scored["name"], work["table"]["name"])


def test_no_header(cli, work):
    path = work["path"]
    work["X"].to_csv(path / "bare.csv", index=False, header=False)
    assert cli("fit", path / "bare.csv", "--no-header", "-o", path / "bare.model",
               *PARAM_ARGS)[0] == 0
    status, out, _ = cli("sample", path / "bare.model", "-n", 2)
    assert list(read_csv_bytes(out).columns) == ["x0", "x1"]
    status, out, _ = cli("score", path / "bare.model", path / "bare.csv", "--no-header")
    assert len(read_csv_bytes(out)) == len(work["X"])


def test_chunked_scores_equal_one_call(cli, work, monkeypatch):
    monkeypatch.setattr("sklfm.cli._CHUNK_ROWS", 64)
    status, out, _ = cli("score", work["path"] / "lfm.model", work["path"] / "train.csv")
    expected = _load_model(work["path"] / "lfm.model").score_samples(work["X"])
    assert_allclose(read_csv_bytes(out)["log_density"], expected, rtol=1e-12)


def error(cli, *args, stdin=b""):
    status, _, err = cli(*args, stdin=stdin)
    assert status == 1 and err.count("\n") == 1, err
    return err


def test_error_variants(cli, work, tmp_path):
    path = work["path"]
    model, data = path / "lfm.model", path / "train.csv"
    assert "nope.csv: no such file" in error(cli, "fit", tmp_path / "nope.csv", "-o",
                                             tmp_path / "m")
    assert "give -o a path" in error(cli, "fit", data, "-o", "-")
    assert "no such model file" in error(cli, "score", tmp_path / "nope.model", data)
    assert "no data on standard input" in error(cli, "score", model, "-")
    assert "lacks column(s) ['z']" in error(cli, "fit", data, "-o", tmp_path / "m",
                                            "--columns", "a", "z")
    gappy = work["table"].assign(a=work["table"]["a"].where(work["table"].index % 7 > 0))
    gappy.to_csv(tmp_path / "gappy.csv", index=False)
    err = error(cli, "fit", tmp_path / "gappy.csv", "-o", tmp_path / "m", *PARAM_ARGS)
    assert "'a'" in err and "SimpleImputer" in err
    assert "Invalid parameter 'foo'" in error(cli, "fit", data, "-o", tmp_path / "m",
                                              "--param", "foo=1")
    joblib.dump({"a": 1}, tmp_path / "dict.model")
    assert "not an sklfm model" in error(cli, "sample", tmp_path / "dict.model",
                                                       "-n", 1)
    assert "needs a detector" in error(cli, "outliers", model, data)
    assert "needs a LocalFlowMatching model" in error(cli, "sample", path / "detector.model",
                                                      "-n", 2)
    assert "n_samples must be a positive integer" in error(cli, "sample", model, "-n", 0)
    assert not (tmp_path / "m").exists()


def test_bad_parquet_file(cli, work, tmp_path):
    pytest.importorskip("pyarrow")
    fake = tmp_path / "table.parquet"
    fake.write_text("a,b\n1,2\n")
    assert "as Parquet" in error(cli, "score", work["path"] / "lfm.model", fake)


def test_malformed_param_is_a_usage_error(cli, work, tmp_path):
    status, _, err = cli("fit", work["path"] / "train.csv", "-o", tmp_path / "m",
                         "--param", "max_iter")
    assert status == 2 and "expected NAME=VALUE" in err
