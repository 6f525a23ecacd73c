"""The GPU half of issue 5, side by side with the CPU in one run.

One command on a machine with a CUDA GPU measures every GPU figure issue 5
asks for (about 5 minutes on an H100, most of it the CPU side)::

    python benchmarks/gpu.py --power .gpu/power.npz --write-docs

GPU below is ``--device`` (default "cuda"), CPU the host's processor. The
helpers of ``speed.py`` (the CPU table) are reused with a device.

1. Matmul peak: 8192^3 on the GPU in float32 (TF32 off, torch's default),
   float32 with TF32 (``torch.set_float32_matmul_precision("high")``) and
   bfloat16; 2048^3 float32 on the CPU at 1 thread and at all threads.
2. Training throughput of the default network at the default batch
   (``train_block``, d = 10, data and generator on the device): rows/s,
   achieved FLOP/s (6 x parameters per row, as in speed.py) and its share of
   the same device's float32 peak; GPU, CPU 1 thread, CPU all threads.
3. The reference POWER configuration: batch 30,000, hidden (256,) * 4, d = 6
   (random rows): seconds per 1,000 training iterations. The GPU times 1,000
   iterations; the CPU times a few dozen and scales them to 1,000. Goal: the
   GPU at least 10x the CPU at all threads.
4. ``score_samples`` on the GPU at d = 6, 16, 43 next to the reference trace
   (d autograd backward passes, ``speed.reference_score_samples``) on the GPU:
   rows/s and the max |difference| (goal < 1e-5); this package on the CPU
   (1 thread, speed.py's --quick sizes) alongside.
5. ``score_samples`` on 1,000,000 x 10 rows on the GPU, in a fresh process
   (``speed.million_rows``): default network, 3 OU blocks + free block, RK4-8;
   rows/s, ``torch.cuda.max_memory_allocated`` while scoring (goal < 2 GB) and
   the host's peak RSS.
6. Precision: ``LocalFlowMatching(device=GPU)`` on POWER (the reference OU
   steps, (256,) * 4, batch 30,000, fixed max_iter) fitted in float32 and with
   TF32 matmuls around fit only; fit time and held-out log-likelihood per
   dimension (scored in float64, outside). A float32 fit with another seed
   gives the seed-to-seed spread that a precision's change is to be judged
   against.
7. Host synchronisations: ``torch.cuda.set_sync_debug_mode("warn")`` around
   ``train_block`` with n and 3n steps and no check in between; the extra
   warnings / 2n are the syncs per step. Every warning's source line is listed.

Does TF32 reach the training code? Yes: training runs in float32
(``_runtime.TRAIN_DTYPE``) through ``F.linear``, with no float64 cast on the
way (``VelocityMLP`` casts its weights to the input's dtype, float32), so TF32
applies to its matmuls, and to the float32 pushes of the training and
validation rows from block to block. The schedule's probe and all scoring are
float64, which TF32 does not touch, so the likelihoods compared are float64
throughout. A caller's bfloat16 autocast does not reach training: the core
switches it off (the run below shows why).

Without CUDA the script says so and exits with status 0. ``--dry-run`` runs
every item with tiny sizes on ``--device`` (the CPU where there is no GPU), so
that the code paths are tested without one; its figures mean nothing and it
never writes the docs. On the CPU the CUDA-only calls (synchronize, the sync
debug mode, GPU memory) are skipped.

A failing item is recorded in the table (its traceback printed) and the run
goes on: a GPU is lent rarely, and one broken item should not cost the rest.

POWER on the device machine
---------------------------
The device machine reaches nothing outside the repository copy it is given.
Build POWER here (``python ../shared/data/prepare_power.py /tmp/power/power.npz``),
then cut what item 6 reads into an ignored folder that travels with the run::

    echo /.gpu/ >> .git/info/exclude; mkdir -p .gpu
    python -c "import numpy as np; d = np.load('/tmp/power/power.npz'); \\
np.savez('.gpu/power.npz', train=d['train'][:100000], test=d['test'])"

and run, carrying ``.gpu``, with ``--code "git $(git rev-parse --short HEAD)"``
filled in here when the copy there has no ``.git``; copy
``docs/benchmarks.md`` to the run's output folder to bring the section back.

Usage
-----
    python benchmarks/gpu.py --power .gpu/power.npz --write-docs   # on a GPU, ~5 min
    python benchmarks/gpu.py --dry-run                             # any machine, ~20 s
"""

