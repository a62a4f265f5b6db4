"""wandb (offline), TensorBoard and the throughput callback, read back from real runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import pytorch_lightning as pl

from rnnexp.errors import UserError
from rnnexp.runtime.loggers import has_api_key, resolve_mode
from rnnexp.train import run
from tests.helpers import ROOT, compose_config
from tests.helpers.wandb_reader import read_run


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """The server checks below use localhost ports; a proxy in the environment would be checked instead."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.lower(), raising=False)


def _wandb_runs(run_dir: Path):
    return sorted((run_dir / "wandb").glob("offline-run-*"))


def test_one_run_logs_to_wandb_tensorboard_and_csv(tmp_path):
    from tbparse import SummaryReader

    cfg = compose_config(["logger=many", "debug=limit", "tags=[unit,dash]", "trainer.log_every_n_steps=2"], tmp_path)
    run(cfg)

    (wandb_dir,) = _wandb_runs(tmp_path)
    recorded = read_run(wandb_dir)
    assert recorded["run"].run_group == "train" and list(recorded["run"].tags) == ["unit", "dash"]
    assert recorded["config"]["model"]["hidden_size"] == cfg.model.hidden_size  # the resolved config
    assert recorded["exit_code"] == 0
    logged = {k for row in recorded["history"] for k in row}
    for key in ["train/loss_step", "val/loss", "val/acc", "lr-Adam", "train/samples_per_sec",
                "train/samples_per_sec_epoch", "train/tokens_per_sec_epoch", "train/padded_fraction"]:
        assert key in logged, key
    assert recorded["summary"]["test/acc"] == json.loads((tmp_path / "metrics.json").read_text())["test/acc"]

    scalars = SummaryReader(str(tmp_path / "tensorboard")).scalars
    val_loss = scalars[scalars.tag == "val/loss"]
    assert len(val_loss) == cfg.trainer.max_epochs
    assert {"train/samples_per_sec_epoch", "train/padded_fraction", "lr-Adam"} <= set(scalars.tag)

    csv = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    assert (csv["train/samples_per_sec_epoch"].dropna() > 0).all()
    # Logged every log_every_n_steps=2 of the 2 x 5 training batches, not every batch (logging is costly).
    assert csv["train/samples_per_sec"].notna().sum() == 5
    # "i like dog" sentences all have two input words: nothing is padded.
    assert (csv["train/padded_fraction"].dropna() == 0).all()


def test_padded_fraction_and_tokens_per_second_count_only_valid_steps(tmp_path):
    # Two words and five words in one batch: 7 valid steps of 2 x 5 = 10 positions.
    cfg = compose_config(["debug=limit", "data.sequences=[a b c,a b c d e f]", "data.batch_size=2",
                          "data.shuffle=false", "callbacks.throughput.window=1", "trainer.log_every_n_steps=1"],
                         tmp_path)
    run(cfg)
    csv = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    assert csv["train/padded_fraction"].dropna().tolist() == pytest.approx([0.3, 0.3])
    rows = csv.dropna(subset=["train/tokens_per_sec"])
    ratio = rows["train/tokens_per_sec"] / rows["train/samples_per_sec"]
    assert len(rows) == 10 and ratio.tolist() == pytest.approx([3.5] * 10)
    # Machine speed is a dashboard figure, not a result a fixed seed must reproduce.
    assert not any("per_sec" in key for key in json.loads((tmp_path / "metrics.json").read_text()))


