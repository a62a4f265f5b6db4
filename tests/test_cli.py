"""``python train.py`` end to end in a subprocess, as a user runs it."""

import json

import pytest
from omegaconf import OmegaConf

from tests.conftest import CONF, run_cli


def _run_dirs(cwd):
    return sorted((cwd / "outputs" / "train" / "runs").iterdir())


@pytest.mark.slow
def test_default_run_reaches_accuracy_one_and_writes_its_run_directory(tmp_path):
    result = run_cli("trainer.enable_progress_bar=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = _run_dirs(tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/acc"] == 1.0
    assert metrics["fit_seconds"] > 0 and "val/loss" in metrics
    assert (run_dir / "config.yaml").exists() and (run_dir / ".hydra" / "overrides.yaml").exists()
    assert (run_dir / "checkpoints" / "last.ckpt").exists()
    assert (run_dir / "csv" / "metrics.csv").exists()
    assert (run_dir / "train.log").exists()


def test_cfg_job_shows_the_composed_config(tmp_path):
    result = run_cli("cell=gru", "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "cell: gru" in result.stdout and "_target_: rnnexp.models.SequenceClassifier" in result.stdout
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_multirun_over_every_cell(tmp_path):
    result = run_cli("-m", "cell=glob(*)", "debug=fdr", "trainer.enable_progress_bar=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "outputs" / "train" / "multiruns").iterdir()
    cells = []
    for job in sorted(p for p in sweep.iterdir() if p.name.isdigit()):
        assert (job / "metrics.json").exists()
        cells.append(OmegaConf.load(job / "config.yaml").model.cell)
    assert sorted(cells) == sorted(p.stem for p in (CONF / "cell").glob("*.yaml")) == ["gru", "jordan", "lstm", "rnn"]


# The catalogue of bad input (configs, data files, checkpoints, resume, generate) is tests/test_bad_input.py.


def test_full_traceback_on_request(tmp_path):
    result = run_cli("model.hidden_size=0", cwd=tmp_path, env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode != 0
    assert "Traceback" in result.stderr
