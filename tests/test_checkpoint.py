"""Resumable training (checkpoint_dir), non-finite losses, and interrupted fits."""

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from sklearn.exceptions import NotFittedError

import sklfm._checkpoint as checkpoint_module
import sklfm.core.block as block_module
from sklfm import LocalFlowMatching, LocalFlowMatchingOutlierDetector
from sklfm.core import TrainingDivergedError
from sklfm.datasets import make_rings

# Two OU blocks and the free block; early stopping stops some blocks before max_iter.
PARAMS = dict(
    hidden_layer_sizes=(16,),
    step_sizes=(0.2, 0.3),
    max_iter=400,
    batch_size=64,
    ode_steps=2,
    n_iter_no_change=3,
    tol=0.02,
    device="cpu",
    random_state=0,
)


@pytest.fixture(scope="module")
def X():
    return make_rings(400, random_state=0)


@pytest.fixture(scope="module")
def reference(X):
    return LocalFlowMatching(**PARAMS).fit(X)


@pytest.fixture
def every_check(monkeypatch):
    # Write at every check (every 50 steps), not at most every 10 s.
    monkeypatch.setattr(checkpoint_module, "CHECKPOINT_SECONDS", 0.0)


def _assert_same_model(a, b, X):
    assert_array_equal(a.score_samples(X), b.score_samples(X))
    assert_array_equal(a.sample(5, random_state=0), b.sample(5, random_state=0))
    assert a.n_iter_per_block_ == b.n_iter_per_block_
    for name in ("loss_curve_", "validation_scores_"):
        for x, y in zip(getattr(a, name), getattr(b, name)):
            assert_array_equal(x, y, err_msg=name)


class _StepCounter:
    """Counts training steps; raises `error` at step `at` (counting from 1)."""

    def __init__(self, monkeypatch, at=None, error=KeyboardInterrupt):
        self.calls, self.at, self.error = 0, at, error
        original = block_module._Run.train_step

        def step(run):
            self.calls += 1
            if self.calls == self.at:
                raise self.error
            original(run)

        monkeypatch.setattr(block_module._Run, "train_step", step)


def _stored(directory):
    return torch.load(
        os.path.join(directory, checkpoint_module.FILE_NAME), map_location="cpu", weights_only=True
    )


def test_checkpointing_does_not_change_the_model(X, reference, tmp_path, every_check):
    model = LocalFlowMatching(**PARAMS, checkpoint_dir=tmp_path).fit(X)
    _assert_same_model(model, reference, X)
    assert not list(tmp_path.iterdir())  # removed when the fit completes
    # Early stopping ended some block before max_iter: its state is part of what resumes.
    assert min(reference.n_iter_per_block_) < PARAMS["max_iter"]


def test_interrupted_fit_resumes_to_the_same_model(X, reference, tmp_path, monkeypatch, every_check):
    first_block = reference.n_iter_per_block_[0]
    interrupt_at = first_block + 120  # in block 2, after its checks at steps 50 and 100
    counter = _StepCounter(monkeypatch, at=interrupt_at)
    model = LocalFlowMatching(**PARAMS, checkpoint_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X)
    # Interrupted: the estimator is as before the call (unfitted here), never half-built.
    with pytest.raises(NotFittedError):
        model.score_samples(X)
    stored = _stored(tmp_path)
    assert len(stored["progress"]["blocks"]) == 1 and stored["progress"]["current"]["step"] == 100

    counter.calls, counter.at = 0, None
    model.fit(X)
    _assert_same_model(model, reference, X)
    # It resumed at step 100 of block 2: at most one check interval was redone.
    assert counter.calls == sum(reference.n_iter_per_block_) - first_block - 100
    assert not list(tmp_path.iterdir())


def test_fit_resumes_after_the_auto_schedule_dropped_a_block(tmp_path, monkeypatch, every_check):
    X = np.random.RandomState(0).normal(size=(400, 2))
    params = {**PARAMS, "step_sizes": "auto"}
    counter = _StepCounter(monkeypatch)
    reference = LocalFlowMatching(**params).fit(X)
    # On Gaussian rows the first OU block does not raise the held-out likelihood:
    # it was trained, then dropped, and the chain closed with the free block.
    assert reference.step_sizes_ == () and len(reference.probe_scores_) == 1
    dropped = counter.calls - sum(reference.n_iter_per_block_)
    # n_iter_ counts the dropped block's steps.
    assert dropped > 0 and reference.n_iter_ == counter.calls
    counter.calls, counter.at = 0, dropped + 120
    with pytest.raises(KeyboardInterrupt):
        LocalFlowMatching(**params, checkpoint_dir=tmp_path).fit(X)
    stored = _stored(tmp_path)["progress"]
    assert stored["dropped"]["n_iter"] == dropped and stored["blocks"] == []
    assert stored["current"]["step"] == 100
    counter.calls, counter.at = 0, None
    model = LocalFlowMatching(**params, checkpoint_dir=tmp_path).fit(X)
    _assert_same_model(model, reference, X)
    assert model.n_iter_ == reference.n_iter_
    assert counter.calls == sum(reference.n_iter_per_block_) - 100


