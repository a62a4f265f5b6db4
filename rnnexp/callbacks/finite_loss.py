"""Stop a run cleanly when the training loss stops being a finite number."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch

from rnnexp.errors import UserError


class NonFiniteLossError(UserError):
    """The loss became NaN or infinite; the run stops and its last checkpoint is kept."""


class FiniteLossGuard(pl.Callback):
    """Raise :class:`NonFiniteLossError` at the first non-finite training loss.

    Checked after every batch on the loss and on the weights the optimizer step just
    wrote (a finite loss can still be followed by an overflowing step). Lightning runs
    checkpoint callbacks after all others, so a diverged model is never saved over the
    last good checkpoint. In a sweep the exception marks the trial as failed.
    """

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float("nan") if loss is None else float(loss)
        if loss is None or math.isfinite(value):
            # One reduction, one host sync: the total norm is non-finite iff some weight is.
            with torch.no_grad():
                weights = torch.nn.utils.get_total_norm(list(pl_module.parameters()))
            if math.isfinite(float(weights)):
                return
            value = float(weights)
        clip = trainer.gradient_clip_val
        hint = "lower the learning rate (optimizer.lr=...)"
        hint += " or clip gradients (trainer.gradient_clip_val=1.0)" if not clip else " or clip harder (a smaller trainer.gradient_clip_val)"
        raise NonFiniteLossError(
            f"the training loss or weights became {value} at step {trainer.global_step} (epoch {trainer.current_epoch}, "
            f"batch {batch_idx}); {hint}. The last good checkpoint is in {self._where(trainer)}"
        )

    @staticmethod
    def _where(trainer) -> str:
        callback = trainer.checkpoint_callback
        return getattr(callback, "dirpath", None) or "(no checkpoint callback)"
