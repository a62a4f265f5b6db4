"""What a sweep directory says of its trials: the direction it optimised and each trial's state.

Read by the report (:mod:`rnnexp.report`) and by the multirun summary
(:mod:`rnnexp.runtime.hydra_callbacks`), from the files a sweep leaves (``multirun.yaml``,
the Optuna sweeper's ``trials.csv``), so both work for any sweeper and launcher.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import pandas as pd
import yaml


def direction(root: Path, metric: Optional[str]) -> str:
    """The sweep's direction (an Optuna sweep's multirun.yaml says it), else guessed from the metric name."""
    path = root / "multirun.yaml"
    if path.is_file():
        sweeper = ((yaml.safe_load(path.read_text()) or {}).get("hydra") or {}).get("sweeper") or {}
        if sweeper.get("direction") in ("minimize", "maximize"):
            return sweeper["direction"]
    return "maximize" if str(metric).endswith(("acc", "accuracy", "f1", "auc")) else "minimize"


def trial_states(root: Path) -> Dict[str, str]:
    """Resolved job directory -> Optuna trial state ("complete", "pruned", "fail"), from trials.csv files."""
    states: Dict[str, str] = {}
    for path in root.rglob("trials.csv"):
        frame = pd.read_csv(path)
        if {"user_attrs_job_dir", "state"} <= set(frame.columns):
            for job_dir, state in zip(frame["user_attrs_job_dir"], frame["state"]):
                if isinstance(job_dir, str):
                    states[str(Path(job_dir).resolve())] = str(state).lower()
    return states