import argparse
import os
import sys
import time
import traceback
import warnings
from collections import Counter
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed  # noqa: E402  (puts the repository on sys.path)
from _report import ROOT, code_version, header, machine_info, report, start_run  # noqa: E402
from speed import (  # noqa: E402
    ACTIVATION,
    BATCH,
    DEFAULTS,
    FIXED_WORK,
    HIDDEN,
    gflops,
    matmul_peak,
    million_rows,
    scoring_comparison,
    synchronize,
    training_throughput,
)

import torch  # noqa: E402

from sklfm import LocalFlowMatching, core  # noqa: E402

SECTION = "## GPU (issue 5)"
POWER_HIDDEN = (256,) * 4
POWER_BATCH = 30_000
POWER_LR = 5e-3

# The reading of the last full run (kept with the script, so that a rewrite of the section keeps it).
NOTES = """\
Reading of the run at 0cb1899 (2026-11-27, H200, 16-core host):

- Training at the reference POWER setting (batch 30,000, 4 x 256): 3.06 s per 1,000 steps, 34.5x
  the same host's 16 CPU threads and 217x one thread (goal 10x). That is 23% of the GPU's plain
  float32 matmul peak (50.5 TFLOP/s); TF32 would raise that peak 8x.
- The default network at the default batch (512 rows, 36k parameters) is launch-bound on a GPU:
  1.74x one CPU thread, 0.1% of the peak. On a GPU, raise `batch_size` (thousands of rows).
- Exact scoring agrees with the reference trace to 7e-15 and runs 8x (d = 6) to 57x (d = 43)
  faster than it; 1,000,000 x 10 rows score in 9.3 s with 0.34 GiB of GPU memory.
- Item 6 failed as a whole in this run: its fourth fit, bfloat16 autocast, raised
  TrainingDivergedError in block 2 at step 50 after 3 halvings, at every learning rate (the item
  alone, rerun at lr 2e-3, failed the same way). Reproduced on a CPU afterwards with CPU
  autocast (100,000 POWER rows, batch 3,000, 4 x 256: the same failure). In a smaller fit (20,000
  rows, 2 x 64) block 1 trained under bfloat16 autocast pushes some training rows to |x| of about
  9,000 (at most 16 after a float32 fit), which block 2 cannot train on. Keeping
  autocast away from the pushes does not help: the field block 1 learnt in bfloat16 is wrong.
  Since then the core switches a caller's autocast off for training (`core.block.without_autocast`),
  and item 6 no longer has a bfloat16 mode. Direct float32 fits of
  the item's configuration trained every time (9 fits: lr 5e-3 and 2e-3, seeds 0 and 1, with host
  syncs, without the caching allocator, with CUDA_LAUNCH_BLOCKING=1): held-out log-likelihood
  -0.0042 (lr 5e-3) and -0.0125 (lr 2e-3) nats per dimension. The item now records a diverging
  mode as a result instead of losing the float32 and TF32 figures; the device time ran out before
  it could be rerun, so TF32's effect on accuracy is unmeasured.
"""

# Pairs are (GPU, CPU): training steps timed, rows scored.
FULL = dict(
    matmul_reps=5, train_steps=(300, 100), train_reps=3,
    power=dict(hidden=POWER_HIDDEN, batch=POWER_BATCH, rows=100_000, steps=(1000, 20), reps=2),
    score_rows=({6: 50_000, 16: 20_000, 43: 6_000}, {6: 400, 16: 160, 43: 64}), score_reps=3,
    million=dict(rows=1_000_000, fit_rows=20_000, hidden=list(HIDDEN), max_iter=300),
    fit=dict(rows=100_000, test=20_000, hidden=POWER_HIDDEN, batch=POWER_BATCH, max_iter=1000),
    sync_steps=20,
)
# Every code path of FULL, at sizes that run in about 20 s on one CPU thread.
DRY = dict(
    matmul_reps=1, train_steps=(5, 5), train_reps=1, matmul_size=256,
    power=dict(hidden=(16,) * 4, batch=300, rows=1000, steps=(5, 5), reps=1),
    score_rows=({6: 60, 16: 30, 43: 10}, {6: 60, 16: 30, 43: 10}), score_reps=1,
    million=dict(rows=2000, fit_rows=500, hidden=[16, 16], max_iter=10),
    fit=dict(rows=2000, test=500, hidden=(16,) * 2, batch=256, max_iter=10),
    sync_steps=3,
)


