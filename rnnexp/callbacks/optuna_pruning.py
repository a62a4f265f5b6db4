"""Stop an Optuna trial early when its validation metric is worse than the pruner allows.

optuna.integration's Lightning callback moved to the separate optuna-integration package;
this is the few lines it takes. :func:`for_this_job` gives one to a job of an ``rnnexp_optuna``
sweep: the trial comes from the sweeper's one public function for jobs
(``hydra_plugins.rnnexp_optuna_sweeper.job.current_trial``), so the task function knows nothing
of the plugin and the plugin nothing of the task.
"""

from __future__ import annotations

import math
from typing import Optional

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


def for_this_job(monitor: Optional[str]) -> Optional[OptunaPruning]:
    """The pruning callback when this process runs a trial of an ``rnnexp_optuna`` sweep (and the
    run names the metric to report); None otherwise."""
    if not monitor:
        return None
    from hydra_plugins.rnnexp_optuna_sweeper.job import current_trial

    trial = current_trial()
    return None if trial is None else OptunaPruning(trial, monitor)
