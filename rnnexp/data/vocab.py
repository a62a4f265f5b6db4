"""A token <-> index mapping with index 0 reserved for padding."""

from __future__ import annotations

from typing import Iterable, List, Sequence

import torch

PAD = "<pad>"


class Vocab:
    def __init__(self, tokens: Sequence[str]) -> None:
        if not tokens or tokens[0] != PAD:
            tokens = [PAD, *tokens]
        self.tokens: List[str] = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ValueError("vocabulary tokens must be unique")

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]]) -> "Vocab":
        """Sorted, so the same data always gives the same indices."""
        return cls(sorted({t for seq in sequences for t in seq}))

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, seq: Sequence[str]) -> torch.Tensor:
        return torch.tensor([self.index[t] for t in seq], dtype=torch.int64)

    def decode(self, ids: Iterable[int], sep: str = "") -> str:
        return sep.join(self.tokens[int(i)] for i in ids)
