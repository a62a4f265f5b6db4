"""Trials in flight on a launcher that runs jobs concurrently (submitit: SLURM or local processes).

Hydra's ``Launcher.launch(batch)`` returns when every job of the batch has finished, so a sweep
that launches k trials together idles k - 1 slots while the slowest trial runs. Here each trial
is its own one-job ``launch`` call in a daemon thread (the launcher only submits and waits;
the training runs in the job's own process), and the driver takes each result as soon as it
arrives. Optuna calls (ask, tell) stay in the driver's thread; each trial's heartbeat runs from
its start to its result. A stopped sweep cancels the SLURM jobs it still waits for.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import subprocess
import threading
from typing import Any, Dict, List, Sequence, Tuple

from hydra.core.utils import JobReturn, JobStatus

from hydra_plugins.rnnexp_optuna_sweeper.optuna_internals import heartbeat

log = logging.getLogger(__name__)


def runs_jobs_concurrently(launcher: Any) -> bool:
    """Launchers whose jobs run outside this process, so that several launch calls can wait together."""
    return any(c.__module__.startswith("hydra_plugins.hydra_submitit_launcher") for c in type(launcher).__mro__)


def unfinished_slurm_jobs() -> List[str]:
    """The SLURM job ids this process submitted through submitit and has not seen finish
    (:func:`rnnexp.compat.submitit.unfinished_jobs`); none without submitit."""
    try:
        from rnnexp.compat.submitit import unfinished_jobs
    except ImportError:
        return []
    return unfinished_jobs()


def cancel_slurm_jobs(job_ids: Sequence[str]) -> List[str]:
    """``scancel`` the jobs; the ids it was given (none when ``scancel`` is missing or fails)."""
    if not job_ids:
        return []
    try:
        subprocess.run(["scancel", *job_ids], check=True, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("Could not cancel the SLURM jobs %s: %s", " ".join(job_ids), exc)
        return []
    return list(job_ids)


class InFlight:
    def __init__(self, launcher: Any, storage: Any) -> None:
        self.launcher, self.storage = launcher, storage
        self.trials: Dict[int, Any] = {}                       # number -> optuna Trial
        self._beats: Dict[int, contextlib.ExitStack] = {}
        self._done: "queue.Queue[Tuple[int, JobReturn]]" = queue.Queue()

    def __len__(self) -> int:
        return len(self.trials)

    def start(self, trial: Any, overrides: Sequence[str]) -> None:
        beats = contextlib.ExitStack()
        beats.enter_context(heartbeat(trial, self.storage))
        self.trials[trial.number], self._beats[trial.number] = trial, beats
        # Daemon threads: an interrupted sweep exits without waiting for jobs still on the cluster.
        threading.Thread(target=self._run, args=(trial.number, list(overrides)), daemon=True,
                         name=f"trial-{trial.number}").start()

    def _run(self, number: int, overrides: List[str]) -> None:
        try:
            (ret,) = self.launcher.launch([overrides], initial_job_idx=number)
        except BaseException as exc:  # noqa: BLE001 - e.g. submitit's UncompletedJobError for a cancelled job
            ret = JobReturn(status=JobStatus.FAILED)
            ret.return_value = exc
        self._done.put((number, ret))

    def next_result(self) -> Tuple[Any, JobReturn]:
        """Wait for the next trial to finish: (trial, its job's return)."""
        while True:
            try:  # a timeout, so that Ctrl-C and SIGTERM reach the waiting thread
                number, ret = self._done.get(timeout=0.5)
                break
            except queue.Empty:
                continue
        self._beats.pop(number).close()
        return self.trials.pop(number), ret

    def cancel(self) -> Tuple[List[Any], List[str]]:
        """Stop waiting: cancel the SLURM jobs still running; (their trials, the job ids cancelled)."""
        trials = list(self.trials.values())
        cancelled = cancel_slurm_jobs(unfinished_slurm_jobs()) if trials else []
        self.close()
        self.trials.clear()
        return trials, cancelled

    def close(self) -> None:
        for beats in self._beats.values():
            beats.close()
        self._beats.clear()
