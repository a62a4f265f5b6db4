"""Lightning internals rnnexp reads: whether a step's logs are written, the precision names and their autocast, the CSV header.

Each has no public API in pytorch-lightning 2.x; the fallbacks keep rnnexp working (slower or
less strict) if an internal disappears, and :func:`check` says loudly that it did.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Tuple, get_args

import pytorch_lightning as pl
import torch


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


def unified_precision(value: Any) -> str:
    """Lightning's own name for a ``trainer.precision`` value ("bf16" -> "bf16-mixed", 32 -> "32-true"),
    by the function its Trainer applies (``lightning_fabric.connector._convert_precision_to_unified_args``)."""
    try:
        from lightning_fabric.connector import _convert_precision_to_unified_args
    except ImportError:  # the names as Lightning 2.x writes them
        return {"bf16": "bf16-mixed", "16": "16-mixed", "32": "32-true", "64": "64-true"}.get(str(value), str(value))
    import warnings

    with warnings.catch_warnings():  # "bf16 is supported for historical reasons": the caller's value, not ours
        warnings.simplefilter("ignore")
        return str(_convert_precision_to_unified_args(value if isinstance(value, int) else str(value)))


def autocast_dtype(precision: Any) -> Optional[torch.dtype]:
    """The dtype Lightning's mixed-precision plugin runs a step's autocast in for ``precision``,
    or None where it runs none (true precisions)."""
    return {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(unified_precision(precision))


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
    try:
        from lightning_fabric.connector import _convert_precision_to_unified_args  # noqa: F401
    except ImportError:
        missing.append("lightning_fabric.connector._convert_precision_to_unified_args")
    if not isinstance(getattr(_LoggerConnector, "should_update_logs", None), property):
        missing.append("_LoggerConnector.should_update_logs")
    with tempfile.TemporaryDirectory() as folder:
        if "metrics_keys" not in ExperimentWriter(folder).__dict__:
            missing.append("ExperimentWriter.metrics_keys")
    if missing:
        raise RuntimeError(f"pytorch-lightning {pl.__version__} lacks {', '.join(missing)}: update rnnexp/compat/lightning.py")
