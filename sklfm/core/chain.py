"""The sequence of blocks: training in order, push, pull, exact log-density."""

import copy
import math

import torch
from torch import nn

from .block import Block, train_block

# Upper bound on the elements of one chunk's (rows x features x width) Jacobian
# tangent; keeps scoring memory flat whatever the number of rows.
_TANGENT_BUDGET = 1 << 23


class FlowChain(nn.Module):
    """Blocks 1..L (OU steps) and the free block, composed into one invertible flow."""

    def __init__(self, blocks):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def _chunk_rows(self, n_features):
        width = max(block.net.tangent_width for block in self.blocks)
        return max(1, _TANGENT_BUDGET // (n_features * width))

    def _chunked(self, fn, x):
        rows = self._chunk_rows(x.shape[1])
        with torch.no_grad():
            parts = [fn(chunk) for chunk in torch.split(x, rows)]
        if isinstance(parts[0], tuple):
            return tuple(torch.cat(p) for p in zip(*parts))
        return torch.cat(parts)

    def push(self, x, solver):
        """Data to latent codes: every block, data side to noise side."""

        def run(chunk):
            for block in self.blocks:
                chunk = block.push(chunk, solver)
            return chunk

        return self._chunked(run, x)

    def pull(self, z, solver):
        """Latent codes to data: blocks in reverse, noise side to data side."""

        def run(chunk):
            for block in reversed(self.blocks):
                chunk = block.pull(chunk, solver)
            return chunk

        return self._chunked(run, z)

    def log_prob(self, x, solver):
        """Exact log-density: log N(T(x); 0, I) + sum of the blocks' log-determinants."""

        def run(chunk):
            logdet = torch.zeros(chunk.shape[0], dtype=chunk.dtype, device=chunk.device)
            for block in self.blocks:
                chunk, block_logdet = block.push_with_logdet(chunk, solver)
                logdet = logdet + block_logdet
            return chunk, logdet

        z, logdet = self._chunked(run, x)
        d = z.shape[1]
        return -0.5 * (z * z).sum(dim=1) - 0.5 * d * math.log(2 * math.pi) + logdet


def train_chain(
    data, step_sizes, network, train, solver, generator, block_init=True, on_block_end=None
):
    """Train the OU blocks in order, then the free block; return the chain and losses.

    `network` is a dict of VelocityMLP keyword arguments (hidden sizes and
    activation). After each block the whole training set is pushed through it
    to become the next block's data side. `on_block_end(index, block, losses)`
    is called after each block.
    """
    n_features = data.shape[1]
    # Weights are initialised on the CPU, whatever the device of `generator`.
    seed = torch.randint(2**62, (1,), generator=generator, device=generator.device).item()
    init = torch.Generator().manual_seed(seed)
    blocks, losses = [], []
    for index, step_size in enumerate([*step_sizes, None]):
        if block_init and blocks:
            block = Block(copy.deepcopy(blocks[-1].net), step_size)
        else:
            block = Block.new(n_features, step_size=step_size, generator=init, **network)
            block = block.to(data.device)
        losses.append(train_block(block, data, train, generator))
        blocks.append(block)
        if on_block_end is not None:
            on_block_end(index, block, losses[-1])
        if step_size is not None:
            data = FlowChain([block]).push(data, solver)
    return FlowChain(blocks), losses
