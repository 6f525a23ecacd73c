"""``python -m sklfm demo``: LocalFlowMatching next to GaussianMixture and KernelDensity.

Two fits, each compared on held-out rows by mean log-likelihood (nats per row, in
the units of the data; higher is better):

1. a 2-D toy from ``sklfm.datasets`` (default: pinwheel), with a figure of the
   data, LFM samples and the learned densities;
2. a subset of the real table ``protein.csv.gz`` from ``../shared/data/density/``
   (skipped with a message when the folder is absent; ``SKLFM_DATA`` or
   ``--data`` point elsewhere).

Protocol, identical for all methods: one random split into train / validation /
test rows. LocalFlowMatching is fitted on the training rows with its default
parameters except those in ``DEMO_PARAMS`` (printed in the output) and uses no
validation rows. GaussianMixture (full covariance) and
KernelDensity (Gaussian kernel) are fitted on the same training rows after
per-column standardization (training mean and standard deviation; their
log-densities are carried back to data units by the scaler's log-Jacobian);
GaussianMixture's ``n_components`` and KernelDensity's ``bandwidth`` are picked
from small grids by mean log-likelihood on the validation rows. All methods are
scored on the same test rows.
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np

# Repository root when running from a source checkout (sklfm/_demo.py -> repo).
_REPO_ROOT = Path(__file__).resolve().parents[1]

# LocalFlowMatching settings of the demo; every other parameter keeps its default.
# max_iter: at most 500 gradient steps per block (the default scales with the
# table), to keep the demo short. activation: ReLU (as in the reference tabular runs) learns the 2-D
# toys much faster than the default softplus at this budget.
DEMO_PARAMS = dict(max_iter=500, activation="relu")
GMM_GRID = (1, 2, 5, 10, 20)
KDE_GRID = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)  # bandwidths in standardized units


def data_dir(override=None):
    """The shared data folder (holding ``density/``): --data, $SKLFM_DATA, or ../shared/data."""
    if override:
        return Path(override).expanduser()
    if os.environ.get("SKLFM_DATA"):
        return Path(os.environ["SKLFM_DATA"]).expanduser()
    return (_REPO_ROOT / ".." / "shared" / "data").resolve()


def _split(X, sizes, seed):
    """Disjoint random row subsets of the given sizes (in order)."""
    rng = np.random.RandomState(seed)
    idx = rng.permutation(len(X))
    if sum(sizes) > len(X):
        raise ValueError(f"asked for {sum(sizes)} rows, the table has {len(X)}")
    out, start = [], 0
    for size in sizes:
        out.append(X[idx[start : start + size]])
        start += size
    return out


def _fit_baselines(X_train, X_val, seed):
    """GaussianMixture and KernelDensity on standardized columns, picked on X_val.

    Returns {name: (score_samples in data units, fit seconds, label)}.
    """
    from sklearn.mixture import GaussianMixture
    from sklearn.neighbors import KernelDensity
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(X_train)
    log_jac = -float(np.sum(np.log(scaler.scale_)))
    U_train, U_val = scaler.transform(X_train), scaler.transform(X_val)
    results = {}

    t0 = time.perf_counter()
    best = None
    for k in GMM_GRID:
        gmm = GaussianMixture(k, covariance_type="full", random_state=seed).fit(U_train)
        val = gmm.score(U_val)
        if best is None or val > best[0]:
            best = (val, k, gmm)
    _, k, gmm = best
    results["GaussianMixture"] = (
        lambda X, m=gmm: m.score_samples(scaler.transform(X)) + log_jac,
        time.perf_counter() - t0,
        f"full cov., n_components={k} (grid {list(GMM_GRID)})",
    )

    t0 = time.perf_counter()
    best = None
    for bw in KDE_GRID:
        kde = KernelDensity(bandwidth=bw).fit(U_train)
        val = kde.score_samples(U_val).mean()
        if best is None or val > best[0]:
            best = (val, bw, kde)
    _, bw, kde = best
    results["KernelDensity"] = (
        lambda X, m=kde: m.score_samples(scaler.transform(X)) + log_jac,
        time.perf_counter() - t0,
        f"gaussian, bandwidth={bw:g} std. units (grid {list(KDE_GRID)})",
    )
    return results


def _compare(X_train, X_val, X_test, params, seed):
    """Fit all three models; print the table; return the fitted LFM and the baselines."""
    from sklfm import LocalFlowMatching

    t0 = time.perf_counter()
    lfm = LocalFlowMatching(**params, random_state=seed).fit(X_train)
    lfm_fit = time.perf_counter() - t0
    baselines = _fit_baselines(X_train, X_val, seed)

    rows = []
    t0 = time.perf_counter()
    rows.append(
        (
            "LocalFlowMatching",
            float(np.mean(lfm.score_samples(X_test))),
            lfm_fit,
            time.perf_counter() - t0,
            ", ".join(f"{k}={v!r}" for k, v in params.items()) + "; rest default",
        )
    )
    for name, (score_samples, fit_s, label) in baselines.items():
        t0 = time.perf_counter()
        rows.append(
            (name, float(np.mean(score_samples(X_test))), fit_s, time.perf_counter() - t0, label)
        )

    print(f"  {'method':<18} {'test loglik':>11} {'fit s':>7} {'score s':>8}  settings")
    for name, score, fit_s, score_s, label in rows:
        print(f"  {name:<18} {score:>11.3f} {fit_s:>7.1f} {score_s:>8.1f}  {label}")
    return lfm, baselines


def _toy_figure(path, name, X_train, lfm, baselines, n_grid, seed):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = np.percentile(X_train, [0.5, 99.5], axis=0)
    pad = 0.15 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    gx, gy = np.linspace(lo[0], hi[0], n_grid), np.linspace(lo[1], hi[1], n_grid)
    grid = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2)
    samples = lfm.sample(len(X_train), random_state=seed)
    densities = [
        ("LocalFlowMatching density", np.exp(lfm.score_samples(grid))),
        ("GaussianMixture density", np.exp(baselines["GaussianMixture"][0](grid))),
        ("KernelDensity density", np.exp(baselines["KernelDensity"][0](grid))),
    ]

    fig, axes = plt.subplots(1, 5, figsize=(20, 4.3))
    scatter = dict(s=1.5, alpha=0.5, linewidths=0)
    axes[0].scatter(X_train[:, 0], X_train[:, 1], color="k", **scatter)
    axes[0].set_title(f"{name}: training data ({len(X_train):,})")
    axes[1].scatter(samples[:, 0], samples[:, 1], color="C0", **scatter)
    axes[1].set_title(f"LocalFlowMatching samples ({len(samples):,})")
    vmax = max(d.max() for _, d in densities)
    for ax, (title, dens) in zip(axes[2:], densities, strict=True):
        ax.pcolormesh(
            gx, gy, dens.reshape(n_grid, n_grid), shading="auto", cmap="magma", vmin=0, vmax=vmax
        )
        ax.set_title(title)
    for ax in axes:
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        "sklfm demo: data, LocalFlowMatching samples, and learned densities (same color scale)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_demo(args):
    import torch

    from sklfm.datasets import TOYS

    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        pass
    print("sklfm demo: LocalFlowMatching vs scikit-learn's GaussianMixture and KernelDensity")
    params = dict(DEMO_PARAMS, max_iter=args.max_iter)
    print(
        f"  LocalFlowMatching({', '.join(f'{k}={v!r}' for k, v in params.items())}), other "
        f"parameters default;\n  max_iter caps each block at that many steps to keep the demo short. "
        f"torch threads: {args.threads}."
    )
    print(
        "  'test loglik' = mean log-likelihood of held-out rows, nats per row, in data units "
        "(higher is better).\n  GaussianMixture n_components and KernelDensity bandwidth are "
        "picked on a validation split; LocalFlowMatching only holds out 10 % of its\n  "
        "training rows for early stopping."
    )

    # 1. the 2-D toy
    make = TOYS[args.toy]
    X = make(args.toy_train + 2 * args.toy_test, random_state=args.seed)
    X_train, X_val, X_test = _split(X, (args.toy_train, args.toy_test, args.toy_test), args.seed)
    print(
        f"\n[1/2] 2-D toy '{args.toy}': {len(X_train):,} train / {len(X_val):,} validation / "
        f"{len(X_test):,} test rows"
    )
    lfm, baselines = _compare(X_train, X_val, X_test, params, args.seed)
    figure = None
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("  (matplotlib is not installed: no figure; `pip install -e .[demo]`)")
    else:
        figure = Path(args.out).resolve()
        _toy_figure(figure, args.toy, X_train, lfm, baselines, args.grid, args.seed)

    # 2. the real table
    path = data_dir(args.data) / "density" / "protein.csv.gz"
    if not path.is_file():
        print(
            f"\n[2/2] protein: skipped, {path} not found (put the shared data beside the "
            "repository as ../shared/data, or set SKLFM_DATA / --data)."
        )
    else:
        import pandas as pd

        X = pd.read_csv(path, header=None).to_numpy(dtype=np.float64)
        X_train, X_val, X_test = _split(
            X, (args.real_train, args.real_val, args.real_test), args.seed
        )
        print(
            f"\n[2/2] protein (UCI CASP, {X.shape[1]} columns incl. the target): random "
            f"{len(X_train):,} train / {len(X_val):,} validation / {len(X_test):,} test rows "
            f"of {len(X):,}"
        )
        _compare(X_train, X_val, X_test, params, args.seed)

    print(f"\nTotal time: {time.perf_counter() - start:.0f} s")
    if figure is not None:
        print(f"Figure written to: {figure}")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="sklfm demo",
        description="Fit LocalFlowMatching on a 2-D toy and on the protein table, next to "
        "GaussianMixture and KernelDensity; write a figure of the toy fit.",
    )
    parser.add_argument(
        "--out", default="sklfm_demo.png", help="figure path (default: %(default)s)"
    )
    parser.add_argument(
        "--toy", default="pinwheel", choices=["checkerboard", "pinwheel", "spirals", "rings"]
    )
    parser.add_argument(
        "--max-iter",
        type=int,
        default=DEMO_PARAMS["max_iter"],
        help="LFM gradient steps per block (default: %(default)s)",
    )
    parser.add_argument("--toy-train", type=int, default=5000)
    parser.add_argument("--toy-test", type=int, default=2000, help="validation and test rows each")
    parser.add_argument("--real-train", type=int, default=10000)
    parser.add_argument("--real-val", type=int, default=2000)
    parser.add_argument("--real-test", type=int, default=2000)
    parser.add_argument(
        "--grid", type=int, default=80, help="density grid points per axis in the figure"
    )
    parser.add_argument(
        "--data",
        default=None,
        help="shared data folder (holding density/); default: $SKLFM_DATA or ../shared/data",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch and BLAS threads (default: %(default)s; small networks gain little from more, "
        "and lose a lot when the cores are shared)",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv):
    """``sklfm demo ARGV...`` (``argv``: the arguments after ``demo``)."""
    run_demo(build_parser().parse_args(argv))
    return 0
