"""``custom_search_space``: parameters added in Python, after the ``params`` ones are sampled."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path="custom-search-space", config_name="config")
def four_dimensional_sphere(cfg: DictConfig) -> float:
    return cfg.w**2 + cfg.x**2 + cfg.y**2 + cfg.z**2


def configure(cfg: DictConfig, trial) -> None:
    """z within max_z_difference_from_x of the sampled x; w in [0, 1]."""
    x = trial.params["x"]
    trial.suggest_float("z", x - cfg.max_z_difference_from_x, x + cfg.max_z_difference_from_x)
    trial.suggest_float("w", 0.0, 1.0)


if __name__ == "__main__":
    four_dimensional_sphere()
