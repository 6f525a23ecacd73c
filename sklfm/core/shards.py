"""Where the training rows live: all on this process, or split over torch.distributed ranks.

Training draws each minibatch as GLOBAL row indices from a generator seeded
alike on every rank, so all ranks draw the same indices, noise and times. With
the rows split over the ranks (`ShardedRows`), each rank evaluates the loss on
the rows of the minibatch it holds, and the gradients are summed over the
ranks (DistributedDataParallel with a summing hook): the sum is the gradient a
single process computes on the whole minibatch, up to the order of the
floating-point additions. So every rank, rank 0 included, ends with the model
one process would fit on the ranks' rows concatenated in rank order.

`LocalRows` is the one-process case with the same interface, so the training
loop has one code path.
"""

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def _sum_gradients(group, bucket):
    """DDP communication hook: sum the gradients over the ranks (DDP's default averages).

    Each rank's loss is already its share of the minibatch mean, so the sum is
    the whole minibatch's gradient.
    """
    work = dist.all_reduce(bucket.buffer(), group=group, async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


class LocalRows:
    """All `n_rows` rows on this process."""

    rank = 0
    world_size = 1

    def __init__(self, n_rows):
        self.n_rows = self.n_local = int(n_rows)

    def own(self, idx):
        """(local positions, selector) of the global indices `idx` held here: all of them."""
        return idx, slice(None)

    def reordered(self, order):
        """The rows `order` (global indices), renumbered 0, 1, ... in that order.

        Returns the local positions of those held here, in that order, and
        their layout.
        """
        return order, LocalRows(len(order))

    def take(self, data, idx):
        """The rows at global indices `idx` (numpy or torch), on every rank."""
        return data[idx]

    def total(self, value):
        """`value` summed over the ranks (an array or tensor; in place for a tensor)."""
        return value

    def largest(self, value):
        """The elementwise maximum of `value` over the ranks (as `total`)."""
        return value

    def agree(self, value):
        """Rank 0's `value` (a float), so that every rank takes the same decision."""
        return value

    def parallel(self, net):
        """The module to train: `net` itself, or its DDP wrapper over the ranks."""
        return net


class ShardedRows(LocalRows):
    """`n_rows` rows split over the ranks of the default process group.

    This rank holds the rows whose global indices are `held` (sorted), as
    its local rows 0, 1, ... in that order. Collectives run on `device`: the
    CPU for the gloo backend, the rank's GPU for NCCL.
    """

    def __init__(self, held, n_rows, device):
        self.device = torch.device(device)
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.held = np.asarray(held, dtype=np.int64)
        self._held = torch.as_tensor(self.held, device=self.device)
        self.n_local = len(self.held)
        self.n_rows = int(n_rows)

    @classmethod
    def in_rank_order(cls, n_local, device):
        """Each rank's `n_local` rows, numbered in rank order (a collective)."""
        sizes = torch.zeros(dist.get_world_size(), dtype=torch.int64, device=device)
        sizes[dist.get_rank()] = int(n_local)
        dist.all_reduce(sizes)
        start = int(sizes[: dist.get_rank()].sum())
        return cls(np.arange(start, start + int(n_local)), int(sizes.sum()), device)

    def own(self, idx):
        held = self._held if isinstance(idx, torch.Tensor) else self.held
        if self.n_local == 0:
            mine = idx < 0
            return idx[mine], mine
        search = torch.searchsorted if isinstance(idx, torch.Tensor) else np.searchsorted
        local = search(held, idx).clip(max=self.n_local - 1)
        mine = held[local] == idx
        return local[mine], mine

    def reordered(self, order):
        local, mine = self.own(order)
        return local, ShardedRows(np.flatnonzero(mine), len(order), self.device)

    def take(self, data, idx):
        # Each rank writes the rows it holds into zeros; the sum over the ranks
        # is then every row exactly (x + 0 == x).
        local, mine = self.own(idx)
        shape = (len(idx), *data.shape[1:])
        if isinstance(data, np.ndarray):
            out = np.zeros(shape, dtype=data.dtype)
        else:
            out = torch.zeros(shape, dtype=data.dtype, device=data.device)
        out[mine] = data[local]
        return self.total(out)

    def total(self, value):
        return self._all_reduce(value, dist.ReduceOp.SUM)

    def largest(self, value):
        return self._all_reduce(value, dist.ReduceOp.MAX)

    def _all_reduce(self, value, op):
        if isinstance(value, np.ndarray):
            tensor = torch.tensor(value, device=self.device)
            dist.all_reduce(tensor, op=op)
            return tensor.cpu().numpy()
        dist.all_reduce(value, op=op)
        return value

    def agree(self, value):
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.broadcast(tensor, src=0)
        return tensor.item()

    def parallel(self, net):
        ddp = DistributedDataParallel(net)
        ddp.register_comm_hook(state=None, hook=_sum_gradients)
        return ddp
