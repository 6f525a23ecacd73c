"""How many OU blocks a chain gets, and how long each OU step is.

A schedule is asked for the next step size after each finished OU block and
answers None when the chain should close with its free block.
"""

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FixedSchedule:
    """The given step sizes, in order."""

    step_sizes: tuple

    def next_step(self, n_blocks, probe_scores):
        return self.step_sizes[n_blocks] if n_blocks < len(self.step_sizes) else None

    def keeps_last(self, probe_scores):
        return True

    needs_probe = False


@dataclass(frozen=True)
class AutoSchedule:
    """Geometric steps h_k = first * ratio**k, added while they pay.

    `probe_scores[k]` is the held-out log-likelihood per dimension of the
    model "first k OU blocks + a Gaussian fitted to the pushed training rows"
    (see `gaussian_probe`): an exact likelihood, which rises as the blocks
    carry the data towards a Gaussian. Another block is added while the last
    one raised it by at least `min_gain` nats per dimension, up to
    `max_blocks`; the block that did not (the first one included) is dropped
    and the chain closes without it. Far-from-Gaussian data (rings, spirals)
    get many blocks, near-Gaussian data few or none (global flow matching);
    on atom-valued tables an OU block can put held-out rows at a vanishing
    density, and is dropped too.
    """

    first: float = 0.15
    ratio: float = 1.3
    max_blocks: int = 8
    min_gain: float = 0.05

    needs_probe = True

    def next_step(self, n_blocks, probe_scores):
        if n_blocks >= self.max_blocks:
            return None
        if n_blocks and not self.keeps_last(probe_scores):
            return None
        return self.first * self.ratio**n_blocks

    def keeps_last(self, probe_scores):
        """Whether the block just trained raised the probe score by min_gain (NaN: no)."""
        return probe_scores[-1] - probe_scores[-2] >= self.min_gain


# Rows used to fit the probe's Gaussian: plenty for a mean and a covariance.
_PROBE_FIT_ROWS = 50_000


def probe_fit_indices(n_rows, device):
    """Indices of the training rows the probe's Gaussian is fitted to: evenly spaced,
    fewer than 2 x 50,000."""
    return torch.arange(0, n_rows, max(1, n_rows // _PROBE_FIT_ROWS), device=device)


def gaussian_probe(fit_rows, held_out, log_det):
    """Mean log-likelihood per dimension of `held_out` under a fitted Gaussian, plus `log_det`.

    The Gaussian is fitted (float64) to `fit_rows` (see `probe_fit_indices`);
    `log_det` is the per-row log-determinant of the blocks that carried
    `held_out` to where it is.
    """
    fit_rows = fit_rows.to(torch.float64)
    mean = fit_rows.mean(dim=0)
    d = fit_rows.shape[1]
    # One row (a two-row table with a validation row): its zero spread, not NaN.
    correction = 1 if fit_rows.shape[0] > 1 else 0
    cov = torch.cov(fit_rows.T, correction=correction).reshape(d, d)
    cov = cov + 1e-9 * torch.eye(d, dtype=torch.float64, device=cov.device)
    chol = torch.linalg.cholesky(cov)
    centred = (held_out.to(torch.float64) - mean).T
    whitened = torch.linalg.solve_triangular(chol, centred, upper=False)
    log_pdf = (
        -0.5 * (whitened * whitened).sum(dim=0)
        - torch.log(torch.diagonal(chol)).sum()
        - 0.5 * d * math.log(2 * math.pi)
    )
    return float((log_pdf + log_det).mean()) / d
