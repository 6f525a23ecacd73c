"""The sequence of blocks: training in order, push, pull, exact log-density."""

import copy
import math

import torch
from torch import nn

from .block import Block, init_generator, train_block, without_autocast
from .progress import ChainProgress
from .schedule import gaussian_probe, probe_fit_indices
from .shards import LocalRows

# Upper bound on the elements of one chunk's (rows x features x width) Jacobian
# tangent; keeps scoring memory flat whatever the number of rows. On the CPU
# 2**20 (8 MiB in float64) is the fastest measured (benchmarks/speed.py): the
# chunk stays in cache, and larger buffers are mmap-ed and page-faulted afresh
# at every allocation (2**23 was 1.3-1.6x slower, with seconds of system time). Other
# devices get 8x more, as before, for large kernels.
_TANGENT_BUDGET = 1 << 20
_ACCELERATOR_BUDGET_SCALE = 8


def chunk_rows(elements_per_row, device):
    """Rows per chunk so that a (rows x elements_per_row) buffer stays within the budget."""
    budget = _TANGENT_BUDGET * (1 if device.type == "cpu" else _ACCELERATOR_BUDGET_SCALE)
    return max(1, budget // elements_per_row)


def map_chunks(fn, x, rows):
    """fn over chunks of `rows` rows of x; its outputs are written into tensors allocated once.

    With cache-sized chunks (their buffers come from the heap, not mmap),
    keeping every chunk's small result alive for a final torch.cat
    fragmented the heap: scoring 1,000,000 x 10 rows peaked at 3.7 GiB;
    written in place it stays at 0.8 GiB (benchmarks/speed.py).
    """
    n_rows = x.shape[0]
    outputs = None
    with torch.no_grad():
        for start in range(0, max(n_rows, 1), rows):
            parts = fn(x[start : start + rows])
            single = not isinstance(parts, tuple)
            parts = (parts,) if single else parts
            if outputs is None:
                outputs = tuple(p.new_empty((n_rows, *p.shape[1:])) for p in parts)
            for out, part in zip(outputs, parts):
                out[start : start + rows] = part
    return outputs[0] if single else outputs


class FlowChain(nn.Module):
    """Blocks 1..L (OU steps) and the free block, composed into one invertible flow.

    A conditional chain (blocks with `n_conditions` > 0) maps rows [x, c] to
    [z, c]: each row's condition c rides along unchanged.
    """

    def __init__(self, blocks):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    @property
    def n_conditions(self):
        return self.blocks[0].net.n_conditions

    def _chunk_rows(self, n_features, device):
        width = max(block.net.tangent_width for block in self.blocks)
        return chunk_rows(n_features * width, device)

    def _frozen(self, x):
        # One dtype-specialised evaluator per block for the whole call, shared by its chunks.
        return [block.frozen(x.dtype, x.device) for block in self.blocks]

    def _chunked(self, fn, x):
        return map_chunks(fn, x, self._chunk_rows(x.shape[1], x.device))

    def push(self, x, solver):
        """Data to latent codes: every block, data side to noise side."""
        nets = self._frozen(x)

        def run(chunk):
            for block, net in zip(self.blocks, nets):
                chunk = block.push(chunk, solver, net)
            return chunk

        return self._chunked(run, x)

    def pull(self, z, solver):
        """Latent codes to data: blocks in reverse, noise side to data side."""
        nets = self._frozen(z)

        def run(chunk):
            for block, net in zip(reversed(self.blocks), reversed(nets)):
                chunk = block.pull(chunk, solver, net)
            return chunk

        return self._chunked(run, z)

    def push_with_logdet(self, x, solver):
        """Latent codes and ``log |det dT/dx|`` per row, T the whole chain."""
        nets = self._frozen(x)

        def run(chunk):
            logdet = torch.zeros(chunk.shape[0], dtype=chunk.dtype, device=chunk.device)
            for block, net in zip(self.blocks, nets):
                chunk, block_logdet = block.push_with_logdet(chunk, solver, net)
                logdet = logdet + block_logdet
            return chunk, logdet

        return self._chunked(run, x)

    def log_prob(self, x, solver):
        """Exact log-density: ``log N(T(x); 0, I) + log |det dT/dx|`` (of x given c)."""
        z, logdet = self.push_with_logdet(x, solver)
        z = z[:, : z.shape[1] - self.n_conditions]
        d = z.shape[1]
        return -0.5 * (z * z).sum(dim=1) - 0.5 * d * math.log(2 * math.pi) + logdet


@without_autocast
def train_chain(
    data,
    schedule,
    network,
    train,
    solver,
    generator,
    block_init=True,
    validation=None,
    probe=None,
    kept_blocks=(),
    kept_free_block=None,
    reporter=None,
    free_train=None,
    resume=None,
    on_progress=None,
    rows=None,
    n_conditions=0,
    weights=None,
    validation_weights=None,
):
    """Train OU blocks as `schedule` decides, then the free block.

    `network` is a dict of VelocityMLP keyword arguments (hidden sizes and
    activation). After each OU block the training rows (and the validation
    and probe rows) are pushed through it to become the next block's data
    side. `kept_blocks` are OU blocks already trained (warm start): the rows
    pass through them and training resumes after them; `kept_free_block` is
    reused when no new OU block was kept. `probe` holds held-out rows for an
    AutoSchedule (see schedule.gaussian_probe); an OU block the schedule does
    not keep is removed with its probe score, and the chain closes.
    `free_train`, if given, are the free block's TrainSettings (`train`
    otherwise). `reporter`, if given,
    gets `block_started(index, block, max_iter)`, `checked(step, loss,
    validation_loss)` and `block_finished(index, block, history)`. `rows` (a
    shards.ShardedRows) says that `data` is this rank's shard of the training
    rows (see train_block); `validation` and `probe` are then the same on
    every rank. With `n_conditions` > 0 the last columns of `data`,
    `validation` and `probe` are the rows' conditions, and the flow models
    the other columns given them. `weights` and `validation_weights` (rows x
    features, without the conditions), if given, weigh each cell of `data`
    and `validation` in every block's loss (0 for a missing value; see
    train_block); pushes keep the order of the rows, so they stay aligned.

    `on_progress(progress, block_done)` gets a ChainProgress after each good
    check inside a block (block_done False) and after each finished OU block
    (True); a ChainProgress passed as `resume` (with the same arguments
    otherwise) continues the run from it and ends with the same chain.

    Returns the chain, the BlockHistory of each block trained here and kept,
    the probe scores (empty when the schedule needs none), and the
    BlockHistory of the OU block the schedule dropped (None if none was).
    """
    rows = LocalRows(len(data)) if rows is None else rows
    n_features = data.shape[1] - n_conditions
    probe_fit = probe_fit_indices(rows.n_rows, data.device)
    # Weights are initialised on the CPU, whatever the device of `generator`.
    init = init_generator(generator)
    probe_scores, probe_log_det = [], None

    def score_probe():
        # The probe measures how Gaussian the features are, conditions left out.
        fit_rows = rows.take(data, probe_fit)[:, :n_features]
        score = gaussian_probe(fit_rows, probe[:, :n_features], probe_log_det)
        probe_scores.append(rows.agree(score))

    if schedule.needs_probe:
        probe_log_det = torch.zeros(probe.shape[0], dtype=probe.dtype, device=probe.device)
        score_probe()

    def advance(block):
        nonlocal data, validation, probe, probe_log_det
        one = FlowChain([block])
        data = one.push(data, solver)
        if validation is not None:
            validation = one.push(validation, solver)
        if probe_log_det is not None:
            probe, block_log_det = one.push_with_logdet(probe, solver)
            probe_log_det = probe_log_det + block_log_det
            score_probe()

    blocks, histories = [], []
    dropped = None if resume is None else resume.dropped

    def progress(current=None):
        return ChainProgress(
            list(blocks), list(histories), generator.get_state(), init.get_state(), current, dropped
        )

    def train_new(step_size, resume_block=None):
        index = len(blocks)
        if block_init and blocks:
            block = Block(copy.deepcopy(blocks[-1].net), step_size)
        else:
            # A resumed block gets its weights from `resume_block`, not from `init`.
            source = init if resume_block is None else torch.Generator()
            block = Block.new(
                n_features, step_size=step_size, generator=source, n_conditions=n_conditions, **network
            )
            block = block.to(data.device)
        settings = train if step_size is not None or free_train is None else free_train
        if reporter is not None:
            reporter.block_started(index, block, settings.max_iter)
        history = train_block(
            block,
            data,
            settings,
            generator,
            validation,
            reporter and reporter.checked,
            resume=resume_block,
            on_progress=on_progress and (lambda current: on_progress(progress(current), False)),
            name=f"block {index + 1} ({'free' if step_size is None else f'OU h={step_size:.4g}'})",
            rows=rows,
            weights=weights,
            validation_weights=validation_weights,
        )
        if reporter is not None:
            reporter.block_finished(index, block, history)
        blocks.append(block)
        histories.append(history)
        return block

    for block in kept_blocks:
        blocks.append(block)
        advance(block)
    n_kept = len(blocks)
    resume_block = None
    if resume is not None:
        for block in resume.blocks[n_kept:]:
            blocks.append(block)
            advance(block)
        histories.extend(resume.histories)
        generator.set_state(resume.generator)
        init.set_state(resume.init_generator)
        resume_block = resume.current
    while dropped is None:
        step_size = schedule.next_step(len(blocks), probe_scores)
        if step_size is None:
            break
        # The rows before the block, should the schedule drop it.
        before = data, validation, probe, probe_log_det
        advance(train_new(step_size, resume_block))
        resume_block = None
        if not schedule.keeps_last(probe_scores):
            del blocks[-1], probe_scores[-1]
            dropped = histories.pop()
            data, validation, probe, probe_log_det = before
        if on_progress is not None:
            on_progress(progress(), True)
    if kept_free_block is not None and len(blocks) == n_kept:
        blocks.append(kept_free_block)
    else:
        train_new(None, resume_block)
    return FlowChain(blocks), histories, probe_scores, dropped
