"""Lightning internals rnnexp reads: whether a step's logs are written, the precision names, the CSV header.

Each has no public API in pytorch-lightning 2.x; the fallbacks keep rnnexp working (slower or
less strict) if an internal disappears, and :func:`check` says loudly that it did.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Tuple, get_args

import pytorch_lightning as pl


def attached_trainer(module: pl.LightningModule) -> Optional[pl.Trainer]:
    """The module's trainer, or None outside a fit (``module.trainer`` raises there)."""
    return getattr(module, "_trainer", None)


def should_update_logs(trainer: pl.Trainer) -> bool:
    """True when Lightning writes this training step's logged values to the loggers
    (``LoggerConnector.should_update_logs``, the test it applies after the step)."""
    return bool(getattr(trainer._logger_connector, "should_update_logs", True))


def precision_inputs() -> Tuple[str, ...]:
    """Every value ``Trainer(precision=...)`` takes, from Lightning's own list (empty if it has none)."""
    try:
        from lightning_fabric.connector import _PRECISION_INPUT
    except ImportError:
        return ()
    return tuple(str(v) for literal in get_args(_PRECISION_INPUT) for v in get_args(literal))


def extend_csv_header(writer: Any, columns: Iterable[str]) -> None:
    """Make Lightning's CSV experiment writer keep ``columns`` (its ``metrics_keys``) when it rewrites the file."""
    writer.metrics_keys = sorted(set(writer.metrics_keys) | set(columns))


def check() -> None:
    """Raise naming the version when an internal used above is gone."""
    from pytorch_lightning.loggers.csv_logs import ExperimentWriter
    from pytorch_lightning.trainer.connectors.logger_connector.logger_connector import _LoggerConnector

    import tempfile

    missing = []
    if not precision_inputs():
        missing.append("lightning_fabric.connector._PRECISION_INPUT")
    if not isinstance(getattr(_LoggerConnector, "should_update_logs", None), property):
        missing.append("_LoggerConnector.should_update_logs")
    with tempfile.TemporaryDirectory() as folder:
        if "metrics_keys" not in ExperimentWriter(folder).__dict__:
            missing.append("ExperimentWriter.metrics_keys")
    if missing:
        raise RuntimeError(f"pytorch-lightning {pl.__version__} lacks {', '.join(missing)}: update rnnexp/compat/lightning.py")
