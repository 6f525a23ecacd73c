"""Data-parallel fits over torch.distributed: when to use them, and agreement between ranks.

A rank that raises while the others go on would leave them waiting in a
collective for ever, so every check made before training is shared: if one
rank's rows are unusable, every rank raises.
"""

from numbers import Integral

import numpy as np
import torch.distributed as dist
from sklearn.utils import check_random_state


def process_group_active():
    return dist.is_available() and dist.is_initialized()


def use_data_parallel(setting):
    """Whether a fit with ``distributed=setting`` trains over the default process group."""
    active = process_group_active()
    if setting is True and not active:
        raise ValueError(
            "distributed=True needs an initialised torch.distributed process group: "
            "launch with torchrun (or another launcher) and call "
            "torch.distributed.init_process_group() before fit."
        )
    return bool(active and setting in (True, "auto") and dist.get_world_size() > 1)


def on_every_rank(check, parallel):
    """check() (a function that may raise ValueError), with the outcome shared between ranks.

    If it raised on any rank, every rank raises: that rank's error, the others
    a ValueError naming it. Without `parallel`, just check().
    """
    if not parallel:
        return check()
    try:
        result, error = check(), None
    except ValueError as exc:
        result, error = None, exc
    messages = [None] * dist.get_world_size()
    dist.all_gather_object(messages, None if error is None else str(error))
    if error is not None:
        raise error
    for rank, message in enumerate(messages):
        if message is not None:
            raise ValueError(f"Rank {rank} could not use its rows: {message}")
    return result


def check_same_columns(X, estimator):
    """Raise on every rank unless all ranks' checked rows have the same columns and names."""
    names = getattr(estimator, "feature_names_in_", None)
    columns = (X.shape[1], None if names is None else tuple(names))
    reports = [None] * dist.get_world_size()
    dist.all_gather_object(reports, columns)
    if len(set(reports)) > 1:
        described = ", ".join(
            f"rank {rank}: {n} columns" + (f" {list(names)}" if names else "")
            for rank, (n, names) in enumerate(reports)
        )
        raise ValueError(f"Every rank must pass rows with the same columns; got {described}.")


def shared_random_state(random_state, rows):
    """`random_state` as the same value on every rank: an int stays; otherwise rank 0 draws one."""
    if rows.world_size == 1 or (
        isinstance(random_state, Integral) and not isinstance(random_state, (bool, np.bool_))
    ):
        return random_state
    return int(rows.agree(float(check_random_state(random_state).randint(2**31 - 1))))
