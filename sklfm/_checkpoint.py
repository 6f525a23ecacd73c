"""Checkpoints of a fit in progress (``checkpoint_dir``), so that a killed fit resumes.

One file per directory, ``sklfm-checkpoint.pt``, written through a temporary
file and a rename after each finished OU block and, inside a block, at the
training checks (every ``CHECK_INTERVAL`` steps) at most once per
``CHECKPOINT_SECONDS``. It holds the fit's fingerprint (class, parameters,
training data, versions), the seed, and a ``core.ChainProgress`` as plain
tensors and numbers (``torch.save``; read back with ``weights_only=True``,
which runs no code from the file). A fit started with the same arguments
resumes from it and ends with the model an uninterrupted fit would give; a
checkpoint of another fit is ignored with a warning and overwritten. The file
is removed when the fit completes.
"""

import hashlib
import logging
import os
import pickle
import time
import warnings
from numbers import Integral

import numpy as np
import torch
from sklearn.utils import check_random_state

from . import _persistence
from .core import Block, BlockHistory, BlockProgress, ChainProgress, VelocityMLP

logger = logging.getLogger("sklfm")

FILE_NAME = "sklfm-checkpoint.pt"
CHECKPOINT_FORMAT = 1
# Inside a block, a check writes a checkpoint only if the last one is this old.
CHECKPOINT_SECONDS = 10.0
# Parameters that do not change the fitted model.
_NOT_FINGERPRINTED = ("verbose", "checkpoint_dir")


def fingerprint(estimator, X, warm_from=None):
    """A hash of what determines the fit: class, parameters, data, versions.

    A random_state that is not an int is left out: such a fit resumes with
    the seed stored in its checkpoint. `warm_from` is the fitted estimator a
    warm start continues.
    """
    params = estimator.get_params(deep=False)
    for name in _NOT_FINGERPRINTED:
        params.pop(name, None)
    if not isinstance(params["random_state"], Integral):
        params.pop("random_state")
    digest = hashlib.sha256()
    digest.update(repr((type(estimator).__name__, sorted(params.items()))).encode())
    digest.update(repr((X.shape, _persistence.versions())).encode())
    digest.update(np.ascontiguousarray(X).tobytes())
    if warm_from is not None:
        digest.update(pickle.dumps(_persistence.get_state(warm_from)))
    return digest.hexdigest()


def _to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def _plain_block(block):
    return {
        "step_size": block.step_size,
        "activation": block.net.activation,
        "weights": list(block.net.weights),
        "biases": list(block.net.biases),
    }


def _block_from_plain(plain):
    net = VelocityMLP.from_parameters(plain["weights"], plain["biases"], plain["activation"])
    return Block(net, plain["step_size"])


def _plain_history(history):
    return {
        "losses": torch.as_tensor(np.asarray(history.losses)),
        "validation_losses": torch.as_tensor(np.asarray(history.validation_losses, float)),
        "n_iter": int(history.n_iter),
    }


def _to_plain(progress):
    """A ChainProgress as dicts and lists of CPU tensors and numbers."""
    current = progress.current
    return _to_cpu(
        {
            "blocks": [_plain_block(b) for b in progress.blocks],
            "histories": [_plain_history(h) for h in progress.histories],
            "generator": progress.generator,
            "init_generator": progress.init_generator,
            "current": None if current is None else dict(vars(current)),
            "dropped": None if progress.dropped is None else _plain_history(progress.dropped),
        }
    )


def _history_from_plain(h):
    return BlockHistory(h["losses"].numpy(), h["validation_losses"].numpy(), h["n_iter"])


def _from_plain(plain, device):
    histories = [_history_from_plain(h) for h in plain["histories"]]
    current, dropped = plain["current"], plain.get("dropped")
    return ChainProgress(
        blocks=[_block_from_plain(b).to(device) for b in plain["blocks"]],
        histories=histories,
        generator=plain["generator"],
        init_generator=plain["init_generator"],
        current=None if current is None else BlockProgress(**current),
        dropped=None if dropped is None else _history_from_plain(dropped),
    )


class Checkpointer:
    """Reads the checkpoint of a fit in `directory` and writes its progress there."""

    def __init__(self, directory, fingerprint):
        self.path = os.path.join(os.fspath(directory), FILE_NAME)
        self.fingerprint = fingerprint
        self.seed = None
        self._last_write = -float("inf")

    def resume(self, random_state, device):
        """(seed, ChainProgress or None): where a fit with this fingerprint stands.

        The seed is `random_state` itself when it is an int; otherwise the
        stored one, or a fresh draw from `random_state` when there is none.
        """
        stored = self._read(device)
        progress = None
        if stored is not None:
            self.seed, progress = stored
            done = len(progress.blocks), progress.current.step if progress.current else 0
            logger.info("Resuming from %s: %d blocks done, step %d of the next", self.path, *done)
        if isinstance(random_state, Integral):
            self.seed = int(random_state)
        elif self.seed is None:
            self.seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
        return self.seed, progress

    def _read(self, device):
        if not os.path.exists(self.path):
            return None
        try:
            stored = torch.load(self.path, map_location="cpu", weights_only=True)
            if stored.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"unknown checkpoint format {stored.get('format')!r}")
            if stored["fingerprint"] == self.fingerprint:
                return stored["seed"], _from_plain(stored["progress"], device)
        except Exception as exc:  # a damaged or foreign file: never fatal, never trusted
            warnings.warn(
                f"Ignoring unreadable checkpoint {self.path} ({type(exc).__name__}: {exc}); "
                "the fit starts afresh.",
                UserWarning,
                stacklevel=4,
            )
            return None
        warnings.warn(
            f"The checkpoint in {self.path} is from another fit (other data, parameters "
            "or versions); the fit starts afresh and will overwrite it.",
            UserWarning,
            stacklevel=4,
        )
        return None

    def save(self, progress, block_done):
        """Write `progress`: always after a block, inside one at most every CHECKPOINT_SECONDS."""
        now = time.monotonic()
        if not block_done and now - self._last_write < CHECKPOINT_SECONDS:
            return
        content = {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self.fingerprint,
            "seed": self.seed,
            "progress": _to_plain(progress),
        }
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        _persistence.write_atomic(self.path, lambda f: torch.save(content, f))
        self._last_write = now

    def clear(self):
        if os.path.exists(self.path):
            os.remove(self.path)
