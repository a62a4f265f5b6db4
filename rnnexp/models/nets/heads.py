"""Output heads on top of a backbone's padded outputs [B, T, D*H]."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnexp.errors import check_choice, check_fraction

POOLINGS = ("last", "mean", "max")


def valid_mask(lengths: Tensor, steps: int) -> Tensor:
    """[B, T] bool, True at t < lengths[b]."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


class ManyToOneHead(nn.Module):
    """Sequence -> one prediction, from the last valid step or a mean / max over valid steps.

    For a bidirectional backbone, ``last`` takes the forward half at each row's last
    valid step and the backward half at t=0 (where the backward pass ends), like
    Keras' ``Bidirectional(return_sequences=False)``.
    """

    def __init__(
        self, in_features: int, num_classes: int, pooling: str = "last", num_directions: int = 1, dropout: float = 0.0
    ) -> None:
        super().__init__()
        check_choice("pooling", pooling, POOLINGS)
        check_fraction("head_dropout", dropout)
        self.pooling, self.num_directions = pooling, num_directions
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(in_features, num_classes)

    def pool(self, outputs: Tensor, lengths: Tensor) -> Tensor:
        batch, steps, _ = outputs.shape
        if self.pooling == "last":
            if lengths.device.type == "cpu" and bool((lengths == steps).all()):
                # Every row full length (row MNIST, fixed windows): a view of the last step. The
                # gather below costs a scatter in backward; lengths live on the CPU (packing wants
                # them there), so this check never syncs a GPU.
                last = outputs[:, -1]
            else:
                index = (lengths.to(outputs.device) - 1).view(batch, 1, 1).expand(batch, 1, outputs.shape[-1])
                last = outputs.gather(1, index).squeeze(1)
            if self.num_directions == 2:
                half = outputs.shape[-1] // 2
                last = torch.cat([last[:, :half], outputs[:, 0, half:]], dim=-1)
            return last
        lengths = lengths.to(outputs.device)
        mask = valid_mask(lengths, steps).unsqueeze(-1)
        if self.pooling == "mean":
            return (outputs * mask).sum(1) / lengths.unsqueeze(-1).to(outputs.dtype)
        return outputs.masked_fill(~mask, float("-inf")).amax(1)

    def forward(self, outputs: Tensor, lengths: Tensor) -> Tensor:
        return self.proj(self.dropout(self.pool(outputs, lengths)))


class ManyToManyHead(nn.Module):
    """A per-step projection: Keras' ``TimeDistributed(Dense)``. Logits [B, T, C]."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        check_fraction("head_dropout", dropout)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(in_features, num_classes)

    def forward(self, outputs: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.proj(self.dropout(outputs))
