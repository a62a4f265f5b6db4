"""Many-to-one: one label per sequence (the seeds' "i like dog" task, MNIST read as a sequence)."""

from __future__ import annotations

import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from rnnexp.models.module import RecurrentModule
from rnnexp.models.step_logging import logs_this_step


class SequenceClassifier(RecurrentModule):
    """Batches are dicts with ``inputs``, ``lengths`` and ``targets`` [B].

    Logs ``train/loss_step`` every ``log_every_n_steps`` steps, and per epoch
    ``{train,val,test}/loss`` and ``/acc`` (sample-weighted over the whole epoch).
    """

    many_to_one = True
    target_kind = "label"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        classes = self.hparams.num_classes
        # One metric object per stage: torchmetrics keeps state per object.
        for stage in ("train", "val", "test"):
            setattr(self, f"{stage}_acc", MulticlassAccuracy(classes, average="micro"))
            setattr(self, f"{stage}_loss", MeanMetric())

    def _step(self, batch, stage: str):
        logits, _ = self(batch["inputs"], batch["lengths"])
        targets = batch["targets"]
        loss = F.cross_entropy(logits, targets)
        size = targets.shape[0]
        getattr(self, f"{stage}_acc").update(logits.detach(), targets)
        getattr(self, f"{stage}_loss").update(loss.detach(), size)
        if stage == "train" and logs_this_step(self):
            self.log("train/loss_step", loss, batch_size=size, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def _log_epoch(self, stage: str) -> None:
        loss, acc = getattr(self, f"{stage}_loss"), getattr(self, f"{stage}_acc")
        if loss.update_count == 0:
            return
        self.log(f"{stage}/loss", loss.compute(), prog_bar=stage != "test")
        self.log(f"{stage}/acc", acc.compute(), prog_bar=True)
        loss.reset()
        acc.reset()
