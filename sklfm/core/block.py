"""One LFM block: a velocity network, its OU step size, and its training loop."""

import copy
import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np

import torch
from torch import nn
from torch.nn import functional as F

from . import ode
from .network import VelocityMLP
from .paths import block_target, interpolant_for
from .progress import BlockProgress
from .shards import LocalRows


def without_autocast(train):
    """`train` with a caller's autocast switched off: training keeps its own float32.

    Under a bfloat16 autocast around ``fit``, a block learnt a field that pushed
    training rows to |x| of about 9,000, and the next block diverged or trained on
    them (benchmarks/gpu.py, item 6).
    """

    @functools.wraps(train)
    def run(*args, **kwargs):
        with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
            return train(*args, **kwargs)

    return run


@dataclass(frozen=True)
class TrainSettings:
    """How one block is trained.

    With `n_iter_no_change` set, the flow-matching loss on the validation rows
    is checked every `check_interval` steps; training stops once it has not
    improved by a fraction `tol` of the best loss for `n_iter_no_change`
    checks in a row, and the best weights are kept. With `cooldown` steps,
    that plateau does not stop training at once: the learning rate first
    decays along a cosine to its floor over `cooldown` more steps (when that
    ends before `max_iter`), as it would have at the end of the full schedule.
    """

    max_iter: int
    batch_size: int
    learning_rate: float
    interpolant: str = "trigonometric"
    check_interval: int = 50
    n_iter_no_change: int | None = None
    tol: float = 1e-3
    cooldown: int = 0


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
    def new(cls, n_features, hidden_layer_sizes, activation, step_size, generator, n_conditions=0):
        """A block with a freshly initialised VelocityMLP (weights drawn from `generator`)."""
        net = VelocityMLP(n_features, hidden_layer_sizes, activation, generator, n_conditions)
        return cls(net, step_size)

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


def init_generator(generator):
    """A CPU generator for weight initialisation, seeded from `generator` (on any device)."""
    seed = torch.randint(2**62, (1,), generator=generator, device=generator.device).item()
    return torch.Generator().manual_seed(seed)


def adam_with_cosine(net, learning_rate, max_iter):
    """Adam on `net`'s parameters, its learning rate cosine-decayed to 1 % over `max_iter` steps."""
    # foreach: the multi-tensor Adam, bit-for-bit the same updates as the per-tensor
    # default on the CPU and ~15 % faster per step there (benchmarks/speed.py).
    optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate, foreach=True)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max_iter, eta_min=0.01 * learning_rate
    )
    return optimizer, scheduler


def _restart_cosine(scheduler, n_steps):
    """Make a CosineAnnealingLR decay from the current learning rate to its floor in n_steps.

    Its update is recursive in the current rate, so a fresh half-period from
    here is T_max = n_steps counted from step 0; the state stays in its state_dict.
    """
    scheduler.T_max = n_steps
    scheduler.last_epoch = 0


class _BlockLoss:
    """The block's flow-matching loss on given data-side rows, noise and times."""

    def __init__(self, block, interpolant):
        self.step_size = block.step_size
        self.n_features = block.net.n_features
        self.interpolate = interpolant_for(interpolant, block.step_size)

    def __call__(self, net, x0, noise, t, n_rows=None, weights=None):
        """Squared error summed over the rows given, over `n_rows` x n_features.

        With all of a minibatch's rows (`n_rows` None: their number) it is the
        mean squared error; with one rank's share of the rows, its share of it.
        Columns of x0 after the features are the rows' conditions: they are
        held fixed along the path. `weights` (rows x n_features), if given,
        weighs each cell's squared error: a cell of weight 0 (a missing value)
        adds nothing to the loss or its gradient.
        """
        x0, condition = x0[:, : self.n_features], x0[:, self.n_features :]
        xt, target = self.interpolate(x0, block_target(x0, noise, self.step_size), t)
        if condition.shape[1]:
            xt = torch.cat([xt, condition], dim=1)
        n_rows = x0.shape[0] if n_rows is None else n_rows
        if weights is None:
            error = F.mse_loss(net(t, xt), target, reduction="sum")
        else:
            error = (weights * (net(t, xt) - target) ** 2).sum()
        return error / (n_rows * self.n_features)


def _draw_noise_and_times(n_rows, n_features, generator, dtype):
    device = generator.device
    noise = torch.randn(n_rows, n_features, generator=generator, device=device, dtype=dtype)
    t = torch.rand(n_rows, 1, generator=generator, device=device, dtype=dtype)
    return noise, t


# A non-finite loss or weight sends training back to the last good check with
# the learning rate halved, at most this many times per block.
MAX_BACKOFFS = 3


class TrainingDivergedError(FloatingPointError):
    """The loss stayed non-finite after MAX_BACKOFFS learning-rate halvings."""


