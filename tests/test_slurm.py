"""The SLURM launcher configs compose (hydra-submitit-launcher is an optional extra)."""

import pytest
from hydra import compose, initialize_config_dir

from tests.conftest import CONF

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")


@pytest.mark.parametrize("launcher", ["submitit_slurm", "slurm"])
def test_slurm_launcher_composes(launcher):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[f"hydra/launcher={launcher}", "trainer=ddp", "hydra.launcher.nodes=2"],
            return_hydra_config=True,
        )
    assert cfg.hydra.launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert cfg.hydra.launcher.nodes == 2
    assert cfg.trainer.strategy == "ddp"
