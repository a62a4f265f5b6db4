"""The sweep loop: ask Optuna for trials, launch them as Hydra jobs, tell Optuna the results.

A job that raises, or returns None or a non-finite number, is a failed trial
(``TrialState.FAIL``) and the sweep goes on; the sampler never sees a NaN. A job stopped by the
pruner is a pruned trial. More than ``max_failure_rate * n_trials`` failures abort the sweep.
``n_trials`` counts the trials of the whole study, so several workers started with the same
``storage`` and ``study_name`` share the work, and a rerun of a stopped sweep finishes it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.rnnexp_optuna_sweeper.inflight import InFlight, runs_jobs_concurrently
from hydra_plugins.rnnexp_optuna_sweeper.space import distribution, format_value  # noqa: F401  (re-exported)
from hydra_plugins.rnnexp_optuna_sweeper.results import write_best_experiment, write_trials_csv
from hydra_plugins.rnnexp_optuna_sweeper.study import (
    TRIAL_ENV, fail_dead_local_trials, instantiate_or_none, open_storage, storage_url, worker_id,
)
from rnnexp.errors import ConfigError, UserError

log = logging.getLogger(__name__)

SURPLUS = "surplus"  # user attr of trials asked for past n_trials by a worker racing another


class SweepAborted(UserError):
    """Too many trials failed."""


def consecutive_runs(trials: Sequence[Any]) -> List[List[Any]]:
    """Trials split where numbers are not consecutive (another worker took the numbers between)."""
    runs: List[List[Any]] = []
    for trial in trials:
        if runs and trial.number == runs[-1][-1].number + 1:
            runs[-1].append(trial)
        else:
            runs.append([trial])
    return runs


class RnnexpOptunaSweeper(Sweeper):
    def __init__(
        self,
        study_name: Optional[str] = None,
        storage: Optional[str] = None,
        direction: str = "minimize",
        n_trials: int = 20,
        n_jobs: int = 1,
        async_trials: Optional[bool] = None,
        max_failure_rate: float = 0.5,
        heartbeat_interval: Optional[int] = 60,
        grace_period: Optional[int] = None,
        sampler: Any = None,
        pruner: Any = None,
        params: Optional[Dict[str, Any]] = None,
    ) -> None:
        if direction not in ("minimize", "maximize"):
            raise ConfigError("hydra.sweeper.direction", direction, "minimize or maximize")
        for key, value in (("n_trials", n_trials), ("n_jobs", n_jobs)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"hydra.sweeper.{key}", value, "must be an integer >= 1")
        for key, value in (("heartbeat_interval", heartbeat_interval), ("grace_period", grace_period)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"hydra.sweeper.{key}", value, "must be null or an integer >= 1 (seconds)")
        if not 0.0 <= float(max_failure_rate) <= 1.0:
            raise ConfigError("hydra.sweeper.max_failure_rate", max_failure_rate, "must be in [0, 1]")
        self.study_name, self.storage, self.direction = study_name, storage, direction
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, n_jobs, float(max_failure_rate)
        self.async_trials = async_trials is not False
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.sampler_spec, self.pruner_spec = sampler, pruner
        self.params = dict(params or {})
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.launcher = None
        self._exhausted = False

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # The search space: the config's params, then sweep syntax on the command line (which wins).
    def _space(self, arguments: List[str]):
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        lines = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        space, fixed = {}, {}
        for override in parser.parse_overrides(lines):
            key = override.get_key_element()
            space.pop(key, None), fixed.pop(key, None)
            if override.is_sweep_override():
                space[key] = distribution(override)
            else:
                fixed[key] = override.input_line
        return space, list(fixed.values())

    def sweep(self, arguments: List[str]) -> Any:
        import optuna
        from optuna.trial import TrialState

        assert self.config is not None and self.launcher is not None
        space, fixed = self._space(arguments)
        if not space:
            raise UserError("the sweep has no parameters: set hydra.sweeper.params (see conf/hparams_search/)")
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        study_name = self.study_name or str(self.config.task_name)
        url = storage_url(self.storage, str(sweep_dir))
        storage = open_storage(url, heartbeat_interval=self.heartbeat_interval, grace_period=self.grace_period)
        study = optuna.create_study(
            study_name=study_name,
            storage=storage,
            sampler=instantiate_or_none(self.sampler_spec),
            # null means no pruning (Optuna's own default for None would be a MedianPruner).
            pruner=instantiate_or_none(self.pruner_spec) or optuna.pruners.NopPruner(),
            direction=self.direction,
            load_if_exists=True,
        )
        if study.direction.name.lower() != self.direction:
            raise ConfigError(
                "hydra.sweeper.direction", self.direction,
                f"study {study_name!r} in {url} was created to {study.direction.name.lower()}; use that or a new study_name",
            )
        log.info("Study %r in %s: %s %s over %d trials; space: %s", study_name, url, self.direction,
                 self.config.get("optimized_metric", "the return value"), self.n_trials, ", ".join(space))

        self._exhausted = False
        inflight = InFlight(self.launcher, storage) if self._concurrent else None
        untold: Dict[int, Any] = {}  # trials asked and not yet told: failed as interrupted if the sweep stops
        validated = False
        try:
            while True:
                room = self.n_jobs
                if inflight is not None:  # async: refill each free slot at once; else wait for all k
                    room = self.n_jobs - len(inflight) if self.async_trials or not len(inflight) else 0
                batch = self._ask(study, space, room) if room > 0 and not self._exhausted else []
                overrides = {t.number: self._overrides(t, fixed, space) for t in batch}
                untold.update((t.number, t) for t in batch)
                if batch and not validated:  # composition errors (a misspelt key) stop the sweep at once
                    self.validate_batch_is_legal(list(overrides.values()))
                    validated = True
                if inflight is None:
                    if not batch:
                        break
                    self._run_batch(study, storage, batch, overrides)
                    untold.clear()
                else:
                    for t in batch:
                        inflight.start(t, overrides[t.number])
                    if not len(inflight):
                        break
                    trial, ret = inflight.next_result()
                    self._tell(study, trial, ret)
                    untold.pop(trial.number)
                self._check_failures(study, sweep_dir)
        except BaseException:
            for t in untold.values():  # a stopped sweep leaves no trial RUNNING forever
                if study._storage.get_trial(t._trial_id).state == TrialState.RUNNING:
                    t.set_user_attr("interrupted", True)
                    self._tell_study(study, t, state=TrialState.FAIL)
            raise
        finally:
            if inflight is not None:
                inflight.close()
        return self._finish(study, sweep_dir, fixed)

    @property
    def _concurrent(self) -> bool:
        """Each trial its own job, waited for in a thread (submitit launchers). ``async_trials=false``
        keeps this path but refills only when all n_jobs are back: the batch-synchronous mode."""
        return runs_jobs_concurrently(self.launcher)

    def _ask(self, study, space, room: int) -> list:
        """Up to ``room`` new trials, as many as the study still needs."""
        import optuna
        from optuna.trial import TrialState

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # Trials of killed workers (no heartbeat for grace_period, or their process gone from
            # this machine) become FAIL, not counted: this sweep runs new ones in their place.
            optuna.storages.fail_stale_trials(study)
        fail_dead_local_trials(study)
        batch: list = []
        for _ in range(min(room, self.n_trials - len(self._counted(study)))):
            with warnings.catch_warnings():  # the heartbeat thread is started by hand around each job
                warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used")
                trial = study.ask(fixed_distributions=space)
            trial.set_user_attr("worker", worker_id())
            # The n_trials lowest-numbered trials count; one asked past them lost a race
            # with another worker and is set aside without running.
            if len(self._counted(study, up_to=trial.number)) > self.n_trials:
                trial.set_user_attr(SURPLUS, True)
                self._tell_study(study, trial, state=TrialState.FAIL)
                break
            batch.append(trial)
        return batch

    @staticmethod
    def _overrides(trial, fixed: List[str], space) -> List[str]:
        overrides = fixed + [f"{k}={format_value(trial.params[k])}" for k in space]
        trial.set_user_attr("overrides", " ".join(overrides))
        return overrides + [f"++hydra.job.env_set.{TRIAL_ENV}={trial.number}"]

    def _run_batch(self, study, storage, batch: list, overrides: Dict[int, List[str]]) -> None:
        """One launch per run of consecutive trial numbers (they name the job directories)."""
        from optuna.storages._heartbeat import get_heartbeat_thread

        for run in consecutive_runs(batch):
            with contextlib.ExitStack() as beats:  # "this trial is alive", every heartbeat_interval
                for t in run:
                    beats.enter_context(get_heartbeat_thread(t._trial_id, storage))
                returns = self.launcher.launch([overrides[t.number] for t in run], initial_job_idx=run[0].number)
            for trial, ret in zip(run, returns):
                self._tell(study, trial, ret)

    def _check_failures(self, study, sweep_dir: Path) -> None:
        from optuna.trial import TrialState

        failed = [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)) if "error" in t.user_attrs]
        if len(failed) > self.max_failure_rate * self.n_trials:
            write_trials_csv(study, sweep_dir)
            last = failed[-1].user_attrs.get("error", "see the trial logs")
            raise SweepAborted(
                f"sweep aborted: {len(failed)} of {self.n_trials} trials failed, more than "
                f"hydra.sweeper.max_failure_rate={self.max_failure_rate}; last error: {last}"
            )

    @staticmethod
    def _counted(study, up_to: Optional[int] = None) -> list:
        """The trials that use up n_trials: all but those that never ran to an outcome (surplus,
        interrupted, or left by a killed worker: FAIL without an ``error``), which a rerun replaces,
        and those waiting in the queue (``study.enqueue_trial``), which the next asks take."""
        from optuna.trial import TrialState

        return [t for t in study.get_trials(deepcopy=False)
                if not (t.state == TrialState.FAIL and "error" not in t.user_attrs) and t.state != TrialState.WAITING
                and (up_to is None or t.number <= up_to)]

    def _tell_study(self, study, trial, *args, **kwargs) -> None:
        try:
            study.tell(trial, *args, **kwargs)
        except ValueError as exc:
            # Another worker failed this trial as stale (its heartbeat was late): keep its verdict.
            if "Cannot tell a" not in str(exc):
                raise
            log.warning("Trial %d was already finished by another worker (%s); its result is dropped",
                        trial.number, exc)
        except RuntimeError as exc:
            # Grid and brute-force samplers call study.stop() once every point has been tried,
            # which Optuna allows only inside study.optimize (the trial is stored all the same).
            if "Study.stop" not in str(exc):
                raise
            log.info("The sampler has tried every point of the search space; the sweep ends")
            self._exhausted = True

    @staticmethod
    def _set_attr(trial, key: str, value: Any) -> None:
        import optuna

        try:
            trial.set_user_attr(key, value)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # failed as stale by another worker meanwhile; _tell_study says so

    def _tell(self, study, trial, ret) -> None:
        import optuna
        from optuna.trial import TrialState

        job_dir = OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir") if ret.hydra_cfg else None
        if job_dir:
            self._set_attr(trial, "job_dir", str(job_dir))
        if ret.status == JobStatus.COMPLETED:
            value = ret._return_value
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = float("nan")
            if math.isfinite(number):
                self._tell_study(study, trial, number)
                log.info("Trial %d: %s", trial.number, number)
                return
            error = f"the job returned {value!r}, not a finite number"
        else:
            exc = ret._return_value
            if isinstance(exc, optuna.TrialPruned):
                self._tell_study(study, trial, state=TrialState.PRUNED)
                log.info("Trial %d pruned", trial.number)
                return
            text = str(exc).strip()
            # One line, long enough for submitit's "Job 7_0 ... has not produced any output (state: CANCELLED by 0)".
            error = f"{type(exc).__name__}: {' '.join(text.split())[:400]}"
            if not isinstance(exc, UserError):  # a bug: keep its traceback in the sweep log
                log.warning("Trial %d raised", trial.number, exc_info=(type(exc), exc, exc.__traceback__))
        self._set_attr(trial, "error", error)
        self._tell_study(study, trial, state=TrialState.FAIL)
        log.warning("Trial %d failed: %s", trial.number, error)

    def _finish(self, study, sweep_dir: Path, fixed: List[str]):
        from optuna.trial import TrialState

        csv = write_trials_csv(study, sweep_dir)
        try:
            from rnnexp.reporting.sweep_plots import write_sweep_plots

            # param_importances.png, parallel_coordinates.png
            write_sweep_plots(study, sweep_dir, target_name=str(self.config.get("optimized_metric") or "value"))
        except Exception as exc:  # noqa: BLE001 - a plot never fails a finished sweep
            log.warning("Could not draw the sweep plots: %s", exc)
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            log.warning("No trial completed; the trial table is in %s", csv)
            return None
        best = study.best_trial
        path = write_best_experiment(study, best, sweep_dir, fixed, self.config)
        metric = self.config.get("optimized_metric", "value")
        summary = ", ".join(f"{k}={format_value(v)}" for k, v in best.params.items())
        # Once, after whatever the last job's progress bar left on stderr (Hydra's console log is stdout).
        sys.stderr.flush()
        log.info("Best trial %d: %s = %s with %s", best.number, metric, best.value, summary)
        log.info("Best parameters as an experiment: %s; all trials: %s", path, csv)
        return best
