"""Short runs and the trainer.* numbers: every documented way of shortening a run exits 0 with its
metrics (README, "Common tasks"), and a bad number is one error line before Lightning sees it."""

from __future__ import annotations

import json
import logging

import pytest
import pytorch_lightning as pl
from omegaconf import OmegaConf

from rnnexp.errors import ConfigError
from rnnexp.runtime.trainer_checks import RULES, check_trainer
from rnnexp.train import run
from tests.helpers import compose_config, run_cli
from tests.helpers.metrics import only_run_metrics, read_metrics
from tests.helpers.tweets import write_tweets


def test_max_steps_is_a_trainer_key_that_ends_the_run_before_its_first_validation(tmp_path):
    """``python train.py data=tweets cell=gru trainer.max_steps=N`` (no ``+``): the run stops
    mid-epoch, before any validation, validates the final weights once and exits 0."""
    write_tweets(tmp_path / "data")
    result = run_cli("data=tweets", "cell=gru", "trainer.max_steps=3", f"paths.data_dir={tmp_path / 'data'}",
                     "data.download=false", "trainer.enable_progress_bar=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    _, metrics = only_run_metrics(tmp_path / "outputs" / "train" / "runs")
    assert "`max_steps=3` reached" in result.stdout
    assert "No validation ran during training; validating the final weights once." in result.stdout
    assert metrics["optimized_metric_from"].startswith("final weights (validated once after training")
    assert {"val/loss", "test/loss", "train/loss"} <= set(metrics)


def test_a_preset_cut_short_returns_its_metric(tmp_path):
    """The same with ``experiment=cs20_tweets``, in-process: the returned value is the validated one."""
    write_tweets(tmp_path / "data")
    cfg = compose_config(["experiment=cs20_tweets", "trainer.max_steps=2", "model.hidden_sizes=[16]",
                          "data.download=false", "trainer.enable_progress_bar=false", "logger=csv"], tmp_path)
    cfg.paths.data_dir = str(tmp_path / "data")
    value = run(cfg)
    metrics = read_metrics(tmp_path)
    assert value == metrics[cfg.optimized_metric]


def test_a_run_with_validation_off_exits_0_and_says_it_returns_no_value(tmp_path, caplog):
    cfg = compose_config(["trainer.max_epochs=1", "+trainer.limit_val_batches=0", "logger=none",
                          "trainer.enable_progress_bar=false"], tmp_path)
    with caplog.at_level(logging.WARNING, logger="rnnexp.train"):
        assert run(cfg) is None
    assert "optimized_metric=val/loss was not logged: validation is off" in caplog.text
    metrics = read_metrics(tmp_path)
    assert "test/loss" in metrics and not any(key.startswith("val/") for key in metrics)


def test_a_metric_never_logged_is_still_an_error(tmp_path):
    cfg = compose_config(["debug=fdr", "optimized_metric=val/nope", "logger=none"], tmp_path)
    with pytest.raises(Exception, match="optimized_metric='val/nope' was not logged"):
        run(cfg)


GOOD = {"max_epochs": [-1, 0, 3, None], "min_epochs": [0, 2, None], "max_steps": [-1, 1, 50], "min_steps": [0, None],
        "check_val_every_n_epoch": [1, 5, None], "accumulate_grad_batches": [1, 4], "log_every_n_steps": [1, 50],
        "num_nodes": [1, 2], "num_sanity_val_steps": [-1, 0, 2], "val_check_interval": [1, 100, 0.25, 1.0, None],
        "limit_train_batches": [0, 10, 0.0, 0.5, 1.0, None], "limit_val_batches": [0, 1.0],
        "limit_test_batches": [3], "limit_predict_batches": [0.1], "overfit_batches": [0, 0.1, 2],
        "fast_dev_run": [True, False, 0, 3], "devices": [1, 2, -1, "auto", [0, 1], "0,1", "2"],
        "gradient_clip_val": [None, 0, 0.5, 1], "gradient_clip_algorithm": ["norm", "value", None]}
BAD = {"max_epochs": ["abc", -5, 3.5, True], "min_epochs": [-1, "x"], "max_steps": ["ten", -2, 1.5, None],
       "min_steps": [-3], "check_val_every_n_epoch": [0, 1.5], "accumulate_grad_batches": [0, -1, 2.0],
       "log_every_n_steps": [0, "often"], "num_nodes": [0], "num_sanity_val_steps": [-2],
       "val_check_interval": [0, 0.0, 1.5, -1, "x"], "limit_train_batches": [-1, 1.5, "all"],
       "limit_val_batches": [2.0], "limit_test_batches": [-0.1], "limit_predict_batches": ["x"],
       "overfit_batches": [-1, 1.1], "fast_dev_run": [-1, 0.5], "devices": [0, -2, "", "gpu", [], [-1], 1.5],
       "gradient_clip_val": [-1, "x"], "gradient_clip_algorithm": ["l2"]}


def test_every_checked_key_has_good_and_bad_cases():
    assert set(GOOD) == set(BAD) == set(RULES)


@pytest.mark.parametrize("key,value", [(k, v) for k, values in GOOD.items() for v in values])
def test_a_number_lightning_accepts_passes(key, value):
    check_trainer(OmegaConf.create({key: value}))


@pytest.mark.parametrize("key,value", [(k, v) for k, values in BAD.items() for v in values])
def test_a_bad_number_is_one_config_error_naming_the_key(key, value):
    with pytest.raises(ConfigError) as error:
        check_trainer(OmegaConf.create({key: value}))
    assert str(error.value).startswith(f"trainer.{key}={value!r} is invalid: ")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("key,value", [("max_epochs", "abc"), ("max_epochs", 3.5),
                                       ("accumulate_grad_batches", 0), ("val_check_interval", 1.5),
                                       ("limit_val_batches", 1.5)])
def test_lightning_itself_fails_on_what_the_checks_refuse(key, value, tmp_path):
    """The independent reference: each of these refused values makes Lightning raise, at construction or
    fit (Lightning takes some others, such as max_steps=1.5, that the checks refuse as not a count)."""
    from rnnexp.data.toy_words import ToyWordsDataModule
    from rnnexp.models import SequenceTagger

    dm = ToyWordsDataModule("hello_batch")
    model = SequenceTagger(**dm.spec().model_kwargs(), cell="rnn", hidden_size=4,
                           optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01})
    with pytest.raises(BaseException):
        trainer = pl.Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                             enable_checkpointing=False, enable_model_summary=False, max_epochs=1,
                             **{key: value})
        trainer.fit(model, datamodule=dm)
