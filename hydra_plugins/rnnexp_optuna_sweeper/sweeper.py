"""``hydra/sweeper=rnnexp_optuna``: Hydra's official Optuna sweeper, on current Optuna, with extras.

A job that raises, or returns None or a non-finite number, is a failed trial
(``TrialState.FAIL``, its error in the trial's ``error`` attribute); the sampler never sees a NaN.
A job stopped by the pruner is a pruned trial. More than ``max_failure_rate`` of a batch failing
aborts the sweep; a sweep whose every trial failed exits non-zero too. A stopped sweep (those
failures, Ctrl-C, SIGTERM) cancels its running SLURM jobs and fails their trials in the study.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, ListConfig, OmegaConf

from hydra_plugins.rnnexp_optuna_sweeper.drivers import AsyncDriver, BatchDriver, SweepAborted
from hydra_plugins.rnnexp_optuna_sweeper.inflight import runs_jobs_concurrently
from hydra_plugins.rnnexp_optuna_sweeper.job import study_name as default_study_name
from hydra_plugins.rnnexp_optuna_sweeper.results import (
    write_best_experiment, write_optimization_results, write_plots, write_trials_csv,
)
from hydra_plugins.rnnexp_optuna_sweeper.samplers import build_pruner, build_sampler, is_exhaustive
from hydra_plugins.rnnexp_optuna_sweeper.space import (
    format_value, grid_points, grid_size, load_custom_search_space, search_space,
)
from hydra_plugins.rnnexp_optuna_sweeper.study import SweepStudy, open_storage, storage_url
from rnnexp.errors import ConfigError, UserError, check_int, is_int

log = logging.getLogger(__name__)

DIRECTIONS = ("minimize", "maximize")


class SweepTerminated(BaseException):
    """SIGTERM reached the sweep: stop like Ctrl-C (a BaseException, so no job catches it)."""


def directions_of(direction: Any) -> List[str]:
    """``direction``: a string or a list of them (several objectives)."""
    values = list(direction) if isinstance(direction, (list, tuple, ListConfig)) else [direction]
    names = [getattr(v, "name", v) for v in values]  # the official schema's Direction enum
    if not names or any(n not in DIRECTIONS for n in names):
        raise ConfigError("hydra.sweeper.direction", direction, "minimize, maximize, or a list of them (one per objective)")
    return [str(n) for n in names]


@contextlib.contextmanager
def sigterm_stops_the_sweep():
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SweepTerminated()

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


class RnnexpOptunaSweeper(Sweeper):
    def __init__(
        self,
        sampler: Any = None,
        direction: Any = "minimize",
        storage: Optional[str] = None,
        study_name: Optional[str] = None,
        n_trials: int = 20,
        n_jobs: int = 2,
        max_failure_rate: float = 0.0,
        params: Optional[Dict[str, Any]] = None,
        custom_search_space: Optional[str] = None,
        async_trials: Optional[bool] = None,
        heartbeat_interval: Optional[int] = 60,
        grace_period: Optional[int] = None,
        pruner: Any = None,
    ) -> None:
        self.directions = directions_of(direction)
        for key, value in (("n_trials", n_trials), ("n_jobs", n_jobs)):
            check_int(f"hydra.sweeper.{key}", value, 1)
        for key, value in (("heartbeat_interval", heartbeat_interval), ("grace_period", grace_period)):
            if value is not None and (not is_int(value) or value < 1):
                raise ConfigError(f"hydra.sweeper.{key}", value, "must be null or an integer >= 1 (seconds)")
        if not isinstance(max_failure_rate, (int, float)) or not 0.0 <= float(max_failure_rate) <= 1.0:
            raise ConfigError("hydra.sweeper.max_failure_rate", max_failure_rate, "must be in [0, 1]")
        if storage is not None and not isinstance(storage, str):
            raise ConfigError("hydra.sweeper.storage", storage, "a database URL such as sqlite:///study.db, or null")
        self.study_name, self.storage = study_name, storage
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, n_jobs, float(max_failure_rate)
        self.async_trials = async_trials is not False
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.sampler_spec, self.pruner_spec = sampler, pruner
        self.params = dict(params or {})
        self.custom_search_space = custom_search_space
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _space(self, arguments: List[str]):
        """The search space: the config's params, then sweep syntax on the command line (which wins)."""
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        return search_space([f"{k}={v}" for k, v in self.params.items()] + list(arguments), parser)

    def _target_names(self) -> List[str]:
        metric = self.config.get("optimized_metric")
        names = list(metric) if isinstance(metric, (list, ListConfig)) else ([metric] if metric else [])
        if len(names) == len(self.directions):
            return [str(n) for n in names]
        return ["value"] if len(self.directions) == 1 else [f"value {i}" for i in range(len(self.directions))]

    def sweep(self, arguments: List[str]) -> Any:
        import optuna

        assert self.config is not None and self.launcher is not None
        space, fixed = self._space(arguments)
        custom = load_custom_search_space(self.custom_search_space, self.task_function)
        if not space and custom is None:
            raise UserError("the sweep has no parameters: set hydra.sweeper.params (key: choice(...), "
                            "range(...) or interval(...)), sweep a key on the command line, or set "
                            "hydra.sweeper.custom_search_space")
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        choice = self.config.hydra.runtime.choices.get("hydra/sweeper/sampler")
        sampler = build_sampler(self.sampler_spec, choice, self.directions,
                                grid=lambda: grid_points(space))
        n_trials = self.n_trials
        name = self.study_name or default_study_name(self.config.hydra.sweeper, self.config.hydra)
        url = storage_url(self.storage, str(sweep_dir))
        storage = open_storage(url, heartbeat_interval=self.heartbeat_interval, grace_period=self.grace_period)
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                    pruner=build_pruner(self.pruner_spec, self.directions),
                                    directions=self.directions, load_if_exists=True)
        stored = [d.name.lower() for d in study.directions]
        if stored != self.directions:
            raise ConfigError("hydra.sweeper.direction", self.directions if len(self.directions) > 1 else self.directions[0],
                              f"study {name!r} in {url} was created to {', '.join(stored)}; use that or a new study_name")
        if isinstance(sampler, optuna.samplers.GridSampler) and choice == "grid":
            points = grid_size(grid_points(space))  # as the official plugin: n_trials = min(n_trials, grid size)
            if points < n_trials:
                log.info("The grid has %d points: n_trials %d -> %d", points, n_trials, points)
                n_trials = points
        log.info("Study %r in %s: %s %s over %d trials; space: %s", name, url, "/".join(self.directions),
                 ", ".join(self._target_names()), n_trials, ", ".join(space) or "custom_search_space")

        sweep = SweepStudy(study, storage, n_trials=n_trials, space=space, fixed=fixed, custom=custom,
                           config=self.config, exhaustive=is_exhaustive(sampler))
        concurrent = runs_jobs_concurrently(self.launcher)
        common = dict(n_jobs=self.n_jobs, max_failure_rate=self.max_failure_rate, validate=self.validate_batch_is_legal)
        if concurrent and self.async_trials:
            driver = AsyncDriver(sweep, self.launcher, **common)
        else:
            driver = BatchDriver(sweep, self.launcher, concurrent=concurrent, **common)
        try:
            with sigterm_stops_the_sweep():
                driver.run()
        except BaseException as exc:
            self._stopped(driver, exc, study, sweep_dir)
            if isinstance(exc, SweepTerminated):
                raise SystemExit(128 + signal.SIGTERM) from None
            raise
        return self._finish(sweep, sweep_dir, fixed)

    def _stopped(self, driver, exc: BaseException, study, sweep_dir: Path) -> None:
        """A stopped sweep leaves no trial RUNNING forever and no SLURM job running for nothing."""
        why = {SweepAborted: "aborted", KeyboardInterrupt: "interrupted", SweepTerminated: "terminated (SIGTERM)"}
        reason = next((v for k, v in why.items() if isinstance(exc, k)), f"stopped by {type(exc).__name__}")
        key = "cancelled" if isinstance(exc, (SweepAborted, SweepTerminated)) else "interrupted"
        numbers, cancelled = driver.stop(key, f"the sweep was {reason}")
        write_trials_csv(study, sweep_dir)
        if numbers or cancelled:
            jobs = f"cancelled SLURM jobs {' '.join(cancelled)}; " if cancelled else ""
            log.warning("Sweep %s: %strials %s marked FAILED in the study (a rerun replaces them)",
                        reason, jobs, ", ".join(map(str, numbers)) or "none")

    def _finish(self, sweep: SweepStudy, sweep_dir: Path, fixed: List[str]):
        from optuna.trial import TrialState

        study = sweep.study
        csv = write_trials_csv(study, sweep_dir)
        names = self._target_names()
        write_plots(study, sweep_dir, names)
        if sweep.failed and not sweep.finished:
            raise SweepAborted(f"every trial of the sweep failed ({len(sweep.failed)}); "
                               f"last error: {sweep.failed[-1][1]} (all trials: {csv})")
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            log.warning("No trial completed; the trial table is in %s", csv)
            return None
        results = write_optimization_results(study, sweep_dir)
        # Once, after whatever the last job's progress bar left on stderr (Hydra's console log is stdout).
        sys.stderr.flush()
        if len(self.directions) > 1:
            log.info("Pareto front: %d trials (%s); %s", len(study.best_trials),
                     ", ".join(str(t.number) for t in study.best_trials), results)
            for t in study.best_trials:
                log.info("    Trial %d: %s with %s", t.number, dict(zip(names, t.values)), _params(t))
            return study.best_trials
        best = study.best_trial
        path = write_best_experiment(best, sweep_dir, fixed, self.config)
        log.info("Best trial %d: %s = %s with %s", best.number, names[0], best.value, _params(best))
        log.info("Best parameters as an experiment: %s; all trials: %s; %s", path, csv, results.name)
        return best


def _params(trial) -> str:
    return ", ".join(f"{k}={format_value(v)}" for k, v in trial.params.items())
