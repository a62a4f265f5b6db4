"""What a sweep leaves in its directory: ``optimization_results.yaml`` (the official plugin's
file), ``trials.csv``, ``best_experiment.yaml`` and the plots."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Dict, List

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

# Overrides that shape the sweep, not the model: left out of the best experiment.
NOT_CARRIED = ("hparams_search", "debug", "hydra")


def write_trials_csv(study, sweep_dir: Path) -> Path:
    """``study.trials_dataframe()``: ``value``, or ``values_0``, ``values_1``... and ``pareto_front``
    for several objectives."""
    path = Path(sweep_dir) / "trials.csv"
    frame = study.trials_dataframe()
    if len(study.directions) > 1 and len(frame):  # which trials are on the Pareto front
        frame["pareto_front"] = frame["number"].isin([t.number for t in study.best_trials])
    frame.to_csv(path, index=False)
    return path


def optimization_results(study) -> Dict[str, Any]:
    """As the official plugin writes it: ``best_params`` and ``best_value`` for one objective;
    the Pareto front for several, as ``solutions`` (the official key) and ``best_trials``
    (Optuna's name), each solution's ``params`` and ``values``."""
    if len(study.directions) == 1:
        best = study.best_trial
        return {"name": "optuna", "best_params": dict(best.params), "best_value": best.value}
    front = [{"params": dict(t.params), "values": list(t.values)} for t in study.best_trials]
    return {"name": "optuna", "solutions": front, "best_trials": front}


def write_optimization_results(study, sweep_dir: Path) -> Path:
    path = Path(sweep_dir) / "optimization_results.yaml"
    OmegaConf.save(OmegaConf.create(optimization_results(study)), path)
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


def write_best_experiment(best, sweep_dir: Path, fixed: List[str], config: DictConfig) -> Path:
    path = Path(sweep_dir) / "best_experiment.yaml"
    path.write_text(best_experiment(best, fixed, config))
    return path


def write_plots(study, sweep_dir: Path, target_names: List[str]) -> List[Path]:
    """Parameter importances and parallel coordinates for one objective (``rnnexp.reporting.sweep_plots``);
    ``pareto_front.png`` for two or three. A plot never fails a finished sweep."""
    try:
        if len(study.directions) == 1:
            from rnnexp.reporting.sweep_plots import write_sweep_plots

            return list(write_sweep_plots(study, sweep_dir, target_name=target_names[0]).values())
        return [p for p in [_pareto_front(study, Path(sweep_dir), target_names)] if p]
    except Exception as exc:  # noqa: BLE001
        log.warning("Could not draw the sweep plots: %s", exc)
        return []


def _pareto_front(study, sweep_dir: Path, target_names: List[str]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as oplt

    if len(study.directions) > 3 or not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        axes = oplt.plot_pareto_front(study, target_names=target_names)
    path = sweep_dir / "pareto_front.png"
    axes.figure.tight_layout()
    axes.figure.savefig(path, dpi=100)
    plt.close(axes.figure)
    return path