@contextmanager
def matmul_precision(precision):
    """torch.set_float32_matmul_precision(precision) inside the block ("high": TF32 on CUDA)."""
    saved = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved)


@contextmanager
def sync_warnings(device):
    """Collect the warnings of torch's CUDA sync debug mode raised inside the block.

    Yields the list they are appended to; it stays empty off CUDA.
    """
    cuda = device.type == "cuda"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        saved = torch.cuda.get_sync_debug_mode() if cuda else None
        if cuda:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            yield caught
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode(saved)
    caught[:] = [w for w in caught if "synchroniz" in str(w.message).lower()]


def source_line(filename, lineno):
    path = Path(filename)
    for base in (ROOT, Path(torch.__file__).parent.parent):
        if path.is_relative_to(base):
            path = path.relative_to(base)
            break
    return f"{path}:{lineno}"


# --- the items; each returns its rows as (measurement, result) and its figures ---


def peaks(device, cpu_threads, sizes):
    """Item 1: {(device kind, precision): FLOP/s}."""
    n, reps = sizes.get("matmul_size"), sizes["matmul_reps"]
    out = {("gpu", "float32"): matmul_peak(torch.float32, None, n, reps, device)}
    with matmul_precision("high"):
        out["gpu", "float32 with TF32"] = matmul_peak(torch.float32, None, n, reps, device)
    out["gpu", "bfloat16"] = matmul_peak(torch.bfloat16, None, n, reps, device)
    for threads in cpu_threads:
        out[f"cpu{threads}", "float32"] = matmul_peak(torch.float32, threads, n, reps)
    speed.set_threads(1)
    rows = [(f"matmul {n or (8192 if where == 'gpu' else 2048)}^3 {precision}, {where_name(where)}", gflops(flops))
            for (where, precision), flops in out.items()]
    return rows, out


def throughputs(device, cpu_threads, steps, reps, d=10, n_rows=20000, hidden=HIDDEN, batch=BATCH):
    """train_block on the GPU and the CPU: {where: dict(rows_per_s, flops, params, peak)}."""
    out = {}
    runs = [("gpu", device, 1, steps[0])] + [(f"cpu{t}", torch.device("cpu"), t, steps[1]) for t in cpu_threads]
    for where, on, threads, n_steps in runs:
        results, peak = training_throughput({"this": core}, threads, n_steps, reps, d, n_rows, on, hidden, batch)
        out[where] = dict(results["this"], peak=peak, steps=n_steps)
    speed.set_threads(1)
    return out


def where_name(where):
    if where == "gpu":
        return "GPU"
    threads = int(where[3:])
    return f"CPU {threads} thread{'s' * (threads > 1)}"


def training(device, cpu_threads, sizes):
    """Item 2."""
    out = throughputs(device, cpu_threads, sizes["train_steps"], sizes["train_reps"])
    rows = [(
        f"train_block, default net ({r['params']:,} params, {HIDDEN}, {ACTIVATION}), batch {BATCH}, "
        f"d=10, {where_name(where)}",
        f"{r['rows_per_s']:,.0f} rows/s = {gflops(r['flops'])} = {r['flops'] / r['peak']:.1%} of that "
        f"device's float32 matmul peak ({gflops(r['peak'])})" + gpu_ratio(out, where),
    ) for where, r in out.items()]
    return rows, out


def gpu_ratio(out, where):
    return "" if where == "gpu" else f"; GPU / this: {out['gpu']['rows_per_s'] / out[where]['rows_per_s']:.2f}x"


