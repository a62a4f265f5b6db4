"""Numerical safety and reproducibility pieces: the finite-loss guard and RNG state in checkpoints."""

import logging
import random
import re
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from rnnexp.callbacks.finite_loss import FiniteLossGuard, NonFiniteLossError
from rnnexp.callbacks.rng_state import collect_rng_states, restore_rng_states
from rnnexp.data import ToyWordsDataModule
from rnnexp.models import SequenceClassifier


def test_non_finite_loss_stops_the_run_naming_the_step_and_keeps_the_last_checkpoint(tmp_path):
    dm = ToyWordsDataModule("i_like_dog", repeat=5)
    # An absurd learning rate with no clipping makes the loss overflow within a few steps.
    model = SequenceClassifier(**dm.spec().model_kwargs(), cell="rnn", nonlinearity="relu", hidden_size=16,
                               optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 1e12})
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_train_steps=1)
    trainer = pl.Trainer(default_root_dir=tmp_path, max_epochs=20, logger=False, enable_progress_bar=False,
                         callbacks=[FiniteLossGuard(), checkpoint], gradient_clip_val=None)
    with pytest.raises(NonFiniteLossError, match=r"at step \d+ .*optimizer.lr") as info:
        trainer.fit(model, datamodule=dm)
    assert "trainer.gradient_clip_val" in str(info.value)
    last = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values())


