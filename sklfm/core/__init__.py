"""The torch core of sklfm: tensors and plain settings in, no scikit-learn here."""

from .block import (
    Block,
    BlockHistory,
    SolverSettings,
    TrainingDivergedError,
    TrainSettings,
    train_block,
)
from .chain import FlowChain, train_chain
from .distill import DistillSettings, StudentChain, distill_chain
from .network import ACTIVATIONS, VelocityMLP
from .ode import SOLVERS
from .paths import INTERPOLANT_CHOICES, INTERPOLANTS
from .progress import BlockProgress, ChainProgress
from .schedule import AutoSchedule, FixedSchedule
from .shards import LocalRows, ShardedRows

__all__ = [
    "ACTIVATIONS",
    "AutoSchedule",
    "BlockHistory",
    "FixedSchedule",
    "INTERPOLANT_CHOICES",
    "INTERPOLANTS",
    "SOLVERS",
    "Block",
    "BlockProgress",
    "ChainProgress",
    "DistillSettings",
    "FlowChain",
    "LocalRows",
    "ShardedRows",
    "SolverSettings",
    "StudentChain",
    "TrainSettings",
    "TrainingDivergedError",
    "VelocityMLP",
    "distill_chain",
    "train_block",
    "train_chain",
]
