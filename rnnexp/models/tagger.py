"""Many-to-many: one prediction per step (next-character language models, tagging)."""

from __future__ import annotations

import math

import torch
from torchmetrics import SumMetric
from torchmetrics.classification import MulticlassAccuracy

from rnnexp.models.losses import IGNORE_INDEX, sequence_loss_sum
from rnnexp.models.module import RecurrentModule


class SequenceTagger(RecurrentModule):
    """Batches are dicts with ``inputs``, ``lengths``, ``targets`` [B, T] (``IGNORE_INDEX`` at padding)
    and optionally ``weights`` [B, T] (``sequence_loss(weights=...)``).

    The loss is the token-weighted mean cross-entropy. Per epoch, ``{stage}/loss``,
    ``{stage}/ppl`` and ``{stage}/bpt`` (bits per token) come from sums of cross-entropy
    and token counts, so they are exact over the epoch and cannot overflow the way
    ``torchmetrics.Perplexity`` does.
    """

    many_to_one = False
    target_kind = "sequence"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        classes = self.hparams.num_classes
        for stage in ("train", "val", "test"):
            setattr(self, f"{stage}_acc", MulticlassAccuracy(classes, average="micro", ignore_index=IGNORE_INDEX))
            setattr(self, f"{stage}_ce_sum", SumMetric())
            setattr(self, f"{stage}_tokens", SumMetric())

    def _step(self, batch, stage: str):
        logits, _ = self(batch["inputs"], batch["lengths"])
        targets = batch["targets"]
        total, count = sequence_loss_sum(logits, targets, batch.get("weights"))
        loss = total / count.clamp_min(1e-12)
        acc = getattr(self, f"{stage}_acc")
        acc(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        getattr(self, f"{stage}_ce_sum").update(total.detach())
        getattr(self, f"{stage}_tokens").update(count.detach())
        if stage == "train":
            self.log("train/loss_step", loss, batch_size=int(count), on_step=True, on_epoch=False, prog_bar=True)
        self.log(f"{stage}/acc", acc, batch_size=targets.shape[0], on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def _log_epoch(self, stage: str) -> None:
        ce_sum, tokens = getattr(self, f"{stage}_ce_sum"), getattr(self, f"{stage}_tokens")
        mean = ce_sum.compute() / tokens.compute().clamp_min(1e-12)
        self.log(f"{stage}/loss", mean, prog_bar=True)
        self.log(f"{stage}/ppl", torch.exp(mean))
        self.log(f"{stage}/bpt", mean / math.log(2))
        ce_sum.reset()
        tokens.reset()

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
