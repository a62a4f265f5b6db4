"""A ten-line Hydra app, no rnnexp inside: the official Optuna sweeper example's shape.

    python tests/apps/sphere.py -m                       # conf/config.yaml: a grid over x and y
    python tests/apps/sphere.py -m +error=true           # every job raises
"""

import time

import hydra
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path="conf", config_name="config")
def sphere(cfg: DictConfig) -> float:
    time.sleep(float(cfg.get("sleep", 0)))
    if cfg.get("error", False) or (cfg.get("fail_above") is not None and cfg.x > cfg.fail_above):
        raise RuntimeError("cfg.error is True")
    return cfg.x**2 + cfg.y**2


if __name__ == "__main__":
    sphere()
