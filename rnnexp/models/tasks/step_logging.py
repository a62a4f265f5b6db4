"""When a training step's values reach the loggers.

Each ``self.log`` costs ~0.7 ms on a small CPU model (Lightning moves and deep-copies the
result's metadata every call): on row MNIST, logging loss and accuracy at every step made a
step 17% slower than a plain PyTorch loop. Lightning writes step values to the loggers only
every ``log_every_n_steps`` steps and drops the rest, so the modules log on those steps only
and accumulate epoch values in per-stage sums (``rnnexp.models.tasks.epoch_sums``).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

import pytorch_lightning as pl
import torch

from rnnexp.compat.lightning import attached_trainer, should_update_logs


def logs_this_step(module: pl.LightningModule) -> bool:
    """True when Lightning will write this training step's logged values to the loggers."""
    trainer = attached_trainer(module)
    if trainer is None or trainer.fast_dev_run:
        return True
    # The same test Lightning applies after the step (LoggerConnector.update_train_step_metrics).
    return should_update_logs(trainer)


def scalar_metrics(metrics: Mapping[str, Any]) -> Dict[str, float]:
    """The single-number entries of ``trainer.callback_metrics`` as floats (what ``metrics.json`` holds)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, (int, float)):
            out[key] = float(value)
    return out
