"""Trials in flight on a launcher that runs jobs concurrently (submitit: SLURM or local processes).

Hydra's ``Launcher.launch(batch)`` returns when every job of the batch has finished, so a sweep
that launches k trials together idles k - 1 slots while the slowest trial runs. Here each trial
is its own one-job ``launch`` call in a daemon thread (the launcher only submits and waits;
the training runs in the job's own process), and the sweep loop takes each result as soon as it
arrives: it asks Optuna for the next trial at once. Optuna calls (ask, tell) stay in the sweep
loop's thread; each trial's heartbeat runs from its start to its result.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from typing import Any, Dict, List, Sequence, Tuple

from hydra.core.utils import JobReturn, JobStatus


def runs_jobs_concurrently(launcher: Any) -> bool:
    """Launchers whose jobs run outside this process, so that several launch calls can wait together."""
    return any(c.__module__.startswith("hydra_plugins.hydra_submitit_launcher") for c in type(launcher).__mro__)


class InFlight:
    def __init__(self, launcher: Any, storage: Any) -> None:
        self.launcher, self.storage = launcher, storage
        self.trials: Dict[int, Any] = {}                       # number -> optuna Trial
        self._beats: Dict[int, contextlib.ExitStack] = {}
        self._done: "queue.Queue[Tuple[int, JobReturn]]" = queue.Queue()

    def __len__(self) -> int:
        return len(self.trials)

    def start(self, trial: Any, overrides: Sequence[str]) -> None:
        # The heartbeat thread study.optimize runs around each trial; ask/tell has to start it itself.
        from optuna.storages._heartbeat import get_heartbeat_thread

        beats = contextlib.ExitStack()
        beats.enter_context(get_heartbeat_thread(trial._trial_id, self.storage))
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
        number, ret = self._done.get()
        self._beats.pop(number).close()
        return self.trials.pop(number), ret

    def close(self) -> None:
        for beats in self._beats.values():
            beats.close()
        self._beats.clear()
