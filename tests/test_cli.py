"""``python train.py`` end to end in a subprocess, as a user runs it."""

import json

import pytest
from omegaconf import OmegaConf

from tests.conftest import run_cli


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
    assert sorted(cells) == ["gru", "lstm", "rnn"]


BAD_INPUT = [
    (["cell=nope"], "cell=nope is not a known choice; valid choices for 'cell': gru, lstm, rnn"),
    (["model.dropout=1.5"], "model.dropout=1.5 is invalid: must be a number in [0, 1)"),
    (["model.hidden_size=0"], "model.hidden_size=0 is invalid: must be an integer >= 1"),
    (["model.num_layers=-1"], "model.num_layers=-1 is invalid: must be an integer >= 1"),
    (["model.hidden_sizes=[16,0]"], "model.hidden_sizes[1]=0 is invalid"),
    (["model.nonlinearity=relu"], "model.nonlinearity='relu' is invalid: only cell=rnn"),
    (["data.task=nope"], "data.task='nope' is invalid: choose one of hello, hello_batch, hihello, i_like_dog"),
    (["data.batch_size=0"], "data.batch_size=0 is invalid"),
    (["model.hidden_sizz=3"], "model.hidden_sizz is not a config key"),
    (["optimizer.lr=-1"], "optimizer: Invalid learning rate: -1"),
    (["ckpt_path=/no/such.ckpt"], "ckpt_path='/no/such.ckpt' is invalid: no such checkpoint file"),
    (["data.task=hello"], "use model=tagger"),
]


@pytest.mark.parametrize("overrides,message", BAD_INPUT, ids=[" ".join(o) for o, _ in BAD_INPUT])
def test_bad_input_is_one_clear_line_and_a_nonzero_exit(tmp_path, overrides, message):
    earlier = tmp_path / "outputs" / "train" / "runs" / "earlier"
    earlier.mkdir(parents=True)
    (earlier / "metrics.json").write_text("{}")
    result = run_cli(*overrides, "trainer.enable_progress_bar=false", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-3000:]
    assert (earlier / "metrics.json").read_text() == "{}"


def test_full_traceback_on_request(tmp_path):
    result = run_cli("model.hidden_size=0", cwd=tmp_path, env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode != 0
    assert "Traceback" in result.stderr
