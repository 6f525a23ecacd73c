"""Data-parallel training over torch.distributed: 2 CPU processes (gloo) against one process."""

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sklfm import LocalFlowMatching, LocalFlowMatchingOutlierDetector
from sklfm.core import LocalRows
from sklfm.datasets import make_rings

from . import _distributed_worker as worker

WORLD_SIZE = 2
N_ROWS = 1200
NET = dict(hidden_layer_sizes=(16, 16), batch_size=128, ode_steps=4, device="cpu", random_state=0)
CONFIGS = {
    # Validation split, early stopping and the data-driven schedule.
    "auto": dict(NET, step_sizes="auto", max_iter=300, n_iter_no_change=2, tol=0.05),
    # Fixed schedule, every step run; the probe rows come from the training rows.
    "fixed": dict(NET, step_sizes=(0.2, 0.3), max_iter=150, early_stopping=False),
}
TIMEOUT_S = 240


@pytest.fixture(scope="module")
def data():
    X = make_rings(N_ROWS + 300, random_state=0)
    return X[:N_ROWS], X[N_ROWS:]


@pytest.fixture(scope="module")
def two_ranks(data, tmp_path_factory):
    """What each of 2 gloo ranks fitted on its shard (rank 0: 60 % of the rows)."""
    X, X_test = data
    tmp = tmp_path_factory.mktemp("distributed")
    bounds = worker.shard_bounds(len(X), WORLD_SIZE, 0.6)
    args = (WORLD_SIZE, str(tmp / "init"), str(tmp), X, X_test, bounds, CONFIGS)
    context = mp.spawn(worker.run, args=args, nprocs=WORLD_SIZE, join=False)
    deadline = time.monotonic() + TIMEOUT_S
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the {WORLD_SIZE} ranks did not finish in {TIMEOUT_S} s")
    results = []
    for rank in range(WORLD_SIZE):
        with open(tmp / f"rank{rank}.pkl", "rb") as f:
            results.append(pickle.load(f))
    return results


@pytest.fixture(scope="module")
def one_process(data):
    X, X_test = data
    return {
        name: worker.fitted_state(LocalFlowMatching(**params).fit(X), X_test)
        for name, params in CONFIGS.items()
    }


@pytest.mark.parametrize("name", list(CONFIGS))
def test_distributed_fit_matches_one_process(two_ranks, one_process, name):
    single, rank0 = one_process[name], two_ranks[0][name]
    # Global statistics and decisions: the same preprocessing, the same number
    # of blocks, the same early stops.
    np.testing.assert_allclose(rank0["mean"], single["mean"], rtol=1e-12)
    np.testing.assert_allclose(rank0["scale"], single["scale"], rtol=1e-12)
    assert rank0["step_sizes"] == single["step_sizes"]
    assert rank0["n_iter_per_block"] == single["n_iter_per_block"]
    np.testing.assert_allclose(rank0["probe_scores"], single["probe_scores"], rtol=1e-8)
    # Losses and weights follow the single process up to the float32 summation
    # order (measured: 5e-7 and 1e-7 at most after 300-450 steps).
    for ours, theirs in zip(rank0["loss_curve"], single["loss_curve"]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    for ours, theirs in zip(rank0["weights"], single["weights"]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    # The fitted density on held-out rows (measured: 3e-8 nats at most).
    np.testing.assert_allclose(rank0["score"], single["score"], rtol=0, atol=1e-5)


def test_distributed_ranks_end_with_the_same_model(two_ranks):
    for name in CONFIGS:
        rank0, rank1 = two_ranks[0][name], two_ranks[1][name]
        for a, b in zip(rank0["weights"], rank1["weights"]):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(rank0["score"], rank1["score"])
        for a, b in zip(rank0["loss_curve"], rank1["loss_curve"]):
            np.testing.assert_array_equal(a, b)


def test_distributed_bad_shard_raises_on_every_rank(two_ranks):
    rank0, rank1 = (results["errors"] for results in two_ranks)
    # Rank 1's rows hold a NaN: it raises scikit-learn's error, rank 0 names rank 1.
    assert "Input X contains NaN" in rank1["nan"]
    assert rank0["nan"].startswith("Rank 1 could not use its rows: Input X contains NaN")
    # The ranks' rows differ in their columns.
    for errors in (rank0, rank1):
        assert errors["columns"] == (
            "Every rank must pass rows with the same columns; got rank 0: 2 columns, "
            "rank 1: 1 columns."
        )
        assert "trains on one process" in errors["detector"]
        assert "checkpoint_dir is not supported in data-parallel fits" in errors["checkpoint"]
        assert "Typed tables" in errors["typed"]


def test_distributed_true_without_process_group_raises():
    assert not dist.is_initialized()
    X = make_rings(100, random_state=0)
    with pytest.raises(ValueError, match="needs an initialised torch.distributed process group"):
        LocalFlowMatching(distributed=True, max_iter=5).fit(X)
    # "auto" without a process group trains on the rows given, as False does.
    auto = LocalFlowMatching(**dict(CONFIGS["fixed"], max_iter=5)).fit(X)
    off = LocalFlowMatching(**dict(CONFIGS["fixed"], max_iter=5), distributed=False).fit(X)
    np.testing.assert_array_equal(auto.score_samples(X), off.score_samples(X))
    assert LocalFlowMatchingOutlierDetector().get_params()["distributed"] is False


def test_distributed_local_rows_reorder_and_take():
    rows = LocalRows(5)
    order = np.array([3, 0, 4])
    local, layout = rows.reordered(order)
    np.testing.assert_array_equal(local, order)
    assert layout.n_rows == layout.n_local == 3
    data = torch.arange(10.0).reshape(5, 2)
    np.testing.assert_array_equal(rows.take(data, torch.tensor([4, 1])), data[[4, 1]])


# Twice in about 20 runs a rank aborted at interpreter exit, after its work was done
# ("terminate called without an active exception", a C++ thread torn down while
# joinable): a torch/gloo teardown problem not yet pinned down. CI must not be
# flaky, so this test runs when asked; the spawn-based tests above are CI's
# data-parallel tests.
@pytest.mark.skipif(
    os.environ.get("SKLFM_TEST_TORCHRUN") != "1",
    reason="set SKLFM_TEST_TORCHRUN=1 (rare teardown abort under torchrun, see comment)",
)
def test_distributed_torchrun_example(tmp_path):
    """docs/examples/torchrun_fit.py under torchrun, 2 CPU processes on this machine."""
    root = Path(__file__).resolve().parents[1]
    output = tmp_path / "model.joblib"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
        str(root / "docs" / "examples" / "torchrun_fit.py"),
        "--rows", "1000", "--max-iter", "20", "--output", str(output),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 processes, 500 rows on rank 0" in done.stdout
    model = joblib.load(output)
    assert model.n_iter_per_block_[0] == 20
    assert np.isfinite(model.score_samples(make_rings(50, random_state=1))).all()