def power_setting(device, cpu_threads, sizes):
    """Item 3: seconds per 1,000 iterations at the reference POWER configuration."""
    p = sizes["power"]
    out = throughputs(device, cpu_threads, p["steps"], p["reps"], 6, p["rows"], p["hidden"], p["batch"])
    rows = []
    for where, r in out.items():
        r["per_1000"] = 1000 * min(p["batch"], p["rows"]) / r["rows_per_s"]
        timed = "timed" if r["steps"] >= 1000 else f"{r['steps']} timed, scaled"
        rows.append((
            f"POWER reference setting: batch {p['batch']:,}, {p['hidden']}, d=6, {where_name(where)}",
            f"{r['per_1000']:.2f} s per 1,000 iterations ({timed}); {r['rows_per_s']:,.0f} rows/s = "
            f"{gflops(r['flops'])} = {r['flops'] / r['peak']:.1%} of that device's float32 peak"
            + gpu_ratio(out, where),
        ))
    return rows, out


def scoring(device, sizes):
    """Item 4."""
    gpu_rows, cpu_rows = sizes["score_rows"]
    rows, out = [], {}
    for d in gpu_rows:
        gpu = scoring_comparison(d, gpu_rows[d], sizes["score_reps"], device=device)
        cpu = scoring_comparison(d, cpu_rows[d], reps=min(2, sizes["score_reps"]))
        out[d] = dict(gpu=gpu, cpu=cpu)
        rows.append((
            f"score_samples d={d}, GPU ({gpu_rows[d]:,} rows, {gpu['n_blocks']} blocks x RK4-{gpu['ode_steps']})",
            f"{gpu['ours_rows_per_s']:,.0f} rows/s vs the reference trace on the GPU "
            f"{gpu['reference_rows_per_s']:,.0f} rows/s: {gpu['ours_rows_per_s'] / gpu['reference_rows_per_s']:.2f}x; "
            f"max |diff| {gpu['max_abs_diff']:.1e}; this package on the CPU (1 thread, {cpu_rows[d]} rows, "
            f"{cpu['n_blocks']} blocks) {cpu['ours_rows_per_s']:,.0f} rows/s, GPU / CPU "
            f"{gpu['ours_rows_per_s'] / cpu['ours_rows_per_s']:.1f}x",
        ))
    return rows, out


def million(device, sizes):
    """Item 5, in a fresh process (so that its peaks are its own)."""
    m = sizes["million"]
    spec = dict(m, d=10, step_sizes=list(FIXED_WORK["step_sizes"]), solver="rk4", ode_steps=8,
                threads=1, device=str(device))
    r = million_rows(spec)
    gpu = "n/a off CUDA" if r["gpu_peak"] is None else f"{r['gpu_peak'] / 2**30:.3f} GiB"
    rows = [(
        f"score_samples {m['rows']:,} x 10 on the GPU, network {tuple(m['hidden'])}, "
        f"{len(FIXED_WORK['step_sizes'])} OU blocks + free block, RK4-8",
        f"{r['rows_per_s']:,.0f} rows/s ({r['seconds']:.1f} s); peak GPU memory allocated while scoring "
        f"{gpu}; host peak RSS {r['peak'] / 2**30:.2f} GiB",
    )]
    return rows, r


def power_rows(path, n_train, n_test, dry):
    """(name, train, test) of POWER; without it a 6-D stand-in in a dry run, else the reason."""
    from _data import DataUnavailable
    from paper import power_split

    try:
        return "POWER", *power_split(path, n_train, n_test)
    except DataUnavailable as exc:
        if not dry:
            return str(exc), None, None
    rng = np.random.RandomState(0)
    X = np.tanh(rng.standard_normal((n_train + n_test, 6)) @ rng.standard_normal((6, 6)))
    return "a 6-D stand-in (no --power)", X[:n_train], X[n_train:]


