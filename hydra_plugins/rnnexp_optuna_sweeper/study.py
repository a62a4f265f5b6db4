"""What the sweeper and its jobs share: the storage URL, the study, the running trial.

The sweeper tells each job which trial it runs through the job's environment
(``hydra.job.env_set``), so the job config stays free of sweep bookkeeping and any launcher
(in-process, joblib, submitit) works: the job reopens the study from the storage named in
the sweeper config and builds an ``optuna.trial.Trial`` to report intermediate values to.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any, Optional, Tuple

from rnnexp.errors import UserError

TRIAL_ENV = "RNNEXP_OPTUNA_TRIAL"


def storage_url(storage: Optional[str], sweep_dir: str) -> str:
    if storage:
        return str(storage)
    return f"sqlite:///{(Path(sweep_dir) / 'optuna.db').resolve()}"


def open_storage(url: str, attempts: int = 5, heartbeat_interval: Optional[int] = None,
                 grace_period: Optional[int] = None):
    import optuna
    from sqlalchemy.exc import IntegrityError, OperationalError

    kwargs: dict = {}
    if heartbeat_interval:
        kwargs.update(heartbeat_interval=int(heartbeat_interval), grace_period=grace_period)
    if url.startswith("sqlite"):
        Path(url.split(":///", 1)[-1]).parent.mkdir(parents=True, exist_ok=True)
        # Several workers on one SQLite file wait for each other's writes instead of failing.
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, **kwargs)
        except ImportError as exc:  # SQLAlchemy imports the database driver only now
            raise missing_driver(url, exc) from exc
        except (OperationalError, IntegrityError):
            # Workers started together on a new database race to create its tables and
            # version stamp; the loser finds them made on the next attempt.
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def missing_driver(url: str, exc: ImportError) -> UserError:
    from sqlalchemy.engine import make_url

    shown = make_url(url).render_as_string(hide_password=True)
    if make_url(url).get_backend_name() == "postgresql":
        fix = 'install the PostgreSQL driver: pip install -e ".[postgres]" (psycopg 3, what postgresql:// means in SQLAlchemy 2.1)'
    else:
        fix = f"install the database driver it needs ({exc.name or exc})"
    return UserError(f"hydra.sweeper.storage={shown}: {fix}")


def instantiate_or_none(spec: Any) -> Any:
    """A sampler or pruner from its ``_target_`` spec (Hydra may have built it already)."""
    from hydra.utils import instantiate
    from omegaconf import DictConfig

    if isinstance(spec, (dict, DictConfig)):
        return instantiate(spec) if spec else None
    return spec


def current_trial(task_name: str) -> Optional[Tuple[Any, Any]]:
    """(study, trial) when this process runs a job of an ``rnnexp_optuna`` sweep, else None.

    ``task_name`` is the job config's, the study name when the sweeper config gives none.
    """
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

    study = optuna.load_study(
        study_name=sweeper.study_name or task_name,
        storage=open_storage(storage_url(sweeper.storage, hydra_cfg.sweep.dir)),
        pruner=instantiate_or_none(sweeper.pruner) or optuna.pruners.NopPruner(),
    )
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, int(number))
    return study, optuna.trial.Trial(study, trial_id)


def worker_id() -> str:
    """``host:pid`` of this sweep process, stored on each trial it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def fail_dead_local_trials(study) -> int:
    """Fail the RUNNING trials of sweep processes on this machine that no longer exist.

    A killed sweep's trials would otherwise count as running until their heartbeat is older
    than the grace period; a rerun on the same machine can tell at once that their process is
    gone. (A reused pid looks alive: such a trial waits for the grace period as before.)
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    host, failed = socket.gethostname(), 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = str(trial.user_attrs.get("worker", ""))
        there, _, pid = owner.rpartition(":")
        if there != host or not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        try:
            study._storage.set_trial_user_attr(trial._trial_id, "worker_gone", owner)
            study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
            failed += 1
        except UpdateFinishedTrialError:
            pass  # another worker got there first
    return failed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
