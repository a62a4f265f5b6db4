"""Shared parts of the MNIST benchmarks: rnnexp from a preset vs a plain-PyTorch loop, in lockstep.

The rnnexp side is the preset's composed Hydra config, built by ``rnnexp.train.build`` and
fitted by a real Lightning Trainer (CSV logger and checkpointing on, as a user runs it;
progress bar off). The reference is ``nn.LSTM`` + ``nn.Linear`` with Adam and a plain loop.
After every Lightning training step a callback runs one reference step on the next batch
of its own DataLoader over the same data (same seeded order, so the same batch), so both
see the same load on the shared cores; the time spent in the callback is taken out of
rnnexp's clock. Both models start from the same seed and the same construction order, so
their weights start equal and their accuracies should agree to rounding.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, open_dict
from torch import nn

from benchmarks._repo import adam_settings, compose_train, reference_adam

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = os.environ.get("RNNEXP_DATA_DIR") or str(ROOT.parent / "shared" / "data")


def preset_config(experiment: str, overrides: List[str], data_dir: str, output_dir: str) -> DictConfig:
    cfg = compose_train([f"experiment={experiment}", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = output_dir
        cfg.paths.log_dir = output_dir
        cfg.paths.data_dir = data_dir
    return cfg


class Reference(nn.Module):
    """What a user writes by hand: the last step's output of an LSTM into a linear layer."""

    def __init__(self, input_size: int, hidden: int, classes: int = 10) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.fc(out[:, -1])


class BareModule(pl.LightningModule):
    """``--bare``: the reference network itself in the smallest LightningModule (cross-entropy, the
    preset's Adam), fitted by a Trainer with no logger, callback or checkpoint: Lightning's own
    cost per step, the floor under anything built on its loop."""

    def __init__(self, net: Reference, adam: Dict) -> None:
        super().__init__()
        self.net, self.adam = net, adam

    def forward(self, x: torch.Tensor):
        return self.net(x), None  # the (logits, state) pair the lockstep's accuracy reads

    def training_step(self, batch, batch_idx):
        return nn.functional.cross_entropy(self.net(batch["inputs"]), batch["targets"])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), **self.adam)


@torch.no_grad()
def accuracy(predict, loader, limit: Optional[int] = None) -> float:
    correct = total = 0
    for batch in loader:
        logits = predict(batch["inputs"])
        correct += int((logits.argmax(-1) == batch["targets"]).sum())
        total += len(batch["targets"])
        if limit and total >= limit:
            break
    return correct / total


class Lockstep(pl.Callback):
    """Runs the reference alongside the Lightning fit and keeps both clocks.

    ``rnnexp_step_seconds`` are the intervals between Lightning's batch ends minus the
    reference work done in between; ``reference_step_seconds`` time one reference step
    (fetching its batch included, the check that both sides got the same batch excluded).
    """

    def __init__(self, reference: Reference, optimizer: torch.optim.Optimizer, datamodule, validate: bool,
                 test_limit: Optional[int]) -> None:
        self.reference, self.datamodule = reference, datamodule
        self.optimizer = optimizer  # the preset's own Adam settings (_repo.reference_adam)
        self.validate, self.test_limit = validate, test_limit
        self.loader = datamodule.train_dataloader()
        self.batches = None
        self.paused = 0.0  # seconds of reference work inside the Lightning fit
        self.last_end: Optional[float] = None
        self.rnnexp_step_seconds: List[float] = []
        self.reference_step_seconds: List[float] = []
        self.mismatched_batches = 0
        self.start = 0.0
        self.reference_clock = 0.0
        self.epochs: List[Dict[str, float]] = []
        self.setup_seconds = 0.0

    def begin(self) -> None:
        self.start = time.perf_counter()

    def rnnexp_clock(self) -> float:
        return time.perf_counter() - self.start - self.paused

    def on_train_start(self, trainer, pl_module) -> None:
        # Lightning's setup until the first step (data setup, sanity-check validation): rnnexp's only
        self.setup_seconds = self.rnnexp_clock()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.loader.sampler.set_epoch(trainer.current_epoch)
        self.batches = iter(self.loader)
        self.last_end = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        entered = time.perf_counter()
        if self.last_end is not None:
            self.rnnexp_step_seconds.append(entered - self.last_end)
        ref_batch = next(self.batches)
        fetched = time.perf_counter()
        # Checked off both clocks: the check is the benchmark's, not work either side does.
        same = all(torch.equal(ref_batch[k], batch[k].cpu()) for k in ("inputs", "targets"))
        self.mismatched_batches += int(not same)
        resumed = time.perf_counter()
        self.reference.train()
        with torch.enable_grad():
            loss = nn.functional.cross_entropy(self.reference(ref_batch["inputs"]), ref_batch["targets"])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        spent = (fetched - entered) + (time.perf_counter() - resumed)
        self.reference_step_seconds.append(spent)
        self.reference_clock += spent
        self.paused += time.perf_counter() - entered
        self.last_end = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        entered = time.perf_counter()
        rnnexp_clock = entered - self.start - self.paused
        self.reference.eval()
        if self.validate:  # the reference also validates every epoch, as Lightning does
            begin = time.perf_counter()
            accuracy(self.reference, self.datamodule.val_dataloader())
            self.reference_clock += time.perf_counter() - begin
        test = self.datamodule.test_dataloader()
        row = {
            "epoch": trainer.current_epoch + 1,
            "rnnexp_seconds": rnnexp_clock,
            "reference_seconds": self.reference_clock,
            "rnnexp_test_acc": accuracy(lambda x: pl_module(x)[0], test, self.test_limit),
            "reference_test_acc": accuracy(self.reference, test, self.test_limit),
        }
        self.epochs.append(row)
        print("epoch", {k: round(v, 4) for k, v in row.items()}, flush=True)
        self.paused += time.perf_counter() - entered


