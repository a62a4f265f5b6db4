"""The services of the ``postgres`` and ``slurm`` tests, started without touching the machine's own.

**PostgreSQL**: a throwaway server per test session (per xdist worker): ``initdb`` into a fresh
temporary folder, started with ``pg_ctl`` on a free port, reachable only through a Unix socket in
that folder (``listen_addresses=''``), trust authentication, stopped and deleted at the end. As root
it runs as the ``postgres`` user (PostgreSQL refuses root). The system's clusters, roles, databases
and settings are never touched. ``RNNEXP_TEST_POSTGRES=<url>`` points the tests at a server of yours
instead.

**SLURM** needs root, ``/etc/slurm`` and daemons, so pytest starts it only when asked:
``RNNEXP_START_SERVICES=1`` runs ``scripts/start_slurm.sh`` (idempotent; ``.ci/run`` sets it), and
``RNNEXP_SLURM_PARTITION=<name>`` uses a running cluster. Otherwise the tests skip and say how.

A service that is not there skips its tests, or fails them when ``RNNEXP_REQUIRE_SERVICES=1``
(``.ci/run``): in CI a missing service is a broken machine, not a pass.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from functools import lru_cache
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

from tests.helpers.paths import ROOT

REQUIRE_SERVICES_ENV = "RNNEXP_REQUIRE_SERVICES"
START_SERVICES_ENV = "RNNEXP_START_SERVICES"


def unavailable(reason: str) -> None:
    """Skip the test, or fail it when services are required (``RNNEXP_REQUIRE_SERVICES=1``)."""
    if os.environ.get(REQUIRE_SERVICES_ENV) == "1":
        pytest.fail(f"{reason} (and {REQUIRE_SERVICES_ENV}=1)", pytrace=False)
    pytest.skip(f"{reason} ({REQUIRE_SERVICES_ENV}=1 makes this a failure)")


def unique(prefix: str) -> str:
    """A study or job name no other test (or xdist worker, or earlier run) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --- PostgreSQL ------------------------------------------------------------------------------------

def postgres_bindir() -> Optional[Path]:
    """The newest Debian server binaries (/usr/lib/postgresql/<v>/bin), else ``initdb`` on PATH."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: [
        int(part) if part.isdigit() else 0 for part in p.parent.parent.name.split(".")])
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayPostgres:
    """A PostgreSQL server in its own temporary folder; :meth:`start` returns a storage URL."""

    USER, DB = "rnnexp", "optuna"

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        # Under /tmp, not pytest's per-user 0700 folder: the postgres user must reach it when we are root.
        self.base = Path(tempfile.mkdtemp(prefix="rnnexp-pg-"))
        self.data = self.base / "data"
        self.port = _free_port()
        self.as_user: List[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")  # KeyError: no postgres user -> unavailable
            os.chown(self.base, owner.pw_uid, owner.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.started = False

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        done = subprocess.run([*self.as_user, str(self.bindir / tool), *args], capture_output=True, text=True,
                              timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")

    @property
    def url(self) -> str:
        # Hydra's override grammar needs the value quoted (it holds '=' and '&'): see storage_override.
        return f"postgresql://{self.USER}@/{self.DB}?host={self.base}&port={self.port}"

    def start(self) -> str:
        self._run("initdb", "-D", str(self.data), "-U", self.USER, "-A", "trust", "-E", "UTF8", "--no-sync")
        # Many sweep workers each hold a connection pool: more than the default 100 connections.
        options = f"-p {self.port} -k {self.base} -c listen_addresses='' -c max_connections=300 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.base / "server.log"), "-w", "start")
        self.started = True
        self._run("createdb", "-h", str(self.base), "-p", str(self.port), "-U", self.USER, self.DB)
        return self.url

    def stop(self) -> None:
        try:
            if self.started:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def storage_override(url: str) -> str:
    """``hydra.sweeper.storage=<url>`` as one command-line argument Hydra parses (quoted)."""
    return f"hydra.sweeper.storage='{url}'"


# --- SLURM -----------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _start(script: str) -> Tuple[bool, str]:
    """(started, its output's last line: the partition, or why it could not start)."""
    lock = Path(tempfile.gettempdir()) / "rnnexp-services.lock"
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # xdist workers: one start at a time
        try:
            done = subprocess.run(["bash", str(ROOT / "scripts" / script)], capture_output=True, text=True, timeout=180)
        except (OSError, subprocess.SubprocessError) as exc:
            return False, f"{script} did not run: {exc}"
    lines = (done.stdout if done.returncode == 0 else done.stderr).strip().splitlines()
    return done.returncode == 0, lines[-1] if lines else f"{script} exited with {done.returncode}"


def slurm_partition() -> str:
    try:
        import hydra_plugins.hydra_submitit_launcher  # noqa: F401
    except ImportError:
        unavailable("the submitit launcher is not installed: pip install -e '.[slurm]'")
    if os.environ.get("RNNEXP_SLURM_PARTITION"):
        return os.environ["RNNEXP_SLURM_PARTITION"]
    if os.environ.get(START_SERVICES_ENV) != "1":
        unavailable(f"no SLURM cluster asked for: {START_SERVICES_ENV}=1 starts a local one (scripts/start_slurm.sh, "
                    "as root; it writes /etc/slurm/slurm.conf), RNNEXP_SLURM_PARTITION=<name> uses a running one")
    ok, answer = _start("start_slurm.sh")
    if not ok:
        unavailable(f"no SLURM cluster: scripts/start_slurm.sh could not start one: {answer}")
    return answer
