"""Speed and memory of training and exact scoring (issue 5), measured in one run on one machine.

What is measured (all in this one process, except item 5 which runs in a
fresh subprocess so that its peak memory is its own):

1. Dense matmul throughput of the machine: the best of a few large square
   float32 (and float64) matmuls, at 1 and 2 torch threads.
2. Training throughput of the default velocity network at the default batch
   size: ``sklfm.core.train_block`` on random data with d = 10. FLOPs are
   counted as 6 x (number of parameters) per training row: 2 per weight for
   the forward multiply-add and 4 for the backward (gradients with respect to
   the activations and to the weights). This slightly overcounts (the first
   layer's input gradient is not needed, bias adds are counted as
   multiply-adds) and ignores the elementwise work and the optimizer.
   Reported as rows/s, achieved FLOP/s and the ratio to item 1 at the same
   thread count.
3. ``score_samples`` throughput at d = 6, 16 and 43 (default network, default
   "auto" blocks, RK4 with 8 steps per block), next to the reference method
   written here: the same network, solver, steps and row chunks, with the
   trace of dv/dx by d autograd backward passes (one per output coordinate,
   as in the LFM/FFJORD reference code, without ``create_graph``). The
   values must agree (max abs difference reported).
4. Solver accuracy on a trained model (default parameters on the protein
   table of ``../shared/data/density``, or a 2-D toy without it): the error
   of each fixed-step solve of the log-likelihood against RK4 with 256 steps
   per block, mean and max over held-out rows; the smallest RK4 step count
   within 0.01 nats; Euler with 150 steps (the reference's setting) for
   comparison. Also fit time against the number of training rows.
5. ``score_samples`` on 1,000,000 x 10 rows in a subprocess: rows/s and the
   peak resident memory (``resource.getrusage`` ru_maxrss, which sees torch's
   allocations), with a small network (timed) and with the default network
   (memory only: one block, one Euler step; a chunk's memory does not depend
   on the number of steps or blocks).

With ``--baseline REV`` the ``sklfm/core`` of git revision REV is imported
side by side and timed on the same inputs (before/after ratios of core
changes; the training losses and the scores must agree).

Usage
-----
    python benchmarks/speed.py                          # full run, ~10-15 min on 2 loaded cores
    python benchmarks/speed.py --quick                  # ~4 min
    python benchmarks/speed.py --baseline HEAD --write-docs
"""

import argparse
import json
import math
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Performance (issue 5)"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import DOCS, code_version, report  # noqa: E402

import torch  # noqa: E402

from sklfm import LocalFlowMatching  # noqa: E402
from sklfm import core  # noqa: E402

DEFAULTS = LocalFlowMatching().get_params()
# A fixed amount of work per fit (no data-driven block count, no early stop), so
# that fit times compare across row counts.
FIXED_WORK = dict(step_sizes=(0.15, 0.195, 0.2535), early_stopping=False)
HIDDEN = tuple(DEFAULTS["hidden_layer_sizes"])
ACTIVATION = DEFAULTS["activation"]
BATCH = DEFAULTS["batch_size"]
TOLERANCE = 0.01  # nats


def set_threads(n):
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(n)


def synchronize(device):
    """Wait for the work queued on `device` (CUDA runs asynchronously), so that host timers see it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn, reps, device="cpu"):
    best = math.inf
    for _ in range(reps):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


def profile_top(fn, k=6):
    """Share of self CPU time of the top `k` torch ops while running fn()."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:k]
    return [(e.key, e.self_cpu_time_total / total) for e in top]


def fmt_profile(top):
    return ", ".join(f"{name} {share:.0%}" for name, share in top)


