"""Save a resume checkpoint when SLURM warns that the job is about to be stopped.

SLURM sends a signal some time before it stops a job: ``--signal=USR2@120`` (submitit's
``signal_delay_s``) before the time limit, and the same signal can come on preemption
(``PreemptParameters=send_user_signal``, or ``scancel --signal=USR2 <job>``). submitit's own
handler then asks the launcher for a checkpoint, requeues the job and exits at once, in the
middle of whatever step was running. Saving the trainer right there (as Lightning's
``SLURMEnvironment(auto_requeue=True)`` does) would store a half-done step. This callback only
notes the signal, lets the current batch finish, writes ``checkpoints/resume.ckpt`` at the
batch end (the same moment the periodic resume checkpoint is taken, so ``resume=<run dir>``
continues exactly) and then hands the signal to the previous handler: submitit's, which
requeues the job; ``hydra/launcher=slurm`` restarts it with ``resume=<its run dir>``
(``hydra_plugins.rnnexp_submitit``).

Active only inside a SLURM job (``SLURM_JOB_ID`` is set) and in the main thread.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any, Optional

import pytorch_lightning as pl

log = logging.getLogger(__name__)


def requeue_signal() -> signal.Signals:
    """The signal submitit asks SLURM for (``SUBMITIT_PREEMPT_SIGNAL``, default USR2)."""
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))


class SaveOnRequeueSignal(pl.Callback):
    def __init__(self, dirpath: str, filename: str = "resume.ckpt") -> None:
        self.path = Path(dirpath) / filename
        self._signum = requeue_signal()
        self._previous: Any = None
        self._installed = False
        self._caught: Optional[tuple] = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or "SLURM_JOB_ID" not in os.environ or threading.current_thread() is not threading.main_thread():
            return
        self._previous = signal.signal(self._signum, self._note)
        self._installed = True

    def _note(self, signum: int, frame: Any) -> None:
        log.warning("Received %s from SLURM: saving a resume checkpoint after this batch", signal.Signals(signum).name)
        self._caught = (signum, frame)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if not self._installed:
            return
        caught = self._caught is not None
        if trainer.world_size > 1:  # every rank takes part in the save
            caught = trainer.strategy.reduce_boolean_decision(caught, all=False)
        if not caught:
            return
        trainer.save_checkpoint(str(self.path))
        log.warning("Saved %s at step %d", self.path, trainer.global_step)
        signum, frame = self._caught or (self._signum, None)
        self._caught = None
        previous = self._restore()
        if callable(previous):  # submitit: requeue with resume=<run dir>, then exit
            previous(signum, frame)

    def _restore(self) -> Any:
        previous = self._previous
        if self._installed:
            signal.signal(self._signum, previous if previous is not None else signal.SIG_DFL)
            self._installed = False
        return previous

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._restore()
