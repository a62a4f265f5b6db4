"""The SLURM launcher configs compose (hydra-submitit-launcher is an optional extra)."""

import importlib.util

import pytest
from hydra import compose, initialize_config_dir

from tests.helpers import CONF

# Only the cases that compose hydra/launcher=slurm need the optional launcher; the basic-launcher
# case runs without it.
needs_submitit = pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
                                    reason="hydra-submitit-launcher is an extra: pip install -e '.[slurm]'")


@needs_submitit
@pytest.mark.parametrize("launcher,target", [
    ("submitit_slurm", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
    ("slurm", "hydra_plugins.rnnexp_submitit.launcher.RequeueingSlurmLauncher"),
])
def test_slurm_launcher_composes(launcher, target):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[f"hydra/launcher={launcher}", "trainer=ddp", "hydra.launcher.nodes=2"],
            return_hydra_config=True,
        )
    assert cfg.hydra.launcher._target_ == target
    assert cfg.hydra.launcher.nodes == 2
    assert cfg.trainer.strategy == "ddp"


@needs_submitit
def test_a_sweep_over_slurm_jobs_shares_one_optuna_storage():
    storage = "postgresql://rnnexp@db-host/optuna"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=["hparams_search=toy_optuna", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                       f"hydra.sweeper.storage={storage}", "hydra.sweeper.n_jobs=8"],
            return_hydra_config=True,
        )
    assert cfg.hydra.launcher._target_.endswith("RequeueingSlurmLauncher")
    assert cfg.hydra.launcher.partition == "gpu"
    assert cfg.hydra.sweeper._target_.endswith("RnnexpOptunaSweeper")
    assert cfg.hydra.sweeper.storage == storage and cfg.hydra.sweeper.n_jobs == 8


@pytest.mark.parametrize("launcher,refused", [("basic", True), pytest.param("slurm", False, marks=needs_submitit)])
def test_multirun_ddp_is_refused_unless_slurm_starts_the_ranks(launcher, refused, monkeypatch):
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict

    from rnnexp.errors import ConfigError
    from rnnexp.train import _refuse_ddp_in_multirun

    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"hydra/launcher={launcher}", "trainer=ddp"],
                      return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.MULTIRUN
    HydraConfig.instance().set_config(cfg)
    try:
        if refused:
            with pytest.raises(ConfigError, match="ddp_spawn"):
                _refuse_ddp_in_multirun(cfg)
        else:
            _refuse_ddp_in_multirun(cfg)
    finally:
        HydraConfig.instance().cfg = None
