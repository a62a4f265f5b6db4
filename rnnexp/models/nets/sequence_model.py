"""The plain ``nn.Module``: input encoder -> recurrent backbone -> head.

Kept apart from the LightningModules (as in Lightning's ``demos/lstm.py``) so it can
be used, scripted or benchmarked without Lightning. Its signature and the backbone's are
the only lists of network settings: the LightningModules pass their network keywords
through unchanged.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

from rnnexp.errors import ConfigError, check_number
from rnnexp.models.nets.activation_penalty import activation_penalties
from rnnexp.models.nets.backbone import RecurrentBackbone
from rnnexp.models.nets.layer_state import LayerState
from rnnexp.models.nets.encoders import InputEncoder
from rnnexp.models.nets.heads import ManyToManyHead, ManyToOneHead
from rnnexp.models.nets.outputs import SequenceOutput

EMBEDDING_INIT_STD = 0.02  # GPT-2's; see SequenceModel._tie


class SequenceModel(nn.Module):
    """``forward(inputs, lengths, state) -> (logits, final_state)``.

    ``many_to_one=True`` gives logits [B, C] from a pooled summary of each row (``pooling``);
    otherwise logits [B, T, C], one per step. ``input_kind`` (``tokens`` | ``features`` | None
    for unknown) is what the data feeds; ``encoder="auto"`` follows it. ``tie_weights`` shares
    the embedding matrix with the output projection (Press & Wolf 2017; Inan et al. 2017): it
    needs an embedding of the last layer's width and a per-step head. ``embedding_dropout``,
    ``ar`` and ``tar`` are AWD-LSTM's embedding row dropout and (temporal) activation
    regularisation: :meth:`run` returns the penalties a training loss adds. Every other keyword is
    the backbone's (:class:`RecurrentBackbone`).
    """

    def __init__(
        self,
        input_size: int,
        num_classes: int,
        many_to_one: bool,
        input_kind: Optional[str] = "tokens",
        encoder: str = "auto",
        embedding_dim: Optional[int] = None,
        pooling: str = "last",
        head_dropout: float = 0.0,
        tie_weights: bool = False,
        embedding_dropout: float = 0.0,
        ar: float = 0.0,
        tar: float = 0.0,
        **backbone: Any,
    ) -> None:
        super().__init__()
        for key, value in (("ar", ar), ("tar", tar)):
            check_number(key, value, 0, hint=" (0: off)")
        self.ar, self.tar = float(ar), float(tar)
        self.encoder = InputEncoder(encoder, input_size, embedding_dim, input_kind, embedding_dropout)
        self.backbone = RecurrentBackbone(self.encoder.output_size, **backbone)
        if many_to_one:
            self.head: nn.Module = ManyToOneHead(
                self.backbone.output_size, num_classes, pooling, self.backbone.num_directions, head_dropout
            )
        else:
            self.head = ManyToManyHead(self.backbone.output_size, num_classes, head_dropout)
        if tie_weights:
            self._tie(many_to_one)

    def _tie(self, many_to_one: bool) -> None:
        width = self.backbone.output_size
        if many_to_one:
            raise ConfigError("tie_weights", True, "needs a per-step output over the input tokens (model=lm or tagger)")
        if self.encoder.kind != "embedding":
            raise ConfigError("tie_weights", True, f"needs encoder=embedding (it is {self.encoder.kind})")
        if self.encoder.output_size != width or self.head.proj.weight.shape != self.encoder.embedding.weight.shape:
            raise ConfigError(
                "tie_weights", True,
                f"needs embedding_dim ({self.encoder.output_size}) equal to the last hidden size ({width}) "
                "and as many classes as input tokens",
            )
        self.head.proj.weight = self.encoder.embedding.weight
        if self.backbone.residual:
            # The residual stream carries the embedding to the tied head: at nn.Embedding's std 1 the
            # head starts out predicting the input token (initial loss 262 nats on random tokens at
            # tweets_mingru's size). GPT-2's scale, as the transformer's (initial loss ~ log V).
            embedding = self.encoder.embedding
            with torch.no_grad():
                embedding.weight.normal_(0.0, EMBEDDING_INIT_STD)
                embedding.weight[embedding.padding_idx].zero_()

    def forward(
        self, inputs: Tensor, lengths: Optional[Tensor] = None, state: Optional[Sequence[LayerState]] = None
    ) -> SequenceOutput:
        """``(logits, final state)``; ``.penalties``: ``{"ar": ..., "tar": ...}``, the terms set, in
        training only ({} else)."""
        out = self.backbone(self.encoder(inputs), lengths, state)
        if lengths is None:
            lengths = torch.full((inputs.shape[0],), inputs.shape[1], dtype=torch.long)
        terms = activation_penalties(out.outputs, out.undropped, lengths, self.ar, self.tar) if self.training else {}
        return SequenceOutput(self.head(out.outputs, lengths), out.state, terms)
