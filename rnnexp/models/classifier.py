"""Many-to-one: one label per sequence (the seeds' "i like dog" task, MNIST read as a sequence)."""

from __future__ import annotations

import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from rnnexp.models.module import RecurrentModule


class SequenceClassifier(RecurrentModule):
    """Batches are dicts with ``inputs``, ``lengths`` and ``targets`` [B]."""

    many_to_one = True
    target_kind = "label"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        classes = self.hparams.num_classes
        # One metric object per stage: torchmetrics keeps state per object.
        self.train_acc = MulticlassAccuracy(classes, average="micro")
        self.val_acc = MulticlassAccuracy(classes, average="micro")
        self.test_acc = MulticlassAccuracy(classes, average="micro")

    def _step(self, batch, stage: str):
        logits, _ = self(batch["inputs"], batch["lengths"])
        targets = batch["targets"]
        loss = F.cross_entropy(logits, targets)
        acc = getattr(self, f"{stage}_acc")
        acc(logits, targets)
        size = targets.shape[0]
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, batch_size=size, on_step=on_step, on_epoch=True, prog_bar=True)
        self.log(f"{stage}/acc", acc, batch_size=size, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")