def train_block(
    block,
    data,
    settings,
    generator,
    validation=None,
    on_check=None,
    resume=None,
    on_progress=None,
    name="block",
    rows=None,
    weights=None,
    validation_weights=None,
):
    """Fit the block's velocity to its interpolant; return a BlockHistory.

    Each step draws a minibatch of `data` (the block's data side, each row
    followed by its condition when the block's net is conditional), fresh noise,
    and one time per pair. Losses stay on the device between checks so that
    the loop waits for the host only every `check_interval` steps. The
    validation loss uses noise and times drawn once per block, so that checks
    compare weights, not draws. `on_check(step, train_loss, validation_loss)`
    is called at each check (validation_loss is None without validation rows).

    Each check also tests the losses since the previous check and the weights:
    if any is not finite, training returns to the previous good check with the
    learning rate halved (a RuntimeWarning says so), and after MAX_BACKOFFS
    halvings raises TrainingDivergedError naming `name` and the step. Every
    good check before the last step gives `on_progress` a BlockProgress, and a
    BlockProgress passed as `resume` continues the block from it exactly.

    `rows` (a shards.ShardedRows) says that `data` is this rank's shard of
    the rows: minibatches are drawn over all ranks' rows, each rank computes
    the loss of the rows it holds, and the gradients are summed over the ranks.
    `validation` is then the same on every rank, and every decision (back-off,
    early stop) is rank 0's.

    `weights` and `validation_weights` (rows x n_features, aligned with the
    rows of `data` and `validation`), if given, weigh each cell's squared
    error in the training and validation losses (see _BlockLoss); without
    them every cell counts once.
    """
    run = _Run(block, data, settings, generator, validation, rows, weights, validation_weights)
    good = run.progress() if resume is None else resume
    if resume is not None:
        run.restore(resume)
    block.train()
    while run.step < settings.max_iter:
        run.train_step()
        if run.step % settings.check_interval and run.step < settings.max_iter:
            continue
        if not run.finite_since(good.step):
            good = run.back_off(good, name)
            continue
        validation_loss = run.validate()
        if validation_loss is not None and not math.isfinite(validation_loss):
            good = run.back_off(good, name)
            continue
        if on_check is not None:
            recent = run.losses[max(0, run.step - settings.check_interval) : run.step].mean()
            on_check(run.step, recent.item(), validation_loss)
        if run.stopper is not None and run.stopper.should_stop(
            validation_loss, run.step, run.scheduler
        ):
            break
        if run.step < settings.max_iter:
            good = run.progress()
            if on_progress is not None:
                on_progress(good)
    if run.stopper is not None:
        run.stopper.restore_best()
    block.eval()
    return BlockHistory(
        run.losses[: run.step].cpu().numpy(), np.asarray(run.validation_losses), run.step
    )