class _PoisonWeightsAfter(pl.Callback):
    """Sets one weight to inf right after optimizer step ``step``; that step's loss was finite."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                next(pl_module.parameters()).view(-1)[0] = float("inf")


def test_a_checkpoint_of_non_finite_weights_is_refused_even_after_a_finite_loss(tmp_path):
    dm = ToyWordsDataModule("i_like_dog", repeat=5)
    model = SequenceClassifier(**dm.spec().model_kwargs(), cell="gru", hidden_size=8,
                               optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01})
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_train_steps=1)
    trainer = pl.Trainer(default_root_dir=tmp_path, max_epochs=5, logger=False, enable_progress_bar=False,
                         callbacks=[FiniteLossGuard(), _PoisonWeightsAfter(3), checkpoint])
    with pytest.raises(NonFiniteLossError, match=r"the weights became inf at step 3 "):
        trainer.fit(model, datamodule=dm)
    last = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values())


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    states = collect_rng_states()
    torch.save({"rng": states}, tmp_path / "s.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(2), np.random.seed(2), random.seed(2)
    restore_rng_states(torch.load(tmp_path / "s.pt", weights_only=True)["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


def test_cuda_rng_states_are_saved_only_once_cuda_is_in_use(monkeypatch, tmp_path):
    def touches_cuda():
        raise AssertionError("get_rng_state_all() initialises CUDA")

    monkeypatch.setattr(torch.cuda, "get_rng_state_all", touches_cuda)
    assert not torch.cuda.is_initialized()
    assert "cuda" not in collect_rng_states()
    # On a GPU machine after the first CUDA op: one ByteTensor per device, kept through weights_only.
    devices = [torch.randint(0, 255, (16,), dtype=torch.uint8) for _ in range(2)]
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: devices)
    torch.save({"rng": collect_rng_states()}, tmp_path / "s.pt")
    saved = torch.load(tmp_path / "s.pt", weights_only=True)["rng"]
    assert all(torch.equal(a, b) for a, b in zip(saved["cuda"], devices)) and len(saved["cuda"]) == 2


def test_a_checkpoint_with_cuda_rng_states_restores_on_any_machine(monkeypatch):
    torch.manual_seed(4)
    states = {**collect_rng_states(), "cuda": [torch.full((16,), d, dtype=torch.uint8) for d in range(2)]}
    expected = torch.rand(3)
    restore_rng_states(states)  # this CPU-only machine: the CUDA part is skipped
    assert torch.equal(torch.rand(3), expected)
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append((int(state[0]), device)))
    restore_rng_states(states)  # a machine with one GPU restores the state of device 0
    assert restored == [(0, 0)]


DROPOUT = 0.3  # dropout masks come from the global RNG, which the checkpoint must restore


def _fit(tmp_path, max_epochs, ckpt_path=None, callbacks=()):
    from rnnexp.callbacks.rng_state import RngStateCheckpoint

    pl.seed_everything(3)
    dm = ToyWordsDataModule("i_like_dog", sequences=["i like dog", "i love coffee", "i hate milk", "we like tea",
                                                     "we love hot milk"], batch_size=2, repeat=3, seed=3)
    model = SequenceClassifier(**dm.spec().model_kwargs(), cell="lstm", hidden_size=8, dropout=DROPOUT,
                               optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01})
    trainer = pl.Trainer(default_root_dir=tmp_path, max_epochs=max_epochs, logger=False, enable_progress_bar=False,
                         callbacks=[RngStateCheckpoint(), *callbacks], enable_checkpointing=bool(callbacks))
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return model, trainer


def test_resuming_mid_epoch_ends_exactly_where_an_uninterrupted_run_does(tmp_path):
    every_step = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_top_k=-1,
                                              filename="{step}")
    whole, _ = _fit(tmp_path / "a", 2, callbacks=[every_step])
    mid_epoch = tmp_path / "ckpt" / "step=5.ckpt"  # epoch 0 has 8 batches
    assert torch.load(mid_epoch, weights_only=True)["loops"]["fit_loop"]["epoch_progress"]["current"]["completed"] == 0
    resumed, trainer = _fit(tmp_path / "b", 2, ckpt_path=mid_epoch)
    assert trainer.global_step == 16
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_seeded_batches_split_every_sample_once_across_ranks():
    from rnnexp.data.resumable import SeededBatches

    for size, batch in [(20, 3), (12, 2), (7, 4)]:
        ranks = [SeededBatches(size, batch, seed=5, num_replicas=2, rank=r) for r in range(2)]
        for r in ranks:
            r.set_epoch(1)
        seen = [i for r in ranks for b in r for i in b]
        assert len(list(ranks[0])) == len(list(ranks[1])) == len(ranks[0])
        assert set(seen) == set(range(size))
        if size % (2 * batch) == 0:
            assert sorted(seen) == list(range(size))  # nothing repeated when it divides evenly


def test_checkpoints_are_written_beside_the_target_and_renamed_never_half(tmp_path, monkeypatch):
    import os

    from rnnexp.runtime.checkpoints import AtomicCheckpointIO

    io, target = AtomicCheckpointIO(), tmp_path / "ckpt" / "last.ckpt"
    io.save_checkpoint({"step": 1}, target)
    renames, replace = [], os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (renames.append((a, b)), replace(a, b)))
    io.save_checkpoint({"step": 2}, target)
    # Same directory, so the rename is atomic (Lightning's temporary file lives in the system temp folder).
    ((partial, final),) = renames
    assert Path(partial).parent == target.parent and Path(final) == target

    def dies_half_way(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(OSError):
        io.save_checkpoint({"step": 3}, target)
    assert torch.load(target, weights_only=True) == {"step": 2}
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]


def test_the_configured_trainer_saves_checkpoints_atomically(make_cfg):
    from hydra.utils import instantiate

    from rnnexp.runtime.checkpoints import AtomicCheckpointIO

    for trainer in ("default", "ddp"):
        cfg = make_cfg(f"trainer={trainer}")
        assert isinstance(instantiate(cfg.trainer).strategy.checkpoint_io, AtomicCheckpointIO), trainer


@pytest.mark.slow
def test_a_diverging_cli_run_stops_with_one_line_and_keeps_finite_checkpoints(tmp_path):
    from tests.helpers import run_cli

    result = run_cli("cell=rnn", "model.nonlinearity=relu", "optimizer=sgd", "optimizer.lr=1e12",
                     "trainer.gradient_clip_val=null", "callbacks.resume_checkpoint.every_n_train_steps=1",
                     "trainer.max_epochs=2", "trainer.enable_progress_bar=false", f"paths.log_dir={tmp_path}",
                     "logger=none", cwd=tmp_path, env={"WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert re.match(r"error: the (training loss|weights) became (nan|inf|-inf) at step \d+ \(epoch 0", line), line
    assert "optimizer.lr" in line and "trainer.gradient_clip_val=1.0" in line
    (run_dir,) = (tmp_path / "train" / "runs").iterdir()
    assert not (run_dir / "metrics.json").exists()  # a failed run reports no metrics
    saved = torch.load(run_dir / "checkpoints" / "resume.ckpt", weights_only=True)
    assert all(torch.isfinite(t).all() for t in saved["state_dict"].values())
    # Checkpoints are written after the guard has looked: the last one is the step before the bad one.
    assert int(re.search(r"at step (\d+)", line).group(1)) == saved["global_step"] + 1


def _checkpoint(path, step):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"global_step": step, "state_dict": {"w": torch.zeros(2)}}, path)
    return path


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_resume_skips_an_unreadable_newest_checkpoint_with_one_warning(tmp_path, caplog, damage):
    from rnnexp.runtime.checkpoints import latest_checkpoint

    run = tmp_path / "run"
    good = _checkpoint(run / "checkpoints" / "last.ckpt", 40)
    newest = _checkpoint(run / "checkpoints" / "resume.ckpt", 50)
    data = newest.read_bytes()
    newest.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x13" * len(data), "empty": b""}[damage])
    # What a kill in the middle of a write leaves: never a candidate, even when it is whole.
    _checkpoint(run / "checkpoints" / ".resume.ckpt.4242.tmp", 60)
    with caplog.at_level(logging.WARNING, logger="rnnexp.runtime.checkpoints"):
        assert latest_checkpoint(run) == good
    (record,) = caplog.records
    message = record.getMessage()
    assert "\n" not in message and str(newest) in message and "resuming from last.ckpt (step 40)" in message


def test_resume_with_no_readable_checkpoint_is_one_error(tmp_path):
    from rnnexp.runtime.checkpoints import latest_checkpoint
    from rnnexp.errors import UserError

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 half")
    with pytest.raises(UserError, match=r"no checkpoint in .* can be read; start the run again without resume="):
        latest_checkpoint(tmp_path)


def test_ckpt_path_last_is_refused_rather_than_a_silent_fresh_start(make_cfg):
    from omegaconf import open_dict

    from rnnexp.errors import ConfigError
    from rnnexp.train import _checkpoint_to_start_from

    cfg = make_cfg()
    with open_dict(cfg):
        cfg.ckpt_path = "last"
    with pytest.raises(ConfigError, match="no such checkpoint file"):
        _checkpoint_to_start_from(cfg)
