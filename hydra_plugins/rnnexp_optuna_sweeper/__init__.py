"""``hydra/sweeper=rnnexp_optuna``: Hydra multirun sweeps on current Optuna (>= 4).

Replaces hydra-optuna-sweeper, whose last release pins optuna < 3 (see docs/sweeps.md).
Hydra imports every module of the ``hydra_plugins`` namespace package at start-up, so this
package imports only the light config module; Optuna is imported when a sweep starts.
"""

from hydra_plugins.rnnexp_optuna_sweeper.config import RnnexpOptunaSweeperConf  # noqa: F401  (registers the config)
