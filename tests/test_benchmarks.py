"""benchmarks/gpu.py runs end to end: its first real run is on a rarely lent GPU, so its
dry run (every item, tiny sizes, on the CPU) guards it against bit rot meanwhile."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


def test_gpu_benchmark_dry_run_measures_every_item():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--device", "cpu"],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    rows = [line.split(" | ") for line in done.stdout.splitlines() if line.startswith("| ")][1:]
    assert {row[0].strip("| ") for row in rows} == set("1234567")
    assert not [row for row in rows if "failed" in row[-1]]
    (scoring,) = [line for line in done.stdout.splitlines() if "identical to the reference trace" in line]
    assert scoring.endswith("**met**.")
    assert "DRY RUN" in done.stdout
