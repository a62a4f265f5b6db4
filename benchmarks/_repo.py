"""What every benchmark shares: ``python benchmarks/<name>.py`` works from a clone with nothing
installed (the repo root is put on ``sys.path`` here, once), and :func:`compose_train` is the
config ``python train.py <overrides>`` would run.

A benchmark starts with ``import _repo`` (the script's own folder is on ``sys.path``), before it
imports ``rnnexp`` or ``benchmarks.*``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def compose_train(overrides: Iterable[str] = ()):
    """The composed config of ``python train.py <overrides>`` (Hydra's compose API, ``conf/train.yaml``)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def adam_settings(cfg) -> dict:
    """The preset's Adam keyword arguments (lr, weight decay, ``fused``); a preset with another
    optimizer is refused: the plain references run Adam."""
    if cfg.optimizer._target_ != "torch.optim.Adam":
        raise SystemExit(f"error: the plain reference runs Adam, not {cfg.optimizer._target_}")
    return {k: v for k, v in cfg.optimizer.items() if not k.startswith("_")}


def reference_adam(cfg, parameters):
    """The plain loop's optimizer: ``torch.optim.Adam`` with the preset's own settings, so both
    sides run the same update (an unfused Adam is slower and rounds differently)."""
    import torch

    return torch.optim.Adam(parameters, **adam_settings(cfg))
