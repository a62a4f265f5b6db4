"""Exact resume: a real training subprocess killed with SIGKILL mid-epoch resumes to the uninterrupted
result; the tweets data resume mid-epoch in both batchings (stream windows with carried state, buckets)."""

import json
import signal

import pytest
import pytorch_lightning as pl
import torch

from rnnexp.callbacks.rng_state import RngStateCheckpoint
from rnnexp.runtime.checkpoints import AtomicCheckpointIO
from rnnexp.data.tweets import TweetsDataModule
from rnnexp.models.tasks.language_model import LanguageModel
from scripts import kill_switch
from tests.helpers import run_cli
from tests.helpers.metrics import only_run
from tests.helpers.tweets import write_tweets

ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # two test workers share two cores: more threads only wait

OVERRIDES = [
    "trainer.max_epochs=2",
    "model.dropout=0.2",  # dropout masks come from the RNG the checkpoint must carry
    "callbacks.resume_checkpoint.every_n_train_steps=7",  # 20 batches per epoch: saves fall mid-epoch
    "trainer.enable_progress_bar=false",
]
COMPARED = ("val/loss", "val/acc", "test/loss", "test/acc")


def _only_run_dir(cwd):
    return only_run(cwd / "outputs" / "train" / "runs")


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    result = run_cli(*OVERRIDES, cwd=whole, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = json.loads((_only_run_dir(whole) / "metrics.json").read_text())

    # SIGKILL from inside (scripts/kill_switch.py) before step 31, in the middle of the second epoch,
    # 3 steps after the save at step 28: a timer outside raced with a run of a few seconds.
    result = run_cli(*OVERRIDES, *kill_switch.overrides("train_batch_start:31"), cwd=killed, env=ONE_THREAD)
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    run_dir = _only_run_dir(killed)
    assert not (run_dir / "metrics.json").exists()

    # A resume with another config is refused and leaves the killed run as it was: not a file
    # added (no .hydra/resumed_*/), not a line appended to train.log.
    files = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    result = run_cli(*OVERRIDES, "cell=gru", f"resume={run_dir}", cwd=killed, env=ONE_THREAD)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "does not fit this config: model.cell is 'lstm' there, 'gru' here" in result.stderr.splitlines()[-1]
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == files

    result = run_cli(*OVERRIDES, f"resume={run_dir}", cwd=killed, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _only_run_dir(killed) == run_dir  # continued in the same directory
    # rnnexp keeps the CSV history, so Lightning's "Previous log files ... will be deleted" is not shown.
    assert "Kept the metrics logged before the resume" in result.stdout
    assert "Previous log files" not in result.stdout + result.stderr
    resumed = json.loads((run_dir / "metrics.json").read_text())
    for key in COMPARED:
        assert resumed[key] == expected[key], key
    # The original record of how the run was started survives; the accepted resume records its own.
    assert "resume=" not in (run_dir / ".hydra" / "overrides.yaml").read_text()
    (record,) = (run_dir / ".hydra").glob("resumed_*/")
    assert f"resume={run_dir}" in (record / "overrides.yaml").read_text()
    assert {p.name for p in record.iterdir()} == {"config.yaml", "hydra.yaml", "overrides.yaml"}


def _fit_tweets(root, corpus, batching, ckpt_path=None, every_step=False):
    pl.seed_everything(1)
    dm = TweetsDataModule(path=str(corpus), download=False, batching=batching, batch_size=4, num_steps=50,
                          min_count=1, seed=1)
    model = LanguageModel(**dm.spec().model_kwargs(), cell="gru", hidden_size=8, dropout=0.2,
                          optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01})
    callbacks = [RngStateCheckpoint()]
    if every_step:
        callbacks.append(pl.callbacks.ModelCheckpoint(dirpath=root / "ckpt", every_n_train_steps=1, save_top_k=-1,
                                                      filename="{step}"))
    trainer = pl.Trainer(default_root_dir=root, max_epochs=2, logger=False, enable_progress_bar=False,
                         enable_checkpointing=every_step, callbacks=callbacks, limit_val_batches=0,
                         num_sanity_val_steps=0, enable_model_summary=False, plugins=[AtomicCheckpointIO()])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two test workers on two cores: more threads only wait for each other
    try:
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    finally:
        torch.set_num_threads(threads)
    return model, trainer


@pytest.mark.parametrize("batching", ["stream", "tweets"])
def test_tweets_resume_mid_epoch_exactly(tmp_path, batching):
    corpus = write_tweets(tmp_path / "data", count=40)
    whole, trainer = _fit_tweets(tmp_path / "whole", corpus, batching, every_step=True)
    per_epoch = trainer.global_step // 2
    step = per_epoch + per_epoch // 2  # in the middle of the second epoch
    mid_epoch = tmp_path / "whole" / "ckpt" / f"step={step}.ckpt"
    saved = torch.load(mid_epoch, weights_only=True)
    assert saved["epoch"] == 1 and 0 < step - per_epoch < per_epoch
    resumed, trainer2 = _fit_tweets(tmp_path / "resumed", corpus, batching, ckpt_path=mid_epoch)
    assert trainer2.global_step == trainer.global_step
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    if batching == "stream":
        # The state carried from window to window is part of the checkpoint; without it the
        # resumed run starts the next window from zeros and ends elsewhere.
        (rng_state,) = [v for k, v in saved["callbacks"].items() if "RngStateCheckpoint" in k]
        assert rng_state["carried"]["epoch"] == 1
        del rng_state["carried"]
        torch.save(saved, tmp_path / "without_state.ckpt")
        other, _ = _fit_tweets(tmp_path / "other", corpus, batching, ckpt_path=tmp_path / "without_state.ckpt")
        assert not all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), other.state_dict().values()))


