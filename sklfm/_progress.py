"""Progress of a fit, through the ``sklfm`` logger (``verbose`` > 0)."""

import logging
import sys
import time

logger = logging.getLogger("sklfm")

_BAR_WIDTH = 20


class ProgressLog:
    """Logs each block's start, its progress and its end.

    ``verbose=1`` logs about every 10 % of a block's steps, ``verbose>=2``
    every check. The lines go to the ``sklfm`` logger at INFO level; when the
    application has configured no logging handler, one writing to stderr is
    attached for the duration of the fit, so that ``verbose`` alone shows them.
    Used as a context manager, it yields None when ``verbose`` is 0.
    """

    def __init__(self, verbose, batch_rows):
        self.verbose = verbose
        self.batch_rows = batch_rows

    def __enter__(self):
        if not self.verbose:
            return None
        self._level = logger.level
        self._handler = None
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        if not logger.hasHandlers():
            self._handler = logging.StreamHandler(sys.stderr)
            self._handler.setFormatter(logging.Formatter("[sklfm] %(message)s"))
            logger.addHandler(self._handler)
        return self

    def __exit__(self, *exc):
        if self.verbose:
            logger.setLevel(self._level)
            if self._handler is not None:
                logger.removeHandler(self._handler)
        return False

    def block_started(self, index, block, max_iter):
        kind = "free block" if block.step_size is None else f"OU step h={block.step_size:.4g}"
        logger.info("block %d (%s): up to %d steps", index + 1, kind, max_iter)
        self.max_iter = max_iter
        self._index = index
        self._start = self._last_time = time.perf_counter()
        self._last_step = 0
        self._next_report = 0.0

    def checked(self, step, loss, validation_loss):
        done = step / self.max_iter
        if self.verbose < 2 and done < self._next_report and step < self.max_iter:
            return
        self._next_report = done + 0.1
        now = time.perf_counter()
        rate = (step - self._last_step) * self.batch_rows / max(now - self._last_time, 1e-9)
        self._last_step, self._last_time = step, now
        filled = int(round(done * _BAR_WIDTH))
        bar = "#" * filled + "." * (_BAR_WIDTH - filled)
        validation = "" if validation_loss is None else f", validation loss {validation_loss:.5f}"
        logger.info(
            "block %d [%s] %d/%d steps, %.0f rows/s, loss %.5f%s",
            self._index + 1, bar, step, self.max_iter, rate, loss, validation,
        )

    def block_finished(self, index, block, history):
        stopped = " (early stop)" if history.n_iter < self.max_iter else ""
        best = (
            f", best validation loss {history.validation_losses.min():.5f}"
            if len(history.validation_losses)
            else ""
        )
        logger.info(
            "block %d done: %d steps%s%s, %.1f s",
            index + 1, history.n_iter, stopped, best, time.perf_counter() - self._start,
        )
