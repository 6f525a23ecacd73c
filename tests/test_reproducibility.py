"""An integer random_state gives identical CPU fits and never touches global RNGs."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal

from sklfm import LocalFlowMatching
from sklfm.datasets import make_pinwheel

from ._helpers import TINY

PARAMS = dict(TINY, hidden_layer_sizes=(16, 16), max_iter=30, step_sizes=(0.1, 0.2))


@pytest.fixture(scope="module")
def X():
    return make_pinwheel(500, random_state=0)


def _outputs(model, X):
    return dict(
        scores=model.score_samples(X),
        codes=model.transform(X),
        samples=model.sample(20),
        samples_seeded=model.sample(20, random_state=7),
        inverse=model.inverse_transform(np.ones((3, 2))),
        losses=np.concatenate(model.loss_curve_),
    )


def test_same_integer_seed_gives_identical_fits(X):
    a = _outputs(LocalFlowMatching(**PARAMS).fit(X), X)
    b = _outputs(LocalFlowMatching(**PARAMS).fit(X), X)
    for key in a:
        assert_array_equal(a[key], b[key], err_msg=key)


def test_a_callers_autocast_does_not_reach_training(X):
    # Training keeps its float32: a bfloat16 autocast around fit and distill changes nothing.
    plain = LocalFlowMatching(**PARAMS).fit(X).distill(max_iter=20, random_state=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = LocalFlowMatching(**PARAMS).fit(X).distill(max_iter=20, random_state=0)
    a, b = _outputs(plain, X), _outputs(autocast, X)
    for key in a:
        assert_array_equal(a[key], b[key], err_msg=key)


def test_refit_is_identical(X):
    model = LocalFlowMatching(**PARAMS)
    a = _outputs(model.fit(X), X)
    b = _outputs(model.fit(X), X)
    for key in a:
        assert_array_equal(a[key], b[key], err_msg=key)


def test_different_seeds_differ(X):
    a = LocalFlowMatching(**PARAMS).fit(X).score_samples(X)
    b = LocalFlowMatching(**{**PARAMS, "random_state": 1}).fit(X).score_samples(X)
    assert not np.allclose(a, b)


def test_randomstate_instance_is_accepted(X):
    a = LocalFlowMatching(**{**PARAMS, "random_state": np.random.RandomState(3)}).fit(X)
    b = LocalFlowMatching(**{**PARAMS, "random_state": np.random.RandomState(3)}).fit(X)
    assert_array_equal(a.score_samples(X), b.score_samples(X))


def test_sample_random_state_controls_the_draw(X):
    model = LocalFlowMatching(**PARAMS).fit(X)
    assert_array_equal(model.sample(10, random_state=1), model.sample(10, random_state=1))
    assert not np.array_equal(model.sample(10, random_state=1), model.sample(10, random_state=2))
    # Default: the estimator's own integer random_state.
    assert_array_equal(model.sample(10), model.sample(10, random_state=PARAMS["random_state"]))


def test_global_random_states_are_untouched(X):
    np.random.seed(123)
    torch.manual_seed(456)
    numpy_state = np.random.get_state()
    torch_state = torch.random.get_rng_state().clone()

    model = LocalFlowMatching(**PARAMS).fit(X)
    model.score_samples(X)
    model.score(X)
    model.sample(10)
    model.sample(10, random_state=3)
    model.inverse_transform(model.transform(X[:10]))

    after = np.random.get_state()
    assert after[0] == numpy_state[0]
    assert_array_equal(after[1], numpy_state[1])
    assert after[2:] == numpy_state[2:]
    assert torch.equal(torch.random.get_rng_state(), torch_state)
