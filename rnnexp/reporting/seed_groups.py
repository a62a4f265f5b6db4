"""Seed groups: runs that differ only in ``seed``, and each metric's mean with a 95% confidence interval.

One number from one seed says little about a configuration: the same config trained with another
seed can land a few points away. ``python train.py -m seed=1,2,3 ...`` (or ``hparams_search=seeds``)
trains it several times; :func:`assign` finds the runs that share everything but the seed and
:func:`summarize` gives, per group and metric, the mean and the half-width of the two-sided 95%
confidence interval of the mean, ``t_{0.975, n-1} * s / sqrt(n)`` (``s`` the sample standard
deviation): Student's t, because with 3-5 seeds the normal's 1.96 is far too narrow (n=3: 4.30).
One run gives no interval (there is no spread to estimate), and says so.

Runs are compared by their resolved configs (``config.yaml``) without ``seed``, without the output
paths (the caller drops them) and without keys that merely copy the seed (``data.seed: ${seed}``
resolves to each run's seed): a key whose value equals its run's ``seed`` in every run is such a
copy. Statistics use the complete runs only: a pruned, failed or unfinished run has no final metrics.
"""

from __future__ import annotations

import json
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pandas as pd

CONFIDENCE = 0.95


def t_quantile(p: float, dof: int) -> float:
    """The ``p`` quantile of Student's t with ``dof`` degrees of freedom (``0.5 <= p < 1``).

    Solves ``P(|T| < t) = 2p - 1`` for t, with ``P(|T| < t) = I_y(1/2, dof/2)``, ``y = t^2 / (dof + t^2)``
    (the regularized incomplete beta function, mpmath's ``betainc``; taken as ``1 - I_{1-y}(dof/2, 1/2)``
    when y > 1/2, where the series converges faster). mpmath, not scipy: torch already brings mpmath
    (through sympy), scipy would be a new dependency for one function.
    """
    import mpmath

    if not 0.5 <= p < 1.0 or int(dof) != dof or dof < 1:
        raise ValueError(f"t_quantile needs 0.5 <= p < 1 and an integer dof >= 1, got p={p}, dof={dof}")
    if p == 0.5:
        return 0.0
    with mpmath.workdps(30):
        half_dof, target = mpmath.mpf(dof) / 2, 2 * mpmath.mpf(p) - 1

        def inside(t):  # P(|T| < t), increasing in t
            y = t * t / (dof + t * t)
            if y < 0.5:
                return mpmath.betainc(0.5, half_dof, 0, y, regularized=True)
            return 1 - mpmath.betainc(half_dof, 0.5, 0, 1 - y, regularized=True)

        high = mpmath.mpf(1)
        while inside(high) < target:
            high *= 2
        return float(mpmath.findroot(lambda t: inside(t) - target, (mpmath.mpf(0), high), solver="illinois"))


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> Tuple[float, Optional[float], float]:
    """``(mean, half-width, sample std)`` of finite ``values``; half-width and std are None/NaN for one value."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return math.nan, None, math.nan
    mean = sum(values) / n
    if n == 1:
        return mean, None, math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, t_quantile(0.5 + confidence / 2, n - 1) * std / math.sqrt(n), std


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def assign(configs: Sequence[Dict[str, Any]]) -> List[int]:
    """A group number per run (1, 2, ... in order of first appearance): equal configs but for the seed."""
    seeded = [c for c in configs if "seed" in c]
    keys = {k for c in configs for k in c}
    copies = {k for k in keys if k != "seed" and seeded and all(_key(c.get(k)) == _key(c["seed"]) for c in seeded)}
    numbers: Dict[str, int] = {}
    groups = []
    for config in configs:
        identity = _key({k: v for k, v in config.items() if k != "seed" and k not in copies})
        groups.append(numbers.setdefault(identity, len(numbers) + 1))
    return groups


def _seed_text(seed: Any) -> str:
    return str(int(seed)) if isinstance(seed, float) and seed.is_integer() else str(seed)


def summarize(table: pd.DataFrame, metrics: Sequence[str], params: Sequence[str],
              confidence: float = CONFIDENCE) -> pd.DataFrame:
    """One row per (seed group, metric) of the complete runs in ``table`` (which has ``seed_group``).

    Columns: ``seed_group``, the ``params`` that tell groups apart, ``metric``, ``n``, ``mean``,
    ``std``, ``ci95`` (the half-width; empty for n=1), ``ci95_low``, ``ci95_high``, ``t`` (the
    quantile used), ``seeds`` and ``runs`` (space-separated), ``not_complete`` (runs left out).
    """
    level = f"ci{round(confidence * 100)}"
    rows = []
    for group, runs in table.groupby("seed_group", sort=True):
        complete = runs[runs["status"] == "complete"]
        seeds = " ".join(_seed_text(s) for s in complete["seed"]) if "seed" in complete else ""
        first = runs.iloc[0]
        for metric in metrics:
            if metric not in runs:
                continue
            values = pd.to_numeric(complete[metric], errors="coerce")
            values = values[values.map(lambda v: math.isfinite(v))]
            mean, half, std = mean_ci(values.tolist(), confidence)
            n = len(values)
            rows.append({"seed_group": group, **{p: first.get(p) for p in params}, "metric": metric, "n": n,
                         "mean": mean, "std": std, level: half,
                         f"{level}_low": None if half is None else mean - half,
                         f"{level}_high": None if half is None else mean + half,
                         "t": t_quantile(0.5 + confidence / 2, n - 1) if n > 1 else None,
                         "seeds": seeds, "runs": " ".join(str(r) for r in complete["run"]),
                         "not_complete": len(runs) - len(complete)})
    return pd.DataFrame(rows)


def _number(value: float) -> str:
    return f"{value:.4g}"


def display(summary: pd.DataFrame, params: Sequence[str], order: Optional[Sequence[int]] = None) -> pd.DataFrame:
    """One row per group, one column per metric as ``mean ± half-width`` (just the mean for n=1), as text."""
    if summary.empty:
        return pd.DataFrame()
    level = next(c for c in summary.columns if c.startswith("ci") and "_" not in c)
    rows = []
    for group in order or sorted(summary["seed_group"].unique()):
        part = summary[summary["seed_group"] == group]
        first = part.iloc[0]
        n = int(part["n"].max())
        row = {"seed_group": str(group), **{p: first.get(p) for p in params},
               "n": f"{n} (no interval)" if n == 1 else str(n), "seeds": first["seeds"]}
        for _, stat in part.iterrows():
            if stat["n"] == 0:
                row[stat["metric"]] = ""
            elif pd.isna(stat[level]):
                row[stat["metric"]] = _number(stat["mean"])
            else:
                row[stat["metric"]] = f"{_number(stat['mean'])} ± {stat[level]:.2g}"
        rows.append(row)
    return pd.DataFrame(rows)


def explanation(confidence: float = CONFIDENCE) -> str:
    return (f"Runs that differ only in `seed`, complete runs only: mean ± half-width of the {confidence:.0%} "
            "confidence interval of the mean (Student t, n-1 degrees of freedom: t * s / sqrt(n)). "
            "A group of one run has no interval (n=1). seed_groups.csv has std, the interval's ends and t.")
