"""The report's plots: learning curves of every run, and the optimized metric against each parameter.

Read at a glance with 20 runs: every run has its own colour (``tab20``) and a legend entry
ordered best first; past ``MAX_LABELLED`` runs only the best ``TOP_K`` are coloured and labelled,
the others drawn thin and grey. Losses (and perplexities) span several decades while a run
trains (2 -> 1e-5), so their axes are logarithmic; accuracies stay linear. A parameter the
sweep chose from a list (``choice(4, 8, 16)``, ``a,b,c``) is drawn as categories, evenly spaced,
never as a continuous axis.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Optional

import pandas as pd

CURVE_ORDER = ("val/loss", "train/loss_epoch", "val/acc", "train/acc", "train/loss_step", "val/ppl", "train/grad_norm")
MAX_CURVES = 6
MAX_LABELLED = 20   # up to this many runs each get a colour and a legend entry
TOP_K = 10          # beyond it, the best TOP_K do
LOG_SCALE = ("loss", "ppl", "bpc", "bpt", "grad_norm")
# One marker and colour per status, the same words as the table's status column.
STATUS_STYLE = {
    "complete": dict(marker="o", color="C0"),
    "pruned": dict(marker="o", facecolors="none", edgecolors="C1"),
    "fail": dict(marker="x", color="C3"),
    "unfinished": dict(marker="s", facecolors="none", edgecolors="0.4"),
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def wants_log_scale(metric: str, values) -> bool:
    """Loss-like metrics with only positive values."""
    values = pd.to_numeric(pd.Series(values), errors="coerce").dropna()
    return metric.rsplit("/", 1)[-1].startswith(LOG_SCALE) and len(values) > 0 and bool((values > 0).all())


def _short(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def ranked(table: pd.DataFrame, metric: str, direction: str) -> List[Any]:
    """Row indices from best to worst by ``metric``: complete runs first, then the others, runs without a value last."""
    values = pd.to_numeric(table[metric], errors="coerce") if metric in table.columns else pd.Series(index=table.index)
    sign = -1.0 if direction == "maximize" else 1.0
    key = {i: (table.loc[i, "status"] != "complete", math.isnan(v), 0.0 if math.isnan(v) else sign * v, i)
           for i, v in values.astype(float).items()}
    return sorted(table.index, key=lambda i: key[i])


def plot_learning_curves(root: Path, table: pd.DataFrame, out: Path, metric: str, direction: str) -> Optional[Path]:
    frames: Dict[Any, pd.DataFrame] = {}
    params = [p for p in table.attrs.get("params", []) if p != "optimized_metric"][:3]
    labels = {}
    for index, row in table.iterrows():
        path = root / row["run"] / "csv" / "metrics.csv"
        if path.is_file():
            frames[index] = pd.read_csv(path)
            # "3: lr=0.01, cell=gru (pruned)": which run is which, without the table beside the plot.
            settings = ", ".join(f"{p.rsplit('.', 1)[-1]}={_short(row[p])}" for p in params)
            status = "" if row["status"] == "complete" else f" ({row['status']})"
            labels[index] = f"{row['run']}: {settings}{status}" if settings else f"{row['run']}{status}"
    if not frames:
        return None
    present = {c for f in frames.values() for c in f.columns if f[c].notna().sum() > 1}
    curves = [c for c in CURVE_ORDER if c in present]
    curves += sorted(c for c in present if c.endswith(("loss", "acc")) and c not in curves)
    curves = curves[:MAX_CURVES]
    if not curves:
        return None
    order = [i for i in ranked(table, metric, direction) if i in frames]
    labelled = order if len(order) <= MAX_LABELLED else order[:TOP_K]
    colours = _colours(len(labelled))
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    cols = min(3, len(curves))
    rows = math.ceil(len(curves) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols + 3.2, 3.4 * rows), squeeze=False, layout="constrained")
    for ax, name in zip(axes.flat, curves):
        values = pd.concat([f[name] for f in frames.values() if name in f.columns])
        for index in reversed(order):  # the best drawn last, on top
            frame = frames[index]
            if name not in frame.columns:
                continue
            points = frame[["step", name]].dropna()
            marker = "." if len(points) < 30 else None
            if index in labelled:
                rank = labelled.index(index)
                ax.plot(points["step"], points[name], marker=marker, color=colours[rank],
                        linestyle="-" if rank < 10 else "--", linewidth=1.6, label=labels[index], zorder=3)
            else:
                ax.plot(points["step"], points[name], color="0.75", linewidth=0.8, zorder=1,
                        label=f"the other {len(order) - len(labelled)} runs")
        if wants_log_scale(name, values):
            ax.set_yscale("log")
        ax.set_title(name + (" (log)" if ax.get_yscale() == "log" else ""))
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(6, integer=True))
        ax.grid(alpha=0.3, which="both" if ax.get_yscale() == "log" else "major")
    for ax in list(axes.flat)[len(curves):]:
        ax.axis("off")
    if len(frames) > 1:
        handles: Dict[str, Any] = {}
        for ax in list(axes.flat)[:len(curves)]:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(label, handle)
        ordered = [labels[i] for i in labelled if labels[i] in handles]
        ordered += [label for label in handles if label not in ordered]
        title = f"run, best {metric} first" if len(order) <= MAX_LABELLED else f"best {len(labelled)} of {len(order)} by {metric}"
        fig.legend([handles[k] for k in ordered], ordered, loc="outside right upper", fontsize=7, title=title,
                   title_fontsize=8)
    path = out / "learning_curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _colours(n: int) -> List[Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    if n <= 10:
        return [cmap(i) for i in range(n)]
    # tab20 pairs a dark and a light shade of each hue: the darks first, the lights (dashed) after.
    return [cmap(2 * i) for i in range(10)] + [cmap(2 * i + 1) for i in range(n - 10)]


def plot_sweep(table: pd.DataFrame, out: Path, metric: str, direction: str, best: Optional[Any],
               categorical: set) -> Optional[Path]:
    """The optimized metric against each parameter that varies between the runs."""
    params = [p for p in table.attrs.get("params", []) if p != "optimized_metric"]
    if len(table) < 2 or metric not in table.columns or not params:
        return None
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    y = pd.to_numeric(table[metric], errors="coerce")
    cols = min(4, len(params))
    rows = math.ceil(len(params) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.4 * rows), squeeze=False, layout="constrained")
    for ax, param in zip(axes.flat, params):
        values = table[param]
        numeric = pd.to_numeric(values, errors="coerce")
        is_number = numeric.notna().all() and not values.map(lambda v: isinstance(v, bool)).any()
        if is_number and param not in categorical:
            x = numeric
            positive = numeric[numeric > 0]
            if len(positive) == len(numeric) and positive.max() / positive.min() > 20:
                ax.set_xscale("log")  # learning rates and the like are searched on a log scale
            else:
                ax.xaxis.set_major_locator(MaxNLocator(5, integer=bool((numeric == numeric.round()).all())))
        else:
            # Categories evenly spaced, numbers in numeric order (4, 8, 16, 64), the rest sorted.
            labels = values.map(_short)
            order = sorted(labels.unique(), key=lambda v: (0, float(v), v) if _is_float(v) else (1, 0.0, v))
            x = pd.Series([order.index(v) for v in labels], index=table.index)
            ax.set_xticks(range(len(order)), order, rotation=30 if max(map(len, order)) > 4 else 0)
            ax.set_xlim(-0.5, len(order) - 0.5)
        statuses = [s for s in STATUS_STYLE if (table["status"] == s).any()]
        statuses += sorted(set(table["status"]) - set(STATUS_STYLE))
        for status in statuses:
            chosen = (table["status"] == status).to_numpy()
            style = STATUS_STYLE.get(status, dict(marker="d", color="0.5"))
            ax.scatter(x[chosen], y[chosen], label=status, s=30, **style)
        if best is not None:
            ax.scatter([x[best]], [y[best]], marker="*", s=220, color="C3", label="best", zorder=3)
        if wants_log_scale(metric, y):
            ax.set_yscale("log")
        ax.set_xlabel(param)
        ax.set_ylabel(metric + (" (log)" if ax.get_yscale() == "log" else ""))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(params):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8,
               title=f"status (best: {'highest' if direction == 'maximize' else 'lowest'} {metric})", title_fontsize=8)
    path = out / "sweep.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
