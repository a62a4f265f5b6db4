"""A Hydra callback that ends every multirun with one table of its jobs, best first.

After ``python train.py -m ...`` the jobs' results are scattered over ``<sweep dir>/<n>/``;
this prints, in the process that ran the sweep, each job's overrides that differ between the
jobs, its ``optimized_metric`` and its status (``complete``, or Optuna's ``pruned``/``fail``),
sorted best first by the sweep's direction. It reads the job directories, so it works with any
launcher (in-process, joblib, submitit) and sweeper. Wired in conf/hydra/default.yaml.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from rnnexp.reporting import trials
from rnnexp.runtime.terminal import format_value

# Overrides that say how a job was run, not what it trained.
NOT_SHOWN = ("hydra.", "++hydra.", "+hydra.", "hparams_search=")


def _job(folder: Path, states: Dict[str, str]) -> Optional[Dict[str, Any]]:
    overrides_file = folder / ".hydra" / "overrides.yaml"
    if not overrides_file.is_file():
        return None
    overrides = [o for o in (yaml.safe_load(overrides_file.read_text()) or []) if not str(o).startswith(NOT_SHOWN)]
    config_file = folder / "config.yaml"
    config = (yaml.safe_load(config_file.read_text()) or {}) if config_file.is_file() else {}
    metrics_file = folder / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    metric = config.get("optimized_metric")
    value = metrics.get(metric) if metric else None
    status = states.get(str(folder.resolve()), "complete" if metrics else "unfinished")
    return {"job": folder.name, "overrides": overrides, "metric": metric, "value": value, "status": status}


def _short(override: str) -> str:
    """``optimizer.lr=0.002642655549805391`` -> ``optimizer.lr=0.002643``: an Optuna float to 4 figures."""
    key, sep, value = str(override).partition("=")
    try:
        number = float(value)
    except ValueError:
        return str(override)
    return f"{key}={format_value(number)}" if sep and len(value) > 8 and "." in value else str(override)


def summary_table(sweep_dir: Path) -> str:
    """The jobs of a finished multirun as a text table, best first; empty without jobs."""
    states = trials.trial_states(sweep_dir)
    jobs = [j for j in (_job(p, states) for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()) if j]
    if not jobs:
        return ""
    shared = set.intersection(*(set(j["overrides"]) for j in jobs))
    metric = next((j["metric"] for j in jobs if j["metric"]), None) or "value"
    direction = trials.direction(sweep_dir, metric)
    sign = -1.0 if direction == "maximize" else 1.0

    def key(job):
        value = job["value"]
        missing = not isinstance(value, (int, float)) or math.isnan(value)
        return (missing, 0.0 if missing else sign * value, int(job["job"]))

    rows: List[List[str]] = [["job", metric, "status", "overrides"]]
    for job in sorted(jobs, key=key):
        value = "" if job["value"] is None else format_value(float(job["value"]))
        changed = " ".join(_short(o) for o in job["overrides"] if o not in shared)
        rows.append([job["job"], value, job["status"], changed])
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join([r[0].rjust(widths[0]), r[1].rjust(widths[1]), r[2].ljust(widths[2]), r[3]]).rstrip()
             for r in rows]
    best = "highest" if direction == "maximize" else "lowest"
    return f"{len(jobs)} jobs in {sweep_dir}, best ({best} {metric}) first:\n" + "\n".join(lines)


class MultirunSummary(Callback):
    """Prints :func:`summary_table` at the end of a multirun."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # print, not logging: in the sweep's process the root logger still writes to the
        # last job's train.log.
        table = summary_table(Path(config.hydra.sweep.dir).resolve())
        if table:
            print("\n" + table, flush=True)
