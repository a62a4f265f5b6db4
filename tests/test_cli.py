"""``python train.py`` end to end in a subprocess, as a user runs it."""

import json

import pytest
from omegaconf import OmegaConf

from tests.helpers import CONF, run_cli


def _run_dirs(cwd):
    return sorted((cwd / "outputs" / "train" / "runs").iterdir())


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
    assert "cell: gru" in result.stdout and "_target_: rnnexp.models.tasks.auto" in result.stdout
    assert not (tmp_path / "outputs").exists()


def test_multirun_over_every_cell(tmp_path):
    result = run_cli("-m", "cell=glob(*)", "debug=fdr", "trainer.enable_progress_bar=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "outputs" / "train" / "multiruns").iterdir()
    cells = []
    for job in sorted(p for p in sweep.iterdir() if p.name.isdigit()):
        assert (job / "metrics.json").exists()
        cells.append(OmegaConf.load(job / "config.yaml").model.cell)
    every = ["gru", "jordan", "lru", "lstm", "mingru", "minlstm", "rnn"]
    assert sorted(cells) == sorted(p.stem for p in (CONF / "cell").glob("*.yaml")) == every
    # One table of the jobs at the end, best (lowest val/loss) first, with each job's override.
    lines = result.stdout.splitlines()
    start = lines.index(f"{len(every)} jobs in {sweep}, best (lowest val/loss) first:")
    header, *rows = lines[start + 1:start + 2 + len(every)]
    assert header.split() == ["job", "val/loss", "status", "overrides"]
    losses = [json.loads((sweep / row.split()[0] / "metrics.json").read_text())["val/loss"] for row in rows]
    assert losses == sorted(losses) and all(row.split()[2] == "complete" for row in rows)
    assert sorted(row.split()[3] for row in rows) == [f"cell={c}" for c in every]


def test_output_to_a_file_has_a_line_per_epoch_the_run_directory_and_a_sorted_summary(tmp_path):
    # Not a terminal (captured): no progress bar, which wrote 1.2 MB for 40 epochs of this preset.
    result = run_cli("experiment=hello_rnn", "trainer.max_epochs=8", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = sorted((tmp_path / "outputs" / "hello_rnn" / "runs").iterdir())
    lines = result.stdout.splitlines()
    progress = [line for line in lines if "[rnnexp.progress]" in line]
    assert len(progress) == 8 and "epoch 8/8  train/loss " in progress[-1] and "val/acc " in progress[-1]
    assert "samples/s" in progress[-1] and "tokens/s" in progress[-1]
    assert len("\n".join(progress)) < 8 * 200
    assert len(result.stdout) + len(result.stderr) < 6000
    assert "Epoch 0:" not in result.stdout and "it/s]" not in result.stdout
    for noise in ("srun", "litlogger", "deprecated"):  # Lightning's tips rnnexp cannot act on
        assert noise not in result.stdout + result.stderr, noise
    (named,) = [i for i, line in enumerate(lines) if line.endswith(f"Run directory: {run_dir} (seed 42, 1 torch threads)")]
    assert named < lines.index(progress[0])  # where the run writes, before it trains
    assert lines[-1] == f"Run directory: {run_dir}"
    table = lines[lines.index(next(line for line in lines if line.endswith("Final metrics:"))) + 1:-1]
    names = [line.split()[0] for line in table]
    assert names[:4] == ["test/acc", "test/bpt", "test/loss", "test/ppl"] and "fit_seconds" in names
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert dict(line.split(None, 1) for line in table)["val/loss"] == f"{metrics['val/loss']:.4g}"
    assert (run_dir / "train.log").read_text().count("[rnnexp.progress]") == 8


def test_a_run_refused_before_it_starts_leaves_no_run_directory(tmp_path):
    result = run_cli("model.dropout=1.5", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: model.dropout=1.5")
    assert _run_dirs(tmp_path) == []  # Hydra made one before the check: removed, nothing ran in it
    assert "Run directory" not in result.stdout + result.stderr  # no line names a folder that is gone


def test_a_run_that_fails_after_it_started_ends_its_train_log_with_the_error_line(tmp_path):
    result = run_cli("debug=fdr", "optimized_metric=val/nope", "trainer.enable_progress_bar=false", cwd=tmp_path)
    assert result.returncode == 2
    (run_dir,) = _run_dirs(tmp_path)
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: optimized_metric='val/nope' was not logged")
    assert (run_dir / "train.log").read_text().strip().splitlines()[-1].endswith(error)
    assert "Run directory: " in (run_dir / "train.log").read_text()
    assert (run_dir / "metrics.json").is_file()  # what it measured is kept


# The catalogue of bad input (configs, data files, checkpoints, resume, generate) is tests/test_bad_input.py.


def test_full_traceback_on_request(tmp_path):
    result = run_cli("model.hidden_size=0", cwd=tmp_path, env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode != 0
    assert "Traceback" in result.stderr
