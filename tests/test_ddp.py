"""Lightning DDP on CPU (gloo) with 2 processes, through the real CLI."""

import json

import pytest

from tests.conftest import run_cli

COMMON = ["trainer.max_epochs=2", "trainer.enable_progress_bar=false", "model.dropout=0.0"]


def _metrics(cwd):
    (run_dir,) = (cwd / "outputs" / "train" / "runs").iterdir()
    return run_dir, json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(tmp_path):
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    ddp.mkdir(), single.mkdir()
    result = run_cli("trainer=ddp", "data.batch_size=3", *COMMON, cwd=ddp)
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_cli("data.batch_size=6", *COMMON, cwd=single)
    assert result.returncode == 0, result.stderr[-3000:]
    ddp_dir, ddp_metrics = _metrics(ddp)
    _, single_metrics = _metrics(single)
    for key in ("test/loss", "val/loss", "test/acc"):
        assert ddp_metrics[key] == pytest.approx(single_metrics[key], rel=1e-4, abs=1e-5), key
    # Both ranks ran in one run directory; checkpoints and metrics come from rank 0 only.
    assert len(list((ddp / "outputs" / "train" / "runs").iterdir())) == 1
    assert (ddp_dir / "train_ddp_process_1.log").exists()
    assert len(list((ddp_dir / "csv").glob("*.csv"))) == 1
