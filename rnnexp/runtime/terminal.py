"""What a run prints: Lightning's noise rnnexp cannot act on is silenced, final metrics as a table.

Every Lightning run prints a tip about a cloud logger, a hint about ``srun`` whenever SLURM is
installed, and a deprecation warning from inside Lightning; a resumed run also hears that its
previous CSV log "will be deleted" next to rnnexp's line saying it was kept. None of these is
something the user of ``python train.py`` can act on, so each is filtered by its exact text,
and everything else Lightning says still gets through.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Mapping

# (module logging it or None for a Python warning, regular expression of the message)
_WARNINGS = (
    # lightning_fabric's SLURMEnvironment, on every machine where `srun` is on the PATH; SLURM
    # runs go through hydra/launcher=slurm, which starts the ranks itself.
    r"The `srun` command is available on your system but is not used",
    # Lightning's own use of a torch pytree API (pytorch_lightning/utilities/_pytree.py).
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # CSVLogger on a resume: rnnexp.train renames the old metrics.csv before Lightning deletes it.
    r"Experiment logs directory .* exists and is not empty\. Previous log files",
)
_LOG_LINES = {
    "pytorch_lightning.utilities.rank_zero": ("💡 Tip: For seamless cloud logging",),
}


class _DropMessages(logging.Filter):
    def __init__(self, starts) -> None:
        super().__init__()
        self.starts = tuple(starts)

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


def quiet_lightning() -> None:
    """Filter the known Lightning messages above (idempotent)."""
    for pattern in _WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name, starts in _LOG_LINES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(starts))


def format_value(value) -> str:
    """4 significant figures for floats, integers as they are."""
    if isinstance(value, float) and not math.isnan(value) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def metrics_table(metrics: Mapping[str, object]) -> str:
    """The final metrics, one per line, sorted by name: test/ first, then val/, train/, the rest."""
    order = {"test": 0, "val": 1, "train": 2}
    keys = sorted(metrics, key=lambda k: (order.get(k.split("/", 1)[0], 3), k))
    width = max((len(k) for k in keys), default=0)
    return "\n".join(f"  {k:<{width}}  {format_value(metrics[k])}" for k in keys)