def test_interrupted_refit_keeps_the_previous_model(X, reference, monkeypatch):
    model = pickle.loads(pickle.dumps(reference))
    _StepCounter(monkeypatch, at=30)
    with pytest.raises(KeyboardInterrupt):
        model.set_params(random_state=1).fit(X)
    model.set_params(random_state=0)
    _assert_same_model(model, reference, X)


def test_block_boundary_checkpoint_only_when_checks_are_throttled(X, reference, tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint_module, "CHECKPOINT_SECONDS", float("inf"))
    _StepCounter(monkeypatch, at=reference.n_iter_per_block_[0] + 120)
    with pytest.raises(KeyboardInterrupt):
        LocalFlowMatching(**PARAMS, checkpoint_dir=tmp_path).fit(X)
    stored = _stored(tmp_path)
    assert len(stored["progress"]["blocks"]) == 1 and stored["progress"]["current"] is None


def _interrupted_checkpoint(X, directory, monkeypatch, params=PARAMS):
    counter = _StepCounter(monkeypatch, at=150)
    with pytest.raises(KeyboardInterrupt):
        LocalFlowMatching(**params, checkpoint_dir=directory).fit(X)
    counter.at = None
    return counter


def test_checkpoint_of_another_fit_is_not_used(X, tmp_path, monkeypatch, every_check):
    _interrupted_checkpoint(X, tmp_path, monkeypatch)
    other = X[::-1] * 2.0
    with pytest.warns(UserWarning, match="is from another fit"):
        model = LocalFlowMatching(**PARAMS, checkpoint_dir=tmp_path).fit(other)
    _assert_same_model(model, LocalFlowMatching(**PARAMS).fit(other), other)
    # Other parameters count as another fit too.
    _interrupted_checkpoint(X, tmp_path, monkeypatch)
    with pytest.warns(UserWarning, match="is from another fit"):
        LocalFlowMatching(**{**PARAMS, "max_iter": 60}, checkpoint_dir=tmp_path).fit(X)


def test_unreadable_or_hostile_checkpoint_is_ignored(X, reference, tmp_path):
    path = tmp_path / checkpoint_module.FILE_NAME
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').close()",))

    for content in (b"garbage", pickle.dumps(Payload())):
        path.write_bytes(content)
        with pytest.warns(UserWarning, match="Ignoring unreadable checkpoint"):
            model = LocalFlowMatching(**PARAMS, checkpoint_dir=tmp_path).fit(X)
        _assert_same_model(model, reference, X)
        assert not marker.exists()


def test_unseeded_fit_resumes_with_its_stored_seed(X, tmp_path, monkeypatch, every_check):
    params = {**PARAMS, "random_state": None}
    _interrupted_checkpoint(X, tmp_path, monkeypatch, params)
    seed = _stored(tmp_path)["seed"]
    resumed = LocalFlowMatching(**params, checkpoint_dir=tmp_path).fit(X)
    _assert_same_model(resumed, LocalFlowMatching(**{**PARAMS, "random_state": seed}).fit(X), X)


def test_detector_and_warm_start_resume(X, tmp_path, monkeypatch, every_check):
    detector_params = {**PARAMS, "max_iter": 200}
    reference = LocalFlowMatchingOutlierDetector(**detector_params).fit(X)
    counter = _StepCounter(monkeypatch, at=260)
    with pytest.raises(KeyboardInterrupt):
        LocalFlowMatchingOutlierDetector(**detector_params, checkpoint_dir=tmp_path).fit(X)
    counter.at = None
    resumed = LocalFlowMatchingOutlierDetector(**detector_params, checkpoint_dir=tmp_path).fit(X)
    assert_array_equal(resumed.score_samples(X), reference.score_samples(X))
    assert resumed.offset_ == reference.offset_

    # warm_start: a third OU block on a fitted model, interrupted and resumed.
    base = LocalFlowMatching(**PARAMS).fit(X)
    warm = dict(warm_start=True, step_sizes=(0.2, 0.3, 0.4))
    expected = pickle.loads(pickle.dumps(base)).set_params(**warm).fit(X)
    model = pickle.loads(pickle.dumps(base)).set_params(**warm, checkpoint_dir=tmp_path)
    counter.calls, counter.at = 0, 120
    with pytest.raises(KeyboardInterrupt):
        model.fit(X)
    counter.at = None
    _assert_same_model(model.fit(X), expected, X)


