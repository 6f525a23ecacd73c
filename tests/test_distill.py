"""Per-block distillation: students that sample like their teacher, and leave the exact paths alone."""

import copy
import io
import logging

import joblib
import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from sklearn.exceptions import NotFittedError

import sklfm
from sklfm import LocalFlowMatching
from sklfm.core import SolverSettings
from sklfm.core.distill import StudentChain, student_path, teacher_path
from sklfm.datasets import make_pinwheel

from ._helpers import TINY, energy_distance
from .test_persistence import _edit_meta, _model_file

# About 2 s to fit and 3 s to distil on one core.
TEACHER = dict(
    step_sizes=(0.2,),
    hidden_layer_sizes=(32, 32),
    max_iter=300,
    batch_size=256,
    device="cpu",
    random_state=0,
)
STUDENT = dict(max_iter=200, random_state=0)


@pytest.fixture(scope="module")
def X():
    return make_pinwheel(4000, random_state=0)


@pytest.fixture(scope="module")
def teacher(X):
    return LocalFlowMatching(**TEACHER).fit(X)


@pytest.fixture(scope="module")
def distilled(teacher):
    return copy.deepcopy(teacher).distill(**STUDENT)


@pytest.fixture
def tiny(X):
    return LocalFlowMatching(**TINY).fit(X[:200])


def test_students_sample_like_the_teacher(teacher, distilled):
    n = 3000
    reference = teacher.sample(n, random_state=1)
    floor = energy_distance(reference, teacher.sample(n, random_state=2))  # sampling noise
    gap = energy_distance(distilled.sample(n, random_state=3), reference)
    # Baseline with teeth: the students before training (a copy of each
    # teacher's velocity, one Euler step per block) must fail the same bound.
    untrained = copy.deepcopy(teacher)
    untrained.students_ = StudentChain([copy.deepcopy(b.net) for b in teacher.chain_.blocks], 1)
    untrained_gap = energy_distance(untrained.sample(n, random_state=3), reference)
    print(f"energy distance: floor {floor:.4f} students {gap:.4f} untrained {untrained_gap:.4f}")
    assert gap < 2 * floor
    assert untrained_gap > 2 * floor


def test_distilled_attributes(teacher, distilled):
    assert teacher.students_ is None and teacher.distill_steps_ is None
    assert distilled.distill_steps_ == 1
    assert distilled.students_.n_steps == 1
    assert len(distilled.students_.nets) == len(distilled.chain_.blocks)
    assert [len(c) for c in distilled.distill_loss_curve_] == [STUDENT["max_iter"]] * 2


def test_sample_uses_the_students(teacher, distilled):
    exact = teacher.sample(50, random_state=4)
    fast = distilled.sample(50, random_state=4)
    assert not np.array_equal(exact, fast)
    # The same latent draws, carried by maps that approximate each other.
    assert np.abs(exact - fast).mean() < 0.1 * np.abs(exact).mean()


def test_exact_paths_unchanged_by_distill(teacher, distilled, X):
    rows = X[:100]
    assert_array_equal(distilled.score_samples(rows), teacher.score_samples(rows))
    Z = teacher.transform(rows)
    assert_array_equal(distilled.transform(rows), Z)
    assert_array_equal(distilled.inverse_transform(Z), teacher.inverse_transform(Z))


def test_two_step_students(tiny):
    tiny.distill(n_steps=2, max_iter=3)
    assert tiny.distill_steps_ == 2 and tiny.students_.n_steps == 2
    assert [len(c) for c in tiny.distill_loss_curve_] == [3, 3]
    assert tiny.sample(7, random_state=0).shape == (7, 2)


def test_distill_is_reproducible(X):
    a = LocalFlowMatching(**TINY).fit(X[:200]).distill(max_iter=5, random_state=3)
    b = LocalFlowMatching(**TINY).fit(X[:200]).distill(max_iter=5, random_state=3)
    c = LocalFlowMatching(**TINY).fit(X[:200]).distill(max_iter=5, random_state=4)
    assert_array_equal(a.sample(20, random_state=0), b.sample(20, random_state=0))
    assert not np.array_equal(a.sample(20, random_state=0), c.sample(20, random_state=0))


