"""Shared test configuration.

Torch intra-op threads: the tests use tiny networks, which gain nothing from
intra-op parallelism, and on a small shared machine (2 cores, other jobs
running) OpenMP's spinning barriers make each small op up to ~1000x slower
(measured: a 20 x 9 linear layer took 18 ms with 2 threads vs 26 us with 1
under load). The suite therefore runs torch single-threaded; set
SKLFM_TEST_TORCH_THREADS to override. This touches the test process only:
joblib/loky workers start fresh and get their limit from joblib (see
test_sklearn_integration.py::test_joblib_workers_do_not_oversubscribe).

SCIPY_ARRAY_API=1 lets scikit-learn's check_array_api_input run (numpy
namespace only) instead of skipping; it must be set before scipy is imported.
"""

import os

os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ.get("SKLFM_TEST_TORCH_THREADS", "1")))


@pytest.fixture
def rng():
    return np.random.RandomState(0)
