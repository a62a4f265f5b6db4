"""The same seed and config give the same metrics, to the last bit, in two separate processes; a
different seed gives different ones (a seed ignored somewhere would pass the first check alone)."""

import json

import pytest

from tests.helpers import run_cli

ARGS = ["trainer.max_epochs=2", "trainer.deterministic=true", "model.dropout=0.3", "trainer.enable_progress_bar=false",
        "logger=none", "data.repeat=6"]
ENV = {"WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}


def _metrics(log_dir):
    (run_dir,) = (log_dir / "train" / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.pop("fit_seconds")
    return metrics


@pytest.mark.slow
def test_two_runs_with_the_same_seed_write_identical_metrics(tmp_path):
    results = {}
    for name, seed in (("first", 7), ("second", 7), ("other", 8)):
        result = run_cli(*ARGS, f"seed={seed}", f"paths.log_dir={tmp_path / name}", cwd=tmp_path, env=ENV)
        assert result.returncode == 0, result.stderr[-3000:]
        results[name] = _metrics(tmp_path / name)
    assert {"val/loss", "test/loss", "train/loss"} <= set(results["first"])
    assert results["first"] == results["second"]
    # Seed 8 draws other initial weights, dropout masks and batch order: every loss moves.
    for key in ("val/loss", "test/loss", "train/loss"):
        assert results["other"][key] != results["first"][key], key
