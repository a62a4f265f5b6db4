"""A real training subprocess killed with SIGKILL mid-epoch resumes to the uninterrupted result."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, run_cli

OVERRIDES = [
    "trainer.max_epochs=4",
    "model.dropout=0.2",  # dropout masks come from the RNG the checkpoint must carry
    "callbacks.resume_checkpoint.every_n_train_steps=7",  # 20 batches per epoch: saves fall mid-epoch
    "trainer.enable_progress_bar=false",
]
COMPARED = ("val/loss", "val/acc", "test/loss", "test/acc")


def _only_run_dir(cwd):
    (run_dir,) = (cwd / "outputs" / "train" / "runs").iterdir()
    return run_dir


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    result = run_cli(*OVERRIDES, cwd=whole)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = json.loads((_only_run_dir(whole) / "metrics.json").read_text())

    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["PYTHONPATH"] = str(ROOT)
    process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *OVERRIDES], cwd=killed, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        saves = 0
        last_mtime = None
        while saves < 2 and time.time() < deadline and process.poll() is None:
            runs = killed / "outputs" / "train" / "runs"
            ckpt = next(runs.glob("*/checkpoints/resume.ckpt"), None) if runs.exists() else None
            if ckpt is not None and ckpt.stat().st_mtime != last_mtime:
                last_mtime, saves = ckpt.stat().st_mtime, saves + 1
            time.sleep(0.02)
        assert process.poll() is None, "the run finished before it could be killed"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    run_dir = _only_run_dir(killed)
    assert not (run_dir / "metrics.json").exists()

    result = run_cli(*OVERRIDES, f"resume={run_dir}", cwd=killed)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _only_run_dir(killed) == run_dir  # continued in the same directory
    resumed = json.loads((run_dir / "metrics.json").read_text())
    for key in COMPARED:
        assert resumed[key] == expected[key], key


def test_resume_of_a_directory_without_checkpoints_is_a_clear_error(tmp_path):
    empty = tmp_path / "outputs" / "train" / "runs" / "empty"
    empty.mkdir(parents=True)
    result = run_cli(f"resume={empty}", cwd=tmp_path)
    assert result.returncode == 2
    assert "no checkpoint in" in result.stderr and "Traceback" not in result.stderr


def test_checkpoint_from_another_config_is_a_clear_error(tmp_path):
    result = run_cli("trainer.max_epochs=1", "trainer.enable_progress_bar=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = _only_run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    result = run_cli("cell=gru", f"ckpt_path={ckpt}", "trainer.enable_progress_bar=false", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error: ")]
    assert "does not fit this config: model.cell is 'lstm' there, 'gru' here" in line
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(ckpt.read_bytes()[:1000])
    result = run_cli(f"ckpt_path={truncated}", cwd=tmp_path)
    assert result.returncode == 2 and "cannot read checkpoint" in result.stderr
