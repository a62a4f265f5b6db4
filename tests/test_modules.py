"""LightningModules through real Trainer runs (fast_dev_run), checkpoints and metrics."""

import itertools
import math

import pytest
import pytorch_lightning as pl
import torch

from rnnexp.data import ToyWordsDataModule
from rnnexp.models import SequenceClassifier, SequenceTagger
from rnnexp.train import build
from tests.helpers.trainer import small_trainer

ADAM = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01}


def _trainer(tmp_path, **kwargs):
    kwargs.setdefault("fast_dev_run", True)
    return small_trainer(tmp_path, **kwargs)


@pytest.mark.parametrize("cell,bidirectional", itertools.product(["rnn", "lstm", "gru"], [False, True]))
@pytest.mark.parametrize("kind", ["classifier", "tagger"])
def test_every_cell_and_direction_trains(tmp_path, cell, bidirectional, kind):
    dm = ToyWordsDataModule("i_like_dog" if kind == "classifier" else "hello_batch")
    cls = SequenceClassifier if kind == "classifier" else SequenceTagger
    model = cls(**dm.spec().model_kwargs(), cell=cell, bidirectional=bidirectional, hidden_size=8, optimizer=ADAM)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    assert any(name.endswith("_reverse") for name in before) == bidirectional
    recorder = _GradientRecorder()
    _trainer(tmp_path, callbacks=[recorder]).fit(model, datamodule=dm)
    # Every parameter, the backward direction's included, gets a gradient and moves.
    assert recorder.without_gradient == [] and set(recorder.seen) == set(before)
    unchanged = [name for name, p in model.named_parameters() if torch.equal(p, before[name])]
    assert unchanged == []


class _GradientRecorder(pl.Callback):
    """Names of the parameters whose gradient is missing or all zero after the first backward."""

    def __init__(self):
        self.seen, self.without_gradient = [], None

    def on_after_backward(self, trainer, pl_module):
        if self.without_gradient is None:
            grads = {name: p.grad for name, p in pl_module.named_parameters()}
            self.seen = list(grads)
            self.without_gradient = [n for n, g in grads.items() if g is None or not torch.any(g != 0)]


def test_checkpoint_loads_on_the_weights_only_path(tmp_path):
    dm = ToyWordsDataModule("hello")
    model = SequenceTagger(**dm.spec().model_kwargs(), cell="gru", hidden_size=8, optimizer=ADAM,
                           scheduler={"scheduler": {"_target_": "torch.optim.lr_scheduler.StepLR", "_partial_": True,
                                                    "step_size": 1}, "interval": "epoch"})
    trainer = _trainer(tmp_path, fast_dev_run=False, max_epochs=1)
    trainer.fit(model, datamodule=dm)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    torch.load(path, weights_only=True)  # raises UnpicklingError if any hyperparameter is not plain
    loaded = SequenceTagger.load_from_checkpoint(path)
    assert loaded.hparams.vocab == dm.vocab.tokens
    batch = next(iter(dm.val_dataloader()))
    model.eval()
    assert torch.allclose(loaded(batch["inputs"], batch["lengths"])[0], model(batch["inputs"], batch["lengths"])[0])


def test_tagger_epoch_metrics_are_token_weighted(tmp_path):
    dm = ToyWordsDataModule("i_like_dog", target="sequence", sequences=["i like dog", "i really love hot coffee"])
    model = SequenceTagger(**dm.spec().model_kwargs(), hidden_size=8, optimizer=ADAM)
    trainer = _trainer(tmp_path, fast_dev_run=False, max_epochs=1, limit_train_batches=0)
    (result,) = trainer.validate(model, datamodule=dm)
    batch = next(iter(dm.val_dataloader()))
    model.eval()
    with torch.no_grad():
        logits, _ = model(batch["inputs"], batch["lengths"])
        mask = batch["targets"] != -100
        ce = torch.nn.functional.cross_entropy(logits[mask], batch["targets"][mask])
    assert math.isclose(result["val/loss"], ce.item(), rel_tol=1e-5)
    assert math.isclose(result["val/ppl"], math.exp(ce.item()), rel_tol=1e-5)
    assert math.isclose(result["val/bpt"], ce.item() / math.log(2), rel_tol=1e-5)


def test_data_and_model_target_kinds_must_agree(make_cfg):
    from rnnexp.runtime.cli import describe

    with pytest.raises(Exception) as caught:
        build(make_cfg("data.task=hello", "model=classifier"))
    assert "the data gives the next token at every step: use model=lm" in describe(caught.value)
    with pytest.raises(Exception) as caught:
        build(make_cfg("model=tagger"))
    assert "one label per sequence: use model=classifier" in describe(caught.value)


def test_optimizer_range_errors_are_user_errors(tmp_path):
    from rnnexp.errors import UserError

    dm = ToyWordsDataModule("i_like_dog")
    model = SequenceClassifier(**dm.spec().model_kwargs(), optimizer={**ADAM, "lr": -1.0})
    with pytest.raises(UserError, match="optimizer: Invalid learning rate"):
        _trainer(tmp_path).fit(model, datamodule=dm)
