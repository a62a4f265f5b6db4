"""The plain ``nn.Module``: input encoder -> recurrent backbone -> head.

Kept apart from the LightningModules (as in Lightning's ``demos/lstm.py``) so it can
be used, scripted or benchmarked without Lightning.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from rnnexp.models.backbone import LayerState, RecurrentBackbone
from rnnexp.models.encoders import InputEncoder
from rnnexp.models.heads import ManyToManyHead, ManyToOneHead


class SequenceModel(nn.Module):
    """``forward(inputs, lengths, state) -> (logits, final_state)``.

    ``many_to_one=True`` gives logits [B, C] from a pooled summary of each row;
    otherwise logits [B, T, C], one per step.
    """

    def __init__(
        self,
        input_size: int,
        num_classes: int,
        many_to_one: bool,
        encoder: str = "onehot",
        embedding_dim: Optional[int] = None,
        pooling: str = "last",
        head_dropout: float = 0.0,
        **backbone: Any,
    ) -> None:
        super().__init__()
        self.encoder = InputEncoder(encoder, input_size, embedding_dim)
        self.backbone = RecurrentBackbone(self.encoder.output_size, **backbone)
        if many_to_one:
            self.head: nn.Module = ManyToOneHead(
                self.backbone.output_size, num_classes, pooling, self.backbone.num_directions, head_dropout
            )
        else:
            self.head = ManyToManyHead(self.backbone.output_size, num_classes, head_dropout)

    def forward(
        self, inputs: Tensor, lengths: Optional[Tensor] = None, state: Optional[Sequence[LayerState]] = None
    ) -> Tuple[Tensor, list]:
        outputs, final_state = self.backbone(self.encoder(inputs), lengths, state)
        if lengths is None:
            lengths = torch.full((inputs.shape[0],), inputs.shape[1], dtype=torch.long)
        return self.head(outputs, lengths), final_state
