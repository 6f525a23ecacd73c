"""Issue 5: does torch.compile pay off on the CPU hot paths?

Two hot paths, each eager and through ``torch.compile`` (inductor), with the
default network (``LocalFlowMatching()``'s hidden layers and activation):

- training: one step of a block's flow-matching loss (draw a minibatch, loss,
  backward, Adam), default batch, d = 10;
- scoring: one evaluation of the velocity and its exact divergence (float64),
  the inner loop of ``score_samples``, d = 16.

Eager and compiled take turns in every round, and each is timed in process CPU
time (one thread), so that other jobs on a shared machine slow neither of them
down. Printed: the compile time, and the median over rounds of compiled /
eager throughput (above 1: compile is faster).

Usage::

    python benchmarks/compile.py            # ~3 min
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import torch  # noqa: E402

from sklfm import LocalFlowMatching, core  # noqa: E402
from sklfm.core.block import _BlockLoss  # noqa: E402

DEFAULTS = LocalFlowMatching().get_params()
HIDDEN = tuple(DEFAULTS["hidden_layer_sizes"])
ACTIVATION = DEFAULTS["activation"]
BATCH = DEFAULTS["batch_size"]


def cpu_rate(fn, calls):
    """Calls per CPU second of `fn`."""
    t0 = time.process_time()
    for _ in range(calls):
        fn()
    return calls / (time.process_time() - t0)


def training_steps(d=10, n_rows=20_000):
    """(eager step, compiled step): each one Adam step on the block loss."""
    gen = torch.Generator().manual_seed(0)
    data = torch.randn(n_rows, d, generator=gen)
    block = core.Block.new(d, HIDDEN, ACTIVATION, 0.15, gen)
    loss = _BlockLoss(block, DEFAULTS["interpolant"])
    optimizer = torch.optim.Adam(block.net.parameters(), lr=1e-4, foreach=True)

    def step(fn):
        x0 = data.index_select(0, torch.randint(0, n_rows, (BATCH,), generator=gen))
        noise = torch.randn(BATCH, d, generator=gen)
        t = torch.rand(BATCH, 1, generator=gen)
        value = fn(block.net, x0, noise, t)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()

    compiled = torch.compile(loss, dynamic=False)
    return (lambda: step(loss)), (lambda: step(compiled))


def scoring_evaluations(d=16, n_rows=512):
    """(eager, compiled) evaluation of velocity and exact divergence on `n_rows` rows."""
    gen = torch.Generator().manual_seed(0)
    net = core.Block.new(d, HIDDEN, ACTIVATION, 0.15, gen).frozen(torch.float64)
    x = torch.randn(n_rows, d, generator=gen, dtype=torch.float64)
    t = torch.full((1, 1), 0.5, dtype=torch.float64)
    compiled = torch.compile(net.velocity_and_divergence, dynamic=False)

    def run(fn):
        with torch.no_grad():
            return fn(t, x)

    def max_diff():
        return max((a - b).abs().max().item() for a, b in zip(run(net.velocity_and_divergence), run(compiled)))

    return (lambda: run(net.velocity_and_divergence)), (lambda: run(compiled)), max_diff


def compare(name, eager, compiled, calls, rounds):
    from torch._dynamo.utils import counters

    t0 = time.perf_counter()
    try:
        compiled()  # compiles
    except Exception as exc:  # inductor needs a C++ compiler; report, do not fail
        print(f"| {name} | compile failed: {type(exc).__name__}: {str(exc)[:120]} | | |")
        return
    compile_s = time.perf_counter() - t0
    graphs, breaks = counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())
    counters.clear()
    ratios, rates = [], []
    for _ in range(rounds):
        e, c = cpu_rate(eager, calls), cpu_rate(compiled, calls)
        ratios.append(c / e)
        rates.append((e, c))
    e, c = (statistics.median(r[i] for r in rates) for i in (0, 1))
    print(f"| {name} | {e:,.0f} / s | {c:,.0f} / s | {statistics.median(ratios):.2f}x "
          f"(rounds {min(ratios):.2f}-{max(ratios):.2f}x); compile {compile_s:.0f} s wall, "
          f"{graphs} graph(s), {breaks} graph break(s) |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, default network {HIDDEN} {ACTIVATION}\n")
    print("| hot path | eager | compiled | compiled / eager |\n|---|---:|---:|---|")
    compare(f"training step, batch {BATCH}, d=10", *training_steps(), calls=100, rounds=args.rounds)
    eager, compiled, max_diff = scoring_evaluations()
    compare("velocity + exact divergence, 512 rows, d=16, float64", eager, compiled,
            calls=100, rounds=args.rounds)
    print(f"\nscoring, compiled vs eager: max |diff| {max_diff():.1e}")


if __name__ == "__main__":
    main()