def load_baseline_core(rev):
    """sklfm/core at git revision `rev`, imported as a separate package."""
    listing = subprocess.run(
        ["git", "-C", str(ROOT), "ls-tree", "--name-only", rev, "sklfm/core/"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    package = Path(tempfile.mkdtemp()) / "sklfm_baseline_core"
    package.mkdir()
    for path in listing:
        if path.endswith(".py"):
            source = subprocess.run(
                ["git", "-C", str(ROOT), "show", f"{rev}:{path}"], capture_output=True, text=True, check=True
            ).stdout
            (package / Path(path).name).write_text(source)
    sys.path.insert(0, str(package.parent))
    import sklfm_baseline_core

    return sklfm_baseline_core


# --- 1. matmul peak ---


def matmul_peak(dtype, threads, n=None, reps=5, device="cpu"):
    """FLOP/s of the best of `reps` n x n matmuls (n: 2048 on the CPU, 8192 on an accelerator).

    `threads` None leaves the CPU thread count as it is.
    """
    if threads is not None:
        set_threads(threads)
    n = n or (2048 if torch.device(device).type == "cpu" else 8192)
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    out = torch.empty(n, n, dtype=dtype, device=device)
    torch.mm(a, b, out=out)
    return 2 * n**3 / best_time(lambda: torch.mm(a, b, out=out), reps, device)


# --- 2. training ---


def training_throughput(cores, threads, steps, reps, d=10, n_rows=20000, device="cpu", hidden=HIDDEN,
                        batch=BATCH):
    """train_block with the default network and batch, for each core in `cores` (name: module).

    Returns ({name: dict(rows_per_s, flops, params, losses)}, best float32 matmul
    FLOP/s on `device`). The cores and a matmul-peak probe take turns in every
    repeat, so that changes in the machine's load hit them alike. The data, the
    block and the training generator are on `device`.
    """
    set_threads(threads)
    data = torch.randn(n_rows, d, generator=torch.Generator().manual_seed(0)).to(device)
    runs, params, out = {}, None, {}

    def new_block(module):
        return module.Block.new(d, hidden, ACTIVATION, 0.15, torch.Generator().manual_seed(1)).to(device)

    for name, module in cores.items():
        settings = module.TrainSettings(
            max_iter=steps, batch_size=batch, learning_rate=DEFAULTS["learning_rate"],
            interpolant=DEFAULTS["interpolant"],
        )
        warm = new_block(module)
        params = sum(p.numel() for p in warm.parameters())
        warm_steps = module.TrainSettings(max(1, min(20, steps // 5)), batch, 1e-3)
        module.train_block(warm, data, warm_steps, torch.Generator(device=device))

        def run(module=module, settings=settings):
            return module.train_block(new_block(module), data, settings, torch.Generator(device=device).manual_seed(2))

        runs[name] = run
    best = {name: math.inf for name in runs}
    losses = {}
    peak = 0.0
    for _ in range(reps):
        peak = max(peak, matmul_peak(torch.float32, threads, reps=2, device=device))
        for name, run in runs.items():
            synchronize(device)
            t0 = time.perf_counter()
            losses[name] = run()
            synchronize(device)
            best[name] = min(best[name], time.perf_counter() - t0)
    for name, seconds in best.items():
        rows_per_s = steps * min(batch, n_rows) / seconds
        out[name] = dict(rows_per_s=rows_per_s, flops=6 * params * rows_per_s, params=params, losses=losses[name])
    return out, peak


def training_profile(d=10):
    gen = torch.Generator().manual_seed(0)
    data = torch.randn(20000, d, generator=gen)
    block = core.Block.new(d, HIDDEN, ACTIVATION, 0.15, gen)
    settings = core.TrainSettings(30, BATCH, DEFAULTS["learning_rate"])
    return profile_top(lambda: core.train_block(block, data, settings, gen))


# --- 3. scoring against the reference method ---


def reference_velocity_and_divergence(net):
    """v and tr(dv/dx) by d backward passes through the module's own forward."""

    def func(t, x):
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            v = net(t, x)
            divergence = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
            for i in range(x.shape[1]):
                (grad,) = torch.autograd.grad(v[:, i].sum(), x, retain_graph=i + 1 < x.shape[1])
                divergence = divergence + grad[:, i]
        return v.detach(), divergence.detach()

    return func


def reference_log_prob(chain, x, solver, chunk_rows):
    """FlowChain.log_prob with the trace by autograd: same solver, steps and chunks."""
    parts = []
    for chunk in torch.split(x, chunk_rows):
        logdet = torch.zeros(chunk.shape[0], dtype=chunk.dtype, device=chunk.device)
        for block in chain.blocks:
            func = reference_velocity_and_divergence(block.net)
            chunk, block_logdet = core.ode.flow_with_logdet(
                func, chunk, 0.0, 1.0, solver.n_steps, solver.method
            )
            logdet = logdet + block_logdet
        parts.append(-0.5 * (chunk * chunk).sum(1) - 0.5 * x.shape[1] * math.log(2 * math.pi) + logdet)
    return torch.cat(parts)


def reference_score_samples(model, X):
    U = torch.tensor(model.standardizer_.transform(X), dtype=torch.float64, device=model.device_)
    rows = model.chain_._chunk_rows(X.shape[1], U.device)
    log_prob = reference_log_prob(model.chain_, U, model._solver_settings(), rows)
    return log_prob.cpu().numpy() + model.standardizer_.log_det_


def scoring_comparison(d, n_rows, reps, baseline=None, device="cpu"):
    rng = np.random.RandomState(d)
    X = rng.standard_normal((n_rows, d)) @ rng.standard_normal((d, d)) / math.sqrt(d)
    model = LocalFlowMatching(max_iter=20, random_state=0, device=device).fit(X)
    out = {}

    def ours():
        out["ours"] = model.score_samples(X)

    def reference():
        out["reference"] = reference_score_samples(model, X)

    fns = {"ours": ours, "reference": reference}
    if baseline is not None:
        old_chain = baseline_chain(baseline, model.chain_)
        U = torch.tensor(model.standardizer_.transform(X), dtype=torch.float64)

        def before():
            lp = old_chain.log_prob(U, baseline.SolverSettings("rk4", model.ode_steps))
            out["before"] = lp.numpy() + model.standardizer_.log_det_

        fns["before"] = before
    times = {k: math.inf for k in fns}
    for _ in range(reps):  # interleaved, so that load changes hit all alike
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name] = min(times[name], time.perf_counter() - t0)
    result = dict(d=d, n_rows=n_rows, n_blocks=len(model.chain_.blocks), ode_steps=model.ode_steps)
    result.update({f"{k}_rows_per_s": n_rows / v for k, v in times.items()})
    result["max_abs_diff"] = float(np.max(np.abs(out["ours"] - out["reference"])))
    if baseline is not None:
        result["before_max_abs_diff"] = float(np.max(np.abs(out["ours"] - out["before"])))
    return result


def baseline_chain(baseline, chain):
    """The same trained weights in the baseline core's classes."""
    blocks = []
    for block in chain.blocks:
        net = block.net
        sizes = [w.shape[0] for w in net.weights[:-1]]
        old = baseline.VelocityMLP(net.weights[-1].shape[0], sizes, net.activation, torch.Generator())
        old.load_state_dict(net.state_dict())
        blocks.append(baseline.Block(old, block.step_size))
    return baseline.FlowChain(blocks)


def scoring_profile(d=16):
    rows = core.chain._TANGENT_BUDGET // (d * max(HIDDEN))
    net = core.VelocityMLP(d, HIDDEN, ACTIVATION, torch.Generator().manual_seed(0))
    x = torch.randn(rows, d, dtype=torch.float64)
    t = torch.full((1, 1), 0.3, dtype=torch.float64)
    frozen = net.frozen(torch.float64)
    ref = reference_velocity_and_divergence(net)

    def ours():
        with torch.no_grad():
            for _ in range(5):
                frozen.velocity_and_divergence(t, x)

    def reference():
        for _ in range(5):
            ref(t, x)

    return profile_top(ours), profile_top(reference)


def chunk_budget_sweep(budgets, d=10, n_rows=8192, baseline=None):
    """One block's log_prob on n_rows at several tangent budgets (rows/s, minor page faults).

    With a baseline core, its log_prob (at its own budget) is the entry "before".
    """
    chain = core.FlowChain([core.Block.new(d, HIDDEN, ACTIVATION, 0.15, torch.Generator().manual_seed(0))])
    x = torch.randn(n_rows, d, dtype=torch.float64)
    solver = core.SolverSettings("rk4", 2)
    saved = core.chain._TANGENT_BUDGET
    runs = {b: lambda: chain.log_prob(x, solver) for b in budgets}
    if baseline is not None:
        old = baseline_chain(baseline, chain)
        runs["before"] = lambda: old.log_prob(x, baseline.SolverSettings("rk4", 2))
    results = {b: (math.inf, 0) for b in runs}
    try:
        for _ in range(2):
            for budget, run in runs.items():
                core.chain._TANGENT_BUDGET = saved if budget == "before" else budget
                r0 = resource.getrusage(resource.RUSAGE_SELF)
                t0 = time.perf_counter()
                run()
                seconds = time.perf_counter() - t0
                faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0.ru_minflt
                if seconds < results[budget][0]:
                    results[budget] = (seconds, faults)
    finally:
        core.chain._TANGENT_BUDGET = saved
    return {b: dict(rows_per_s=n_rows / s, minor_faults=f) for b, (s, f) in results.items()}


def macs_per_evaluation(d, hidden):
    """Multiply-adds per row of one velocity + exact divergence: (this package, reference method).

    Forward: sum of fan_in x fan_out. This package's trace: d x (fan_in x fan_out)
    of every hidden-to-hidden layer (three or more hidden layers). The reference:
    the forward plus d backward passes, each one input-gradient matmul per layer.
    """
    sizes = [d + 1, *hidden, d]
    forward = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    trace = d * sum(a * b for a, b in zip(hidden[:-1], hidden[1:]))
    return forward + trace, forward * (d + 1)


# --- 4. solver accuracy and fit time ---


def accuracy_data(n_train, n_eval, seed=0):
    from _data import DataUnavailable, load_protein

    try:
        X = load_protein()
        name = "protein (10 columns)"
    except DataUnavailable as exc:
        print(f"protein: {exc}; using a 2-D toy instead", flush=True)
        from sklfm.datasets import make_pinwheel

        X = make_pinwheel(n_train + n_eval, random_state=seed)
        name = "pinwheel toy (2-D)"
    order = np.random.RandomState(seed).permutation(len(X))
    return name, X, X[order[:n_train]], X[order[n_train : n_train + n_eval]]


def solver_accuracy(model, X_eval, rk4_steps, euler_steps, reference_steps, check_steps):
    def score(method, steps):
        model.set_params(solver=method, ode_steps=steps)
        return model.score_samples(X_eval)

    try:
        reference = score("rk4", reference_steps)
        check = score("rk4", check_steps) if check_steps else None
        rows = []
        for method, steps_list, evals in [("rk4", rk4_steps, 4), ("euler", euler_steps, 1)]:
            for steps in steps_list:
                err = np.abs(score(method, steps) - reference)
                rows.append(dict(method=method, steps=steps, evals=evals * steps, mean=err.mean(), max=err.max()))
    finally:
        model.set_params(solver="rk4", ode_steps=DEFAULTS["ode_steps"])
    self_check = None if check is None else float(np.max(np.abs(check - reference)))
    return rows, self_check


def fit_times(X, sizes, max_iter):
    out = []
    for n in sizes:
        t0 = time.perf_counter()
        LocalFlowMatching(**FIXED_WORK, max_iter=max_iter, random_state=0, device="cpu").fit(X[:n])
        out.append((n, time.perf_counter() - t0))
    return out


# --- 5. a million rows, in a fresh process ---


def memory_child(spec):
    """Runs in the subprocess: fit a model, score `rows` rows, print JSON.

    On a CUDA device (spec["device"]) also the peak of torch's GPU allocations
    while scoring (gpu_peak; None elsewhere).
    """
    set_threads(spec["threads"])
    device = torch.device(spec.get("device", "cpu"))
    cuda = device.type == "cuda"
    rng = np.random.RandomState(0)
    d = spec["d"]
    A = rng.standard_normal((d, d)) / math.sqrt(d)
    model = LocalFlowMatching(
        hidden_layer_sizes=tuple(spec["hidden"]), step_sizes=tuple(spec["step_sizes"]),
        max_iter=spec["max_iter"], solver=spec["solver"], ode_steps=spec["ode_steps"],
        random_state=0, device=device,
    ).fit(rng.standard_normal((spec.get("fit_rows", 20000), d)) @ A)
    if spec.get("baseline"):
        # Score with the same weights through the baseline core's chain.
        model.chain_ = baseline_chain(load_baseline_core(spec["baseline"]), model.chain_)
    X = rng.standard_normal((spec["rows"], d)) @ A
    page = os.sysconf("SC_PAGE_SIZE")
    rss_before = int(open("/proc/self/statm").read().split()[1]) * page
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    scores = model.score_samples(X)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(dict(
        seconds=seconds, rows_per_s=spec["rows"] / seconds, rss_before=rss_before,
        peak_before=peak_before, peak=peak, finite=bool(np.isfinite(scores).all()),
        input_bytes=X.nbytes, gpu_peak=torch.cuda.max_memory_allocated(device) if cuda else None,
    )))


def million_rows(spec):
    cmd = [sys.executable, __file__, "--_memory-child", json.dumps(spec)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- reporting ---


def machine_info():
    import sklearn

    try:
        cpu = next(
            line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    device = "CUDA " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    load = "%.1f, %.1f, %.1f" % os.getloadavg()
    return (
        f"{cpu}, {os.cpu_count()} cores (load average at start {load}), {device}, "
        f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}; Python "
        f"{platform.python_version()}, torch {torch.__version__}, scikit-learn {sklearn.__version__}, "
        f"numpy {np.__version__}"
    )



def gflops(x):
    return f"{x / 1e9:.1f} GFLOP/s"



CHANGES = [
    "Changes made to `sklfm/core` for issue 5 (their effect is in the before/after rows above, "
    "`--baseline` being the revision before them; scores agree with it to ~1e-14; training losses "
    "agreed bit for bit when these changes were made, at 2a01f02: later changes elsewhere in the "
    "core move their last bits, see the before/after row):",
    "",
    "- Exact divergence (`FrozenVelocity` in `network.py`): the weights are cast to the solve's dtype "
    "once per `log_prob`/`push`/`pull` call (one evaluator per block, made by `FlowChain` for that "
    "call and not stored anywhere), instead of at every velocity evaluation; the row-independent "
    "products of the trace are formed then too, so that with three or more hidden layers each "
    "evaluation is two wide matmuls, D_0 @ P and (J * D) @ Q, instead of tangents pushed layer by "
    "layer (with one or two hidden layers the trace needs no tangent at all); each activation "
    "returns its derivative along with its value; D_k is applied in place.",
    "- Row chunks on the CPU: 2^20 tangent elements (8 MiB in float64) instead of 2^23. Larger "
    "buffers are served by mmap and page-faulted afresh at every allocation (the page-fault column "
    "of the budget rows).",
    "- Chunk results are written into outputs allocated once (and `log_prob` reduces each chunk to "
    "its log-densities) instead of keeping every chunk for a final `torch.cat`. With the smaller "
    "chunks, whose buffers come from the heap rather than mmap, the kept tensors fragmented the "
    "heap: scoring 1,000,000 x 10 rows with the default network peaked at 3.66 GiB before this "
    "change (0.89 GiB with the old 2^23 chunks; item 5 rows for now).",
    "- Training: `data.index_select(0, idx)` instead of `data[idx]` (the advanced-indexing kernel took "
    "60-330 us per step depending on load) and `Adam(foreach=True)` (same updates bit for bit as "
    "the per-tensor default on the CPU). Gain 1.0x on a quiet machine to 1.2x under load.",
    "",
    "Tried and not kept: fused Adam (up to 1.3x per step but not bit-identical, so fits would "
    "change); other softplus formulas (none faster: `log1p` dominates; `logaddexp` differs by "
    "1.7e-9); float64 matmuls through numpy's OpenBLAS (1.5x on the old tall-skinny shapes, none on "
    "the wide ones used now). Threads: a second thread helps only while the second core is idle "
    "(training 1.1x in a quiet run); in runs while other jobs used it, 2 threads trained 5-14x "
    "slower than 1 (OpenMP barriers on small ops): compare the 1- and 2-thread rows of a run.",
    "",
    "`torch.compile` (inductor, CPU), measured by `python benchmarks/compile.py` (2026-11-27, "
    "torch 2.13.0+cpu, 1 thread, process CPU time, eager and compiled in turns over 7 rounds): "
    "training step (batch 512, d=10) 0.98x (rounds 0.97-1.02x), velocity + exact divergence "
    "(512 rows, d=16, float64) 0.98x (rounds 0.96-0.99x; max \\|diff\\| 6.9e-18); each compiles "
    "to one graph with no graph break and runs no faster: the time is in the matmuls, which "
    "compiled code leaves to the same BLAS calls, and in the softplus's exp/log1p, whose cost "
    "fusing the elementwise operations does not remove. Not used: it would add seconds of "
    "compile time to every fit and a C++ compiler to the requirements for nothing.",
]


def gemm_share(top):
    return sum(share for name, share in top if name in ("aten::mm", "aten::addmm", "aten::bmm"))


def goal_lines(T, peak, train, scoring, need, e150, euler_need, million, fits, train_prof):
    def verdict(ok):
        return "**met**" if ok else "**missed**"

    share = train[T]["flops"] / peak[T, torch.float32]
    s16 = scoring[16]
    ratio16 = s16["ours_rows_per_s"] / s16["reference_rows_per_s"]
    lines = [
        f"- Training >= 50 % of the measured float32 matmul peak: {share:.0%} "
        f"({gflops(train[T]['flops'])} of {gflops(peak[T, torch.float32])}), {verdict(share >= 0.5)}. "
        f"Matmuls (aten::mm, aten::addmm) are {gemm_share(train_prof):.0%} of the step's CPU time in "
        "the profile below; the rest is mostly the softplus activation (its forward costs more than a "
        "128-wide layer's matmul), Adam and per-op overhead at batch 512.",
        f"- Exact scoring >= 3x the reference trace at d=16 with identical values: {ratio16:.2f}x, "
        f"max |diff| {s16['max_abs_diff']:.1e}, {verdict(ratio16 >= 3 and s16['max_abs_diff'] < 1e-5)} "
        f"(d=6: {scoring[6]['ours_rows_per_s'] / scoring[6]['reference_rows_per_s']:.2f}x, "
        f"d=43: {scoring[43]['ours_rows_per_s'] / scoring[43]['reference_rows_per_s']:.2f}x). Both do "
        f"the same multiply-adds; this package runs them at {gflops(s16['ours_flops'])}, "
        f"{s16['ours_flops'] / peak[T, torch.float64]:.0%} of the float64 matmul peak measured here, so "
        f"3x would need the reference below "
        f"{s16['ours_flops'] / 3 / peak[T, torch.float64]:.0%} of peak; it runs at "
        f"{s16['reference_flops'] / peak[T, torch.float64]:.0%}.",
    ]
    if need is not None:
        lines.append(
            f"- >= 5x fewer velocity evaluations than Euler-150 for 0.01 nats: RK4 needs {need['evals']} "
            f"evaluations per block ({need['steps']} steps; the default RK4-8 uses 32), "
            f"{150 / need['evals']:.1f}x fewer than Euler-150, which itself is off by up to "
            f"{e150['max']:.3f} nats (mean {e150['mean']:.3f}); at equal accuracy (0.01 nats) Euler "
            f"would need ~{euler_need:,} evaluations (first order, extrapolated from Euler-150), "
            f"{euler_need / need['evals']:.0f}x more than RK4: {verdict(euler_need / need['evals'] >= 5)}."
        )
    for name, r in million.items():
        lines.append(
            f"- Scoring 1,000,000 x 10 in < 2 GB peak memory ({name}): {r['peak'] / 2**30:.2f} GiB "
            f"peak RSS of the whole process, {verdict(r['peak'] < 2e9)}."
        )
    if len(fits) >= 2:
        slope, intercept = np.polyfit([n for n, _ in fits], [t for _, t in fits], 1)
        lines.append(
            f"- Fit time linear in rows: {intercept:.1f} s + {1000 * slope:.2f} s per 1,000 rows. Each "
            "block takes a fixed number of minibatch steps (max_iter x batch_size rows, whatever the "
            "table size), then pushes every training row once through its ODE to make the next "
            "block's data; the steps give the constant, the pushes the per-row term."
        )
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer rows, steps and repeats (~4 min)")
    parser.add_argument("--threads", type=int, default=1, help="torch/BLAS threads for items 2-5 (default 1)")
    parser.add_argument("--baseline", metavar="REV", help="also time sklfm/core at this git revision")
    parser.add_argument("--skip-million", action="store_true", help="skip item 5")
    parser.add_argument("--write-docs", action="store_true", help=f"replace the section in {DOCS.relative_to(ROOT)}")
    parser.add_argument("--_memory-child", dest="memory_child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(json.loads(args.memory_child))
        return 0

    command = "python benchmarks/speed.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    machine, code = machine_info(), code_version()
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    start = time.perf_counter()
    quick = args.quick
    baseline = load_baseline_core(args.baseline) if args.baseline else None
    T = args.threads
    md = []  # the table rows: (item, measurement, value)

    def row(item, what, value):
        md.append((item, what, value))
        print(f"  {item:4s} {what}: {value}", flush=True)

    print("1. matmul peak", flush=True)
    peak = {}
    for threads in (1, 2):
        for dtype in (torch.float32, torch.float64):
            peak[threads, dtype] = matmul_peak(dtype, threads, reps=3 if quick else 5)
            row("1", f"matmul 2048^3 {str(dtype)[6:]}, {threads} thread{'s' * (threads > 1)}",
                gflops(peak[threads, dtype]))

    print("2. training", flush=True)
    steps = 100 if quick else 300
    train = {}
    cores = {"this": core} if baseline is None else {"this": core, "before": baseline}
    for threads in sorted({T, 1, 2}):
        both, probe = training_throughput(cores if threads == T else {"this": core}, threads, steps,
                                          reps=2 if quick else 3)
        peak[threads, torch.float32] = max(peak[threads, torch.float32], probe)
        r = train[threads] = both["this"]
        row("2", f"train_block, default net ({r['params']:,} params, {HIDDEN}, {ACTIVATION}), batch {BATCH}, "
            f"d=10, {threads} thread{'s' * (threads > 1)}",
            f"{r['rows_per_s']:,.0f} rows/s = {gflops(r['flops'])} = "
            f"{r['flops'] / peak[threads, torch.float32]:.0%} of the float32 matmul peak "
            f"({gflops(peak[threads, torch.float32])}, best of item 1 and probes between the training runs)")
        if "before" in both:
            before = both["before"]
            same = np.array_equal(before["losses"], r["losses"])
            row("2", f"train_block before/after ({args.baseline} core vs this), {threads} thread(s)",
                f"{r['rows_per_s'] / before['rows_per_s']:.2f}x ({before['rows_per_s']:,.0f} -> "
                f"{r['rows_per_s']:,.0f} rows/s); losses bit-identical: {same}")
    set_threads(T)
    train_prof = training_profile()

    print("3. scoring vs the reference trace", flush=True)
    set_threads(T)
    sizes = {6: 400, 16: 160, 43: 64} if quick else {6: 800, 16: 320, 43: 128}
    scoring = {}
    for d, n_rows in sizes.items():
        r = scoring_comparison(d, n_rows, reps=2 if quick else 4, baseline=baseline)
        scoring[d] = r
        evals = r["n_blocks"] * r["ode_steps"] * 4
        macs_ours, macs_ref = macs_per_evaluation(d, HIDDEN)
        r["ours_flops"] = 2 * macs_ours * evals * r["ours_rows_per_s"]
        r["reference_flops"] = 2 * macs_ref * evals * r["reference_rows_per_s"]
        text = (f"{r['ours_rows_per_s']:,.1f} rows/s vs reference {r['reference_rows_per_s']:,.1f} rows/s: "
                f"{r['ours_rows_per_s'] / r['reference_rows_per_s']:.2f}x; max |diff| {r['max_abs_diff']:.1e}; "
                f"multiply-adds per row and evaluation {macs_ours / 1e3:,.0f}k vs {macs_ref / 1e3:,.0f}k, "
                f"so {gflops(r['ours_flops'])} vs {gflops(r['reference_flops'])} "
                f"({r['ours_flops'] / peak[T, torch.float64]:.0%} vs "
                f"{r['reference_flops'] / peak[T, torch.float64]:.0%} of the float64 matmul peak)")
        if baseline is not None:
            text += (f"; before/after {r['ours_rows_per_s'] / r['before_rows_per_s']:.2f}x "
                     f"(max |diff| {r['before_max_abs_diff']:.1e})")
        row("3", f"score_samples d={d}, {n_rows} rows, {r['n_blocks']} blocks x RK4-{r['ode_steps']}", text)
    prof_ours, prof_ref = scoring_profile()
    budgets = chunk_budget_sweep([1 << 18, 1 << 20, 1 << 22, 1 << 23] if not quick else [1 << 20, 1 << 23],
                                 baseline=baseline)
    default_budget = core.chain._TANGENT_BUDGET
    for budget, r in budgets.items():
        label = (f"the {args.baseline} core (budget 2^23)" if budget == "before"
                 else f"tangent budget 2^{int(math.log2(budget))}" + (" (default)" if budget == default_budget else ""))
        row("3", f"log_prob 8192 x 10 rows, one block, RK4-2, {label}",
            f"{r['rows_per_s']:,.0f} rows/s, {r['minor_faults']:,} minor page faults")

    print("4. solver accuracy and fit time", flush=True)
    n_train, n_eval = (10000, 100) if quick else (20000, 250)
    data_name, X_all, X_train, X_eval = accuracy_data(n_train, n_eval)
    max_iter = 400 if quick else 2000
    t0 = time.perf_counter()
    model = LocalFlowMatching(**FIXED_WORK, max_iter=max_iter, random_state=0, device="cpu").fit(X_train)
    fit_s = time.perf_counter() - t0
    rk4 = [1, 2, 3, 4, 5, 6, 8, 12, 16] if quick else [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 24, 32]
    euler = [150] if quick else [150, 600]
    acc, self_check = solver_accuracy(model, X_eval, rk4, euler, 256, None if quick else 128)
    fit_desc = (f"{data_name}, {n_train:,} training rows, defaults except max_iter={max_iter}, "
                f"{', '.join(f'{k}={v}' for k, v in FIXED_WORK.items())}; "
                f"{n_eval} held-out rows; fit {fit_s:.0f} s")
    row("4", "model", fit_desc)
    if self_check is not None:
        row("4", "reference RK4-256 vs RK4-128", f"max |diff| {self_check:.1e} nats")
    for r in acc:
        row("4", f"{r['method'].upper()}-{r['steps']} ({r['evals']} evals/block)",
            f"mean |err| {r['mean']:.4f}, max |err| {r['max']:.4f} nats")
    ok = [r for r in acc if r["method"] == "rk4" and r["max"] <= TOLERANCE]
    need = min(ok, key=lambda r: r["steps"]) if ok else None
    ok_mean = [r for r in acc if r["method"] == "rk4" and r["mean"] <= TOLERANCE]
    need_mean = min(ok_mean, key=lambda r: r["steps"]) if ok_mean else None
    e150 = next(r for r in acc if r["method"] == "euler" and r["steps"] == 150)
    # Euler is first order: its error scales like 1/steps.
    euler_need = math.ceil(150 * e150["max"] / TOLERANCE)
    e600 = next((r for r in acc if r["method"] == "euler" and r["steps"] == 600), None)
    if e600 is not None:
        row("4", "Euler order check", f"max error Euler-150 / Euler-600 = {e150['max'] / e600['max']:.2f} "
            "(4 for first order)")
    if need is not None:
        row("4", f"smallest RK4 within {TOLERANCE} nats (max over rows)",
            f"{need['steps']} steps = {need['evals']} evals/block (mean-error criterion: "
            f"{need_mean['steps']} steps = {need_mean['evals']} evals); Euler-150 = 150 evals "
            f"({150 / need['evals']:.1f}x more) with max error {e150['max']:.3f}; Euler needs ~{euler_need:,} "
            f"evals for {TOLERANCE} (first order, from Euler-150): {euler_need / need['evals']:.0f}x more")
    fit_rows = [2500, 5000, 10000] if quick else [5000, 10000, 20000, 40000]
    fit_rows = [n for n in fit_rows if n <= len(X_all)]
    fits = fit_times(X_all, fit_rows, max_iter=50 if quick else 100)
    slope, intercept = np.polyfit([n for n, _ in fits], [s for _, s in fits], 1)
    row("4", f"fit time vs rows (max_iter={50 if quick else 100}, {data_name})",
        ", ".join(f"{n:,}: {s:.1f} s" for n, s in fits)
        + f"; least squares: {intercept:.1f} s + {1000 * slope:.2f} s per 1,000 rows")

    million = {}
    if not args.skip_million:
        print("5. 1,000,000 x 10", flush=True)
        specs = {
            "small network (32, 32), 1 OU block + free block, RK4-8 (timed)": dict(
                hidden=[32, 32], step_sizes=[0.3], solver="rk4", ode_steps=8, max_iter=300),
            f"default network {HIDDEN}, free block only, Euler-1 (memory only)": dict(
                hidden=list(HIDDEN), step_sizes=[], solver="euler", ode_steps=1, max_iter=50),
        }
        runs = [(name, spec, None) for name, spec in specs.items()]
        if baseline is not None:
            name, spec = list(specs.items())[-1]
            runs.append((name, spec, args.baseline))
        for name, spec, rev in runs:
            r = million_rows(dict(spec, rows=1_000_000, d=10, threads=T, baseline=rev))
            if rev is None:
                million[name] = r
            row("5", f"score_samples 1,000,000 x 10, {name}" + (f", the {rev} core" if rev else ""),
                f"{r['rows_per_s']:,.0f} rows/s ({r['seconds']:.0f} s); peak RSS {r['peak'] / 2**30:.2f} GiB "
                f"(before scoring: RSS {r['rss_before'] / 2**30:.2f} GiB, input {r['input_bytes'] / 2**20:.0f} MiB)")

    goals = goal_lines(T, peak, train, scoring, need, e150, euler_need, million, fits, train_prof)
    elapsed = time.perf_counter() - start
    lines = [
        SECTION, "",
        f"Command: `{command.strip()}`  ",
        f"Date: {date}; total run time {elapsed / 60:.1f} min  ",
        f"Machine: {machine}  ",
        f"Code: {code}; torch/BLAS threads {T} unless a row says otherwise",
        "",
        "| item | measurement | result |",
        "|---|---|---|",
    ] + [f"| {i} | {w} | {v} |" for i, w, v in md] + [
        "",
        "Profiles (share of torch self CPU time):",
        "",
        f"- training step (default network, batch {BATCH}): {fmt_profile(train_prof)}",
        f"- one velocity + exact divergence, d=16, this package: {fmt_profile(prof_ours)}",
        f"- the same by the reference method (d backward passes): {fmt_profile(prof_ref)}",
        "",
        "Goals of issue 5, as measured in this run:",
        "",
        *goals,
        "",
        *CHANGES,
    ]
    section = "\n".join(lines) + "\n"
    print()
    report(section, args.write_docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
