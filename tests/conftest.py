"""pytest's hooks and fixtures for the whole suite. Helpers live in ``tests/helpers/``, not here:
no test imports this file.

Two tiers: ``pytest`` runs the fast tier (every test not marked ``slow``: addopts in
pyproject.toml); ``pytest -m slow`` runs the slow tier (multi-process DDP, kill-anywhere, the
services, long end-to-end runs); ``pytest -m ""`` runs both. A test marked ``postgres`` or
``slurm`` is in the slow tier by that mark alone.
"""

from __future__ import annotations

import os
import subprocess

import pytest
import torch
from omegaconf import DictConfig

from tests.helpers import SHARED_DATA, compose_config, require_shared_data
from tests.helpers.shared_data import REQUIRE_DATA_ENV

# pytest -n auto runs one worker per core; torch's default of one thread per core in each
# worker oversubscribes the cores (a small GRU ran ~6x slower under that contention).
# Subprocesses started by the tests inherit the setting.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

SERVICE_MARKS = ("postgres", "slurm")


def pytest_configure(config):
    config.addinivalue_line("markers", f"shared_data(path): needs <shared data>/<path> (RNNEXP_DATA_DIR or "
                                       f"../shared/data); skipped where it is missing, a failure when {REQUIRE_DATA_ENV}=1")


@pytest.hookimpl(tryfirst=True)  # before -m deselects: a service test is a slow test
def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(item.get_closest_marker(name) for name in SERVICE_MARKS) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)


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


@pytest.fixture
def make_cfg(tmp_path):
    def _make(*overrides: str) -> DictConfig:
        return compose_config(list(overrides), tmp_path)

    return _make


@pytest.fixture(scope="session")
def postgres_url():
    """A storage URL on a throwaway PostgreSQL server for this session (tests/helpers/services.py)."""
    from tests.helpers.services import ThrowawayPostgres, postgres_bindir, unavailable

    if os.environ.get("RNNEXP_TEST_POSTGRES"):
        yield os.environ["RNNEXP_TEST_POSTGRES"]
        return
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("the PostgreSQL driver is an extra: pip install -e '.[postgres]'")
    bindir = postgres_bindir()
    if bindir is None:
        unavailable("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install -y postgresql")
    try:
        server = ThrowawayPostgres(bindir)
    except KeyError:
        unavailable("running as root, and there is no postgres user to run the server as")
    try:
        url = server.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        server.stop()
        unavailable(f"a throwaway PostgreSQL server did not start: {exc}")
    yield url
    server.stop()
