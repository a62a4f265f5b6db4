"""Progress as log lines when there is no progress bar (output redirected to a file, CI, a cluster job).

A TQDM bar redraws itself many times a second; written to a file every redraw is a line, so
40 epochs of ``experiment=hello_rnn`` made 1.2 MB of log. The trainer config turns the bar on
only when stdout is a terminal (``trainer.enable_progress_bar: ${rnnexp.tty:}``); without a bar
this callback logs one line per epoch with the key metrics and throughput, and on long epochs
one line every ``every_n_steps`` optimizer steps. With a bar it stays silent.
"""

from __future__ import annotations

import logging
import time
from typing import Dict, Optional

import pytorch_lightning as pl
import torch

from rnnexp.callbacks.throughput import batch_counts
from rnnexp.runtime.terminal import format_value

log = logging.getLogger("rnnexp.progress")

# The metrics worth a place in a progress line: the training loss, and validation loss,
# accuracy, exact-match rate (seq2seq), perplexity and bits per character; and whatever the
# checkpoint callback monitors, when that is another one.
KEY_METRICS = {"train/": ("loss", "loss_epoch"), "val/": ("loss", "acc", "exact", "ppl", "bpc")}


def key_metrics(metrics: Dict[str, torch.Tensor], prefixes=("train/", "val/"), monitored: Optional[str] = None) -> str:
    shown = []
    for name in sorted(metrics, key=lambda k: (not k.startswith("train/"), k)):
        prefix, _, short = name.partition("/")
        if f"{prefix}/" in prefixes and (short in KEY_METRICS.get(f"{prefix}/", ()) or name == monitored):
            value = metrics[name]
            value = value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value
            if isinstance(value, (int, float)):
                shown.append(f"{name.replace('_epoch', '')} {format_value(float(value))}")
    return "  ".join(shown)


class ProgressLog(pl.Callback):
    """One log line per training epoch (and every ``every_n_steps`` steps) when no progress bar is shown."""

    def __init__(self, every_n_steps: Optional[int] = 500) -> None:
        self.every_n_steps = every_n_steps
        self._active = False
        self._pending = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._active = trainer.progress_bar_callback is None and trainer.is_global_zero
        self._reset()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._flush(trainer)
        self._reset()

    def _reset(self) -> None:
        # Also from setup: a run resumed mid-epoch starts without on_train_epoch_start.
        self._start = time.perf_counter()
        self._samples = self._tokens = 0
        self._has_tokens = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self._active:
            return
        samples, tokens, _ = batch_counts(batch)
        self._samples += samples
        if tokens is not None:
            self._tokens += tokens
            self._has_tokens = True
        n = self.every_n_steps
        total = trainer.num_training_batches
        if n and (batch_idx + 1) % n == 0 and batch_idx + 1 < total:
            self._write(trainer, trainer.current_epoch, f"step {batch_idx + 1}/{total}", ("train/",),
                        time.perf_counter() - self._start, self._samples, self._tokens)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Runs after the epoch's validation but before the module logs its epoch aggregates
        # (Lightning calls callbacks first): the line is written when they are in, at the next
        # epoch's start or at the end of training.
        if self._active:
            self._pending = (trainer.current_epoch, time.perf_counter() - self._start, self._samples, self._tokens)

    def on_train_end(self, trainer, pl_module) -> None:
        self._flush(trainer)

    def _flush(self, trainer: pl.Trainer) -> None:
        if self._pending is not None:
            epoch, seconds, samples, tokens = self._pending
            self._pending = None
            self._write(trainer, epoch, "", ("train/", "val/"), seconds, samples, tokens)

    def _write(self, trainer: pl.Trainer, epoch: int, where: str, prefixes, seconds: float, samples: int,
               tokens: int) -> None:
        seconds = max(seconds, 1e-9)
        # Counted from 1, as in "max_epochs=10 reached"; no "/-1" when epochs are unlimited.
        epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        speed = f"{samples / seconds:,.0f} samples/s"
        if self._has_tokens:
            speed += f", {tokens / seconds:,.0f} tokens/s"
        monitored = getattr(trainer.checkpoint_callback, "monitor", None)
        parts = [f"epoch {epoch + 1}{epochs}", where, key_metrics(trainer.callback_metrics, prefixes, monitored),
                 f"{speed} ({seconds:.1f} s)"]
        log.info("  ".join(p for p in parts if p))
