"""Interpolants between the two ends of a block, and the OU pairs LFM trains on.

Convention: t = 0 is the data side, t = 1 the noise side.
"""

import math

import torch


def trigonometric(x0, x1, t):
    """I_t = cos(pi t / 2) x0 + sin(pi t / 2) x1 and its time derivative."""
    angle = 0.5 * math.pi * t
    cos, sin = torch.cos(angle), torch.sin(angle)
    return cos * x0 + sin * x1, 0.5 * math.pi * (cos * x1 - sin * x0)


def linear(x0, x1, t):
    """I_t = (1 - t) x0 + t x1 and its time derivative."""
    return (1 - t) * x0 + t * x1, x1 - x0


INTERPOLANTS = {"trigonometric": trigonometric, "linear": linear}
# "auto": the OU blocks follow the straight line, the free block the
# trigonometric path (an option; see LocalFlowMatching's docstring).
INTERPOLANT_CHOICES = (*INTERPOLANTS, "auto")


def interpolant_for(name, step_size):
    """The interpolant function of a block: `name`, with "auto" resolved by block kind."""
    if name == "auto":
        name = "trigonometric" if step_size is None else "linear"
    return INTERPOLANTS[name]


def ou_step(x0, noise, step_size):
    """Ornstein-Uhlenbeck step of length h from x0, with the given Gaussian noise.

    x1 = exp(-h) x0 + sqrt(1 - exp(-2 h)) z: dependent coupling through x0.
    """
    decay = math.exp(-step_size)
    return decay * x0 + math.sqrt(1.0 - decay * decay) * noise


def block_target(x0, noise, step_size):
    """Noise-side end of a block: an OU step, or pure noise for the free block."""
    if step_size is None:
        return noise
    return ou_step(x0, noise, step_size)