def precision(device, power, sizes, dry):
    """Item 6: POWER fits in float32 and TF32; fit time, held-out LL / dim."""
    f = sizes["fit"]
    name, X_train, X_test = power_rows(power, f["rows"], f["test"], dry)
    if X_train is None:
        return [("fits for item 6", f"skipped: {name}")], None
    modes = {
        "float32": (0, nullcontext),
        "float32, seed 1": (1, nullcontext),
        "TF32 matmuls": (0, lambda: matmul_precision("high")),
    }
    rows = [(
        "fits for item 6",
        f"{name}, {len(X_train):,} training rows, {len(X_test):,} held-out rows; {len(FIXED_WORK['step_sizes'])} "
        f"OU blocks {FIXED_WORK['step_sizes']} + free block, {f['hidden']}, batch {f['batch']:,}, "
        f"max_iter {f['max_iter']} per block, learning rate {POWER_LR:g}; seed 0 unless named",
    )]
    out = {}
    for mode, (seed, context) in modes.items():
        model = LocalFlowMatching(
            step_sizes=FIXED_WORK["step_sizes"], hidden_layer_sizes=f["hidden"], max_iter=f["max_iter"],
            batch_size=f["batch"], learning_rate=POWER_LR, early_stopping=False, random_state=seed, device=device,
        )
        synchronize(device)
        t0 = time.perf_counter()
        try:
            with context():
                model.fit(X_train)
        except core.TrainingDivergedError as exc:
            # A precision that diverges is a result, not a broken item.
            out[mode] = dict(failed=str(exc).split(": ", 1)[0])
            continue
        synchronize(device)
        seconds = time.perf_counter() - t0
        out[mode] = dict(seconds=seconds, ll=model.score(X_test) / X_test.shape[1])
    base = out["float32"]
    for mode, r in out.items():
        if "failed" in r:
            result = f"failed: {r['failed']}"
        elif "failed" in base:
            result = f"held-out log-likelihood {r['ll']:.4f} nats per dimension"
        else:
            result = (
                f"fit {r['seconds']:.1f} s ({base['seconds'] / r['seconds']:.2f}x float32's speed); held-out "
                f"log-likelihood {r['ll']:.4f} nats per dimension ({r['ll'] - base['ll']:+.4f} vs float32)"
            )
        rows.append((f"fit in {mode} on the GPU", result))
    return rows, out


def host_syncs(device, sizes):
    """Item 7: CUDA sync-debug warnings of train_block with n and 3n steps (one check, at the end)."""
    n = sizes["sync_steps"]
    data = torch.randn(20000, 10, generator=torch.Generator().manual_seed(0)).to(device)

    def train(steps):
        block = core.Block.new(10, HIDDEN, ACTIVATION, 0.15, torch.Generator().manual_seed(1)).to(device)
        settings = core.TrainSettings(steps, BATCH, DEFAULTS["learning_rate"], check_interval=steps)
        with sync_warnings(device) as caught:
            core.train_block(block, data, settings, torch.Generator(device=device).manual_seed(0))
        return caught

    train(n)  # warm-up: first calls may synchronise once (library handles, allocator)
    few, many = train(n), train(3 * n)
    per_step = (len(many) - len(few)) / (2 * n)
    sources = Counter(source_line(w.filename, w.lineno) for w in many)
    listed = "; ".join(f"{where} x{count}" for where, count in sources.most_common()) or "none"
    measured = device.type == "cuda"
    rows = [(
        f"host synchronisations in train_block (default net and batch), {n} and {3 * n} steps",
        (f"{len(few)} and {len(many)} sync warnings: {per_step:g} per step; sources ({3 * n} steps): {listed}"
         if measured else "not measured: torch's sync debug mode is CUDA only"),
    )]
    return rows, dict(per_step=per_step if measured else None, sources=listed)


# --- the report ---


