"""Per-block distillation: few-step students of a FlowChain's blocks.

A block's teacher carries its noise side (t = 1) to its data side (t = 0) by
an ODE solve. Its student does the same in `n_steps` network evaluations,

    x_{i+1} = x_i + (t_{i+1} - t_i) * s(t_i, x_i),   t_i = 1 - i / n_steps,

with `s` a VelocityMLP, trained to land on the teacher's trajectory at every
grid time. Students only generate: they are not invertible maps and give no
densities.
"""

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from . import ode
from .block import adam_with_cosine, init_generator, without_autocast
from .chain import chunk_rows, map_chunks
from .network import VelocityMLP


@dataclass(frozen=True)
class DistillSettings:
    """How the students are trained; `max_iter` Adam steps per block.

    `inputs`: where a block's noise-side training inputs come from, "students"
    (the students already distilled for the later blocks: what the block
    meets when sampling) or "teacher" (the teacher blocks). `init`: a student
    starts as a copy of its "teacher"'s network or from "random" weights.
    """

    n_steps: int
    max_iter: int
    batch_size: int
    learning_rate: float
    n_pairs: int = 16384
    inputs: str = "students"
    init: str = "teacher"


def _grid(n_steps):
    return [1.0 - i / n_steps for i in range(n_steps + 1)]


def _time(t, x):
    return torch.full((1, 1), t, dtype=x.dtype, device=x.device)


def student_path(net, x, n_steps):
    """The student's points at t_1, ..., t_n (the last one is its output)."""
    times = _grid(n_steps)
    path = []
    for t0, t1 in zip(times[:-1], times[1:]):
        x = x + (t1 - t0) * net(_time(t0, x), x)
        path.append(x)
    return path


def teacher_path(block, x, n_steps, solver):
    """The teacher's ODE solution at the student's grid times t_1, ..., t_n, stacked.

    Each of the n segments gets ceil(solver.n_steps / n) solver steps, so that
    with one student step the end point is exactly the block's `pull`.
    """
    net = block.frozen(x.dtype, x.device)
    per_segment = math.ceil(solver.n_steps / n_steps)
    times = _grid(n_steps)
    path = []
    with torch.no_grad():
        for t0, t1 in zip(times[:-1], times[1:]):
            x = ode.flow(net, x, t0, t1, per_segment, solver.method)
            path.append(x)
    return torch.stack(path)


class StudentChain(nn.Module):
    """One student per block of a FlowChain (same order), sampling noise to data.

    Built from plain parts: a VelocityMLP per block and the number of steps.
    """

    def __init__(self, nets, n_steps):
        super().__init__()
        self.nets = nn.ModuleList(nets)
        self.n_steps = int(n_steps)

    def pull(self, z):
        """Latent noise to data: students in reverse block order, `n_steps` evaluations each."""
        nets = [net.frozen(z.dtype, z.device) for net in self.nets]
        width = max(net.tangent_width for net in self.nets)

        def run(chunk):
            for net in reversed(nets):
                chunk = student_path(net, chunk, self.n_steps)[-1]
            return chunk

        # Forward passes only: a chunk holds (rows x width) activations.
        return map_chunks(run, z, chunk_rows(width, z.device))


def _fresh_like(net, generator):
    hidden = [w.shape[0] for w in net.weights[:-1]]
    n_features = net.weights[-1].shape[0]
    return VelocityMLP(n_features, hidden, net.activation, generator)


def train_student(net, inputs, targets, settings, generator):
    """Fit `net`'s n-step path from `inputs` to the teacher's points `targets` (n, rows, d).

    Returns the loss per step. Raises FloatingPointError if the weights end
    up non-finite (the caller's model is then left as it was).
    """
    n_rows = inputs.shape[0]
    batch = min(settings.batch_size, n_rows)
    optimizer, scheduler = adam_with_cosine(net, settings.learning_rate, settings.max_iter)
    # Kept on the device: the loop never waits for the host.
    losses = torch.empty(settings.max_iter, device=inputs.device)
    net.train()
    for step in range(settings.max_iter):
        idx = torch.randint(n_rows, (batch,), generator=generator, device=inputs.device)
        path = torch.stack(student_path(net, inputs.index_select(0, idx), settings.n_steps))
        loss = F.mse_loss(path, targets.index_select(1, idx))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses[step] = loss.detach()
    net.eval()
    if not all(torch.isfinite(p).all() for p in net.parameters()):
        raise FloatingPointError(
            "Distillation diverged: the student's weights are not finite. Lower learning_rate."
        )
    return losses.cpu().numpy()


@without_autocast
def distill_chain(chain, settings, solver, generator, dtype=torch.float32, on_block_end=None):
    """Distil every block of `chain`, last (free) block first; return the students and losses.

    Each block trains on `settings.n_pairs` noise-side inputs and the teacher's
    ODE solution from them (`solver`, the teacher's fixed-step method). The
    free block's inputs are N(0, I) draws; an earlier block's inputs are those
    draws carried through the later blocks by their students or teachers
    (`settings.inputs`). `on_block_end(index, losses)` is called after each block.
    """
    device = chain.blocks[0].net.weights[0].device
    n_features = chain.blocks[0].net.weights[-1].shape[0]
    init = init_generator(generator)
    x = torch.randn(settings.n_pairs, n_features, generator=generator, device=device, dtype=dtype)
    students, losses = [None] * len(chain.blocks), [None] * len(chain.blocks)
    for index in reversed(range(len(chain.blocks))):
        block = chain.blocks[index]
        targets = teacher_path(block, x, settings.n_steps, solver)
        net = (
            copy.deepcopy(block.net) if settings.init == "teacher" else _fresh_like(block.net, init)
        )
        losses[index] = train_student(net.to(device), x, targets, settings, generator)
        students[index] = net
        if on_block_end is not None:
            on_block_end(index, losses[index])
        if settings.inputs == "students":
            with torch.no_grad():
                x = student_path(net, x, settings.n_steps)[-1]
        else:
            x = targets[-1]
    return StudentChain(students, settings.n_steps), losses
