"""One LFM block: a velocity network, its OU step size, and its training loop."""

from dataclasses import dataclass

import numpy as np

import torch
from torch import nn
from torch.nn import functional as F

from . import ode
from .network import VelocityMLP
from .paths import block_target, interpolant_for


@dataclass(frozen=True)
class TrainSettings:
    """How one block is trained.

    With `n_iter_no_change` set, the flow-matching loss on the validation rows
    is checked every `check_interval` steps; training stops once it has not
    improved by a fraction `tol` of the best loss for `n_iter_no_change`
    checks in a row, and the best weights are kept.
    """

    max_iter: int
    batch_size: int
    learning_rate: float
    interpolant: str = "trigonometric"
    check_interval: int = 50
    n_iter_no_change: int | None = None
    tol: float = 1e-3


@dataclass
class BlockHistory:
    """What training one block recorded."""

    losses: np.ndarray  # training loss per step
    validation_losses: np.ndarray  # validation loss per check (empty without validation)
    n_iter: int


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
        return cls(VelocityMLP(n_features, hidden_layer_sizes, activation, generator), step_size)

    def frozen(self, dtype, device=None):
        """The block's velocity at its current weights, cast to `dtype` once (see VelocityMLP)."""
        return self.net.frozen(dtype, device)

    # Each solve below takes an optional `net` from `self.frozen(...)`, so that a
    # caller solving many chunks casts the weights once; without it one is made.

    def push(self, x, solver, net=None):
        net = self.frozen(x.dtype, x.device) if net is None else net
        return ode.flow(net, x, 0.0, 1.0, solver.n_steps, solver.method)

    def pull(self, z, solver, net=None):
        net = self.frozen(z.dtype, z.device) if net is None else net
        return ode.flow(net, z, 1.0, 0.0, solver.n_steps, solver.method)

    def push_with_logdet(self, x, solver, net=None):
        net = self.frozen(x.dtype, x.device) if net is None else net
        return ode.flow_with_logdet(
            net.velocity_and_divergence, x, 0.0, 1.0, solver.n_steps, solver.method
        )


class _BlockLoss:
    """The block's flow-matching loss on given data-side rows, noise and times."""

    def __init__(self, block, interpolant):
        self.step_size = block.step_size
        self.interpolate = interpolant_for(interpolant, block.step_size)

    def __call__(self, net, x0, noise, t):
        xt, target = self.interpolate(x0, block_target(x0, noise, self.step_size), t)
        return F.mse_loss(net(t, xt), target)


def _draw_noise_and_times(n_rows, n_features, generator, dtype):
    device = generator.device
    noise = torch.randn(n_rows, n_features, generator=generator, device=device, dtype=dtype)
    t = torch.rand(n_rows, 1, generator=generator, device=device, dtype=dtype)
    return noise, t


def train_block(block, data, settings, generator, validation=None, on_check=None):
    """Fit the block's velocity to its interpolant; return a BlockHistory.

    Each step draws a minibatch of `data` (the block's data side), fresh noise,
    and one time per pair. Losses stay on the device between checks so that
    the loop waits for the host only every `check_interval` steps. The
    validation loss uses noise and times drawn once per block, so that checks
    compare weights, not draws. `on_check(step, train_loss, validation_loss)`
    is called at each check (validation_loss is None without validation rows).
    """
    block_loss = _BlockLoss(block, settings.interpolant)
    n_rows, n_features = data.shape
    batch = min(settings.batch_size, n_rows)
    dtype = data.dtype
    # foreach: the multi-tensor Adam, bit-for-bit the same updates as the per-tensor
    # default on the CPU and ~15 % faster per step there (benchmarks/speed.py).
    optimizer = torch.optim.Adam(block.net.parameters(), lr=settings.learning_rate, foreach=True)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=settings.max_iter, eta_min=0.01 * settings.learning_rate
    )
    if validation is not None:
        validation_draws = _draw_noise_and_times(len(validation), n_features, generator, dtype)
    stopper = _EarlyStopping(block.net, settings) if validation is not None else None
    losses = torch.empty(settings.max_iter, device=data.device)
    validation_losses = []
    block.train()
    step = 0
    while step < settings.max_iter:
        idx = torch.randint(n_rows, (batch,), generator=generator, device=data.device)
        x0 = data.index_select(0, idx)  # same rows as data[idx], much faster on CPU
        loss = block_loss(block.net, x0, *_draw_noise_and_times(batch, n_features, generator, dtype))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses[step] = loss.detach()
        step += 1
        if step % settings.check_interval and step < settings.max_iter:
            continue
        validation_loss = None
        if validation is not None:
            with torch.no_grad():
                validation_loss = block_loss(block.net, validation, *validation_draws).item()
            validation_losses.append(validation_loss)
        if on_check is not None:
            recent = losses[max(0, step - settings.check_interval) : step].mean().item()
            on_check(step, recent, validation_loss)
        if stopper is not None and stopper.should_stop(validation_loss):
            break
    if stopper is not None:
        stopper.restore_best()
    block.eval()
    return BlockHistory(losses[:step].cpu().numpy(), np.asarray(validation_losses), step)


class _EarlyStopping:
    """Tracks the best validation loss and the weights that reached it."""

    def __init__(self, net, settings):
        self.net = net
        self.patience = settings.n_iter_no_change
        self.tol = settings.tol
        self.best = float("inf")
        self.best_weights = None
        self.bad_checks = 0

    def should_stop(self, loss):
        # Flow-matching losses are >= 0, so a relative tolerance is well defined.
        if loss < self.best:
            significant = loss < self.best * (1.0 - self.tol)
            self.best = loss
            self.best_weights = [p.detach().clone() for p in self.net.parameters()]
            if significant:
                self.bad_checks = 0
                return False
        self.bad_checks += 1
        return self.bad_checks >= self.patience

    def restore_best(self):
        if self.best_weights is not None:
            with torch.no_grad():
                for p, best in zip(self.net.parameters(), self.best_weights):
                    p.copy_(best)
