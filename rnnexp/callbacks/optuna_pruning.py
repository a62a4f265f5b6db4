"""Stop an Optuna trial early when its validation metric is worse than the pruner allows.

optuna.integration's Lightning callback moved to the separate optuna-integration package;
this is the few lines it takes. The sweeper adds it to jobs of an ``rnnexp_optuna`` sweep.
"""

from __future__ import annotations

import math

import pytorch_lightning as pl


class OptunaPruning(pl.Callback):
    """Reports ``monitor`` to the trial after every validation epoch; raises ``optuna.TrialPruned``
    when the study's pruner says so (the sweeper records the trial as pruned)."""

    def __init__(self, trial, monitor: str) -> None:
        self.trial, self.monitor = trial, monitor

    # on_validation_end, not on_validation_epoch_end: Lightning puts the epoch's aggregated
    # metrics into callback_metrics only after the epoch-end hooks, so there they are still
    # the previous epoch's (ModelCheckpoint and optuna-integration read them here too).
    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        value = float(value)
        if not math.isfinite(value):
            return  # the job ends as failed; a NaN would poison the pruner's medians
        epoch = trainer.current_epoch
        self.trial.report(value, step=epoch)
        if self.trial.should_prune():
            import optuna

            raise optuna.TrialPruned(f"trial {self.trial.number} pruned at epoch {epoch}: {self.monitor}={value:.6g}")
