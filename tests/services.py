"""The real SLURM cluster and PostgreSQL server the `slurm` and `postgres` tests run against.

Each fixture makes sure its service is up by running the idempotent start script
(``scripts/start_slurm.sh``, ``scripts/start_postgres.sh``: a no-op when the service already
runs, as after ``.ci/run`` started it), under a file lock so that pytest-xdist workers do not
start it twice. A test skips, with the script's own reason, only when the service cannot be
started (not root, packages missing, daemon failing). ``RNNEXP_SLURM_PARTITION`` and
``RNNEXP_TEST_POSTGRES`` (a storage URL) point the tests at services started elsewhere.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=None)
def _start(script: str) -> Tuple[bool, str]:
    """(started, its output's last line: the partition or URL, or why it could not start)."""
    lock = Path(tempfile.gettempdir()) / "rnnexp-services.lock"
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            done = subprocess.run(["bash", str(ROOT / "scripts" / script)], capture_output=True, text=True, timeout=180)
        except (OSError, subprocess.SubprocessError) as exc:
            return False, f"{script} did not run: {exc}"
    lines = (done.stdout if done.returncode == 0 else done.stderr).strip().splitlines()
    return done.returncode == 0, lines[-1] if lines else f"{script} exited with {done.returncode}"


def slurm_partition() -> str:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[slurm]'")
    if os.environ.get("RNNEXP_SLURM_PARTITION"):
        return os.environ["RNNEXP_SLURM_PARTITION"]
    ok, answer = _start("start_slurm.sh")
    if not ok:
        pytest.skip(f"no SLURM cluster: scripts/start_slurm.sh could not start one: {answer}")
    return answer


def postgres_url() -> str:
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is an extra: pip install -e '.[postgres]'")
    if os.environ.get("RNNEXP_TEST_POSTGRES"):
        return os.environ["RNNEXP_TEST_POSTGRES"]
    ok, answer = _start("start_postgres.sh")
    if not ok:
        pytest.skip(f"no PostgreSQL server: scripts/start_postgres.sh could not start one: {answer}")
    return answer


def unique(prefix: str) -> str:
    """A study or job name no other test (or xdist worker, or earlier run) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
