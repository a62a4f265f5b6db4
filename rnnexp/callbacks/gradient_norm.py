"""The global gradient norm before clipping, as ``train/grad_norm``.

With automatic optimization Lightning calls ``on_before_optimizer_step`` after backward
and before it clips, so the norm is the one ``clip_by_global_norm`` compares with its
threshold. Under manual optimization ``SequenceTask.manual_step`` clips right after
``manual_backward``, so the norm is read in ``on_after_backward`` instead. Computing it
costs a pass over all gradients, so it happens only on steps the loggers write
(``trainer.log_every_n_steps``), and goes straight to the loggers rather than through
``self.log``: it is a step measurement, not an epoch metric.
"""

from __future__ import annotations

import pytorch_lightning as pl
from torch.nn.utils import get_total_norm

from rnnexp.errors import check_number


class GradientNorm(pl.Callback):
    def __init__(self, norm_type: float = 2.0, name: str = "train/grad_norm") -> None:
        check_number("norm_type", norm_type, 0, low_open=True, hint=", e.g. 2 or inf")
        self.norm_type, self.name = float(norm_type), name

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer) -> None:
        if pl_module.automatic_optimization:
            self._log(trainer, pl_module)

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not pl_module.automatic_optimization:
            self._log(trainer, pl_module)

    def _log(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        step = trainer.global_step
        # Lightning writes step metrics when (step + 1) % log_every_n_steps == 0: the same rows.
        if not trainer.loggers or (step + 1) % max(1, trainer.log_every_n_steps):
            return
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        if not grads:
            return
        norm = float(get_total_norm(grads, self.norm_type))
        for logger in trainer.loggers:
            logger.log_metrics({self.name: norm}, step=step)
        self.last = norm  # for tests and interactive use