class _Run:
    """One block's training state: optimizer, scheduler, draws, history; one step at a time."""

    def __init__(
        self, block, data, settings, generator, validation, rows=None, weights=None,
        validation_weights=None,
    ):
        self.net, self.data, self.generator = block.net, data, generator
        self.weights, self.validation_weights = weights, validation_weights
        self.rows = LocalRows(len(data)) if rows is None else rows
        # The module the steps run: the net, or its DDP wrapper summing gradients over ranks.
        self.parallel_net = self.rows.parallel(self.net)
        self.validation = validation
        self.loss = _BlockLoss(block, settings.interpolant)
        self.batch = min(settings.batch_size, self.rows.n_rows)
        self.optimizer, self.scheduler = adam_with_cosine(
            self.net, settings.learning_rate, settings.max_iter
        )
        self.validation_draws = None
        if validation is not None:
            self.validation_draws = _draw_noise_and_times(
                len(validation), self.net.n_features, generator, data.dtype
            )
        self.stopper = _EarlyStopping(self.net, settings) if validation is not None else None
        self.losses = torch.empty(settings.max_iter, device=data.device)
        self.validation_losses = []
        self.step = 0
        self.summed = 0  # losses[:summed] hold the sums over the ranks
        self.backoffs = 0

    def train_step(self):
        data, generator, rows = self.data, self.generator, self.rows
        idx = torch.randint(rows.n_rows, (self.batch,), generator=generator, device=data.device)
        noise, t = _draw_noise_and_times(self.batch, self.net.n_features, generator, data.dtype)
        local, mine = rows.own(idx)
        x0 = data.index_select(0, local)  # same rows as data[local], much faster on CPU
        weights = None if self.weights is None else self.weights.index_select(0, local)
        loss = self.loss(self.parallel_net, x0, noise[mine], t[mine], self.batch, weights)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.losses[self.step] = loss.detach()
        self.step += 1

    def validate(self):
        if self.validation is None:
            return None
        with torch.no_grad():
            loss = self.loss(
                self.net, self.validation, *self.validation_draws, weights=self.validation_weights
            ).item()
        loss = self.rows.agree(loss)
        self.validation_losses.append(loss)
        return loss

    def finite_since(self, step):
        """Whether the losses from `step` on and the weights are all finite (one host sync).

        First sums the ranks' shares of the losses not summed yet.
        """
        self.rows.total(self.losses[self.summed : self.step])
        self.summed = self.step
        checks = [torch.isfinite(self.losses[step : self.step]).all()]
        checks += [torch.isfinite(p).all() for p in self.net.parameters()]
        return bool(self.rows.agree(float(torch.stack(checks).all())))

    def progress(self):
        return BlockProgress(
            step=self.step,
            weights={k: v.detach().clone() for k, v in self.net.state_dict().items()},
            optimizer=copy.deepcopy(self.optimizer.state_dict()),
            scheduler=copy.deepcopy(self.scheduler.state_dict()),
            generator=self.generator.get_state(),
            losses=self.losses[: self.step].clone(),
            validation_losses=list(self.validation_losses),
            validation_draws=self.validation_draws,
            stopper=None if self.stopper is None else self.stopper.state(),
            backoffs=self.backoffs,
        )

    def restore(self, progress):
        device = self.data.device
        self.net.load_state_dict(progress.weights)
        # load_state_dict keeps the tensors it is given: copies, so `progress` stays intact.
        self.optimizer.load_state_dict(copy.deepcopy(progress.optimizer))
        self.scheduler.load_state_dict(copy.deepcopy(progress.scheduler))
        self.generator.set_state(progress.generator)
        self.step = self.summed = progress.step
        self.losses[: self.step] = progress.losses.to(device)
        self.validation_losses = list(progress.validation_losses)
        if progress.validation_draws is not None:
            self.validation_draws = tuple(d.to(device) for d in progress.validation_draws)
        if self.stopper is not None:
            self.stopper.load_state(progress.stopper)
        self.backoffs = progress.backoffs

    def back_off(self, good, name):
        """Return to `good` with the learning rate halved; the new good state."""
        failed_at = self.step
        if good.backoffs >= MAX_BACKOFFS:
            raise TrainingDivergedError(
                f"Training {name} diverged: the loss or the weights were not finite at step "
                f"{failed_at} after {MAX_BACKOFFS} learning-rate halvings. Lower "
                "learning_rate, or look for extreme values in the data."
            )
        self.restore(good)
        for group in self.optimizer.param_groups:
            group["lr"] *= 0.5
        self.scheduler.base_lrs = [lr * 0.5 for lr in self.scheduler.base_lrs]
        self.scheduler.eta_min *= 0.5
        self.backoffs += 1
        warnings.warn(
            f"Non-finite loss or weights in {name} by step {failed_at}: training resumes "
            f"from step {good.step} with the learning rate halved.",
            RuntimeWarning,
            stacklevel=3,
        )
        return self.progress()


class _EarlyStopping:
    """Tracks the best validation loss and the weights that reached it."""

    def __init__(self, net, settings):
        self.net = net
        self.patience = settings.n_iter_no_change
        self.tol = settings.tol
        self.cooldown, self.max_iter = settings.cooldown, settings.max_iter
        self.best = float("inf")
        self.best_weights = None
        self.bad_checks = 0
        self.stop_at = None  # the step a cool-down ends at, once one has begun

    def should_stop(self, loss, step, scheduler):
        """Whether training stops after this check; may begin the cool-down (see TrainSettings)."""
        # Flow-matching losses are >= 0, so a relative tolerance is well defined.
        significant = loss < self.best * (1.0 - self.tol)
        if loss < self.best:
            self.best = loss
            self.best_weights = [p.detach().clone() for p in self.net.parameters()]
        self.bad_checks = 0 if significant else self.bad_checks + 1
        if self.stop_at is not None:
            return step >= self.stop_at
        if self.bad_checks < self.patience:
            return False
        if not self.cooldown:
            return True
        if step + self.cooldown >= self.max_iter:
            return False  # the full schedule decays as soon: train on to max_iter
        self.stop_at = step + self.cooldown
        _restart_cosine(scheduler, self.cooldown)
        return False

    def state(self):
        return {
            "best": self.best, "best_weights": self.best_weights,
            "bad_checks": self.bad_checks, "stop_at": self.stop_at,
        }

    def load_state(self, state):
        self.best, self.best_weights, self.bad_checks = (
            state["best"], state["best_weights"], state["bad_checks"]
        )
        self.stop_at = state.get("stop_at")

    def restore_best(self):
        if self.best_weights is not None:
            with torch.no_grad():
                for p, best in zip(self.net.parameters(), self.best_weights):
                    p.copy_(best)
