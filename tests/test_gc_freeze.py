"""The collector's freeze around a fit: setup's garbage freed, live objects frozen while training,
everything handed back to the collector when the fit ends or fails."""

import gc
import weakref

import pytest
import pytorch_lightning as pl

from rnnexp.callbacks.gc_freeze import FreezeLongLivedObjects
from rnnexp.data import ToyWordsDataModule
from rnnexp.models import SequenceClassifier
from tests.helpers.trainer import small_trainer


class _Cycle:
    def __init__(self) -> None:
        self.me = self


class _Watch(pl.Callback):
    """Records the frozen count at each training batch; fails at batch ``fail_at`` if given."""

    def __init__(self, garbage: weakref.ref, fail_at=None) -> None:
        self.garbage, self.fail_at, self.frozen, self.garbage_alive = garbage, fail_at, [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.frozen.append(gc.get_freeze_count())
        self.garbage_alive.append(self.garbage() is not None)
        if batch_idx == self.fail_at:
            raise RuntimeError("stop here")


def _fit(tmp_path, fail_at=None):
    dm = ToyWordsDataModule("i_like_dog", repeat=5)
    model = SequenceClassifier(**dm.spec().model_kwargs(), cell="gru", hidden_size=8,
                               optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1})
    cycle = _Cycle()
    garbage = weakref.ref(cycle)
    del cycle  # only the cyclic collector can free it now
    watch = _Watch(garbage, fail_at)
    before = gc.get_freeze_count()
    trainer = small_trainer(tmp_path, max_epochs=1, limit_train_batches=3, limit_val_batches=0,
                            enable_checkpointing=False, callbacks=[FreezeLongLivedObjects(), watch])
    return trainer, model, dm, watch, before


def test_a_fit_trains_with_the_long_lived_objects_frozen_and_unfreezes_at_its_end(tmp_path):
    trainer, model, dm, watch, before = _fit(tmp_path)
    trainer.fit(model, datamodule=dm)
    assert len(watch.frozen) == 3
    # Everything alive at the start (this test's modules, torch, Lightning) is frozen: thousands.
    assert all(count > before + 1000 for count in watch.frozen), watch.frozen
    assert not any(watch.garbage_alive)  # collected before freezing, not kept alive by it
    assert gc.get_freeze_count() == before


def test_a_failed_fit_unfreezes_too(tmp_path):
    trainer, model, dm, watch, before = _fit(tmp_path, fail_at=1)
    with pytest.raises(RuntimeError, match="stop here"):
        trainer.fit(model, datamodule=dm)
    assert watch.frozen and watch.frozen[0] > before + 1000
    assert gc.get_freeze_count() == before
