"""What the tests share, in one place (no test imports another test file or ``conftest``).

- :mod:`.paths`: the repo root, ``conf/`` and the shared real data folder.
- :mod:`.compose`: the config ``python train.py <overrides>`` would run; learning-rate traces.
- :mod:`.cli`: ``python train.py`` (or ``python -m rnnexp.<tool>``) in a subprocess, or in-process.
- :mod:`.trainer`: a small ``pl.Trainer`` with nothing the test did not ask for.
- :mod:`.metrics`: a run directory's ``metrics.json``, read back.
- :mod:`.shared_data`: the guard for tests on the real data sets (skip, or fail in CI).
- :mod:`.mnist`, :mod:`.tweets`, :mod:`.data`: small data files in the real formats.
- :mod:`.wandb_reader`: an offline wandb run read back without a server.
- :mod:`.services`: the throwaway PostgreSQL server and the SLURM cluster of the service tests.
- :mod:`.sweeps`: the short-sweep overrides and trial checks of the sweep tests.
- :mod:`.waiting`: polling with a deadline (never a timing assert).
- :mod:`.tensors`: tensor helpers several model tests use.

The names most tests need are importable from the package itself
(``from tests.helpers import compose_config, run_cli``).
"""

from tests.helpers.cli import run_cli, run_in_process
from tests.helpers.compose import compose_config, lr_trace
from tests.helpers.paths import CONF, ROOT, SHARED_DATA
from tests.helpers.shared_data import REQUIRE_DATA_ENV, require_shared_data

__all__ = ["CONF", "REQUIRE_DATA_ENV", "ROOT", "SHARED_DATA", "compose_config", "lr_trace", "require_shared_data",
           "run_cli", "run_in_process"]
