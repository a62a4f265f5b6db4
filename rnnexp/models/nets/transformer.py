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
    a recurrent layer's ``h`` so :mod:`rnnexp.sampling` stacks it the same way.

    Given a state (generation, and the windows of validation, test and dynamic evaluation, which
    carry it from window to window as the recurrent models carry theirs), the new tokens are
    scored with context: a sliding window (no key/value cache) reads them in pieces of
    ``eval_stride`` tokens, each piece after the ``context - len(piece)`` tokens before it, and
    only the piece's logits are kept. So every token sees at least ``context - eval_stride``
    preceding tokens where the text has them, and at most ``context - 1``; ``eval_stride=1``
    gives each one its full ``context - 1``, at one pass per token. Inputs longer than ``context``
    without a state read their first ``context`` tokens from scratch and the rest the same way.
    Without a state and within the context (training), one pass from position 0.
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
        eval_stride: Optional[int] = None,
    ) -> None:
        super().__init__()
        eval_stride = max(context // 2, 1) if eval_stride is None else eval_stride
        for key, value in (("d_model", d_model), ("num_heads", num_heads), ("num_layers", num_layers),
                           ("ff_size", ff_size), ("context", context), ("vocab_size", vocab_size),
                           ("eval_stride", eval_stride)):
            check_positive_int(key, value)
        if eval_stride > context:
            raise ConfigError("eval_stride", eval_stride, f"must be at most context={context} (the tokens scored per pass)")
        if d_model % num_heads:
            raise ConfigError("num_heads", num_heads, f"must divide d_model={d_model}")
        check_fraction("dropout", dropout)
        check_fraction("attention_dropout", attention_dropout)
        check_choice("positions", positions, POSITIONS)
        self.d_model, self.context, self.positions, self.eval_stride = d_model, context, positions, eval_stride
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

    def no_weight_decay(self) -> Tuple[str, ...]:
        """Every parameter but the weight matrices (norms, biases) and the embedding and positions,
        as in GPT-2 and minGPT; ``named_parameters`` names a tied head weight once, as the embedding.
        Read by ``Optimization.optimizer_parameters`` (timm's hook of the same name)."""
        return tuple(name for name, p in self.named_parameters() if p.dim() != 2 or name in ("embedding.weight", "position"))

    def forward(self, inputs: Tensor, lengths: Optional[Tensor] = None,
                state: Optional[List[Tensor]] = None) -> Tuple[Tensor, List[Tensor]]:
        steps = inputs.shape[1]
        if state is None and steps <= self.context:
            logits = self._read(inputs)
            tokens = inputs
        else:
            history = inputs[:, :0] if state is None else state[0][0].to(inputs.device)
            tokens = torch.cat([history, inputs], dim=1)
            start, pieces = history.shape[1], []
            if start == 0:  # nothing before: the first `context` tokens from scratch
                pieces.append(self._read(inputs[:, : self.context]))
                start = pieces[0].shape[1]
            while start < tokens.shape[1]:
                end = min(start + self.eval_stride, tokens.shape[1])
                window = tokens[:, max(end - self.context, 0) : end]
                pieces.append(self._read(window)[:, -(end - start):])
                start = end
            logits = torch.cat(pieces, 1)
        history = tokens[:, max(tokens.shape[1] - (self.context - 1), 0):]
        return logits, [history.unsqueeze(0)]

    def _read(self, tokens: Tensor) -> Tensor:
        """Logits [B, L, C] of L <= context tokens, step t attending to steps <= t."""
        length = tokens.shape[1]
        x = self.embedding(tokens) + self.position[:length].to(tokens.device)
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=tokens.device, dtype=x.dtype)
        return self.head(self.layers(self.dropout(x), mask=mask, is_causal=True))
