"""Compare finished runs: a table, learning curves, and for sweeps the metric against each parameter.

    python -m rnnexp.report outputs/train/multiruns/2026-01-01_12-00-00_000000 [--out DIR]

Reads every run directory below the given one (a directory holding ``config.yaml`` and
``metrics.json`` or ``csv/metrics.csv``). Writes ``runs.csv``, ``runs.md``, PNG plots and
``report.html`` (the table and the plots in one self-contained page) to ``--out``
(default: ``<dir>/report``), and prints the table. Runs that differ only in ``seed`` form a seed
group (:mod:`rnnexp.reporting.seed_groups`): ``runs.csv`` names each run's group, ``seed_groups.csv`` and a
"Seed groups" section of ``runs.md`` and ``report.html`` give each metric's mean and 95% interval.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pandas as pd
import yaml

from rnnexp.runtime.terminal import format_value
from rnnexp.reporting import seed_groups
from rnnexp.errors import UserError
from rnnexp.reporting.html import write_html
from rnnexp.reporting import trials
from rnnexp.reporting.plots import plot_learning_curves, plot_sweep

# Keys that differ between runs without being a choice of the experimenter.
IGNORED_PREFIXES = ("paths.", "hydra.", "callbacks.model_checkpoint.dirpath", "trainer.default_root_dir")


def find_runs(root: Path) -> List[Path]:
    runs = []
    for config in sorted(root.rglob("config.yaml")):
        run = config.parent
        if run.name == ".hydra" or "wandb" in run.parts:
            continue
        if (run / "metrics.json").is_file() or (run / "csv" / "metrics.csv").is_file():
            runs.append(run)
    return runs


def _flatten(tree: Any, prefix: str = "") -> Dict[str, Any]:
    if isinstance(tree, dict):
        out: Dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(tree, list):
        return {prefix[:-1]: json.dumps(tree)}
    return {prefix[:-1]: tree}


def _natural_key(path: Path):
    return [int(p) if p.isdigit() else p for p in path.parts]


def load_runs(root: Path) -> pd.DataFrame:
    """One row per run: ``run``, the config keys that differ between runs, then the final metrics."""
    runs = sorted(find_runs(root), key=_natural_key)
    if not runs:
        raise UserError(f"no runs under {root}: a run directory holds config.yaml and metrics.json (or csv/metrics.csv)")
    configs, metrics = [], []
    for run in runs:
        text = (run / "config.yaml").read_text().replace(str(run), "<run>")
        configs.append({k: v for k, v in _flatten(yaml.safe_load(text) or {}).items()
                        if not k.startswith(IGNORED_PREFIXES)})
        path = run / "metrics.json"
        metrics.append(json.loads(path.read_text()) if path.is_file() else _last_metrics(run))
    keys = sorted({k for c in configs for k in c})
    differing, seen = [], set()
    # Shortest keys first, so an interpolated copy (model.optimizer.lr of optimizer.lr) is dropped.
    for key in sorted(keys, key=lambda k: (k.count("."), k)):
        column = tuple(json.dumps(c.get(key), sort_keys=True, default=str) for c in configs)
        if len(set(column)) > 1 and column not in seen:
            differing.append(key)
            seen.add(column)
    states = trials.trial_states(root)
    rows = []
    for run, config, values, group in zip(runs, configs, metrics, seed_groups.assign(configs)):
        row: Dict[str, Any] = {"run": str(run.relative_to(root)) if run != root else ".", "seed_group": group}
        row.update({k: config.get(k) for k in differing})
        row.update({f"{k}": v for k, v in sorted(values.items()) if isinstance(v, (int, float))})
        row["optimized_metric"] = config.get("optimized_metric")
        # A run without metrics.json stopped early (pruned, failed, interrupted): its metrics are
        # the last logged values, not final ones. An Optuna sweep's trials.csv says which.
        finished = (run / "metrics.json").is_file()
        row["status"] = states.get(str(run.resolve()), "complete" if finished else "unfinished")
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["params"] = differing
    table.attrs["direction"] = trials.direction(root, rows[0]["optimized_metric"])
    return table


def _last_metrics(run: Path) -> Dict[str, float]:
    """The last logged value of each column of ``csv/metrics.csv`` (a run that never finished)."""
    frame = pd.read_csv(run / "csv" / "metrics.csv")
    return {c: float(frame[c].dropna().iloc[-1]) for c in frame.columns if c not in ("epoch", "step") and frame[c].notna().any()}


def summary_columns(table: pd.DataFrame) -> List[str]:
    """The table to print: the run, its differing parameters, validation/test metrics and fit time."""
    params = table.attrs.get("params", [])
    grouped = ["seed_group"] if table["seed_group"].duplicated().any() else []  # shown when some runs differ only in seed
    return ["run", *grouped, *params, *metric_columns(table), "status"]


def metric_columns(table: pd.DataFrame) -> List[str]:
    return [c for c in table.columns if c.startswith(("val/", "test/")) or c == "fit_seconds"]


def seed_group_stats(table: pd.DataFrame) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """Per seed group and metric: the statistics (``seed_groups.csv``) and their display table, best group first."""
    params = [p for p in table.attrs.get("params", []) if p != "seed"]
    metrics = metric_columns(table)
    metric = _metric(table)
    if metric in table.columns and metric not in metrics:
        metrics.insert(0, metric)
    stats = seed_groups.summarize(table, metrics, params)
    order = None
    if not stats.empty and metric in set(stats["metric"]):
        means = stats[stats["metric"] == metric].set_index("seed_group")["mean"]
        order = list(means.sort_values(ascending=table.attrs.get("direction") != "maximize", na_position="last").index)
    return stats, seed_groups.display(stats, params, order)


def to_markdown(table: pd.DataFrame, columns: Sequence[str]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.4g}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def _metric(table: pd.DataFrame) -> str:
    names = table["optimized_metric"].dropna().unique()
    return str(names[0]) if len(names) else "val/loss"


def best_run(table: pd.DataFrame) -> Optional[Any]:
    """The index of the best complete run by the optimized metric, or None."""
    metric = _metric(table)
    if metric not in table.columns:
        return None
    values = pd.to_numeric(table[metric], errors="coerce").where(table["status"] == "complete")
    if not values.notna().any():
        return None
    return values.idxmax() if table.attrs.get("direction") == "maximize" else values.idxmin()


def _best_line(table: pd.DataFrame) -> str:
    best = best_run(table)
    if best is None or len(table) < 2:
        return ""
    metric, params = _metric(table), table.attrs.get("params", [])
    settings = ", ".join(f"{p}={format_value(table.loc[best, p])}" for p in params if p != "optimized_metric")
    return f"Best run: {table.loc[best, 'run']} ({metric}={table.loc[best, metric]:.6g}{'; ' + settings if settings else ''})"


def categorical_params(root: Path) -> set:
    """Config keys the sweep chose from a list (``choice(4, 8, 16)``, ``a,b``, ``glob(*)``), from ``multirun.yaml``."""
    path = root / "multirun.yaml"
    if not path.is_file():
        return set()
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, Glob

    config = yaml.safe_load(path.read_text()) or {}
    hydra = config.get("hydra") or {}
    specs = [f"{k}={v}" for k, v in ((hydra.get("sweeper") or {}).get("params") or {}).items()]
    specs += list((hydra.get("overrides") or {}).get("task") or [])
    found = set()
    parser = OverridesParser.create()
    for spec in specs:
        try:
            override = parser.parse_override(str(spec))
        except Exception:  # noqa: BLE001 - a spec we cannot read is drawn as it looks
            continue
        if isinstance(override.value(), (ChoiceSweep, Glob)):
            key = override.get_key_element().lstrip("+~")
            found.update({key, f"model.{key}"})  # a group choice (cell=...) is the config key model.cell
    return found


def extra_images(root: Path, out: Path) -> List[Path]:
    """PNGs other tools left in the sweep directory or the report folder (e.g. parameter importances).

    Shown in report.html after the report's own plots; ``OWN_IMAGES`` are not repeated.
    """
    found = {p.resolve(): p for folder in (root, out) for p in sorted(folder.glob("*.png")) if p.name not in OWN_IMAGES}
    return list(found.values())


OWN_IMAGES = ("learning_curves.png", "sweep.png")


def report(root: Path, out: Optional[Path] = None) -> Dict[str, Path]:
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a directory; give a run or multirun directory, e.g. outputs/train/multiruns/<date>")
    out = Path(out) if out else root / "report"
    out.mkdir(parents=True, exist_ok=True)
    table = load_runs(root)
    columns = summary_columns(table)
    files = {"csv": out / "runs.csv", "markdown": out / "runs.md", "seed_groups": out / "seed_groups.csv"}
    table.to_csv(files["csv"], index=False)
    stats, groups = seed_group_stats(table)
    stats.to_csv(files["seed_groups"], index=False)
    markdown = to_markdown(table, columns)
    if not groups.empty and table["seed_group"].duplicated().any():  # a section only when some runs repeat a config
        markdown += (f"\n\n## Seed groups\n\n{seed_groups.explanation()}\n\n"
                     + to_markdown(groups, list(groups.columns)))
    files["markdown"].write_text(markdown + "\n")
    print(markdown)
    if _best_line(table):
        print("\n" + _best_line(table))
    metric, direction, best = _metric(table), table.attrs.get("direction", "minimize"), best_run(table)
    images = [plot_learning_curves(root, table, out, metric, direction),
              plot_sweep(table, out, metric, direction, best, categorical_params(root))]
    images = [p for p in images if p]
    for image in images:
        files[image.stem] = image
    files["html"] = write_html(table, columns, best, _best_line(table), images, extra_images(root, out), out,
                               f"rnnexp report: {root}",
                               seed_groups=groups if "## Seed groups" in markdown else None)
    print(f"\nWrote {', '.join(str(p) for p in files.values())}")
    return files


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rnnexp.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run directory or a multirun/sweep directory")
    parser.add_argument("--out", type=Path, default=None, help="where to write the report (default: <run_dir>/report)")
    args = parser.parse_args(argv)
    report(args.run_dir, args.out)


if __name__ == "__main__":
    from rnnexp.runtime.cli import run_app

    run_app(main)
