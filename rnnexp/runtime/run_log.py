"""When a run may write into its directory: ``train.log`` held back until the run is accepted.

Hydra opens ``<run dir>/train.log`` before the task function starts, so everything logged while
rnnexp checks a ``resume=`` (Lightning's "Seed set", "GPU available", ...) would be appended to
the run being resumed even when the resume is then refused. :class:`HeldRunLog` keeps those
records in memory: :meth:`accept` writes them and lets later ones through, :meth:`refuse` drops
them, so a refused resume changes nothing in the run. A job that fails after that ends its
``train.log`` with the same ``error:`` line the console shows (or the traceback of a bug).
"""

from __future__ import annotations

import logging
import logging.handlers
import time
import traceback
from pathlib import Path
from typing import List

from omegaconf import OmegaConf

log = logging.getLogger(__name__)


class HeldRunLog:
    """Detaches the root logger's file handlers (Hydra's ``train.log``) and buffers their records."""

    def __init__(self) -> None:
        self.root = logging.getLogger()
        self.files: List[logging.FileHandler] = [h for h in self.root.handlers if isinstance(h, logging.FileHandler)]
        self.buffer = logging.handlers.BufferingHandler(capacity=1 << 30)  # flushed only by us
        self.buffer.setLevel(min((h.level for h in self.files), default=logging.NOTSET))
        self.state = "held"
        for handler in self.files:
            self.root.removeHandler(handler)
        self.root.addHandler(self.buffer)

    def accept(self) -> None:
        """Write the held records to ``train.log`` and log straight to it from now on."""
        if self.state != "held":
            return
        self.root.removeHandler(self.buffer)
        for record in self.buffer.buffer:
            for handler in self.files:
                if record.levelno >= handler.level:
                    handler.handle(record)
        self.buffer.buffer.clear()
        for handler in self.files:
            self.root.addHandler(handler)
        self.state = "accepted"

    def refuse(self) -> None:
        """Drop the held records: the run directory's ``train.log`` stays as it was."""
        if self.state != "held":
            return
        self.root.removeHandler(self.buffer)
        self.buffer.buffer.clear()
        for handler in self.files:
            handler.close()
        self.state = "refused"

    def record_failure(self, exc: BaseException) -> None:
        """End ``train.log`` with the error: the ``error:`` line for bad input, the traceback for a bug."""
        from rnnexp.runtime.cli import describe

        self.accept()
        if type(exc).__name__ == "TrialPruned":  # an Optuna pruner stopped the trial: not an error
            text, level = f"pruned: {exc}", logging.INFO
        else:
            message = describe(exc)
            text = f"error: {message}" if message else "".join(traceback.format_exception(exc)).rstrip()
            level = logging.ERROR
        record = log.makeRecord(log.name, level, __file__, 0, text, None, None)
        for handler in self.files:
            handler.handle(record)
            handler.flush()


def record_resume(output_dir: Path, cfg) -> None:
    """The resume's own config and overrides in ``.hydra/resumed_<time>/``, beside the original run's."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    hydra = HydraConfig.get()
    folder = output_dir / ".hydra" / f"resumed_{time.strftime('%Y-%m-%d_%H-%M-%S')}_{time.time_ns() // 1000 % 1000000:06d}"
    folder.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, folder / "config.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": hydra}), folder / "hydra.yaml")
    OmegaConf.save(hydra.overrides.task, folder / "overrides.yaml")
