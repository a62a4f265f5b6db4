"""Shared fixtures: configs composed with Hydra's compose API, offline loggers, the repo root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

# pytest -n auto runs one worker per core; torch's default of one thread per core in each
# worker oversubscribes the cores (a small GRU ran ~6x slower under that contention).
# Subprocesses started by the tests inherit the setting.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED_DATA = ROOT.parent / "shared" / "data"


REQUIRE_DATA_ENV = "RNNEXP_REQUIRE_DATA"


def pytest_configure(config):
    config.addinivalue_line("markers", "shared_data(path): needs ../shared/data/<path>; skipped where it is missing, "
                                       f"a failure when {REQUIRE_DATA_ENV}=1")


def require_shared_data(path: Path) -> None:
    """Skip when a real data set is missing, or fail when ``RNNEXP_REQUIRE_DATA=1``: CI has the
    data, so there a missing file is a broken machine, not a reason to pass silently."""
    if path.exists():
        return
    if os.environ.get(REQUIRE_DATA_ENV) == "1":
        pytest.fail(f"{path} is missing and {REQUIRE_DATA_ENV}=1", pytrace=False)
    pytest.skip(f"{path} is not on this machine ({REQUIRE_DATA_ENV}=1 makes this a failure)")


def pytest_runtest_setup(item):
    for mark in item.iter_markers("shared_data"):
        require_shared_data(SHARED_DATA / mark.args[0])


@pytest.fixture(autouse=True)
def _offline_loggers(tmp_path_factory, monkeypatch):
    """wandb never reaches a server in tests and writes nothing outside a temporary directory."""
    base = tmp_path_factory.getbasetemp() / "wandb"
    base.mkdir(exist_ok=True)
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(base))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_ERROR_REPORTING", "False")


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


@pytest.fixture
def make_cfg(tmp_path):
    def _make(*overrides: str) -> DictConfig:
        return compose_config(list(overrides), tmp_path)

    return _make


def run_cli(*args: str, cwd: Path, env: Optional[dict] = None, module: Optional[str] = None, timeout: float = 300):
    """Run ``python train.py args`` (or ``python -m module args``) in a subprocess from ``cwd``."""
    command = [sys.executable, "-m", module] if module else [sys.executable, str(ROOT / "train.py")]
    full_env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    full_env.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run(
        [*command, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


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
