"""Every option of every config group composes; every experiment preset runs (fast_dev_run)."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from rnnexp.train import run
from tests.helpers import CONF, compose_config
from tests.helpers.data import write_all

GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir())
OPTIONS = [(g, f.stem) for g in GROUPS for f in sorted((CONF / g).glob("*.yaml"))]
EXPERIMENTS = [o for g, o in OPTIONS if g == "experiment"]


def test_the_groups_the_app_promises_exist():
    for group in ["cell", "data", "model", "optimizer", "schedule", "trainer", "callbacks", "logger",
                  "experiment", "debug", "paths", "hydra"]:
        assert group in GROUPS


@pytest.mark.parametrize("group,option", [o for o in OPTIONS if o[0] != "hydra"])
def test_every_option_composes(tmp_path, group, option):
    cfg = compose_config([f"{group}={option}"], tmp_path)
    OmegaConf.resolve(cfg)  # every interpolation resolves
    assert cfg.model._target_.startswith("rnnexp.")


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_cell_group_sets_the_backbone_cell(tmp_path, cell):
    assert compose_config([f"cell={cell}"], tmp_path).model.cell == cell


def test_optimizer_and_schedule_land_in_the_model(tmp_path):
    cfg = compose_config(["optimizer=sgd", "schedule=exponential"], tmp_path)
    assert cfg.model.optimizer._target_ == "torch.optim.SGD"
    assert cfg.model.scheduler.interval == "step"


# The preset's own model on fewer rows where one batch of the preset's size costs minutes of CPU.
SMALLER_BATCH = {"tweets_transformer": ["data.batch_size=2"]}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_with_fast_dev_run(tmp_path, experiment):
    data_dir = write_all(tmp_path / "data")
    cfg = compose_config([f"experiment={experiment}", "debug=fdr", "logger=csv", *SMALLER_BATCH.get(experiment, [])],
                         tmp_path)
    cfg.paths.data_dir = str(data_dir)
    value = run(cfg)
    metrics = json.loads((Path(tmp_path) / "metrics.json").read_text())
    name = cfg.optimized_metric
    assert name in metrics and math.isfinite(metrics[name]), (name, sorted(metrics))
    assert value == metrics[name]


def test_run_writes_resolved_config_metrics_and_returns_the_optimized_metric(tmp_path):
    cfg = compose_config(["trainer.max_epochs=2", "optimized_metric=val/acc"], tmp_path)
    value = run(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert value == metrics["val/acc"]
    assert {"test/acc", "test/loss", "val/loss", "fit_seconds"} <= set(metrics)
    assert "${" not in (tmp_path / "config.yaml").read_text()
    assert list((tmp_path / "checkpoints").glob("*.ckpt"))
    assert (tmp_path / "csv" / "metrics.csv").exists()


def test_same_seed_same_metrics(tmp_path):
    a = compose_config(["trainer.max_epochs=1"], tmp_path / "a")
    b = compose_config(["trainer.max_epochs=1"], tmp_path / "b")
    run(a)
    run(b)
    ma = json.loads((tmp_path / "a" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "b" / "metrics.json").read_text())
    ma.pop("fit_seconds"), mb.pop("fit_seconds")
    assert ma == mb


def test_the_optimized_metric_is_the_best_checkpoints_when_the_checkpoint_monitors_it(tmp_path):
    # Adam at lr=2 overshoots on the toy task: val/loss falls, then rises again (6.0, 5.4, 11.3).
    cfg = compose_config(["trainer.max_epochs=3", "optimizer.lr=2", "optimized_metric=val/loss"], tmp_path)
    value = run(cfg)
    per_epoch = pd.read_csv(tmp_path / "csv" / "metrics.csv")["val/loss"].dropna().tolist()
    assert len(per_epoch) == 3 and min(per_epoch) < per_epoch[-1], per_epoch  # the case this test is about
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert value == pytest.approx(min(per_epoch)) and metrics["val/loss"] == value
    assert metrics["last_epoch/val/loss"] == pytest.approx(per_epoch[-1])
    best = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    (state,) = [v for k, v in best["callbacks"].items() if "'monitor': 'val/loss'" in k]
    assert metrics["optimized_metric_from"] == f"best checkpoint ({Path(state['best_model_path']).name})"


def test_the_optimized_metric_is_the_last_epochs_when_the_checkpoint_monitors_another(tmp_path):
    cfg = compose_config(["trainer.max_epochs=2", "optimized_metric=val/acc"], tmp_path)
    value = run(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    last = pd.read_csv(tmp_path / "csv" / "metrics.csv")["val/acc"].dropna().tolist()[-1]
    assert value == metrics["val/acc"] == pytest.approx(last)
    assert metrics["optimized_metric_from"] == "last epoch" and "last_epoch/val/acc" not in metrics
