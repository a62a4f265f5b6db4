"""What a job of an ``rnnexp_optuna`` sweep can ask of the sweeper: the trial it runs.

The contract, the plugin's one public entry point for jobs: the sweeper sets the environment
variable ``RNNEXP_OPTUNA_TRIAL=<trial number>`` in each job (``hydra.job.env_set``), and
:func:`current_trial` turns it back into an ``optuna.trial.Trial`` of the study named by the
job's own Hydra config, on any launcher (in-process, joblib, submitit). A job reports
intermediate values to it and asks ``should_prune()`` (rnnexp's pruning callback does).
"""

from __future__ import annotations

import os
from typing import Any, Optional

TRIAL_ENV = "RNNEXP_OPTUNA_TRIAL"


def study_name(sweeper: Any, hydra_cfg: Any) -> str:
    """``hydra.sweeper.study_name``, else the app's job name (the same in the sweep and its jobs)."""
    return str(sweeper.get("study_name") or hydra_cfg.job.name)


def current_trial() -> Optional[Any]:
    """The trial this process runs as a job of an ``rnnexp_optuna`` sweep; None outside such a
    sweep, and for a multi-objective study (Optuna reports and prunes single objectives only)."""
    number = os.environ.get(TRIAL_ENV)
    if number is None:
        return None
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    sweeper = hydra_cfg.sweeper
    if not str(sweeper.get("_target_", "")).startswith("hydra_plugins.rnnexp_optuna_sweeper"):
        return None
    import optuna

    from hydra_plugins.rnnexp_optuna_sweeper.optuna_internals import trial_by_number
    from hydra_plugins.rnnexp_optuna_sweeper.samplers import build_pruner
    from hydra_plugins.rnnexp_optuna_sweeper.study import open_storage, storage_url

    study = optuna.load_study(study_name=study_name(sweeper, hydra_cfg),
                              storage=open_storage(storage_url(sweeper.storage, hydra_cfg.sweep.dir)),
                              pruner=optuna.pruners.NopPruner())
    if len(study.directions) > 1:
        return None
    study.pruner = build_pruner(sweeper.get("pruner"), ["minimize"])
    return trial_by_number(study, int(number))
