"""Compare finished runs: a table, learning curves, and for sweeps the metric against each parameter.

    python -m rnnexp.report outputs/train/multiruns/2026-01-01_12-00-00_000000 [--out DIR]

Reads every run directory below the given one (a directory holding ``config.yaml`` and
``metrics.json`` or ``csv/metrics.csv``). Writes ``runs.csv``, ``runs.md``, PNG plots and
``report.html`` (the table and the plots in one self-contained page) to ``--out``
(default: ``<dir>/report``), and prints the table.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import pandas as pd
import yaml

from rnnexp.errors import UserError

# Keys that differ between runs without being a choice of the experimenter.
IGNORED_PREFIXES = ("paths.", "hydra.", "callbacks.model_checkpoint.dirpath", "trainer.default_root_dir")
CURVE_ORDER = ("val/loss", "train/loss_epoch", "val/acc", "train/acc", "train/loss_step", "val/ppl", "train/grad_norm")
MAX_CURVES = 6


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
    states = _trial_states(root)
    rows = []
    for run, config, values in zip(runs, configs, metrics):
        row: Dict[str, Any] = {"run": str(run.relative_to(root)) if run != root else "."}
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
    table.attrs["direction"] = _direction(root, rows[0]["optimized_metric"])
    return table


def _direction(root: Path, metric: Optional[str]) -> str:
    """The sweep's direction (an Optuna sweep's multirun.yaml says it), else guessed from the metric name."""
    path = root / "multirun.yaml"
    if path.is_file():
        sweeper = ((yaml.safe_load(path.read_text()) or {}).get("hydra") or {}).get("sweeper") or {}
        if sweeper.get("direction") in ("minimize", "maximize"):
            return sweeper["direction"]
    return "maximize" if str(metric).endswith(("acc", "accuracy", "f1", "auc")) else "minimize"


def _trial_states(root: Path) -> Dict[str, str]:
    """Resolved job directory -> Optuna trial state ("complete", "pruned", "fail"), from trials.csv files."""
    states: Dict[str, str] = {}
    for path in root.rglob("trials.csv"):
        frame = pd.read_csv(path)
        if {"user_attrs_job_dir", "state"} <= set(frame.columns):
            for job_dir, state in zip(frame["user_attrs_job_dir"], frame["state"]):
                if isinstance(job_dir, str):
                    states[str(Path(job_dir).resolve())] = str(state).lower()
    return states


def _last_metrics(run: Path) -> Dict[str, float]:
    """The last logged value of each column of ``csv/metrics.csv`` (a run that never finished)."""
    frame = pd.read_csv(run / "csv" / "metrics.csv")
    return {c: float(frame[c].dropna().iloc[-1]) for c in frame.columns if c not in ("epoch", "step") and frame[c].notna().any()}


def summary_columns(table: pd.DataFrame) -> List[str]:
    """The table to print: the run, its differing parameters, validation/test metrics and fit time."""
    params = table.attrs.get("params", [])
    metrics = [c for c in table.columns if c.startswith(("val/", "test/")) or c == "fit_seconds"]
    return ["run", *params, *metrics, "status"]


def to_markdown(table: pd.DataFrame, columns: Sequence[str]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.4g}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def plot_learning_curves(root: Path, table: pd.DataFrame, out: Path) -> Optional[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import MaxNLocator

    frames, labels = {}, {}
    params = [p for p in table.attrs.get("params", []) if p != "optimized_metric"][:3]
    for _, row in table.iterrows():
        name = row["run"]
        path = (root / name / "csv" / "metrics.csv")
        if path.is_file():
            frames[name] = pd.read_csv(path)
            # "3: lr=0.01, cell=gru": which run is which, without the table beside the plot.
            settings = ", ".join(f"{p.rsplit('.', 1)[-1]}={_short(row[p])}" for p in params)
            labels[name] = f"{name}: {settings}" if settings else str(name)
    if not frames:
        return None
    present = {c for f in frames.values() for c in f.columns if f[c].notna().sum() > 1}
    curves = [c for c in CURVE_ORDER if c in present]
    curves += sorted(c for c in present if c.endswith(("loss", "acc")) and c not in curves)
    curves = curves[:MAX_CURVES]
    if not curves:
        return None
    cols = min(3, len(curves))
    rows = math.ceil(len(curves) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.4 * rows), squeeze=False, layout="constrained")
    for ax, metric in zip(axes.flat, curves):
        for name, frame in frames.items():
            if metric in frame.columns:
                points = frame[["step", metric]].dropna()
                ax.plot(points["step"], points[metric], marker="." if len(points) < 30 else None, label=labels[name])
        ax.set_title(metric)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(6, integer=True))
        ax.grid(alpha=0.3)
    spare = list(axes.flat)[len(curves):]
    for ax in spare:
        ax.axis("off")
    if 1 < len(frames) <= 12:
        handles = {}
        for ax in list(axes.flat)[:len(curves)]:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(label, handle)
        # In an empty panel when there is one, else below the plots: never over the curves.
        if spare:
            spare[0].legend(handles.values(), handles.keys(), loc="upper left", fontsize=8, title="run")
        else:
            fig.legend(handles.values(), handles.keys(), loc="outside lower center", fontsize=8, ncol=2, title="run")
    path = out / "learning_curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


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
    settings = ", ".join(f"{p}={table.loc[best, p]}" for p in params if p != "optimized_metric")
    return f"Best run: {table.loc[best, 'run']} ({metric}={table.loc[best, metric]:.6g}{'; ' + settings if settings else ''})"


def _short(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def plot_sweep(table: pd.DataFrame, out: Path) -> Optional[Path]:
    """The optimized metric against each parameter that varies between the runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import MaxNLocator

    metric = _metric(table)
    params = [p for p in table.attrs.get("params", []) if p != "optimized_metric"]
    if len(table) < 2 or metric not in table.columns or not params:
        return None
    y = pd.to_numeric(table[metric], errors="coerce")
    done = (table["status"] == "complete").to_numpy()
    best = best_run(table)
    cols = min(4, len(params))
    rows = math.ceil(len(params) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.4 * rows), squeeze=False)
    for ax, param in zip(axes.flat, params):
        values = table[param]
        numeric = pd.to_numeric(values, errors="coerce")
        if numeric.notna().all() and not values.map(lambda v: isinstance(v, bool)).any():
            x = numeric
            positive = numeric[numeric > 0]
            if len(positive) == len(numeric) and positive.max() / positive.min() > 20:
                ax.set_xscale("log")  # learning rates and the like are searched on a log scale
            else:
                ax.xaxis.set_major_locator(MaxNLocator(5, integer=bool((numeric == numeric.round()).all())))
        else:
            # Not astype(str): pandas 3 keeps missing values (a key some runs lack) as NaN there.
            labels = values.map(lambda v: "null" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
            order = sorted(labels.unique())
            x = pd.Series([order.index(v) for v in labels], index=table.index)
            ax.set_xticks(range(len(order)), order, rotation=30)
            ax.set_xlim(-0.5, len(order) - 0.5)
        if done.any():
            ax.scatter(x[done], y[done], color="C0", label="complete")
        if (~done).any():  # last logged value of a pruned or failed run: hollow
            ax.scatter(x[~done], y[~done], facecolors="none", edgecolors="C1", label="stopped early")
        if best is not None:
            ax.scatter([x[best]], [y[best]], marker="*", s=200, color="C3", label="best", zorder=3)
        ax.set_xlabel(param)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(params):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    path = out / "sweep.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_html(table: pd.DataFrame, columns: Sequence[str], images: Sequence[Path], out: Path, title: str) -> Path:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>", f"<p>{len(table)} runs. {html.escape(_best_line(table))}</p>",
             table[list(columns)].to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="")]
    for image in images:
        data = base64.b64encode(image.read_bytes()).decode()
        parts.append(f"<h2>{html.escape(image.stem.replace('_', ' '))}</h2><img src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts))
    return path


def report(root: Path, out: Optional[Path] = None) -> Dict[str, Path]:
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a directory; give a run or multirun directory, e.g. outputs/train/multiruns/<date>")
    out = Path(out) if out else root / "report"
    out.mkdir(parents=True, exist_ok=True)
    table = load_runs(root)
    columns = summary_columns(table)
    files = {"csv": out / "runs.csv", "markdown": out / "runs.md"}
    table.to_csv(files["csv"], index=False)
    markdown = to_markdown(table, columns)
    files["markdown"].write_text(markdown + "\n")
    print(markdown)
    if _best_line(table):
        print("\n" + _best_line(table))
    images = [p for p in (plot_learning_curves(root, table, out), plot_sweep(table, out)) if p]
    for image in images:
        files[image.stem] = image
    files["html"] = write_html(table, columns, images, out, f"rnnexp report: {root}")
    print(f"\nWrote {', '.join(str(p) for p in files.values())}")
    return files


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rnnexp.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run directory or a multirun/sweep directory")
    parser.add_argument("--out", type=Path, default=None, help="where to write the report (default: <run_dir>/report)")
    args = parser.parse_args(argv)
    report(args.run_dir, args.out)


if __name__ == "__main__":
    from rnnexp.cli import run_app

    run_app(main)