def test_refit_drops_the_students(tiny, X):
    tiny.distill(max_iter=3)
    tiny.fit(X[:300])
    assert tiny.students_ is None and tiny.distill_steps_ is None
    Z = np.random.RandomState(0).standard_normal((10, 2))
    assert_array_equal(tiny.sample(10, random_state=0), tiny.inverse_transform(Z))


def test_warm_start_adding_no_block_keeps_the_students(X):
    model = LocalFlowMatching(**dict(TINY, warm_start=True)).fit(X[:200]).distill(max_iter=3)
    students = model.students_
    model.fit(X[:200])  # the same step sizes: nothing to add
    assert model.students_ is students and model.distill_steps_ == 1
    model.set_params(step_sizes=(0.2, 0.3)).fit(X[:200])
    assert model.students_ is None


@pytest.mark.parametrize("how", ["joblib", "model file"])
def test_distilled_model_round_trip(distilled, tmp_path, how):
    path = tmp_path / "model"
    if how == "joblib":
        joblib.dump(distilled, path)
        loaded = joblib.load(path)
    else:
        distilled.save(path)
        loaded = sklfm.load(path)
    assert loaded.distill_steps_ == 1 and loaded.students_.n_steps == 1
    assert_array_equal(loaded.sample(100, random_state=5), distilled.sample(100, random_state=5))


@pytest.mark.parametrize("n_steps", [0, -1, 1.5, "1"])
def test_model_file_with_bad_student_steps_is_refused(distilled, n_steps):
    def edit(meta):
        meta["attributes"]["items"]["students_"]["n_steps"] = n_steps

    data = _edit_meta(_model_file(distilled), edit)
    with pytest.raises(ValueError, match="n_steps|expected int"):
        sklfm.load(io.BytesIO(data))


def test_unfitted_raises_not_fitted():
    with pytest.raises(NotFittedError, match="not fitted yet"):
        LocalFlowMatching().distill()


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("n_steps", 0, "'n_steps' parameter of distill must be an int in the range"),
        ("n_steps", 1.5, "'n_steps' parameter of distill must be an int"),
        ("max_iter", 0, "'max_iter' parameter of distill must be an int in the range"),
        ("batch_size", -1, "'batch_size' parameter of distill must be an int in the range"),
        ("learning_rate", 0.0, "'learning_rate' parameter of distill must be a float in the range"),
        ("learning_rate", "fast", "'learning_rate' parameter of distill must be a float"),
        ("random_state", "seed", "'random_state' parameter of distill must be"),
    ],
)
def test_bad_options_raise_and_leave_the_model_unchanged(tiny, option, value, message):
    tiny.distill(max_iter=2)
    before = dict(tiny.__dict__)
    sample = tiny.sample(5, random_state=0)
    with pytest.raises(ValueError, match=message):
        tiny.distill(**{option: value})
    assert tiny.__dict__.keys() == before.keys()
    assert all(tiny.__dict__[k] is v for k, v in before.items())
    assert_array_equal(tiny.sample(5, random_state=0), sample)


def test_verbose_logs_one_line_per_student(X, caplog):
    model = LocalFlowMatching(**dict(TINY, verbose=1)).fit(X[:200])
    with caplog.at_level(logging.INFO, logger="sklfm"):
        caplog.clear()
        model.distill(max_iter=2)
    assert [r.message.split(":")[0] for r in caplog.records] == [
        "student of block 2",
        "student of block 1",
    ]


# --- the core ---------------------------------------------------------------------


def test_one_step_teacher_path_is_the_block_pull(teacher):
    block = teacher.chain_.blocks[0]
    solver = SolverSettings(method="rk4", n_steps=4)
    z = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    path = teacher_path(block, z, 1, solver)
    assert path.shape == (1, 64, 2)
    torch.testing.assert_close(path[0], block.pull(z, solver), rtol=0, atol=0)
    # Two student steps: the solve is cut at t = 1/2, its end point unchanged.
    two = teacher_path(block, z, 2, SolverSettings(method="rk4", n_steps=4))
    torch.testing.assert_close(two[-1], path[0], rtol=1e-6, atol=1e-6)


def test_student_step_is_an_euler_step(teacher):
    net = teacher.chain_.blocks[0].net
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    (one,) = student_path(net, x, 1)
    with torch.no_grad():
        torch.testing.assert_close(one, x - net(torch.ones(1, 1), x))
        first, second = student_path(net, x, 2)
        torch.testing.assert_close(second, first - 0.5 * net(torch.full((1, 1), 0.5), first))
