"""A run's ``metrics.json`` read back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Tuple

TIMINGS = ("fit_seconds",)  # differ between identical runs


def read_metrics(run_dir: Path, timings: bool = True) -> dict:
    """``run_dir/metrics.json``; without the wall-clock entries when ``timings=False``."""
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    return metrics if timings else {k: v for k, v in metrics.items() if k not in TIMINGS}


def only_run(runs_dir: Path) -> Path:
    """The one run directory under ``runs_dir`` (``<log_dir>/train/runs``); fails when there are more."""
    (run_dir,) = Path(runs_dir).iterdir()
    return run_dir


def only_run_metrics(runs_dir: Path, timings: bool = True) -> Tuple[Path, dict]:
    run_dir = only_run(runs_dir)
    return run_dir, read_metrics(run_dir, timings)
