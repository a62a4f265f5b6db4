"""Stop a run cleanly when the training loss stops being a finite number."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch

from rnnexp.errors import UserError


class NonFiniteLossError(UserError):
    """The loss became NaN or infinite; the run stops and its last checkpoint is kept."""


class FiniteLossGuard(pl.Callback):
    """Raise :class:`NonFiniteLossError` at the first non-finite training loss, and refuse to
    write a checkpoint whose weights are not finite.

    The loss is checked after every batch. The weights are checked when a checkpoint is
    about to be written (``on_save_checkpoint`` runs before the file is): an optimizer step
    can overflow after a finite loss, and the next batch's loss shows it anyway, but a
    checkpoint taken in between would keep the diverged weights over the last good ones.
    Checking there rather than after every step saves a norm over all weights per step.
    In a sweep the exception marks the trial as failed.
    """

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:  # a manual-optimization step that returned nothing
            return
        value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
        if not math.isfinite(value):
            self._stop(trainer, "training loss", value, f"step {trainer.global_step} (epoch {trainer.current_epoch}, "
                                                        f"batch {batch_idx})")

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        with torch.no_grad():  # one reduction: the total norm is non-finite iff some weight is
            value = float(torch.nn.utils.get_total_norm(list(pl_module.parameters())))
        if not math.isfinite(value):
            self._stop(trainer, "weights", value, f"step {trainer.global_step} (epoch {trainer.current_epoch})")

    def _stop(self, trainer, what: str, value: float, where: str) -> None:
        clip = trainer.gradient_clip_val
        hint = "lower the learning rate (optimizer.lr=...)"
        hint += " or clip gradients (trainer.gradient_clip_val=1.0)" if not clip else " or clip harder (a smaller trainer.gradient_clip_val)"
        raise NonFiniteLossError(
            f"the {what} became {value} at {where}; {hint}. The last good checkpoint is in {self._where(trainer)}"
        )

    @staticmethod
    def _where(trainer) -> str:
        callback = trainer.checkpoint_callback
        return getattr(callback, "dirpath", None) or "(no checkpoint callback)"
