"""Core-level checks: exact divergence, solver orders, chunking, the frozen evaluator."""

import math

import numpy as np
import pytest
import torch

import sklfm.core.chain as chain_module
from sklfm.core import ACTIVATIONS, SOLVERS, Block, FlowChain, SolverSettings, VelocityMLP
from sklfm.core import ode

DEPTHS = [(7,), (9, 5), (8, 6, 7), (5, 8, 6, 4), (6, 5, 7, 8, 3)]


def _autograd_trace(net, t, x):
    jac = torch.autograd.functional.jacobian(lambda z: net(t, z).sum(0), x)  # (d, rows, d)
    return torch.einsum("ibi->b", jac)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("hidden", DEPTHS, ids=lambda h: f"{len(h)}-hidden")
@pytest.mark.parametrize("n_features", [1, 3])
def test_divergence_is_the_jacobian_trace(activation, hidden, n_features):
    gen = torch.Generator().manual_seed(0)
    net = VelocityMLP(n_features, hidden, activation, gen)
    x = torch.randn(11, n_features, dtype=torch.float64, generator=gen)
    t = torch.full((1, 1), 0.37, dtype=torch.float64)
    velocity, divergence = net.velocity_and_divergence(t, x)
    torch.testing.assert_close(velocity, net(t, x).detach(), rtol=0, atol=1e-13)
    torch.testing.assert_close(divergence, _autograd_trace(net, t, x), rtol=0, atol=1e-12)


def test_divergence_in_float32_matches_float64():
    gen = torch.Generator().manual_seed(1)
    net = VelocityMLP(4, (16, 16, 16), "softplus", gen)
    x = torch.randn(9, 4, dtype=torch.float64, generator=gen)
    t = torch.full((1, 1), 0.5, dtype=torch.float64)
    _, div64 = net.velocity_and_divergence(t, x)
    _, div32 = net.velocity_and_divergence(t.float(), x.float())
    assert div32.dtype == torch.float32
    torch.testing.assert_close(div32.double(), div64, rtol=1e-4, atol=1e-4)


def test_frozen_evaluator_leaves_the_module_alone():
    net = VelocityMLP(3, (8, 8, 8), "silu", torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    keys = set(net.__dict__)
    frozen = net.frozen(torch.float64)
    x = torch.randn(5, 3, dtype=torch.float64)
    t = torch.zeros(1, 1, dtype=torch.float64)
    velocity, divergence = frozen.velocity_and_divergence(t, x)
    assert not velocity.requires_grad and not divergence.requires_grad
    torch.testing.assert_close(frozen(t, x), net(t, x).detach(), rtol=0, atol=0)
    assert set(net.__dict__) == keys
    assert all(p.dtype == torch.float32 for p in net.parameters())
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])


def _decay(t, state):
    # dx/dt = -(1 + t) x, dl/dt = -(1 + t): x(1) = x(0) exp(-1.5), l(1) = -1.5.
    x, _ = state
    rate = 1 + t
    return -rate * x, -rate.reshape(1).expand(x.shape[0])


@pytest.mark.parametrize("method, order", [("euler", 1), ("midpoint", 2), ("rk4", 4)])
def test_solver_order_of_convergence(method, order):
    assert method in SOLVERS
    x0 = torch.tensor([[1.0], [-2.0]], dtype=torch.float64)
    zero = torch.zeros(2, dtype=torch.float64)

    def error(n_steps):
        x1, l1 = ode.odeint(_decay, (x0, zero), 0.0, 1.0, n_steps, method)
        return max(float((x1 - x0 * math.exp(-1.5)).abs().max()), float((l1 + 1.5).abs().max()))

    observed = math.log2(error(8) / error(16))
    assert observed == pytest.approx(order, abs=0.25)


def test_logdet_converges_to_the_log_jacobian_of_the_flow_map():
    # The integrated divergence is the log |det| of the block's map, up to solver error.
    gen = torch.Generator().manual_seed(3)
    block = Block.new(2, (16, 16, 16), "softplus", 0.2, gen)
    x = torch.randn(4, 2, dtype=torch.float64, generator=gen)
    solver = SolverSettings("rk4", 16)
    _, logdet = block.push_with_logdet(x, solver)
    for row in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda z: block.push(z[None], solver)[0], x[row])
        assert float(logdet[row]) == pytest.approx(float(torch.linalg.slogdet(jac)[1]), abs=1e-6)


@pytest.fixture
def chain():
    gen = torch.Generator().manual_seed(2)
    return FlowChain([Block.new(3, (8, 8, 8), "softplus", h, gen) for h in (0.2, 0.3, None)])


def test_chunked_results_equal_unchunked(chain, monkeypatch):
    x = torch.randn(50, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    solver = SolverSettings("rk4", 3)
    whole = (chain.log_prob(x, solver), chain.push(x, solver), chain.pull(x, solver))
    monkeypatch.setattr(chain_module, "_TANGENT_BUDGET", 7 * 3 * 8)  # 7-row chunks
    assert chain._chunk_rows(3, x.device) == 7
    parts = (chain.log_prob(x, solver), chain.push(x, solver), chain.pull(x, solver))
    for a, b in zip(whole, parts):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_chain_log_prob_matches_block_by_block(chain):
    # The chain's shared frozen evaluators give what each block computes alone.
    x = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    solver = SolverSettings("midpoint", 4)
    z, logdet = x, torch.zeros(6, dtype=torch.float64)
    with torch.no_grad():
        for block in chain.blocks:
            z, block_logdet = block.push_with_logdet(z, solver)
            logdet = logdet + block_logdet
    expected = -0.5 * (z * z).sum(1) - 1.5 * math.log(2 * math.pi) + logdet
    torch.testing.assert_close(chain.log_prob(x, solver), expected, rtol=0, atol=1e-12)
    back = chain.pull(chain.push(x, solver), solver)
    assert np.abs((back - x).numpy()).max() < 1e-3


def test_cpu_chunks_are_cache_sized():
    # Default network at d = 10: 2**20 tangent elements, 819 rows per chunk on the CPU.
    big = FlowChain([Block.new(10, (128, 128, 128), "softplus", None, torch.Generator())])
    assert big._chunk_rows(10, torch.device("cpu")) == (1 << 20) // (10 * 128)
