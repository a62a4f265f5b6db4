"""A causal, pre-norm, decoder-only transformer over token ids: the baseline the recurrent language
models are compared with at equal parameters and CPU time.

Built from torch's own ``nn.TransformerEncoderLayer(norm_first=True, batch_first=True)`` under a
causal mask (``is_causal=True``, so attention runs as one ``scaled_dot_product_attention`` call
with its causal kernel). Only the embedding, the positions and the tied head are written here.
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnexp.batch import PAD_INDEX
from rnnexp.errors import ConfigError, check_choice, check_fraction, check_positive_int

POSITIONS = ("learned", "sinusoidal")
INIT_STD = 0.02


def sinusoidal_positions(context: int, d_model: int) -> Tensor:
    """[context, d_model]: sin at even, cos at odd features, wavelengths 2*pi .. 10000*2*pi (Vaswani et al. 2017)."""
    position = torch.arange(context, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(context, d_model)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : d_model // 2]
    return table


class TransformerLMNet(nn.Module):
    """``forward(inputs [B, T], lengths, state) -> (logits [B, T, C], state)``, like :class:`SequenceModel`.

    Step t attends to steps <= t only, so right padding (the data's only kind) never reaches a
    valid step and ``lengths`` is not needed to compute it; the loss skips padded targets
    (``IGNORE_INDEX``), as for the recurrent models. ``state`` exists for generation only:
    ``[history [1, B, H]]``, the last ``context - 1`` token ids read, batch in dimension 1 like
    a recurrent layer's ``h`` so :mod:`rnnexp.sampling` stacks it the same way. Each call re-reads
    history + inputs from position 0 (a sliding window, no key/value cache: generation is short).
    Inputs longer than ``context`` without a state are read in consecutive windows of ``context``.
    """

    windowed = True  # rnnexp.sampling: states of different lengths cannot be stacked

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        d_model: int = 128,
        num_heads: int = 4,
        num_layers: int = 2,
        ff_size: int = 512,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        positions: str = "learned",
        context: int = 128,
        tie_weights: bool = True,
    ) -> None:
        super().__init__()
        for key, value in (("d_model", d_model), ("num_heads", num_heads), ("num_layers", num_layers),
                           ("ff_size", ff_size), ("context", context), ("vocab_size", vocab_size)):
            check_positive_int(key, value)
        if d_model % num_heads:
            raise ConfigError("num_heads", num_heads, f"must divide d_model={d_model}")
        check_fraction("dropout", dropout)
        check_fraction("attention_dropout", attention_dropout)
        check_choice("positions", positions, POSITIONS)
        self.d_model, self.context, self.positions = d_model, context, positions
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=PAD_INDEX)
        # GPT-2's initial scale: token and position vectors small next to what the blocks add, so a
        # tied head does not start out predicting the input token itself (initial loss ~ log V).
        nn.init.normal_(self.embedding.weight, std=INIT_STD)
        if positions == "learned":
            self.position = nn.Parameter(torch.randn(context, d_model) * INIT_STD)
        else:  # the fixed table at the same scale (its components have std 1/sqrt(2)); not saved, derived from the sizes
            self.register_buffer("position", sinusoidal_positions(context, d_model) * INIT_STD * math.sqrt(2), persistent=False)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(d_model, num_heads, ff_size, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        # Dropout on the attention weights is its own key: on a CPU any value > 0 sends attention
        # down the unfused path and draws a mask per [B, heads, T, T] (docs/tweets.md).
        layer.self_attn.dropout = attention_dropout
        # Pre-norm layers leave the residual stream unnormalised: one LayerNorm before the head.
        self.layers = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)
        self.head = nn.Linear(d_model, num_classes)
        if tie_weights:
            if num_classes != vocab_size:
                raise ConfigError("tie_weights", True, f"needs as many classes ({num_classes}) as input tokens ({vocab_size})")
            self.head.weight = self.embedding.weight

    def forward(self, inputs: Tensor, lengths: Optional[Tensor] = None,
                state: Optional[List[Tensor]] = None) -> Tuple[Tensor, List[Tensor]]:
        steps = inputs.shape[1]
        tokens = inputs if state is None else torch.cat([state[0][0].to(inputs.device), inputs], dim=1)
        if state is None and steps > self.context:
            # Longer than the context (whole tweets, a long prime): consecutive windows of
            # `context` steps, each read on its own from position 0, as stream windows are.
            batch, pad = inputs.shape[0], -steps % self.context
            windows = F.pad(inputs, (0, pad), value=PAD_INDEX).reshape(-1, self.context)
            logits = self._read(windows).reshape(batch, steps + pad, -1)[:, :steps]
        else:
            tokens = tokens[:, -self.context:]
            logits = self._read(tokens)[:, -steps:]
        history = tokens[:, max(tokens.shape[1] - (self.context - 1), 0):]
        return logits, [history.unsqueeze(0)]

    def _read(self, tokens: Tensor) -> Tensor:
        """Logits [B, L, C] of L <= context tokens, step t attending to steps <= t."""
        length = tokens.shape[1]
        x = self.embedding(tokens) + self.position[:length].to(tokens.device)
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=tokens.device, dtype=x.dtype)
        return self.head(self.layers(self.dropout(x), mask=mask, is_causal=True))
