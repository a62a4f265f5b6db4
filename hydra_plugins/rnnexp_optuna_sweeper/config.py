"""The sweeper's config schema (``hydra/sweeper: rnnexp_optuna``) and its samplers
(``hydra/sweeper/sampler: tpe | random | cmaes | nsgaii | qmc | grid``).

The keys and defaults are those of Hydra's official ``hydra-optuna-sweeper`` (1.2/1.3), so its
configs run with only the sweeper's name changed; the keys below the marked line are rnnexp's.
Kept light: Hydra imports this module at every start-up, Optuna is imported when a sweep starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

# Each sampler's constructor arguments; null is Optuna's own default (a null key is not passed,
# so the same file works on Optuna versions that renamed or dropped an argument). The nodes are
# plain dicts, not dataclasses: a config may add any other argument the sampler takes.
_TPE = dict(seed=None, consider_prior=None, prior_weight=None, consider_magic_clip=None, consider_endpoints=None,
            n_startup_trials=None, n_ei_candidates=None, multivariate=None, group=None,
            warn_independent_sampling=None, constant_liar=None, constraints_func=None)
SAMPLERS: Dict[str, Dict[str, Any]] = {
    # The default: TPE for one objective; for several, NSGA-II (hydra_plugins/.../samplers.py).
    "auto": {"_target_": "optuna.samplers.TPESampler", **_TPE},
    "tpe": {"_target_": "optuna.samplers.TPESampler", **_TPE},
    "random": {"_target_": "optuna.samplers.RandomSampler", "seed": None},
    "cmaes": {"_target_": "optuna.samplers.CmaEsSampler", "seed": None, "x0": None, "sigma0": None,
              "n_startup_trials": None, "independent_sampler": None, "warn_independent_sampling": None,
              "consider_pruned_trials": None, "restart_strategy": None, "popsize": None, "inc_popsize": None,
              "use_separable_cma": None, "with_margin": None, "lr_adapt": None, "source_trials": None},
    "nsgaii": {"_target_": "optuna.samplers.NSGAIISampler", "seed": None, "population_size": None,
               "mutation_prob": None, "crossover": None, "crossover_prob": None, "swapping_prob": None,
               "constraints_func": None},
    "qmc": {"_target_": "optuna.samplers.QMCSampler", "seed": None, "qmc_type": None, "scramble": None,
            "independent_sampler": None, "warn_asynchronous_seeding": None, "warn_independent_sampling": None},
    # The grid is built from the search space (params and the command line) when the sweep starts.
    "grid": {"_target_": "optuna.samplers.GridSampler", "_partial_": True, "seed": None},
    # Removed from Optuna in 4.0: refused with a line that names the replacement.
    "motpe": {"_target_": "hydra_plugins.rnnexp_optuna_sweeper.samplers.motpe_removed"},
}


@dataclass
class RnnexpOptunaSweeperConf:
    _target_: str = "hydra_plugins.rnnexp_optuna_sweeper.sweeper.RnnexpOptunaSweeper"
    # The sweeper builds its sampler and pruner itself (a grid needs the search space first).
    _recursive_: bool = False
    defaults: List[Any] = field(default_factory=lambda: [{"sampler": "auto"}])

    sampler: Any = MISSING                    # hydra/sweeper/sampler=<name>, or {_target_: optuna.samplers..., ...}
    direction: Any = "minimize"               # minimize | maximize, or a list of them: one per returned value
    # Any SQLAlchemy URL (sqlite:///path.db, postgresql://user:pass@host/db);
    # null: sqlite:///<sweep dir>/optuna.db (the official plugin keeps a null storage in memory).
    storage: Optional[Any] = None
    study_name: Optional[str] = None          # null: the app's job name (hydra.job.name)
    n_trials: int = 20                        # trials in the study in total, over all workers and reruns
    n_jobs: int = 2                           # trials asked together (and running at once on submitit launchers)
    # Abort when more than this share of a batch of n_jobs trials failed (0.0: the first failure).
    max_failure_rate: float = 0.0
    params: Optional[Dict[str, Any]] = None   # key: Hydra sweep syntax, e.g. x: interval(-5, 5), cell: choice(rnn, gru)
    # A dotted path to fn(cfg, trial) that adds parameters with trial.suggest_*; ".module.fn": a
    # module file beside the app's script.
    custom_search_space: Optional[str] = None

    # ---- rnnexp's own keys ----
    # On submitit launchers (SLURM, local processes) a new trial starts as soon as any of the
    # n_jobs running ones finishes; false: ask n_jobs, wait for all of them, ask again.
    async_trials: Optional[bool] = None
    # A running trial whose sweeper sends no heartbeat for grace_period seconds (default 2 x the
    # interval; the worker was killed) is failed by the next worker or rerun, and run again
    # there; null: never (a killed worker's trial stays RUNNING in the study).
    heartbeat_interval: Optional[int] = 60
    grace_period: Optional[int] = None
    # Jobs that report intermediate values (rnnexp's train.py after every validation epoch) are
    # stopped when it says so, e.g. {_target_: optuna.pruners.MedianPruner}; null: no pruning.
    pruner: Any = None


store = ConfigStore.instance()
store.store(group="hydra/sweeper", name="rnnexp_optuna", node=RnnexpOptunaSweeperConf, provider="rnnexp")
for _name, _node in SAMPLERS.items():
    store.store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="rnnexp")
