"""Many-to-one: one label per sequence (the seeds' "i like dog" task, MNIST read as a sequence)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rnnexp.models.tasks.base import SequenceTask
from rnnexp.models.tasks.epoch_sums import correct_predictions


class SequenceClassifier(SequenceTask):
    """Batches with ``inputs``, ``lengths`` and ``targets`` [B] (:mod:`rnnexp.batch`).

    The loss is the mean cross-entropy over the batch; per epoch ``{stage}/loss`` and
    ``/acc`` are sample-weighted over the whole epoch.
    """

    accepts = ("label",)
    many_to_one = True

    def _sums_of(self, logits, batch):
        targets = batch["targets"]
        total = F.cross_entropy(logits, targets, reduction="sum")
        with torch.no_grad():
            correct = correct_predictions(logits, targets)
        return total, total.new_tensor(float(targets.shape[0])), correct