# --- a real process, killed ---------------------------------------------------------------

CHILD = """
import json, logging, sys
import numpy as np, torch
torch.set_num_threads(1)
logging.basicConfig(level=logging.INFO, format="%(message)s")
import sklfm._checkpoint
sklfm._checkpoint.CHECKPOINT_SECONDS = 0.0
from sklfm import LocalFlowMatching
from sklfm.datasets import make_rings
params = json.loads(sys.argv[1])
params["step_sizes"] = tuple(params["step_sizes"])
X = make_rings(400, random_state=0)
model = LocalFlowMatching(**params, checkpoint_dir=sys.argv[2]).fit(X)
np.save(sys.argv[3], model.score_samples(X))
"""


def test_fit_killed_with_sigkill_resumes(X, reference, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    directory, out = tmp_path / "ckpt", tmp_path / "scores.npy"
    params = {**PARAMS, "max_iter": 300, "n_iter_no_change": 1000}
    command = [sys.executable, str(script), json.dumps(params), str(directory), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            if (directory / checkpoint_module.FILE_NAME).exists():
                current = _stored(directory)["progress"]["current"]
                if current is not None and current["step"] >= 100:
                    break  # mid-block, past a few checks
            time.sleep(0.05)
        else:
            pytest.fail(f"no mid-block checkpoint appeared: {child.communicate()[1][-2000:]}")
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL and not out.exists()
    stored = _stored(directory)["progress"]
    # On a loaded machine the child may finish its block before the kill lands: the
    # last checkpoint is then a block boundary, with no block in progress.
    current = stored["current"]
    blocks_done, step = len(stored["blocks"]), current["step"] if current else 0

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    match = re.search(r"Resuming from .*: (\d+) blocks done, step (\d+) of the next", resumed.stderr)
    assert match and (int(match[1]), int(match[2])) == (blocks_done, step), resumed.stderr[-2000:]
    expected = LocalFlowMatching(**{**params, "step_sizes": tuple(params["step_sizes"])}).fit(X)
    assert_array_equal(np.load(out), expected.score_samples(X))
    assert not list(directory.iterdir())


# --- non-finite losses ---------------------------------------------------------------------


def _poison_loss(monkeypatch, calls):
    """Make the training loss NaN at the given (1-based) loss evaluations."""
    count = {"n": 0}
    original = block_module._BlockLoss.__call__

    def loss(self, net, x0, noise, t, *n_rows):
        value = original(self, net, x0, noise, t, *n_rows)
        if net.training:
            count["n"] += 1
            if calls(count["n"]):
                return value * float("nan")
        return value

    monkeypatch.setattr(block_module._BlockLoss, "__call__", loss)


def test_transient_non_finite_loss_backs_off(X, monkeypatch):
    _poison_loss(monkeypatch, lambda n: n == 470)
    with pytest.warns(RuntimeWarning, match=r"in block 2 \(OU h=0.3\) by step 100: training resumes from step 50"):
        model = LocalFlowMatching(**{**PARAMS, "early_stopping": False}).fit(X)
    assert all(np.isfinite(curve).all() for curve in model.loss_curve_)
    assert all(torch.isfinite(p).all() for p in model.chain_.parameters())
    assert np.isfinite(model.score_samples(X)).all()


def test_persistent_non_finite_loss_is_a_clear_error(X, reference, monkeypatch):
    model = pickle.loads(pickle.dumps(reference))
    _poison_loss(monkeypatch, lambda n: n > 420)
    with pytest.warns(RuntimeWarning, match="learning rate halved"):
        with pytest.raises(TrainingDivergedError, match=r"block 2 \(OU h=0.3\) diverged.*step"):
            model.set_params(early_stopping=False).fit(X)
    model.set_params(early_stopping=True)
    _assert_same_model(model, reference, X)  # the previous model is kept
