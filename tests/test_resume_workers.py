"""Exact resume with worker processes and from end-of-epoch checkpoints, for every training loader.

Each case trains 2 epochs with a checkpoint after every step and at every epoch end, then resumes
from one mid-epoch and one end-of-epoch checkpoint with ``num_workers=1`` and dropout: the resumed
run must train on the same batches in the same order and end with the same weights. Lightning
builds the loader's iterator before ``set_epoch`` on a resume, and a worker iterator takes its
first indices when it is built; a loader without its own generator draws its workers' base seed
from the global RNG that dropout uses.
"""

from __future__ import annotations

import hashlib
import warnings

import pytest
import pytorch_lightning as pl
import torch

from rnnexp.callbacks.rng_state import RngStateCheckpoint
from rnnexp.data import ToyWordsDataModule
from rnnexp.data.mnist import MNISTDataModule
from rnnexp.data.tweets import TweetsDataModule
from rnnexp.models import SequenceClassifier
from rnnexp.models import LanguageModel
from tests.helpers.mnist import write_mnist
from tests.helpers.tweets import write_tweets

ADAM = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01}


class RecordBatches(pl.Callback):
    """A fingerprint of every training batch, by the optimizer step it trains."""

    def __init__(self) -> None:
        self.seen = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        digest = hashlib.sha256()
        for key in ("inputs", "targets"):
            digest.update(batch[key].numpy().tobytes())
        self.seen[trainer.global_step] = digest.hexdigest()[:12]


def _mnist(tmp_path, num_workers):
    folder = tmp_path.parent / "mnist"
    if not folder.exists():
        write_mnist(tmp_path.parent)
    dm = MNISTDataModule(str(folder), download=False, val_size=500, batch_size=500, eval_batch_size=500,
                         num_workers=num_workers)
    return dm, SequenceClassifier(input_size=28, num_classes=10, encoder="features", cell="gru", hidden_size=8, dropout=0.3,
                                  optimizer=ADAM)


def _toy(tmp_path, num_workers):
    dm = ToyWordsDataModule("i_like_dog", batch_size=2, repeat=4, seed=3, num_workers=num_workers)
    return dm, SequenceClassifier(**dm.spec().model_kwargs(), cell="lstm", hidden_size=8, dropout=0.3, optimizer=ADAM)


def _tweets(batching):
    def make(tmp_path, num_workers):
        corpus = tmp_path.parent / "tweets" / "trump_tweets.txt"
        if not corpus.exists():
            write_tweets(tmp_path.parent, count=40)
        dm = TweetsDataModule(path=str(corpus), download=False, batching=batching, batch_size=4, num_steps=50,
                              min_count=1, seed=1, num_workers=num_workers)
        return dm, LanguageModel(**dm.spec().model_kwargs(), cell="gru", hidden_size=8, dropout=0.3, optimizer=ADAM)

    return make


CASES = {"mnist": _mnist, "toy": _toy, "tweets_stream": _tweets("stream"), "tweets_buckets": _tweets("tweets")}


def _fit(make, root, num_workers=0, ckpt_path=None):
    pl.seed_everything(7)
    dm, model = make(root, num_workers)
    record = RecordBatches()
    callbacks = [RngStateCheckpoint(), record]
    if ckpt_path is None:
        callbacks += [
            pl.callbacks.ModelCheckpoint(dirpath=root / "ckpt", every_n_train_steps=1, save_top_k=-1, filename="{step}"),
            # Saved after validation, as the configured last.ckpt is.
            pl.callbacks.ModelCheckpoint(dirpath=root / "ckpt", save_top_k=-1, filename="end{epoch}"),
        ]
    trainer = pl.Trainer(default_root_dir=root, max_epochs=2, logger=False, enable_progress_bar=False,
                         callbacks=callbacks, limit_val_batches=1, enable_model_summary=False,
                         num_sanity_val_steps=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    finally:
        torch.set_num_threads(threads)
    return model, trainer, record.seen, [str(w.message) for w in caught]


@pytest.mark.parametrize("case", CASES)
def test_resume_with_a_worker_process_trains_the_same_batches_and_ends_equal(tmp_path, case):
    make = CASES[case]
    whole, trainer, seen, _ = _fit(make, tmp_path / "whole")
    per_epoch = trainer.global_step // 2
    assert per_epoch >= 4
    mid_epoch = tmp_path / "whole" / "ckpt" / f"step={per_epoch + per_epoch // 2}.ckpt"
    epoch_end = tmp_path / "whole" / "ckpt" / "endepoch=0.ckpt"
    assert torch.load(epoch_end, weights_only=True)["global_step"] == per_epoch
    for name, ckpt in (("mid_epoch", mid_epoch), ("epoch_end", epoch_end)):
        start = torch.load(ckpt, weights_only=True)["global_step"]
        resumed, trainer2, seen2, messages = _fit(make, tmp_path / name, num_workers=1, ckpt_path=ckpt)
        assert trainer2.global_step == trainer.global_step, name
        assert seen2 == {step: b for step, b in seen.items() if step >= start}, name
        for (key, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
            assert torch.equal(a, b), (name, key)
        # The loaders resume mid-epoch; Lightning must not say they do not.
        assert not [m for m in messages if "not resumable" in m], (name, messages)