# The reference's parameter names -> rnnexp's SequenceModel names for the same tensors.
RENAMES = {"lstm.": "backbone.blocks.0.", "fc.": "head.proj."}


def same_weights(reference: Reference, net: nn.Module) -> bool:
    """Every tensor of both state dicts, under corresponding names, equal: no extra parameter
    on either side (a ``zip`` over ``parameters()`` stops at the shorter list)."""
    ours = net.state_dict()
    theirs = {}
    for name, value in reference.state_dict().items():
        prefix = next(p for p in RENAMES if name.startswith(p))
        theirs[RENAMES[prefix] + name[len(prefix):]] = value
    if set(ours) != set(theirs):
        print(f"parameters differ: only rnnexp {sorted(set(ours) - set(theirs))}, "
              f"only reference {sorted(set(theirs) - set(ours))}")
        return False
    return all(ours[k].shape == theirs[k].shape and torch.equal(ours[k], theirs[k]) for k in ours)


def fit_in_lockstep(experiment: str, overrides: List[str], data_dir: str, validate: bool,
                    test_limit: Optional[int] = None, seed: int = 42, bare: bool = False) -> Lockstep:
    """rnnexp's fit of the preset with the plain loop in lockstep; ``bare``: the reference network
    in :class:`BareModule` under a bare Trainer instead of rnnexp's model (no validation either side)."""
    from rnnexp.train import build

    with tempfile.TemporaryDirectory() as out:
        cfg = preset_config(experiment, overrides, data_dir, out)
        pl.seed_everything(seed, workers=True)
        datamodule, model, trainer = build(cfg)
        # Same seed, same construction order (LSTM, then Linear) as rnnexp's SequenceModel.
        torch.manual_seed(seed)
        ref = Reference(datamodule.input_size, cfg.model.hidden_size)
        same_start = same_weights(ref, model.net)
        if bare:
            torch.manual_seed(seed)
            model = BareModule(Reference(datamodule.input_size, cfg.model.hidden_size), adam_settings(cfg))
            theirs, ours = ref.state_dict(), model.net.state_dict()  # the same class: the same names
            same_start = theirs.keys() == ours.keys() and all(torch.equal(theirs[k], ours[k]) for k in ours)
            trainer = pl.Trainer(max_epochs=cfg.trainer.max_epochs, accelerator="cpu", devices=1, logger=False,
                                 enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                 limit_val_batches=0)
            validate = False
        datamodule.setup()
        lockstep = Lockstep(ref, reference_adam(cfg, ref.parameters()), datamodule, validate, test_limit)
        lockstep.same_start = same_start
        trainer.callbacks.append(lockstep)
        lockstep.begin()
        trainer.fit(model, datamodule=datamodule)
    return lockstep


def median(values: List[float]) -> float:
    return statistics.median(values) if values else float("nan")
