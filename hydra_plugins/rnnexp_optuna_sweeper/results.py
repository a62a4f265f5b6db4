"""What a sweep leaves in its directory: ``trials.csv`` and ``best_experiment.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

# Overrides that shape the sweep, not the model: left out of the best experiment.
NOT_CARRIED = ("hparams_search", "debug", "hydra")


def write_trials_csv(study, sweep_dir: Path) -> Path:
    path = Path(sweep_dir) / "trials.csv"
    study.trials_dataframe().to_csv(path, index=False)
    return path


def _nest(values: Dict[str, Any]) -> Dict[str, Any]:
    tree: Dict[str, Any] = {}
    for dotted, value in values.items():
        node = tree
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def best_experiment(best, fixed: List[str], config: DictConfig) -> str:
    """The best trial as an ``experiment/`` file: group choices in ``defaults``, values nested."""
    choices = dict(config.hydra.runtime.choices)
    parser = OverridesParser.create()
    lines = list(fixed) + [f"{k}={v}" for k, v in best.params.items()]
    defaults: List[Any] = []
    base = choices.get("experiment")
    if base:
        defaults.append(base)  # the experiment the sweep ran on, extended by this file
    values: Dict[str, Any] = {}
    for override in parser.parse_overrides(lines):
        key = override.key_or_group
        if override.is_delete() or key.split(".")[0].split("/")[0] in NOT_CARRIED or key == "experiment":
            continue
        value = best.params.get(override.get_key_element(), None)
        if override.get_key_element() not in best.params:
            value = override.value()
        if key in choices:
            defaults.append({f"override /{key}": value})
        else:
            values[key] = value
    body: Dict[str, Any] = {}
    if defaults:
        body["defaults"] = defaults
    body.update(_nest(values))
    metric = config.get("optimized_metric", "value")
    header = (
        "# @package _global_\n"
        f"# Best trial {best.number} of the sweep: {metric} = {best.value}\n"
        "# Copy to conf/experiment/<name>.yaml and run: python train.py experiment=<name>\n"
    )
    return header + yaml.safe_dump(body, sort_keys=False)


def write_best_experiment(study, best, sweep_dir: Path, fixed: List[str], config: DictConfig) -> Path:
    path = Path(sweep_dir) / "best_experiment.yaml"
    path.write_text(best_experiment(best, fixed, config))
    return path
