"""The library internals rnnexp relies on live in rnnexp/compat/ alone, and each is still there.

A failing ``check`` names the library's version and the internal: an upgrade that removed it is
found here, not as a silent change of behaviour somewhere else.
"""

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ADAPTERS = ["lightning", "hydra", "wandb", "submitit"]

# Private names of torch, Lightning, Hydra, Optuna, submitit and wandb that rnnexp uses; each may
# appear only in its adapter module (Optuna's: the sweeper plugin's own adapter).
OPTUNA_ADAPTER = "hydra_plugins/rnnexp_optuna_sweeper/optuna_internals.py"
PRIVATE = {
    r"\._storage\b": OPTUNA_ADAPTER,
    r"\._trial_id\b": OPTUNA_ADAPTER,
    r"\._study_id\b": OPTUNA_ADAPTER,
    r"storages\._heartbeat\b": OPTUNA_ADAPTER,
    r"\._return_value\b": "hydra",
    r"_logger_connector\b": "lightning",
    r"_PRECISION_INPUT\b": "lightning",
    r"\.metrics_keys\b": "lightning",
    r"\._trainer\b": "lightning",
    r"_wandb_init\b": "wandb",
    r"JobReturn\.return_value\s*=": "hydra",
    r"SlurmJob\.watcher\b": "submitit",
    r"\._delay_s\b": "submitit",
    r"\b_registered\b": "submitit",
    r"watcher, \"_finished\"": "submitit",
}


@pytest.mark.parametrize("name", ADAPTERS)
def test_every_internal_an_adapter_relies_on_is_there(name):
    importlib.import_module(f"rnnexp.compat.{name}").check()


def test_no_library_internal_outside_its_adapter():
    sources = [p for d in ("rnnexp", "hydra_plugins") for p in (ROOT / d).rglob("*.py")] + [ROOT / "train.py"]
    found = []
    for path in sources:
        text = path.read_text()
        for pattern, adapter in PRIVATE.items():
            home = ROOT / adapter if "/" in adapter else ROOT / "rnnexp" / "compat" / f"{adapter}.py"
            if re.search(pattern, text) and path != home:
                found.append((str(path.relative_to(ROOT)), pattern))
    assert not found


def test_the_hydra_adapter_restores_the_property_it_replaces():
    from hydra.core.utils import JobReturn

    from rnnexp.compat.hydra import single_run_errors_raised_plainly

    before = JobReturn.__dict__["return_value"]
    with single_run_errors_raised_plainly():
        assert JobReturn.__dict__["return_value"] is not before
    assert JobReturn.__dict__["return_value"] is before
