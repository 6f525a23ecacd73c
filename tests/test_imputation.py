"""LocalFlowMatchingImputer: conditional draws, kept cells, errors; weighted block losses."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import NotFittedError

from sklfm import LocalFlowMatching, LocalFlowMatchingImputer
from sklfm.core import Block
from sklfm.core.block import _BlockLoss

from ._helpers import TINY

RHO = 0.8


def _gaussian(n_rows, seed=0):
    """Rows of a standard 2-D Gaussian with correlation RHO."""
    rng = np.random.RandomState(seed)
    x0 = rng.standard_normal(n_rows)
    return np.column_stack([x0, RHO * x0 + np.sqrt(1 - RHO**2) * rng.standard_normal(n_rows)])


def _tiny_imputer(**params):
    return LocalFlowMatchingImputer(LocalFlowMatching(**TINY), random_state=0, **params)


@pytest.fixture(scope="module")
def gaussian_imputer():
    X = _gaussian(2000)
    X[::10, 1] = np.nan  # the training rows have gaps of their own
    lfm = LocalFlowMatching(
        hidden_layer_sizes=(64, 64),
        step_sizes=(0.2,),
        max_iter=1500,
        batch_size=256,
        learning_rate=5e-3,
        device="cpu",
    )
    return LocalFlowMatchingImputer(lfm, n_imputations=5, n_masks=8, random_state=0).fit(X)


def test_draws_follow_the_true_conditional(gaussian_imputer):
    # x1 | x0 ~ N(RHO x0, 1 - RHO**2) (in the units of X, here standard).
    x0 = np.array([-1.5, 0.0, 1.5])
    queries = np.column_stack([x0, np.full(3, np.nan)])
    draws = gaussian_imputer.sample_imputations(queries, n_imputations=1000, random_state=0)
    assert draws.shape == (1000, 3, 2)
    np.testing.assert_allclose(draws[:, :, 1].mean(axis=0), RHO * x0, atol=0.15)
    np.testing.assert_allclose(draws[:, :, 1].std(axis=0), np.sqrt(1 - RHO**2), rtol=0.2)
    # transform's point estimate is the mean of n_imputations draws (seeded by random_state).
    np.testing.assert_array_equal(
        gaussian_imputer.transform(queries),
        gaussian_imputer.sample_imputations(queries, n_imputations=5, random_state=0).mean(axis=0),
    )


def test_observed_cells_are_kept_and_gaps_filled(gaussian_imputer):
    X = _gaussian(50, seed=1)
    missing = np.random.RandomState(1).uniform(size=X.shape) < 0.3
    missing[:, 0] &= ~missing[:, 1]  # rows with at least one observed cell...
    missing[0] = True  # ...and one with none: a draw from the model's marginal
    masked = np.where(missing, np.nan, X)
    imputed = gaussian_imputer.transform(masked)
    assert not np.isnan(imputed).any()
    np.testing.assert_array_equal(imputed[~missing], X[~missing])
    draws = gaussian_imputer.sample_imputations(masked, n_imputations=3)
    np.testing.assert_array_equal(draws[:, ~missing], np.broadcast_to(X[~missing], (3, (~missing).sum())))
    # Independent draws of the hidden cells.
    assert np.all(draws[0][missing] != draws[1][missing])


def test_complete_rows_come_back_unchanged(gaussian_imputer):
    X = _gaussian(20, seed=2)
    np.testing.assert_array_equal(gaussian_imputer.transform(X), X)


def test_dataframes_give_a_list_of_dataframes():
    X = _gaussian(100)
    X[::4, 0] = np.nan
    frame = pd.DataFrame(X, columns=["a", "b"], index=np.arange(100, 200))
    imputer = _tiny_imputer().fit(frame)
    draws = imputer.sample_imputations(frame, n_imputations=2)
    assert len(draws) == 2 and all(isinstance(d, pd.DataFrame) for d in draws)
    assert list(draws[0].columns) == ["a", "b"] and draws[0].index.equals(frame.index)
    assert not draws[0].isna().any().any()
    assert list(imputer.get_feature_names_out()) == ["a", "b"]


def test_integer_random_state_reproduces_fit_and_draws():
    X = _gaussian(200)
    X[::3, 1] = np.nan
    first, second = _tiny_imputer().fit(X), _tiny_imputer().fit(X)
    np.testing.assert_array_equal(first.transform(X), second.transform(X))
    np.testing.assert_array_equal(
        first.sample_imputations(X, 2, random_state=3), second.sample_imputations(X, 2, random_state=3)
    )
    assert not np.array_equal(
        first.sample_imputations(X, 1, random_state=3), first.sample_imputations(X, 1, random_state=4)
    )


def test_a_column_missing_everywhere_is_refused_and_leaves_the_model_unchanged():
    X = _gaussian(100)
    imputer = _tiny_imputer().fit(X)
    before = imputer.mean_.copy()
    X[:, 1] = np.nan
    with pytest.raises(ValueError, match=r"Columns \[1\] of X have no observed value"):
        imputer.fit(X)
    np.testing.assert_array_equal(imputer.mean_, before)


def test_errors():
    X = _gaussian(100)
    with pytest.raises(NotFittedError):
        _tiny_imputer().transform(X)
    imputer = _tiny_imputer().fit(X)
    with pytest.raises(ValueError, match="X has 3 features, but LocalFlowMatchingImputer is expecting 2"):
        imputer.transform(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="n_imputations must be a positive integer"):
        imputer.sample_imputations(X, n_imputations=0)
    with pytest.raises(ValueError, match="condition must be None"):
        LocalFlowMatchingImputer(LocalFlowMatching(condition="continuous")).fit(X)


def test_a_zero_weight_cell_adds_nothing_to_the_loss_or_its_gradient():
    generator = torch.Generator().manual_seed(0)
    block = Block.new(3, (16,), "softplus", 0.2, generator, n_conditions=2)
    loss = _BlockLoss(block, "trigonometric")
    x0, noise = torch.randn(8, 5, generator=generator), torch.randn(8, 3, generator=generator)
    t = torch.rand(8, 1, generator=generator)
    weights = torch.ones(8, 3)
    weights[2, 1] = 0.0
    bump = torch.zeros(8, 3)
    bump[2, 1] = 100.0  # a wild velocity in the zero-weight cell only

    def value_and_gradient(net):
        block.net.zero_grad()
        value = loss(net, x0, noise, t, weights=weights)
        value.backward()
        return value.item(), [p.grad.clone() for p in block.net.parameters()]

    plain, plain_grad = value_and_gradient(block.net)
    bumped, bumped_grad = value_and_gradient(lambda t, x: block.net(t, x) + bump)
    assert plain == bumped
    assert all(torch.equal(a, b) for a, b in zip(plain_grad, bumped_grad))
    # Unit weights give the unweighted loss.
    torch.testing.assert_close(
        loss(block.net, x0, noise, t, weights=torch.ones(8, 3)), loss(block.net, x0, noise, t)
    )


def test_huge_values_are_standardized_without_overflow():
    # Column moments of +-1.7e308 overflow np.nanmean / np.nanstd; the imputer's do not.
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 2))
    X[:, 0] *= 1e307
    X[::7, 1] = np.nan
    imputer = LocalFlowMatchingImputer(LocalFlowMatching(**TINY)).fit(X)
    assert np.isfinite(imputer.mean_).all() and np.isfinite(imputer.scale_).all()
    assert np.isfinite(imputer.transform(X)).all()
