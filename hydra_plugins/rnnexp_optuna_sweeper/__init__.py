"""``hydra/sweeper=rnnexp_optuna``: Hydra's official Optuna sweeper, on current Optuna (>= 4).

A drop-in for ``hydra-optuna-sweeper`` (whose releases pin optuna < 3; docs/sweeps.md lists the
deliberate differences), with rnnexp's extras: trials in flight on SLURM, pruning, shared and
resumable studies. Its one entry point for jobs is :func:`.job.current_trial`.

Modules: ``config`` (schema, sampler group), ``space`` (the grammar), ``samplers``, ``study``
(asking, telling), ``drivers`` (the batch and the asynchronous loop), ``inflight`` (trials waited
for in threads, cancelled on SLURM), ``results`` (the files a sweep leaves), ``job``,
``optuna_internals`` (every private Optuna API used), ``sweeper`` (the Hydra plugin).
Hydra imports every module of the ``hydra_plugins`` namespace package at start-up, so this
package imports only the light config module; Optuna is imported when a sweep starts.
"""

from hydra_plugins.rnnexp_optuna_sweeper.config import RnnexpOptunaSweeperConf  # noqa: F401  (registers the configs)
