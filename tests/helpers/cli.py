"""The command line as a user runs it: ``python train.py ...`` or ``python -m rnnexp.<tool> ...``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

from tests.helpers.paths import ROOT


def run_cli(*args: str, cwd: Path, env: Optional[dict] = None, module: Optional[str] = None, timeout: float = 300):
    """Run ``python train.py args`` (or ``python -m module args``) in a subprocess from ``cwd``."""
    command = [sys.executable, "-m", module] if module else [sys.executable, str(ROOT / "train.py")]
    full_env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    full_env.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run(
        [*command, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )
