"""Global attention over an encoder's outputs, masked over the source padding.

Scores (Luong, Pham and Manning 2015; Bahdanau, Cho and Bengio 2015):

  ``dot``       score(h, s) = h . s                       (needs equal widths)
  ``general``   score(h, s) = h . (W s)
  ``additive``  score(h, s) = v . tanh(W_q h + W_k s)     (Bahdanau's "concat" score)

Padded source steps get a score of -inf, hence exactly zero weight, so the context never
reads padding and a row's result does not depend on how long the other rows are.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor, nn

from rnnexp.errors import ConfigError, check_choice

ATTENTIONS = ("none", "dot", "general", "additive")


class Attention(nn.Module):
    """``forward(query [B, U, Hq], memory [B, S, Hk], mask [B, S] bool, True = real step)``
    -> ``(context [B, U, Hk], weights [B, U, S])``; each row of ``weights`` sums to 1 over its valid steps."""

    def __init__(self, kind: str, query_size: int, memory_size: int) -> None:
        super().__init__()
        check_choice("attention", kind, ATTENTIONS[1:])
        if kind == "dot" and query_size != memory_size:
            raise ConfigError("attention", kind, f"dot scores need the decoder width ({query_size}) to equal the "
                              f"encoder output width ({memory_size}); use attention=general or additive")
        self.kind = kind
        if kind == "general":
            self.key = nn.Linear(memory_size, query_size, bias=False)
        elif kind == "additive":
            self.query = nn.Linear(query_size, query_size, bias=False)
            self.key = nn.Linear(memory_size, query_size)
            self.v = nn.Linear(query_size, 1, bias=False)

    def scores(self, query: Tensor, memory: Tensor) -> Tensor:
        if self.kind == "dot":
            return query @ memory.transpose(1, 2)
        if self.kind == "general":
            return query @ self.key(memory).transpose(1, 2)
        # [B, U, 1, H] + [B, 1, S, H] -> [B, U, S]
        return self.v(torch.tanh(self.query(query).unsqueeze(2) + self.key(memory).unsqueeze(1))).squeeze(-1)

    def forward(self, query: Tensor, memory: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor]:
        scores = self.scores(query, memory).masked_fill(~mask[:, None, :], float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return weights @ memory, weights


def source_mask(lengths: Tensor, steps: int, device: torch.device) -> Tensor:
    """[B, S] True at the first ``lengths[b]`` steps of each row."""
    return torch.arange(steps, device=device)[None, :] < lengths.to(device)[:, None]
