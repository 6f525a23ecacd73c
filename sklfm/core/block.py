"""One LFM block: a velocity network, its OU step size, and its training loop."""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from . import ode
from .network import VelocityMLP
from .paths import INTERPOLANTS, block_target


@dataclass(frozen=True)
class TrainSettings:
    """How one block is trained."""

    max_iter: int
    batch_size: int
    learning_rate: float
    interpolant: str = "trigonometric"


@dataclass(frozen=True)
class SolverSettings:
    """How a block's ODE is solved: fixed-step method and steps per block."""

    method: str = "rk4"
    n_steps: int = 8


class Block(nn.Module):
    """A sub-flow from t = 0 (data side) to t = 1 (noise side).

    `step_size` is the OU step h of the block's target, or None for the free
    block whose target is N(0, I) with independent pairs.
    """

    def __init__(self, net, step_size):
        super().__init__()
        self.net = net
        self.step_size = None if step_size is None else float(step_size)

    @classmethod
    def new(cls, n_features, hidden_layer_sizes, activation, step_size, generator):
        """A block with a freshly initialised VelocityMLP (weights drawn from `generator`)."""
        return cls(VelocityMLP(n_features, hidden_layer_sizes, activation, generator), step_size)

    def frozen(self, dtype, device=None):
        """The block's velocity at its current weights, cast to `dtype` once (see VelocityMLP)."""
        return self.net.frozen(dtype, device)

    # Each solve below takes an optional `net` from `self.frozen(...)`, so that a
    # caller solving many chunks casts the weights once; without it one is made.

    def push(self, x, solver, net=None):
        """Solve the block's ODE from t = 0 to t = 1: data side to noise side."""
        net = self.frozen(x.dtype, x.device) if net is None else net
        return ode.flow(net, x, 0.0, 1.0, solver.n_steps, solver.method)

    def pull(self, z, solver, net=None):
        """Solve the block's ODE from t = 1 to t = 0: noise side to data side."""
        net = self.frozen(z.dtype, z.device) if net is None else net
        return ode.flow(net, z, 1.0, 0.0, solver.n_steps, solver.method)

    def push_with_logdet(self, x, solver, net=None):
        """`push`, and the log-determinant of its Jacobian at each row (exact trace)."""
        net = self.frozen(x.dtype, x.device) if net is None else net
        return ode.flow_with_logdet(
            net.velocity_and_divergence, x, 0.0, 1.0, solver.n_steps, solver.method
        )


def train_block(block, data, settings, generator):
    """Fit the block's velocity to its interpolant; return the per-step losses.

    Each step draws a minibatch of `data` (the block's data side), fresh noise,
    and one time per pair. Losses stay on the device until the end so that the
    loop never waits for the host.
    """
    interpolate = INTERPOLANTS[settings.interpolant]
    n_rows, n_features = data.shape
    batch = min(settings.batch_size, n_rows)
    device, dtype = data.device, data.dtype
    # foreach: the multi-tensor Adam, bit-for-bit the same updates as the per-tensor
    # default on the CPU and ~15 % faster per step there (benchmarks/speed.py).
    optimizer = torch.optim.Adam(block.net.parameters(), lr=settings.learning_rate, foreach=True)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=settings.max_iter, eta_min=0.01 * settings.learning_rate
    )
    losses = torch.empty(settings.max_iter, device=device)
    block.train()
    for step in range(settings.max_iter):
        idx = torch.randint(n_rows, (batch,), generator=generator, device=device)
        x0 = data.index_select(0, idx)  # same rows as data[idx], much faster on CPU
        noise = torch.randn(batch, n_features, generator=generator, device=device, dtype=dtype)
        t = torch.rand(batch, 1, generator=generator, device=device, dtype=dtype)
        xt, target = interpolate(x0, block_target(x0, noise, block.step_size), t)
        loss = F.mse_loss(block.net(t, xt), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses[step] = loss.detach()
    block.eval()
    return losses.cpu().numpy()
