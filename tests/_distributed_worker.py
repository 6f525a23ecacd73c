"""One rank of the 2-process CPU (gloo) fits of tests/test_distributed.py.

Each rank fits on its own shard of the rows, as a torchrun script would, and
pickles what the test compares to a single-process fit.
"""

import pickle

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from sklfm import LocalFlowMatching, LocalFlowMatchingOutlierDetector


def fitted_state(model, X_test):
    return dict(
        score=model.score_samples(X_test),
        loss_curve=model.loss_curve_,
        validation_scores=model.validation_scores_,
        n_iter_per_block=model.n_iter_per_block_,
        probe_scores=model.probe_scores_,
        step_sizes=model.step_sizes_,
        mean=model.standardizer_.mean_,
        scale=model.standardizer_.scale_,
        weights=[p.detach().numpy().copy() for p in model.chain_.parameters()],
    )


def run(rank, world_size, init_file, out_dir, X, X_test, bounds, configs):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        shard = X[bounds[rank] : bounds[rank + 1]]
        results = {name: fitted_state(LocalFlowMatching(**params).fit(shard), X_test)
                   for name, params in configs.items()}
        # Rows that one rank cannot use: every rank must raise, none may hang.
        with_nan = shard.copy()
        with_nan[0, 0] = np.nan if rank == 1 else 0.0
        typed = pd.DataFrame({"x": shard[:, 0], "kind": np.where(shard[:, 1] > 0, "a", "b")})
        errors = {}
        for name, rows, estimator in (
            ("nan", with_nan, LocalFlowMatching(max_iter=5)),
            ("columns", shard[:, : 2 - rank], LocalFlowMatching(max_iter=5)),
            ("detector", shard, LocalFlowMatchingOutlierDetector(distributed="auto")),
            ("checkpoint", shard, LocalFlowMatching(max_iter=5, checkpoint_dir=out_dir)),
            ("typed", typed, LocalFlowMatching(max_iter=5)),
        ):
            try:
                estimator.fit(rows)
            except ValueError as exc:
                errors[name] = str(exc)
        results["errors"] = errors
        with open(f"{out_dir}/rank{rank}.pkl", "wb") as f:
            pickle.dump(results, f)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def shard_bounds(n_rows, world_size, first_share):
    """Uneven shards: rank 0 gets `first_share` of the rows, the others split the rest."""
    first = int(n_rows * first_share)
    rest = np.linspace(first, n_rows, world_size).astype(int)
    return [0, *rest.tolist()]
