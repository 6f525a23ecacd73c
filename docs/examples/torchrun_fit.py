"""Fit LocalFlowMatching data-parallel over several processes, launched by torchrun.

Every process reads only its own shard of the rows and calls ``fit`` on it;
``LocalFlowMatching`` finds the process group that torchrun set up
(``distributed="auto"``), draws the minibatches over all shards, sums the
gradients over the processes (DistributedDataParallel) and ends, on every
rank, with the model one process would fit on all the rows. Rank 0 saves it.

Usage
-----
One machine, 2 CPU processes (gloo), on a synthetic table::

    torchrun --standalone --nproc-per-node=2 docs/examples/torchrun_fit.py

One node with 8 GPUs (one process per GPU, NCCL), on a table saved as .npy::

    torchrun --standalone --nproc-per-node=8 docs/examples/torchrun_fit.py \\
        --data table.npy --output model.joblib

Several nodes: the same command on every node, with the node's rank and the
address of a rendezvous host (any node) that all can reach::

    torchrun --nnodes=4 --nproc-per-node=8 --node-rank=$NODE_RANK \\
        --rdzv-backend=c10d --rdzv-endpoint=$HEAD_NODE:29500 --rdzv-id=sklfm-fit \\
        docs/examples/torchrun_fit.py --data /shared/table.npy --output model.joblib

(``docs/distributed.md`` shows the same under Slurm and Kubernetes.)
"""

import argparse
import os

import joblib
import numpy as np
import torch
import torch.distributed as dist

from sklfm import LocalFlowMatching
from sklfm.datasets import make_rings


def load_shard(path, n_rows, rank, world_size):
    """This rank's contiguous block of rows; the whole table is never read by one process."""
    table = np.load(path, mmap_mode="r") if path else make_rings(n_rows, random_state=0)
    bounds = np.linspace(0, len(table), world_size + 1).astype(int)
    return np.asarray(table[bounds[rank] : bounds[rank + 1]], dtype=np.float64)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", help=".npy table (n_rows x n_features); default: 2-D rings")
    parser.add_argument("--rows", type=int, default=20_000, help="rows of the synthetic table")
    parser.add_argument("--max-iter", default="auto", help='steps per block, or "auto"')
    parser.add_argument("--output", default="lfm_model.joblib")
    args = parser.parse_args()

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group("nccl")
    else:
        # One torch thread per process: the processes share the machine's cores.
        torch.set_num_threads(1)
        dist.init_process_group("gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    try:
        X = load_shard(args.data, args.rows, rank, world_size)
        max_iter = args.max_iter if args.max_iter == "auto" else int(args.max_iter)
        model = LocalFlowMatching(max_iter=max_iter, random_state=0, verbose=1).fit(X)
        if rank == 0:
            joblib.dump(model, args.output)
            print(
                f"{world_size} processes, {len(X):,} rows on rank 0: blocks "
                f"{model.step_sizes_}, steps {model.n_iter_per_block_}, "
                f"mean log-likelihood of rank 0's rows {model.score(X):.4f}; saved {args.output}"
            )
        dist.barrier()  # no rank tears its connections down while another still uses them
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
