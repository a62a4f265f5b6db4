"""python train.py [group=choice ...] [key=value ...]   (see README.md)"""

import hydra
from omegaconf import DictConfig

from rnnexp.runtime.cli import run_app


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig):
    from rnnexp.train import run  # imported here so --help and --cfg stay fast

    return run(cfg)


if __name__ == "__main__":
    run_app(main)
