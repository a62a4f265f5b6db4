"""The study a sweep works on: its storage, asking for trials, telling their results.

``n_trials`` counts the trials of the whole study, so several workers started with the same
storage and study name share the work and a rerun of a stopped sweep finishes it. A trial
that never ran to an outcome (interrupted, cancelled, left by a killed worker) is FAILED
without an ``error`` attribute and does not count: a rerun replaces it.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from omegaconf import OmegaConf

from hydra_plugins.rnnexp_optuna_sweeper import optuna_internals as internals
from hydra_plugins.rnnexp_optuna_sweeper.job import TRIAL_ENV
from hydra_plugins.rnnexp_optuna_sweeper.space import format_value
from rnnexp.compat.hydra import returned
from rnnexp.errors import UserError

log = logging.getLogger(__name__)

SURPLUS = "surplus"  # user attr of trials asked for past n_trials by a worker racing another


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
            internals.fail_stored_trial(study, trial, "worker_gone", owner)
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


def counted(study, up_to: Optional[int] = None) -> list:
    """The trials that use up n_trials: all but those that never ran to an outcome (surplus,
    interrupted, cancelled, or left by a killed worker: FAIL without an ``error``), which a rerun
    replaces, and those waiting in the queue (``study.enqueue_trial``), which the next asks take."""
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False)
            if not (t.state == TrialState.FAIL and "error" not in t.user_attrs) and t.state != TrialState.WAITING
            and (up_to is None or t.number <= up_to)]


def returned_values(value: Any, n_objectives: int) -> Tuple[Optional[List[float]], str]:
    """A job's return value as the study's objective values, or (None, why not)."""
    many = isinstance(value, (list, tuple)) or _is_sequence(value)
    if n_objectives > 1 and not many:
        return None, f"the job returned {value!r}, not a list of {n_objectives} numbers (one per direction)"
    items = list(value) if n_objectives > 1 else [value]
    if len(items) != n_objectives:
        return None, f"the job returned {len(items)} values for {n_objectives} directions: {value!r}"
    numbers = []
    for item in items:
        try:
            number = float(item)
        except (TypeError, ValueError):
            number = float("nan")
        if not math.isfinite(number):
            return None, f"the job returned {value!r}, not {'finite numbers' if n_objectives > 1 else 'a finite number'}"
        numbers.append(number)
    return numbers, ""


def _is_sequence(value: Any) -> bool:
    from omegaconf import ListConfig

    return isinstance(value, ListConfig)


class SweepStudy:
    """The shared helpers of both drivers: ask for trials, build their overrides, tell results."""

    def __init__(self, study, storage, *, n_trials: int, space: Dict[str, Any], fixed: List[str],
                 custom: Optional[Callable[..., None]] = None, config: Any = None, exhaustive: bool = False) -> None:
        self.study, self.storage, self.n_trials = study, storage, n_trials
        self.space, self.fixed, self.custom, self.config = space, fixed, custom, config
        self.exhaustive = exhaustive          # grid-like sampler: study.stop() once every point is tried
        self.exhausted = False
        self.n_objectives = len(study.directions)
        self.failed: List[Tuple[Any, str]] = []   # (trial, error) of this sweep
        self.finished = 0                          # completed or pruned trials of this sweep

    def remaining(self) -> int:
        return 0 if self.exhausted else max(0, self.n_trials - len(counted(self.study)))

    def ask(self, room: int) -> List[Tuple[Any, List[str]]]:
        """Up to ``room`` new trials, as many as the study still needs: [(trial, its overrides)]."""
        import optuna
        from optuna.trial import TrialState

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # Trials of killed workers (no heartbeat for grace_period, or their process gone from
            # this machine) become FAIL, not counted: this sweep runs new ones in their place.
            optuna.storages.fail_stale_trials(self.study)
        fail_dead_local_trials(self.study)
        asked: List[Tuple[Any, List[str]]] = []
        for _ in range(min(room, self.remaining())):
            with warnings.catch_warnings():  # the heartbeat thread is started by hand around each job
                warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used")
                trial = self.study.ask(fixed_distributions=self.space)
            trial.set_user_attr("worker", worker_id())
            # The n_trials lowest-numbered trials count; one asked past them lost a race
            # with another worker and is set aside without running.
            if len(counted(self.study, up_to=trial.number)) > self.n_trials:
                trial.set_user_attr(SURPLUS, True)
                self.study.tell(trial, state=TrialState.FAIL)
                break
            try:
                if self.custom is not None:  # as the official plugin: fn(sweep config, trial) adds parameters
                    self.custom(self.config, trial)
            except BaseException:
                trial.set_user_attr("interrupted", True)
                self.study.tell(trial, state=TrialState.FAIL)
                raise
            asked.append((trial, self.overrides(trial)))
        return asked

    def overrides(self, trial) -> List[str]:
        values = [f"{k}={format_value(v)}" for k, v in trial.params.items()]
        overrides = self.fixed + values
        trial.set_user_attr("overrides", " ".join(overrides))
        return overrides + [f"++hydra.job.env_set.{TRIAL_ENV}={trial.number}"]

    def _tell(self, trial, *args, **kwargs) -> bool:
        """Tell the study; False when another worker failed the trial as stale meanwhile."""
        from optuna.trial import TrialState

        if internals.state_of(self.study, trial) != TrialState.RUNNING:
            log.warning("Trial %d was already finished by another worker (its heartbeat was late); "
                        "its result is dropped", trial.number)
            return False
        try:
            self.study.tell(trial, *args, **kwargs)
        except RuntimeError:
            # Grid-like samplers call study.stop() once every point has been tried, which Optuna
            # allows only inside study.optimize; the trial is stored all the same.
            if not self.exhaustive:
                raise
            log.info("The sampler has tried every point of the search space; the sweep ends")
            self.exhausted = True
        return True

    def _set_attr(self, trial, key: str, value: Any) -> None:
        import optuna

        try:
            trial.set_user_attr(key, value)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # failed as stale by another worker meanwhile; _tell says so

    def tell(self, trial, ret) -> Optional[str]:
        """Record a job's return; the error line when the trial failed, else None."""
        import optuna
        from hydra.core.utils import JobStatus
        from optuna.trial import TrialState

        job_dir = OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir") if ret.hydra_cfg else None
        if job_dir:
            self._set_attr(trial, "job_dir", str(job_dir))
        if ret.status == JobStatus.COMPLETED:
            values, error = returned_values(returned(ret), self.n_objectives)
            if values is not None:
                if self._tell(trial, values if self.n_objectives > 1 else values[0]):
                    self.finished += 1
                log.info("Trial %d: %s", trial.number, values if self.n_objectives > 1 else values[0])
                return None
        else:
            exc = returned(ret)
            if isinstance(exc, optuna.TrialPruned):
                if self._tell(trial, state=TrialState.PRUNED):
                    self.finished += 1
                log.info("Trial %d pruned", trial.number)
                return None
            text = str(exc).strip()
            # One line, long enough for submitit's "Job 7_0 ... has not produced any output (state: CANCELLED by 0)".
            error = f"{type(exc).__name__}: {' '.join(text.split())[:400]}"
            if not isinstance(exc, UserError):  # a bug: keep its traceback in the sweep log
                log.warning("Trial %d raised", trial.number, exc_info=(type(exc), exc, exc.__traceback__))
        self._set_attr(trial, "error", error)
        if self._tell(trial, state=TrialState.FAIL):
            self.failed.append((trial, error))
        log.warning("Trial %d failed: %s", trial.number, error)
        return error

    def fail_unfinished(self, trials: Sequence[Any], key: str, reason: str) -> List[int]:
        """Trials that will not report (the sweep stopped): FAILED without an error, so a rerun
        replaces them; ``key`` (``interrupted``, ``cancelled``) says why. Returns their numbers."""
        from optuna.trial import TrialState

        numbers = []
        for trial in trials:
            if internals.state_of(self.study, trial) == TrialState.RUNNING:
                self._set_attr(trial, key, reason)
                self.study.tell(trial, state=TrialState.FAIL)
                numbers.append(trial.number)
        return numbers
