"""The seeds' ``sequence_loss``: per-step cross-entropy weighted by a mask."""

from __future__ import annotations

from typing import Optional, Tuple

import torch.nn.functional as F
from torch import Tensor

from rnnexp.batch import IGNORE_INDEX


def sequence_loss_sum(logits: Tensor, targets: Tensor, weights: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Sum of weighted per-step cross-entropy and the sum of weights.

    ``logits`` [B, T, C], ``targets`` [B, T] with ``IGNORE_INDEX`` at padding,
    ``weights`` [B, T] (TensorFlow's ``sequence_loss(weights=...)``; default 1 at
    every valid step). Sums let callers average over tokens across batches.
    """
    # Flattened to [B*T, C]: cross_entropy over a transposed [B, C, T] view is twice as slow
    # on a CPU (a strided log_softmax), a millisecond per char-LM step.
    per_step = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none"
    )
    valid = (targets != IGNORE_INDEX).reshape(-1)
    if weights is None:
        return per_step.sum(), valid.sum().to(per_step.dtype)
    w = weights.reshape(-1).to(per_step.dtype) * valid
    return (per_step * w).sum(), w.sum()


def sequence_loss(logits: Tensor, targets: Tensor, weights: Optional[Tensor] = None) -> Tensor:
    """Mean over weighted steps; padding never counts."""
    total, count = sequence_loss_sum(logits, targets, weights)
    return total / count.clamp_min(1e-12)
