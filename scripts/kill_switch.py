"""A callback that SIGKILLs its own training process at one chosen moment (for scripts/kill_anywhere.py).

Added to a run with ``+callbacks.kill_switch._target_=scripts.kill_switch.KillSwitch
+callbacks.kill_switch.at=<event>:<n>``: the process kills itself with SIGKILL (no handler,
no cleanup, exactly as the OOM killer or a pre-empting scheduler would) at the n-th ``event``
it sees. A kill from inside lands on the moment asked for, which a timer outside cannot:
a checkpoint write lasts milliseconds, and a toy sweep's trial less than a second. The count
is the process's, not the Trainer's: in a sweep, whose trials run one after another in one
process with a new callback each, ``epoch_start:8`` is the second epoch of the third trial
when trials last 3 epochs. Events:

- ``train_batch_start``, ``train_batch_end``: before a training step / after it (before the
  step's checkpoint is written, since Lightning runs checkpoint callbacks last);
- ``val_batch``: after a validation batch; ``test_batch``: after a test batch;
- ``epoch_start``, ``epoch_end``: the epoch boundary (``on_train_epoch_end`` comes after the
  epoch-end validation and its checkpoint);
- ``save``: after the checkpoint dict is built, before its file is opened;
- ``write``: in the middle of a checkpoint write, when the temporary file beside the target
  holds all the bytes but is neither synced nor renamed.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from typing import List

import pytorch_lightning as pl

EVENTS = ("train_batch_start", "train_batch_end", "val_batch", "test_batch", "epoch_start", "epoch_end", "save",
          "write")
SEEN = Counter()  # events this process has seen, over every KillSwitch it made


def overrides(at: str) -> List[str]:
    """The ``train.py`` overrides that add a KillSwitch firing at ``at`` (``<event>:<n>``)."""
    return ["+callbacks.kill_switch._target_=scripts.kill_switch.KillSwitch", f"+callbacks.kill_switch.at={at}"]


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillSwitch(pl.Callback):
    def __init__(self, at: str) -> None:
        event, _, count = at.partition(":")
        if event not in EVENTS or not count.isdigit() or int(count) < 1:
            raise ValueError(f"at={at!r}: expected <event>:<n> with n >= 1 and event one of {', '.join(EVENTS)}")
        self.event, self.count = event, int(count)

    def _tick(self, event: str) -> None:
        if event == self.event:
            SEEN[event] += 1
            if SEEN[event] == self.count:
                die()

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.event == "write" and stage == "fit":
            # AtomicCheckpointIO fsyncs the temporary file right before renaming it over the target.
            fsync = os.fsync

            def fsync_then_maybe_die(fd):
                self._tick("write")
                return fsync(fd)

            os.fsync = fsync_then_maybe_die

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._tick("train_batch_start")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._tick("train_batch_end")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._tick("val_batch")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._tick("test_batch")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._tick("epoch_start")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._tick("epoch_end")

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self._tick("save")
