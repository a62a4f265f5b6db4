"""Configs composed with Hydra's compose API, as ``python train.py <overrides>`` would run them."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from tests.helpers.paths import CONF


def compose_config(overrides: Optional[List[str]] = None, output_dir: Optional[Path] = None) -> DictConfig:
    """The config ``python train.py <overrides>`` would run, with paths pointed at ``output_dir``."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides or []))
    if output_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
            cfg.paths.log_dir = str(output_dir / "logs")
            cfg.paths.data_dir = str(output_dir / "data")
    return cfg


def lr_trace(schedule: DictConfig, lr: float, steps: int) -> List[float]:
    """The learning rate before each of ``steps`` optimizer steps under a composed ``schedule`` group."""
    from hydra.utils import instantiate

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = instantiate(schedule.scheduler)(optimizer)
    seen = []
    for _ in range(steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen
