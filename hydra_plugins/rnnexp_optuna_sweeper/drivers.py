"""The two sweep loops over a :class:`~.study.SweepStudy`.

- :class:`BatchDriver`, the official plugin's loop: ask ``n_jobs`` trials, launch them together,
  wait for all of them, tell the results, ask again.
- :class:`AsyncDriver`, on launchers whose jobs run outside this process (submitit): keep
  ``n_jobs`` trials running and ask for the next one as soon as any of them finishes.

Both stop when more than ``max_failure_rate`` of a batch failed: the ``n_jobs`` trials launched
together, or for the asynchronous driver the last ``n_jobs`` results. Both know the trials they
still wait for, so a stopped sweep can cancel and fail them (:meth:`stop`).
"""

from __future__ import annotations

import collections
import logging
from typing import Any, Callable, List, Optional, Sequence, Tuple

from hydra_plugins.rnnexp_optuna_sweeper.inflight import InFlight
from hydra_plugins.rnnexp_optuna_sweeper.optuna_internals import heartbeats
from hydra_plugins.rnnexp_optuna_sweeper.study import SweepStudy
from rnnexp.errors import UserError

log = logging.getLogger(__name__)


class SweepAborted(UserError):
    """Too many trials of a batch failed, or every trial did."""


def check_failures(errors: Sequence[Optional[str]], size: int, max_failure_rate: float) -> None:
    failed = [e for e in errors if e is not None]
    if failed and len(failed) / size > max_failure_rate:
        raise SweepAborted(
            f"sweep aborted: {len(failed)} of {size} trials of a batch failed, more than "
            f"hydra.sweeper.max_failure_rate={max_failure_rate:g}; last error: {failed[-1]}")


def consecutive_runs(trials: Sequence[Any]) -> List[List[Any]]:
    """Trials split where numbers are not consecutive (another worker took the numbers between)."""
    runs: List[List[Any]] = []
    for trial in trials:
        if runs and trial.number == runs[-1][-1].number + 1:
            runs[-1].append(trial)
        else:
            runs.append([trial])
    return runs


class _Driver:
    def __init__(self, sweep: SweepStudy, launcher: Any, *, n_jobs: int, max_failure_rate: float,
                 validate: Callable[[List[List[str]]], None]) -> None:
        self.sweep, self.launcher, self.n_jobs = sweep, launcher, n_jobs
        self.max_failure_rate, self._validate = max_failure_rate, validate
        self.waiting: dict = {}          # number -> trial launched and not yet told
        self.inflight: Optional[InFlight] = None

    def _ask(self, room: int) -> List[Tuple[Any, List[str]]]:
        asked = self.sweep.ask(room) if room > 0 else []
        self.waiting.update((t.number, t) for t, _ in asked)
        if asked and self._validate is not None:  # composition errors (a misspelt key) stop the sweep at once
            validate, self._validate = self._validate, None
            validate([o for _, o in asked])
        return asked

    def _tell(self, trial: Any, ret: Any) -> Optional[str]:
        error = self.sweep.tell(trial, ret)
        self.waiting.pop(trial.number, None)
        return error

    def stop(self, key: str, reason: str) -> Tuple[List[int], List[str]]:
        """The sweep stops: cancel the SLURM jobs still running and fail their trials in the study
        (without an error: a rerun replaces them). Returns (failed trial numbers, cancelled job ids)."""
        cancelled: List[str] = []
        if self.inflight is not None:
            _, cancelled = self.inflight.cancel()
        numbers = self.sweep.fail_unfinished(list(self.waiting.values()), key, reason)
        self.waiting.clear()
        return numbers, cancelled


class BatchDriver(_Driver):
    """Ask ``n_jobs``, run them, wait for all, tell all; the official plugin's loop."""

    def __init__(self, *args: Any, concurrent: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if concurrent:  # each trial its own job, waited for in a thread: cancellable on SLURM
            self.inflight = InFlight(self.launcher, self.sweep.storage)

    def run(self) -> None:
        while True:
            asked = self._ask(self.n_jobs)
            if not asked:
                return
            errors = self._launch(asked)
            check_failures(errors, len(asked), self.max_failure_rate)

    def _launch(self, asked: List[Tuple[Any, List[str]]]) -> List[Optional[str]]:
        overrides = {t.number: o for t, o in asked}
        errors: List[Optional[str]] = []
        if self.inflight is not None:
            for trial, o in asked:
                self.inflight.start(trial, o)
            while len(self.inflight):
                errors.append(self._tell(*self.inflight.next_result()))
            return errors
        # One launch per run of consecutive trial numbers (they name the job directories).
        for run in consecutive_runs([t for t, _ in asked]):
            with heartbeats(run, self.sweep.storage):  # "this trial is alive", every heartbeat_interval
                returns = self.launcher.launch([overrides[t.number] for t in run], initial_job_idx=run[0].number)
            errors += [self._tell(trial, ret) for trial, ret in zip(run, returns)]
        return errors


class AsyncDriver(_Driver):
    """Keep ``n_jobs`` trials running; a free slot takes the next trial at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inflight = InFlight(self.launcher, self.sweep.storage)

    def run(self) -> None:
        recent: collections.deque = collections.deque(maxlen=self.n_jobs)  # the last n_jobs results
        while True:
            for trial, overrides in self._ask(self.n_jobs - len(self.inflight)):
                self.inflight.start(trial, overrides)
            if not len(self.inflight):
                return
            recent.append(self._tell(*self.inflight.next_result()))
            check_failures(recent, self.n_jobs, self.max_failure_rate)
