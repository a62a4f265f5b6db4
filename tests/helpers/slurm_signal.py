"""A callback that has SLURM signal its own job at a chosen step (for tests/test_cluster_slurm.py).

``scancel --signal=USR2 <job>`` from the test, while the job trained, raced with a job that lasts
seconds: the job could finish first. From inside, the job asks at the start of its ``at_step``-th
optimizer step and waits until the signal has arrived, so the requeue callback saves at exactly
that step. Only in the job's first run (``SLURM_RESTART_COUNT`` unset or 0), and only in the
multirun job numbered ``job_num``.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytorch_lightning as pl


class SignalFromInside(pl.Callback):
    def __init__(self, at_step: int, job_num: int = 0, signal: str = "USR2", timeout: float = 60) -> None:
        self.at_step, self.job_num, self.signal, self.timeout = at_step, job_num, signal, timeout
        self.sent = False

    def _mine(self) -> bool:
        from hydra.core.hydra_config import HydraConfig

        first_run = os.environ.get("SLURM_RESTART_COUNT", "0") == "0"
        return first_run and "SLURM_JOB_ID" in os.environ and HydraConfig.get().job.num == self.job_num

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.sent or trainer.global_step + 1 != self.at_step or not self._mine():
            return
        self.sent = True
        from rnnexp.callbacks.requeue import SaveOnRequeueSignal

        (saver,) = [c for c in trainer.callbacks if isinstance(c, SaveOnRequeueSignal)]
        subprocess.run(["scancel", f"--signal={self.signal}", os.environ["SLURM_JOB_ID"]], check=True)
        deadline = time.monotonic() + self.timeout
        while saver._caught is None:  # the handler runs in this (main) thread between our sleeps
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {self.signal} from SLURM within {self.timeout} s of scancel")
            time.sleep(0.05)