def test_a_language_model_logs_its_samples_as_a_wandb_table_and_tensorboard_text(tmp_path):
    from tbparse import SummaryReader

    from tests.helpers.tweets import write_tweets

    write_tweets(tmp_path / "data")
    cfg = compose_config(
        ["data=tweets", "model=lm", "callbacks=lm", "logger=many", "data.batching=tweets", "data.batch_size=8",
         "model.hidden_size=16", "trainer.max_epochs=1", "+trainer.limit_train_batches=4", "+trainer.limit_val_batches=2",
         "test=false", "callbacks.samples.length=20", "callbacks.samples.seeds=[great,A]",
         "callbacks.samples.print_samples=false", "trainer.enable_progress_bar=false"],
        tmp_path,
    )
    run(cfg)
    texts = (tmp_path / "samples" / "epoch_000.txt").read_text().split("\n\n")
    assert texts[0].splitlines()[1].startswith("great") and texts[1].startswith("A")

    (wandb_dir,) = _wandb_runs(tmp_path)
    tables = [row for row in read_run(wandb_dir)["history"] if "samples/_type" in row]
    assert len(tables) == 1 and tables[0]["samples/_type"] == "table-file" and tables[0]["samples/nrows"] == 2
    (path,) = (wandb_dir / "files").rglob("samples_*.table.json")
    table = json.loads(path.read_text())
    assert table["columns"] == ["epoch", "text"]
    assert [row[0] for row in table["data"]] == [0, 0] and table["data"][0][1].startswith("great")

    text = SummaryReader(str(tmp_path / "tensorboard")).text
    (logged,) = text[text.tag == "samples"].value
    assert "great" in logged

    # Tweets batched by length are padded a little; tokens are the valid characters only.
    csv = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    padded = csv["train/padded_fraction"].dropna()
    assert len(padded) == 1 and 0 < padded.iloc[0] < 0.5
    assert csv["train/tokens_per_sec_epoch"].dropna().iloc[0] > csv["train/samples_per_sec_epoch"].dropna().iloc[0]


def _count_connections(monkeypatch) -> list:
    """Every ``socket.create_connection`` from now on, as (address, timeout): how long a check may
    wait is the timeout it passes, which a clock on two busy cores cannot measure reliably."""
    attempts = []
    real = socket.create_connection

    def recording(address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, *args, **kwargs):
        attempts.append((tuple(address), timeout))
        return real(address, timeout, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", recording)
    return attempts


def test_online_with_a_key_and_no_server_logs_offline_without_waiting_for_wandb(tmp_path, monkeypatch, caplog):
    """wandb's own behaviour here is a ~30 s wait for the server before failing: rnnexp checks the
    server first (one connection attempt, its timeout passed on) and starts wandb offline."""
    import wandb

    from rnnexp.runtime.loggers import wandb_logger

    with socket.socket() as probe:  # a localhost port with nothing listening on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    attempts = _count_connections(monkeypatch)
    logger = wandb_logger(mode="online", save_dir=str(tmp_path), group="g", tags=["t"], connect_timeout=1.5)
    logger.experiment.log({"x": 1.0})
    try:
        assert wandb.run is not None and wandb.run.settings.mode == "offline"  # never tried online
    finally:
        wandb.finish()
    assert [(host, timeout) for host, timeout in attempts if host == ("127.0.0.1", port)] == [(("127.0.0.1", port), 1.5)]
    assert "is not reachable; logging offline instead" in caplog.text
    (wandb_dir,) = _wandb_runs(tmp_path)
    assert read_run(wandb_dir)["history"][0]["x"] == 1.0


def test_a_failing_job_still_finishes_its_wandb_run(tmp_path):
    import wandb

    cfg = compose_config(["logger=wandb", "debug=limit", "optimizer.lr=-1"], tmp_path)
    with pytest.raises(UserError):
        run(cfg)
    assert wandb.run is None
    (wandb_dir,) = _wandb_runs(tmp_path)
    assert read_run(wandb_dir)["exit_code"] == 1


class PruneAtFirstValidation(pl.Callback):
    """What rnnexp.callbacks.optuna_pruning does when the pruner says stop, without a study."""

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            import optuna

            raise optuna.TrialPruned(f"pruned at epoch {trainer.current_epoch}")


def test_a_pruned_trial_ends_its_wandb_run_as_finished_and_tagged(tmp_path):
    import optuna
    import wandb

    cfg = compose_config(["logger=wandb", "debug=limit", "tags=[sweep]",
                          "+callbacks.prune._target_=tests.test_loggers.PruneAtFirstValidation"], tmp_path)
    with pytest.raises(optuna.TrialPruned, match="pruned at epoch 0"):
        run(cfg)
    assert wandb.run is None and not (tmp_path / "metrics.json").exists()
    (wandb_dir,) = _wandb_runs(tmp_path)
    recorded = read_run(wandb_dir)
    assert recorded["exit_code"] == 0 and list(recorded["run"].tags) == ["sweep", "pruned"]


@pytest.mark.slow
def test_multirun_jobs_get_their_own_wandb_runs_offline_without_a_key_or_a_prompt(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_MODE", "WANDB_API_KEY", "NETRC", "HYDRA_FULL_ERROR")}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "-m", "logger=wandb", "logger.wandb.mode=auto", "debug=limit",
         "seed=1,2", f"hydra.sweep.dir={tmp_path / 'sweep'}", "trainer.enable_progress_bar=false",
         "trainer.max_epochs=1", "test=false"],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]  # the subprocess timeout ends a prompt that waits
    runs = [_wandb_runs(tmp_path / "sweep" / str(job)) for job in (0, 1)]
    assert [len(r) for r in runs] == [1, 1]  # offline, one run per job
    recorded = [read_run(r[0]) for r in runs]
    assert recorded[0]["run"].run_id != recorded[1]["run"].run_id
    assert [r["config"]["seed"] for r in recorded] == [1, 2]
    assert [r["exit_code"] for r in recorded] == [0, 0]


