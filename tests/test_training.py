"""Training control: early stopping, the data-driven schedule, the budget, warm start, progress."""

import dataclasses
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal

from sklfm import LocalFlowMatching
from sklfm._base import auto_max_iter
from sklfm.core import Block, TrainSettings, train_block
from sklfm.core.block import _BlockLoss, _draw_noise_and_times
from sklfm.datasets import make_rings

from ._helpers import SMALL


def _weights(block):
    return [p.detach().clone() for p in block.net.parameters()]


def _same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


# --- early stopping ----------------------------------------------------------------


def test_early_stopping_stops_on_an_easy_problem():
    # A Gaussian table is learnt long before 3000 steps per block.
    X = np.random.RandomState(0).normal(size=(2000, 2))
    model = LocalFlowMatching(
        **dict(SMALL, step_sizes=(0.2,), max_iter=3000, n_iter_no_change=3, tol=0.01)
    ).fit(X)
    assert all(n < 3000 for n in model.n_iter_per_block_)
    assert model.n_iter_ == sum(model.n_iter_per_block_)
    for curve, scores, n in zip(
        model.loss_curve_, model.validation_scores_, model.n_iter_per_block_
    ):
        assert len(curve) == n
        assert len(scores) == -(-n // 50)  # one check every 50 steps
        assert np.all(scores <= 0)  # negated mean squared errors


def test_without_early_stopping_every_step_runs():
    X = np.random.RandomState(0).normal(size=(300, 2))
    model = LocalFlowMatching(
        **dict(SMALL, step_sizes=(0.2,), max_iter=120, early_stopping=False)
    ).fit(X)
    assert model.n_iter_per_block_ == [120, 120]
    assert all(len(s) == 0 for s in model.validation_scores_)


def test_early_stopping_keeps_the_best_weights():
    # A learning rate far too high makes the last checks worse than the best one;
    # the block must end with the weights of its best check.
    rng = np.random.RandomState(0)
    data = torch.tensor(rng.normal(size=(1000, 2)), dtype=torch.float32)
    validation = torch.tensor(rng.normal(size=(200, 2)), dtype=torch.float32)
    block = Block.new(2, (32, 32), "softplus", None, torch.Generator().manual_seed(0))
    settings = TrainSettings(400, 256, 0.2, n_iter_no_change=100)
    generator = torch.Generator().manual_seed(1)
    # train_block draws the validation noise and times first, from `generator`.
    draws = _draw_noise_and_times(200, 2, torch.Generator().manual_seed(1), torch.float32)
    history = train_block(block, data, settings, generator, validation)
    assert history.validation_losses[-1] > history.validation_losses.min()
    with torch.no_grad():
        kept = _BlockLoss(block, "trigonometric")(block.net, validation, *draws).item()
    assert kept == pytest.approx(history.validation_losses.min(), rel=1e-6)


def test_early_stopping_cools_down_before_it_stops():
    rng = np.random.RandomState(0)
    data = torch.tensor(rng.normal(size=(500, 2)), dtype=torch.float32)
    validation = torch.tensor(rng.normal(size=(100, 2)), dtype=torch.float32)
    # tol=0.5: only the first check counts as an improvement, so the plateau is
    # reached at the third check (step 150) whatever the weights do.
    settings = TrainSettings(2000, 64, 0.01, n_iter_no_change=2, tol=0.5)
    steps = {}
    for cooldown, max_iter in ((0, 2000), (300, 2000), (300, 400)):
        block = Block.new(2, (8,), "softplus", None, torch.Generator().manual_seed(0))
        runs = dataclasses.replace(settings, cooldown=cooldown, max_iter=max_iter)
        history = train_block(block, data, runs, torch.Generator().manual_seed(1), validation)
        steps[cooldown, max_iter] = history.n_iter
    assert steps[0, 2000] == 150
    assert steps[300, 2000] == 150 + 300
    # A cool-down that would end after max_iter: the full schedule decays as soon.
    assert steps[300, 400] == 400


def test_early_stopping_needs_two_rows():
    with pytest.raises(ValueError, match="at least 2 rows"):
        LocalFlowMatching(validation_fraction=0.9, **SMALL).fit(np.eye(2))


# --- the data-driven schedule --------------------------------------------------------


def test_auto_schedule_gives_far_from_gaussian_data_more_blocks():
    # Undertrained blocks gain little, so the rings need a few hundred steps per block.
    params = dict(SMALL, step_sizes="auto", hidden_layer_sizes=(64, 64), max_iter=800)
    rings = LocalFlowMatching(**params).fit(make_rings(3000, random_state=0))
    gauss = LocalFlowMatching(**params).fit(np.random.RandomState(0).normal(size=(3000, 2)))
    # An OU block cannot bring Gaussian data closer to a Gaussian: the first one
    # is dropped, and the chain is global flow matching (the free block only).
    assert gauss.step_sizes_ == ()
    assert len(rings.step_sizes_) >= 2
    for model in (rings, gauss):
        n = len(model.step_sizes_)
        assert_allclose(model.step_sizes_, 0.15 * 1.3 ** np.arange(n))
        assert len(model.probe_scores_) == n + 1
        assert len(model.chain_.blocks) == n + 1
        assert len(model.n_iter_per_block_) == len(model.loss_curve_) == n + 1
    gains = np.diff(rings.probe_scores_)
    # Each kept block raised the held-out likelihood by min_gain; the one after did not.
    assert np.all(gains >= 0.05)
    # The probe is an exact likelihood: its first value is that of a Gaussian fit.
    assert gauss.probe_scores_[0] == pytest.approx(-0.5 * np.log(2 * np.pi * np.e), abs=0.05)


def test_explicit_step_sizes_record_no_probe():
    model = LocalFlowMatching(**dict(SMALL, step_sizes=(0.1, 0.2), max_iter=5)).fit(
        make_rings(200, random_state=0)
    )
    assert model.probe_scores_ == []
    assert model.step_sizes_ == (0.1, 0.2)


# --- the training budget -------------------------------------------------------------


def test_auto_budget_grows_with_rows_and_columns_and_is_capped():
    assert auto_max_iter(500, 2, 512)[0] < auto_max_iter(500, 20, 512)[0]
    assert auto_max_iter(5_000, 2, 512)[0] < auto_max_iter(50_000, 2, 512)[0]
    assert auto_max_iter(10**7, 2, 512) == (5_000, 12_500)
    assert auto_max_iter(100, 2, 512)[0] >= 1000
    # The free block, which carries the data all the way to N(0, I), gets more.
    ou, free = auto_max_iter(20_000, 5, 512)
    assert free == round(2.5 * ou)


def test_auto_budget_is_used_by_fit():
    X = np.random.RandomState(0).normal(size=(200, 3))
    params = dict(SMALL, hidden_layer_sizes=(4,), max_iter="auto", early_stopping=False)
    model = LocalFlowMatching(**dict(params, step_sizes=(0.2,))).fit(X)
    assert model.n_iter_per_block_ == list(auto_max_iter(200, 3, SMALL["batch_size"]))


# --- warm start ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted():
    X = make_rings(1000, random_state=0)
    model = LocalFlowMatching(**dict(SMALL, step_sizes=(0.2,), max_iter=60)).fit(X)
    return X, model


def test_warm_start_adds_blocks_without_retraining_old_ones(fitted):
    X, model = fitted
    old_first = _weights(model.chain_.blocks[0])
    old_free = _weights(model.chain_.blocks[1])
    old_curve = model.loss_curve_[0].copy()
    from sklearn.base import clone

    grown = clone(model).fit(X)  # same fit as `model`, to leave the fixture alone
    grown.set_params(warm_start=True, step_sizes=(0.2, 0.3)).fit(X)
    assert grown.step_sizes_ == (0.2, 0.3)
    assert len(grown.chain_.blocks) == 3
    assert _same_weights(_weights(grown.chain_.blocks[0]), old_first)
    assert not _same_weights(_weights(grown.chain_.blocks[2]), old_free)
    assert_array_equal(grown.loss_curve_[0], old_curve)
    assert len(grown.loss_curve_) == len(grown.n_iter_per_block_) == 3
    assert np.isfinite(grown.score_samples(X[:20])).all()


def test_warm_start_with_nothing_new_changes_nothing(fitted):
    X, model = fitted
    from sklearn.base import clone

    again = clone(model).fit(X)
    before = [_weights(b) for b in again.chain_.blocks]
    again.set_params(warm_start=True).fit(X)
    assert all(_same_weights(_weights(b), w) for b, w in zip(again.chain_.blocks, before))
    assert_array_equal(again.score_samples(X[:20]), model.score_samples(X[:20]))


def test_warm_start_rejects_a_schedule_that_drops_fitted_blocks(fitted):
    X, model = fitted
    from sklearn.base import clone

    again = clone(model).fit(X)
    expected = again.score_samples(X[:20])
    with pytest.raises(ValueError, match="must start with the fitted step_sizes_"):
        again.set_params(warm_start=True, step_sizes=(0.5, 0.3)).fit(X)
    assert again.step_sizes_ == (0.2,)
    assert_array_equal(again.score_samples(X[:20]), expected)


# --- progress ------------------------------------------------------------------------


def test_verbose_logs_progress_only_when_asked(caplog):
    X = make_rings(300, random_state=0)
    params = dict(SMALL, step_sizes=(0.2,), max_iter=100)
    with caplog.at_level(logging.DEBUG, logger="sklfm"):
        LocalFlowMatching(**params).fit(X)
    assert not caplog.records
    with caplog.at_level(logging.DEBUG, logger="sklfm"):
        LocalFlowMatching(**params, verbose=1).fit(X)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("block 1 (OU step h=0.2)") for m in messages)
    assert any("block 2 [" in m and "rows/s" in m and "validation loss" in m for m in messages)
    assert any(m.startswith("block 2 done") for m in messages)


def test_verbose_writes_to_stderr_without_logging_configured():
    code = (
        "import numpy as np\n"
        "from sklfm import LocalFlowMatching\n"
        "X = np.random.RandomState(0).normal(size=(100, 2))\n"
        "for v in (0, 1):\n"
        "    print('verbose', v, flush=True)\n"
        "    LocalFlowMatching(step_sizes=(), hidden_layer_sizes=(4,), max_iter=50,\n"
        "                      device='cpu', random_state=0, verbose=v).fit(X)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.split() == ["verbose", "0", "verbose", "1"]
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith("[sklfm] block 1") for line in lines)
    assert not logging.getLogger("sklfm").handlers  # nothing left behind in this process


def test_auto_interpolant_is_linear_for_ou_blocks_and_trigonometric_for_the_free_block():
    from sklfm.core.paths import interpolant_for, linear, trigonometric

    assert interpolant_for("auto", 0.2) is linear
    assert interpolant_for("auto", None) is trigonometric
    assert interpolant_for("trigonometric", 0.2) is trigonometric
