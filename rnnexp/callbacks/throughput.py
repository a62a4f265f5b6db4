"""Training throughput (samples/s, tokens/s) and the share of padded positions in batches.

Time is wall time between consecutive training batch ends, so data loading counts and
validation does not. The figures go straight to the loggers, every ``log_every_n_steps``
batches and at each epoch end, not through ``self.log``: they are measurements of the
machine, so they stay out of ``callback_metrics`` and ``metrics.json``, which a fixed seed
must reproduce exactly. Tokens are the valid steps, ``sum(lengths)``, when batches carry
``lengths``; the padded fraction is ``1 - sum(lengths) / (B * T)`` over the epoch.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Deque, Optional, Tuple

import pytorch_lightning as pl
import torch

from rnnexp.errors import check_positive_int


def batch_counts(batch: Any) -> Tuple[int, Optional[int], Optional[int]]:
    """(samples, valid tokens or None, padded positions B*T or None) of a batch."""
    if isinstance(batch, dict):
        inputs, lengths = batch.get("inputs"), batch.get("lengths")
    elif isinstance(batch, (list, tuple)) and batch:
        inputs, lengths = batch[0], None
    else:
        inputs, lengths = batch, None
    if isinstance(lengths, torch.Tensor) and lengths.dim() == 1:
        size = int(lengths.shape[0])
        positions = size * int(inputs.shape[1]) if isinstance(inputs, torch.Tensor) and inputs.dim() >= 2 else None
        return size, int(lengths.sum()), positions
    size = int(inputs.shape[0]) if isinstance(inputs, torch.Tensor) and inputs.dim() >= 1 else 0
    return size, None, None


class Throughput(pl.Callback):
    """Logs ``train/samples_per_sec`` and ``train/tokens_per_sec`` over the last ``window`` batches
    (every ``trainer.log_every_n_steps`` batches) and per epoch (``..._epoch``), and
    ``train/padded_fraction`` per epoch."""

    def __init__(self, window: int = 20) -> None:
        check_positive_int("window", window)
        self.window = window
        self._recent: Deque[Tuple[float, int, int]] = deque(maxlen=window)
        self._mark = 0.0
        self._batches = 0
        self._reset_epoch()

    def _reset_epoch(self) -> None:
        self._seconds = 0.0
        self._samples = 0
        self._tokens = 0
        self._positions = 0
        self._has_lengths = False

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._reset_epoch()
        self._recent.clear()
        self._mark = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        # Validation inside a training epoch is not training time.
        self._mark = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        seconds, self._mark = now - self._mark, now
        samples, tokens, positions = batch_counts(batch)
        self._seconds += seconds
        self._samples += samples
        if tokens is not None:
            self._has_lengths = True
            self._tokens += tokens
            self._positions += positions or 0
        self._recent.append((seconds, samples, tokens or 0))
        self._batches += 1
        # Logging costs far more than counting (~0.7 ms a call on a small CPU): only every
        # log_every_n_steps batches, like Lightning's own step metrics.
        if self._batches % max(1, trainer.log_every_n_steps):
            return
        window_seconds = sum(r[0] for r in self._recent)
        if window_seconds <= 0:
            return
        metrics = {"train/samples_per_sec": sum(r[1] for r in self._recent) / window_seconds}
        if self._has_lengths:
            metrics["train/tokens_per_sec"] = sum(r[2] for r in self._recent) / window_seconds
        self._emit(trainer, metrics)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._seconds <= 0 or self._samples == 0:
            return
        metrics = {"train/samples_per_sec_epoch": self._samples / self._seconds}
        if self._has_lengths:
            metrics["train/tokens_per_sec_epoch"] = self._tokens / self._seconds
            if self._positions:
                metrics["train/padded_fraction"] = 1.0 - self._tokens / self._positions
        self._emit(trainer, metrics)

    @staticmethod
    def _emit(trainer, metrics) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