def test_auto_mode_is_offline_without_a_key_and_online_with_one(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert not has_api_key()
    assert resolve_mode("auto") == "offline"
    with socket.socket() as server:  # a "wandb server" that accepts connections
        server.bind(("127.0.0.1", 0))
        server.listen()
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        monkeypatch.setenv("WANDB_BASE_URL", url)
        (tmp_path / "netrc").write_text("machine 127.0.0.1\n  login user\n  password " + "x" * 40 + "\n")
        assert has_api_key()
        assert resolve_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")  # an explicit environment choice wins over the guess
    assert resolve_mode("auto") == "disabled"
    assert resolve_mode("offline") == "offline"


def test_online_without_a_reachable_server_falls_back_to_offline_at_once(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # the discard port: nothing listens
    attempts = _count_connections(monkeypatch)
    assert resolve_mode("online", timeout=1.5) == "offline"
    assert attempts == [(("127.0.0.1", 9), 1.5)]  # one attempt, bounded by the timeout asked for


def test_the_server_check_goes_through_a_configured_proxy(monkeypatch):
    from rnnexp.runtime.loggers import reachable

    with socket.socket() as proxy:
        proxy.bind(("127.0.0.1", 0))
        proxy.listen()
        server = "https://api.wandb.invalid"  # not resolvable: only the proxy can reach it
        assert not reachable(server, timeout=1)
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.getsockname()[1]}")
        assert reachable(server, timeout=1)
        monkeypatch.setenv("NO_PROXY", "api.wandb.invalid")
        assert not reachable(server, timeout=1)


def test_a_bad_mode_is_one_clear_error():
    with pytest.raises(UserError, match="logger.wandb.mode='sometimes'"):
        resolve_mode("sometimes")


def test_logger_none_runs_without_any_logger(tmp_path):
    # Lightning's LearningRateMonitor raises without a logger: logger=none switches it off.
    cfg = compose_config(["logger=none", "debug=limit", "trainer.max_epochs=1", "test=false",
                          "trainer.enable_progress_bar=false"], tmp_path)
    assert "logger" not in cfg and cfg.callbacks.learning_rate_monitor is None
    run(cfg)
    assert (tmp_path / "metrics.json").is_file()
    assert not any((tmp_path / d).exists() for d in ("csv", "tensorboard", "wandb"))


@pytest.mark.parametrize("choice,names", [("csv", ["csv"]), ("tensorboard", ["tensorboard"]), ("wandb", ["wandb"]),
                                          ("many", ["csv", "tensorboard", "wandb"])])
def test_every_logger_choice_writes_inside_the_run_directory(choice, names, tmp_path):
    cfg = compose_config([f"logger={choice}"], tmp_path)
    assert sorted(cfg.logger) == names
    assert {cfg.logger[n].save_dir for n in names} == {str(tmp_path)}
    assert cfg.callbacks.learning_rate_monitor is not None
