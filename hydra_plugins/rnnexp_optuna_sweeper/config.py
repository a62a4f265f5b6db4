"""The sweeper's config schema, registered as ``hydra/sweeper: rnnexp_optuna``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class RnnexpOptunaSweeperConf:
    _target_: str = "hydra_plugins.rnnexp_optuna_sweeper.sweeper.RnnexpOptunaSweeper"
    # One study per name and storage; workers with the same pair share it and a rerun resumes it.
    study_name: Optional[str] = None          # null: the task_name
    # Any SQLAlchemy URL (sqlite:///path.db, postgresql://user:pass@host/db);
    # null: sqlite:///<sweep dir>/optuna.db
    storage: Optional[str] = None
    direction: str = "minimize"               # minimize | maximize the task's return value
    n_trials: int = 20                        # trials in the study in total, over all workers and reruns
    n_jobs: int = 1                           # trials running at once (on launchers that run jobs in parallel)
    # On submitit launchers (SLURM, local processes) a new trial starts as soon as any of the
    # n_jobs running ones finishes; false: ask n_jobs, wait for all of them, ask again.
    # Hydra's basic launcher runs jobs one after another in this process either way.
    async_trials: Optional[bool] = None
    max_failure_rate: float = 0.5             # abort once more than this share of n_trials have failed
    # A running trial whose sweeper sends no heartbeat for grace_period seconds (default 2 x the
    # interval; the worker was killed) is failed by the next worker or rerun, and run again
    # there; null: never (a killed worker's trial stays RUNNING in the study).
    heartbeat_interval: Optional[int] = 60
    grace_period: Optional[int] = None
    sampler: Any = field(default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": 42})
    # Reads the optimized metric after every validation epoch; null turns pruning off.
    pruner: Any = field(
        default_factory=lambda: {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 5, "n_warmup_steps": 1}
    )
    # key: Hydra sweep syntax, e.g. optimizer.lr: tag(log, interval(1e-4, 1e-1)), cell: choice(rnn, gru)
    params: Optional[Dict[str, Any]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="rnnexp_optuna", node=RnnexpOptunaSweeperConf, provider="rnnexp")
