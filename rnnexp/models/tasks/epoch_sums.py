"""Per-stage running sums of an epoch: loss, weight (tokens or samples) and correct predictions.

One float64 tensor per stage, updated with one ``stack`` and one add per step and reduced
across DDP ranks by the strategy at epoch end. Not torchmetrics objects: three ``update``
calls per step cost 1.4 ms of a 70 ms char-LM step under the Trainer (one-off measurement
with ``benchmarks/tweets_throughput.py``: 0.960 -> 0.980 of a plain loop without them).

The training sums go into checkpoints with the epoch they belong to, so an epoch resumed
from a mid-epoch checkpoint reports the same ``train/*`` as one never interrupted.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from torch import Tensor

from rnnexp.batch import IGNORE_INDEX


class EpochSums:
    def __init__(self) -> None:
        self._sums: Dict[str, Tensor] = {}
        self._pending: Optional[Dict[str, Any]] = None  # restored from a checkpoint, not yet in use

    def add(self, stage: str, loss_sum: Tensor, weight: Tensor, correct: Tensor) -> None:
        with torch.no_grad():
            sums = torch.stack([loss_sum.detach(), weight.detach(), correct.detach().to(loss_sum.dtype)]).double()
        self._sums[stage] = sums if stage not in self._sums else self._sums[stage] + sums

    def pop(self, stage: str, strategy=None) -> Optional[Tensor]:
        """``[loss_sum, weight, correct]`` of the stage's epoch (summed over ranks), or None if it saw no batch."""
        sums = self._sums.pop(stage, None)
        if sums is not None and strategy is not None:
            sums = strategy.reduce(sums, reduce_op="sum")
        return sums

    def reset(self, stage: str) -> None:
        self._sums.pop(stage, None)

    # -- checkpoints -------------------------------------------------------------------
    def state(self, epoch: int) -> Dict[str, Any]:
        train = self._sums.get("train")
        return {"epoch": epoch, "train": None if train is None else train.cpu()}

    def load(self, state: Optional[Dict[str, Any]]) -> None:
        self._pending = state

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def restore(self, epoch: int, device: torch.device) -> None:
        """Continue the sums of a checkpoint when the run resumed inside their epoch.

        Called before the first training batch after a restore and before the training
        epoch's metrics are logged (a run resumed after the last batch of an epoch trains no
        batch of it); Lightning skips ``on_train_epoch_start`` when it restarts mid-epoch.
        """
        pending, self._pending = self._pending, None
        if pending and pending.get("train") is not None and pending.get("epoch") == epoch:
            self._sums["train"] = pending["train"].to(device)


def correct_predictions(logits: Tensor, targets: Tensor, weights: Optional[Tensor] = None) -> Tensor:
    """Correct predictions among non-padding targets, each counted with its weight (1 without ``weights``).

    ``logits`` [..., C] and ``targets`` [...] (``IGNORE_INDEX`` at padding). ``MulticlassAccuracy``
    takes an ``argmax`` over the classes, which torch does not vectorise on a CPU: 0.4 ms for a
    64x50 batch over ~100 characters. ``target logit >= max logit`` gives the same count (ties
    aside) from a vectorised ``amax`` in 0.08 ms.
    """
    valid = targets != IGNORE_INDEX
    target_logit = logits.gather(-1, targets.masked_fill(~valid, 0).unsqueeze(-1)).squeeze(-1)
    hit = (target_logit >= logits.amax(-1)) & valid
    if weights is None:
        return hit.sum()
    return (hit.to(weights.dtype) * weights).sum()
