"""The ``trainer.*`` numbers checked before Lightning sees them, and before the run directory exists.

Lightning checks some of them with a bare ``assert`` deep inside a loop (``trainer.max_epochs=abc``
ended in a 61-line traceback and exit 1), others not at all until they divide by zero. Each rule
here is Lightning's documented range for that argument; a value outside it is one ``error:`` line
naming the key, the value and what it takes. ``rnnexp.train`` runs the checks first thing in the
task function (Hydra swallows exceptions raised by its callbacks, so they cannot refuse a run
earlier), and removes the directory Hydra made for a run refused before it started.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

from omegaconf import DictConfig, ListConfig
from omegaconf.errors import OmegaConfBaseException

from rnnexp.errors import ConfigError, is_int, is_number


def _int_at_least(low: int, note: str = "", none: bool = False) -> Tuple[Callable[[Any], bool], str]:
    text = f"must be an integer >= {low}{note}" + (" or null" if none else "")
    return (lambda v: (none and v is None) or (is_int(v) and v >= low)), text


def _batches(v: Any) -> bool:  # limit_*_batches, overfit_batches: a count or a fraction of the epoch
    return v is None or (is_int(v) and v >= 0) or (isinstance(v, float) and 0.0 <= v <= 1.0)


def _val_check_interval(v: Any) -> bool:  # every n training batches, or a fraction of the epoch
    return v is None or (is_int(v) and v >= 1) or (isinstance(v, float) and 0.0 < v <= 1.0)


def _devices(v: Any) -> bool:
    if isinstance(v, (list, tuple, ListConfig)):
        return len(v) > 0 and all(is_int(d) and d >= 0 for d in v)
    if isinstance(v, str):
        parts = [p.strip() for p in v.split(",") if p.strip()]
        return v == "auto" or (bool(parts) and all(p.lstrip("-").isdigit() for p in parts) and
                               (len(parts) > 1 or int(parts[0]) >= 1 or int(parts[0]) == -1))
    return is_int(v) and (v >= 1 or v == -1)


RULES: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    "max_epochs": _int_at_least(-1, " (-1: no limit)", none=True),
    "min_epochs": _int_at_least(0, none=True),
    "max_steps": _int_at_least(-1, " (-1: no limit)"),
    "min_steps": _int_at_least(0, none=True),
    "check_val_every_n_epoch": _int_at_least(1, none=True),
    "accumulate_grad_batches": _int_at_least(1),
    "log_every_n_steps": _int_at_least(1),
    "num_nodes": _int_at_least(1),
    "num_sanity_val_steps": _int_at_least(-1, " (-1: the whole validation set)"),
    "val_check_interval": (_val_check_interval, "must be an integer >= 1 (training batches) or a fraction in (0, 1] "
                                                "of an epoch"),
    "limit_train_batches": (_batches, "must be an integer >= 0 (batches) or a fraction in [0, 1] of the split"),
    "limit_val_batches": (_batches, "must be an integer >= 0 (batches) or a fraction in [0, 1] of the split"),
    "limit_test_batches": (_batches, "must be an integer >= 0 (batches) or a fraction in [0, 1] of the split"),
    "limit_predict_batches": (_batches, "must be an integer >= 0 (batches) or a fraction in [0, 1] of the split"),
    "overfit_batches": (_batches, "must be an integer >= 0 (batches) or a fraction in [0, 1] of the training split"),
    "fast_dev_run": (lambda v: isinstance(v, bool) or (is_int(v) and v >= 0), "must be true, false or an integer >= 0"),
    "devices": (_devices, "must be auto, an integer >= 1 (or -1: all), or a list of device indices"),
    "gradient_clip_val": (lambda v: v is None or (is_number(v) and v >= 0), "must be a number >= 0 or null (no clipping)"),
    "gradient_clip_algorithm": (lambda v: v in (None, "norm", "value"), "choose one of norm, value"),
}


def check_trainer(trainer: Optional[DictConfig], prefix: str = "trainer") -> None:
    """Raise :class:`ConfigError` for the first ``trainer.*`` number outside Lightning's range."""
    if not trainer:
        return
    for key, (valid, expected) in RULES.items():
        if key in trainer:
            try:
                value = trainer[key]
            except OmegaConfBaseException:  # an interpolation only the job can resolve: Lightning checks it
                continue
            if not valid(value):
                raise ConfigError(f"{prefix}.{key}", value, expected)

