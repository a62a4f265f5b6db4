"""Many-to-many: one prediction per step (tagging, and next-token prediction without carried state)."""

from __future__ import annotations

import math

import torch

from rnnexp.models.nets.losses import sequence_loss_sum
from rnnexp.models.tasks.base import SequenceTask
from rnnexp.models.tasks.epoch_sums import correct_predictions


class SequenceTagger(SequenceTask):
    """Batches with ``inputs``, ``lengths``, ``targets`` [B, T] (``IGNORE_INDEX`` at padding)
    and optionally ``weights`` [B, T] (``sequence_loss(weights=...)``), see :mod:`rnnexp.batch`.

    The loss is the weighted mean cross-entropy over tokens. Per epoch, ``{stage}/loss``,
    ``{stage}/acc`` (weighted like the loss: a step of weight 0 counts in neither),
    ``{stage}/ppl`` and ``{stage}/bpt`` (bits per token) come from exact sums over the epoch,
    so they cannot overflow the way ``torchmetrics.Perplexity`` does.
    """

    accepts = ("step", "next_token")
    many_to_one = False

    def _sums_of(self, logits, batch):
        targets, weights = batch["targets"], batch.get("weights")
        total, weight = sequence_loss_sum(logits, targets, weights)
        with torch.no_grad():
            correct = correct_predictions(logits, targets, weights)
        return total, weight, correct

    def _log_extra(self, stage: str, mean: torch.Tensor) -> None:
        self.log(f"{stage}/ppl", torch.exp(mean))
        self.log(f"{stage}/bpt", mean / math.log(2))