def test_a_resume_keeps_the_csv_history_of_the_run_before_the_crash(tmp_path):
    from rnnexp.train import _keep_csv_history

    logger = pl.loggers.CSVLogger(tmp_path, name="csv", version="")
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "metrics.csv").write_text("epoch,step,train/loss\n0,9,1.5\n")
    _keep_csv_history(pl.Trainer(logger=logger, enable_checkpointing=False, enable_progress_bar=False))
    logger.log_metrics({"train/loss": 1.0}, step=10)
    logger.save()  # Lightning's CSV writer deletes a metrics.csv it finds on start
    (kept,) = (tmp_path / "csv").glob("metrics.before_resume_*.csv")
    assert kept.read_text() == "epoch,step,train/loss\n0,9,1.5\n"
    assert "1.0" in (tmp_path / "csv" / "metrics.csv").read_text()


def test_the_last_checkpoint_keeps_what_the_loggers_held_at_the_end_of_training(tmp_path):
    """The end-of-epoch checkpoint is written after the epoch's train/* are logged, and holds them:
    a run resumed after its training ended (killed while testing) reports them from there."""
    from rnnexp.data import ToyWordsDataModule
    from rnnexp.models import SequenceClassifier
    from tests.helpers.trainer import small_trainer

    dm = ToyWordsDataModule("i_like_dog", repeat=5)
    model = SequenceClassifier(**dm.spec().model_kwargs(), cell="gru", hidden_size=8,
                               optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1})
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, monitor="val/loss")
    trainer = small_trainer(tmp_path, max_epochs=2, callbacks=[checkpoint, pl.callbacks.LearningRateMonitor()],
                            logger=pl.loggers.CSVLogger(tmp_path))
    trainer.fit(model, datamodule=dm)
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["rnnexp_logged_metrics"]
    at_end = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert {"train/loss", "train/acc", "val/loss", "lr-SGD"} <= set(saved)
    assert saved == at_end
    resumed = SequenceClassifier.load_from_checkpoint(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert resumed.logged_at_checkpoint == at_end