def goal_lines(results):
    def verdict(ok):
        return "**met**" if ok else "**missed**"

    lines = []
    if "power" in results:
        gpu = results["power"]["gpu"]
        cpus = {w: r for w, r in results["power"].items() if w != "gpu"}
        widest = max(cpus, key=lambda w: int(w[3:]))
        ratio = gpu["rows_per_s"] / cpus[widest]["rows_per_s"]
        others = "".join(f", {gpu['rows_per_s'] / r['rows_per_s']:.1f}x vs {where_name(w)}"
                         for w, r in cpus.items() if w != widest)
        lines.append(
            f"- Training on the GPU >= 10x the CPU at the reference POWER setting: {ratio:.1f}x vs "
            f"{where_name(widest)}{others} ({gpu['per_1000']:.2f} s vs {cpus[widest]['per_1000']:.1f} s "
            f"per 1,000 iterations): {verdict(ratio >= 10)}."
        )
    if "scoring" in results:
        worst = max(r["gpu"]["max_abs_diff"] for r in results["scoring"].values())
        lines.append(f"- Exact scoring on the GPU identical to the reference trace (1e-5): max |diff| "
                     f"{worst:.1e} over d = 6, 16, 43: {verdict(worst < 1e-5)}.")
    if "million" in results and results["million"]["gpu_peak"] is not None:
        peak = results["million"]["gpu_peak"]
        lines.append(f"- Scoring 1,000,000 x 10 with < 2 GB of GPU memory: {peak / 2**30:.3f} GiB peak "
                     f"allocated: {verdict(peak < 2e9)}.")
    if "syncs" in results and results["syncs"]["per_step"] is not None:
        per_step = results["syncs"]["per_step"]
        lines.append(f"- No host synchronisation per training step: {per_step:g} per step: "
                     f"{verdict(per_step == 0)}.")
    if results.get("precision") and "failed" not in results["precision"]["float32"]:
        r = results["precision"]
        base, spread = r["float32"], abs(r["float32, seed 1"]["ll"] - r["float32"]["ll"])
        for mode in ("TF32 matmuls",):
            if "failed" in r[mode]:
                lines.append(f"- {mode}: training diverged ({r[mode]['failed']}): not usable as is.")
                continue
            change = r[mode]["ll"] - base["ll"]
            within = "within" if abs(change) <= spread else "beyond"
            lines.append(
                f"- {mode}: held-out log-likelihood {change:+.4f} nats per dimension vs float32, {within} "
                f"the seed-to-seed difference ({spread:.4f}); fit {base['seconds'] / r[mode]['seconds']:.2f}x "
                "float32's speed."
            )
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--device", default="cuda", help="the GPU (default cuda)")
    parser.add_argument("--power", help="POWER .npz with train and test arrays (item 6)")
    parser.add_argument("--threads", type=int, help="CPU threads of the 'all threads' rows (default: all)")
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny sizes on --device (the CPU without CUDA); figures meaningless, no docs")
    parser.add_argument("--code", help="code version to record (default: git HEAD of this checkout)")
    parser.add_argument("--write-docs", action="store_true", help="replace the section in docs/benchmarks.md")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        print("No CUDA device here: nothing measured, docs unchanged. Run this on a machine with a GPU, "
              "or with --dry-run to exercise the code paths on the CPU.")
        return 0
    device = torch.device(args.device if cuda else "cpu")
    sizes = DRY if args.dry_run else FULL
    all_threads = args.threads or (1 if args.dry_run else len(os.sched_getaffinity(0)))
    cpu_threads = sorted({1, all_threads})
    command, date = start_run("gpu.py", argv, threads=1)
    machine = machine_info(extra=f", CUDA {torch.version.cuda}" if cuda else "")
    code = args.code or code_version()
    start = time.perf_counter()
    md, results = [], {}
    items = [
        ("1", "peaks", lambda: peaks(device, cpu_threads, sizes)),
        ("2", "training", lambda: training(device, cpu_threads, sizes)),
        ("3", "power", lambda: power_setting(device, cpu_threads, sizes)),
        ("4", "scoring", lambda: scoring(device, sizes)),
        ("5", "million", lambda: million(device, sizes)),
        ("6", "precision", lambda: precision(device, args.power, sizes, args.dry_run)),
        ("7", "syncs", lambda: host_syncs(device, sizes)),
    ]
    failed = []
    for number, key, run in items:
        print(f"{number}. {key} (at {time.perf_counter() - start:.0f} s)", flush=True)
        try:
            rows, results[key] = run()
        except Exception as exc:  # one broken item must not cost the rest of a rare GPU run
            traceback.print_exc()
            failed.append(key)
            rows = [(key, f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")]
        for what, value in rows:
            md.append((number, what, value))
            print(f"  {number:4s} {what}: {value}", flush=True)
    elapsed = time.perf_counter() - start
    lines = header(SECTION, command, date, elapsed, machine, code) + [
        f"Device: {device}" + (" (DRY RUN: tiny sizes, figures meaningless)" if args.dry_run else ""),
        "",
        "| item | measurement | result |",
        "|---|---|---|",
        *(f"| {i} | {w} | {v} |" for i, w, v in md),
        "",
        "Goals of issue 5 on the GPU, as measured in this run:",
        "",
        *goal_lines(results),
        "",
        *([] if args.dry_run else NOTES.splitlines()),
    ]
    print()
    report("\n".join(lines) + "\n", args.write_docs and not args.dry_run)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
