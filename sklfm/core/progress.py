"""Where a training run stands: enough to go back to a good state or continue exactly.

`BlockProgress` is taken at each good check of a block's training (see
`train_block`); `ChainProgress` adds the finished blocks (see `train_chain`).
"""

from dataclasses import dataclass

import torch


@dataclass
class BlockProgress:
    """A block's training at the end of a check: weights, optimizer, draws, history."""

    step: int
    weights: dict  # the velocity network's state_dict
    optimizer: dict
    scheduler: dict
    generator: torch.Tensor  # state of the training generator
    losses: torch.Tensor  # training loss of steps 0..step-1
    validation_losses: list
    validation_draws: tuple | None  # noise and times of the validation loss
    stopper: dict | None  # early-stopping state
    backoffs: int  # learning-rate halvings so far


@dataclass
class ChainProgress:
    """A chain's training: finished blocks, their histories, and the block in training."""

    blocks: list  # finished Blocks, any kept (warm-start) blocks first
    histories: list  # BlockHistory of each block finished in this run
    generator: torch.Tensor  # training generator state after the last finished block
    init_generator: torch.Tensor  # state of the generator that initialises new blocks
    current: BlockProgress | None = None
    # BlockHistory of the OU block the schedule dropped; once set, no more OU blocks.
    dropped: object = None
