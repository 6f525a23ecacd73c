"""Shared data loaders for the benchmarks.

The real data live outside the repository, in ``../shared/data/`` relative to the
repository root (see that folder's README.md); set ``SKLFM_DATA`` to use another
folder with the same layout (``density/``, ``adbench/``). Nothing here downloads.

Every loader raises :class:`DataUnavailable` (a ``FileNotFoundError``) with a
message naming the missing path, so a benchmark can skip cleanly::

    try:
        X = load_protein()
    except DataUnavailable as exc:
        print(f"skipped: {exc}")
"""

import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


class DataUnavailable(FileNotFoundError):
    """A shared data file is not there."""


def data_dir():
    """The shared data folder: $SKLFM_DATA, else ../shared/data beside the repository."""
    override = os.environ.get("SKLFM_DATA")
    if override:
        return Path(override).expanduser().resolve()
    return (ROOT / ".." / "shared" / "data").resolve()


def data_path(*parts):
    """Path of a file under the shared data folder; DataUnavailable if it is absent."""
    path = data_dir().joinpath(*parts)
    if not path.exists():
        raise DataUnavailable(
            f"{path} not found (expected the shared data in ../shared/data beside the "
            "repository, or a folder named by SKLFM_DATA)"
        )
    return path


# --- density/ ---


def load_protein():
    """UCI CASP protein table: ndarray (45730, 10), float64; 9 features + the target last.

    No header in the file; every column is mean-centred in this copy.
    """
    import pandas as pd

    path = data_path("density", "protein.csv.gz")
    return pd.read_csv(path, header=None).to_numpy(dtype=np.float64)


def load_house_16h(include_target=True):
    """PMLB house_16H: DataFrame (22784, 17) with named columns, ``target`` last.

    ``include_target=False`` drops the ``target`` column (16 features).
    """
    import pandas as pd

    frame = pd.read_csv(data_path("density", "house_16H.tsv.gz"), sep="\t").astype(np.float64)
    return frame if include_target else frame.drop(columns="target")


DENSITY_TABLES = {"protein": load_protein, "house_16H": load_house_16h}


def load_mixed(name):
    """A mixed table, ``diamonds`` or ``credit_data``, as a DataFrame.

    Numbers keep their dtypes (integers as int64 where complete, float64 with
    NaN otherwise); ``diamonds``' cut, color and clarity become ordered
    categories in R's order; string columns of ``credit_data`` stay strings
    (with NaN for missing cells).
    """
    import pandas as pd

    frame = pd.read_csv(data_path("density", f"{name}.csv.gz"))
    if name == "diamonds":
        for column, levels in DIAMOND_LEVELS.items():
            frame[column] = pd.Categorical(frame[column], categories=levels, ordered=True)
    return frame


DIAMOND_LEVELS = {
    "cut": ["Fair", "Good", "Very Good", "Premium", "Ideal"],
    "color": ["D", "E", "F", "G", "H", "I", "J"],
    "clarity": ["I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF"],
}


# --- adbench/ ---


def adbench_names():
    """Names (file stems) of the ADBench sets, sorted."""
    return sorted(p.stem for p in data_path("adbench").glob("*.npz"))


def load_adbench(name):
    """(X, y) of one ADBench set; y == 1 marks an anomaly."""
    with np.load(data_path("adbench", f"{name}.npz"), allow_pickle=False) as d:
        return np.asarray(d["X"], dtype=np.float64), np.asarray(d["y"]).astype(int)


# --- splits ---


def train_test_rows(n_rows, test_size=0.2, seed=0):
    """Indices of one shuffled train / test split (the same for every method)."""
    rng = np.random.RandomState(seed)
    order = rng.permutation(n_rows)
    n_test = int(round(test_size * n_rows))
    return np.sort(order[n_test:]), np.sort(order[:n_test])
