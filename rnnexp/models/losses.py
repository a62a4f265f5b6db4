"""The seeds' ``sequence_loss``: per-step cross-entropy weighted by a mask."""

from __future__ import annotations

from typing import Optional, Tuple

import torch.nn.functional as F
from torch import Tensor

# Targets at padded positions carry this value; torch's cross_entropy and torchmetrics skip it.
IGNORE_INDEX = -100


def sequence_loss_sum(logits: Tensor, targets: Tensor, weights: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Sum of weighted per-step cross-entropy and the sum of weights.

    ``logits`` [B, T, C], ``targets`` [B, T] with ``IGNORE_INDEX`` at padding,
    ``weights`` [B, T] (TensorFlow's ``sequence_loss(weights=...)``; default 1 at
    every valid step). Sums let callers average over tokens across batches.
    """
    valid = targets != IGNORE_INDEX
    per_step = F.cross_entropy(logits.transpose(1, 2), targets.masked_fill(~valid, 0), reduction="none")
    w = valid.to(per_step.dtype) if weights is None else weights.to(per_step.dtype) * valid
    return (per_step * w).sum(), w.sum()


def sequence_loss(logits: Tensor, targets: Tensor, weights: Optional[Tensor] = None) -> Tensor:
    """Mean over weighted steps; padding never counts."""
    total, count = sequence_loss_sum(logits, targets, weights)
    return total / count.clamp_min(1e-12)
