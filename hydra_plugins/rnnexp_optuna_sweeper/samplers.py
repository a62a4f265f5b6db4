"""The sampler and pruner of a sweep, built from their config nodes once the search space is known."""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Dict, List, Mapping, Optional

from omegaconf import DictConfig, OmegaConf

from rnnexp.errors import ConfigError

log = logging.getLogger(__name__)


def motpe_removed(*args: Any, **kwargs: Any) -> None:
    """``hydra/sweeper/sampler=motpe``: Optuna 4.0 removed MOTPESampler."""
    raise ConfigError("hydra/sweeper/sampler", "motpe",
                      "MOTPESampler was removed in Optuna 4.0; use hydra/sweeper/sampler=tpe "
                      "(TPESampler handles several objectives) or hydra/sweeper/sampler=nsgaii")


def _plain(spec: Any) -> Any:
    return OmegaConf.to_container(spec, resolve=True) if isinstance(spec, DictConfig) else spec


def _instantiate(spec: Dict[str, Any], key: str) -> Any:
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    # A null argument is the library's default: left out, so a key Optuna renamed stays harmless.
    spec = {k: v for k, v in spec.items() if v is not None or k.startswith("_")}
    try:
        return instantiate(spec)
    except InstantiationException as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        if isinstance(cause, ConfigError):
            raise cause from None
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise ConfigError(key, spec.get("_target_"), first) from exc


def build_sampler(spec: Any, choice: Optional[str], directions: List[str],
                  grid: Callable[[], Mapping[str, List[Any]]] = dict) -> Any:
    """The sampler of ``hydra.sweeper.sampler``; ``grid()``: the search space's points, for a grid.

    ``choice`` is the ``hydra/sweeper/sampler`` group option: the default ``auto`` is TPE for one
    objective and NSGA-II for several (Optuna's multi-objective default as well).
    """
    import optuna

    spec = _plain(spec)
    if spec is None:
        spec = {"_target_": "optuna.samplers.TPESampler"}
    if not isinstance(spec, dict):
        return spec  # a sampler object (a test, or a config built in Python)
    if choice == "auto" and len(directions) > 1 and spec.get("_target_") == "optuna.samplers.TPESampler":
        spec = {"_target_": "optuna.samplers.NSGAIISampler", "seed": spec.get("seed")}
    sampler = _instantiate(spec, "hydra.sweeper.sampler")
    if isinstance(sampler, functools.partial) and sampler.func is optuna.samplers.GridSampler:
        sampler = sampler(dict(grid()))
    log.info("Sampler: %s", type(sampler).__name__)
    return sampler


def is_exhaustive(sampler: Any) -> bool:
    """Samplers that stop the study once every point has been tried (``study.stop()``)."""
    import optuna

    return isinstance(sampler, (optuna.samplers.GridSampler, optuna.samplers.BruteForceSampler))


def build_pruner(spec: Any, directions: List[str]) -> Any:
    """The pruner of ``hydra.sweeper.pruner``; null: none (Optuna's NopPruner)."""
    import optuna

    spec = _plain(spec)
    if not spec:
        return optuna.pruners.NopPruner()
    if len(directions) > 1:
        raise ConfigError("hydra.sweeper.pruner", spec.get("_target_", spec) if isinstance(spec, dict) else spec,
                          "Optuna prunes single-objective studies only; set hydra.sweeper.pruner=null "
                          "for several directions")
    if not isinstance(spec, dict):
        return spec
    return _instantiate(spec, "hydra.sweeper.pruner")
