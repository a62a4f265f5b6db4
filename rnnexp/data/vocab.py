"""A token <-> index mapping with index 0 reserved for padding (and, optionally, an unknown token)."""

from __future__ import annotations

from collections import Counter
from typing import Iterable, List, Optional, Sequence

import torch

PAD = "<pad>"
# Rare or unseen tokens map here when the vocabulary has it; a saved token list that
# contains it therefore keeps the mapping (generation uses it for unseen prime characters).
UNK = "<unk>"


class Vocab:
    def __init__(self, tokens: Sequence[str]) -> None:
        if not tokens or tokens[0] != PAD:
            tokens = [PAD, *tokens]
        self.tokens: List[str] = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ValueError("vocabulary tokens must be unique")
        self.unk_index: Optional[int] = self.index.get(UNK)

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]], min_count: int = 1, unk: bool = False) -> "Vocab":
        """Sorted, so the same data always gives the same indices.

        Tokens seen fewer than ``min_count`` times are left out; with ``unk`` (implied when
        something is left out) they and any token unseen here map to :data:`UNK` at index 1.
        """
        counts = Counter(t for seq in sequences for t in seq)
        kept = sorted(t for t, c in counts.items() if c >= min_count and t not in (PAD, UNK))
        if unk or len(kept) < len(counts):
            kept = [UNK, *kept]
        return cls(kept)

    def __len__(self) -> int:
        return len(self.tokens)

    def missing(self, seq: Iterable[str]) -> List[str]:
        """Tokens of ``seq`` that have no index of their own, in order of first appearance."""
        return list(dict.fromkeys(t for t in seq if t not in self.index))

    def ids(self, seq: Sequence[str]) -> List[int]:
        if self.unk_index is None:
            missing = self.missing(seq)
            if missing:
                raise ValueError(f"not in the vocabulary: {', '.join(map(repr, missing))}")
            return [self.index[t] for t in seq]
        get, unk = self.index.get, self.unk_index
        return [get(t, unk) for t in seq]

    def encode(self, seq: Sequence[str]) -> torch.Tensor:
        return torch.tensor(self.ids(seq), dtype=torch.int64)

    def decode(self, ids: Iterable[int], sep: str = "") -> str:
        return sep.join(self.tokens[int(i)] for i in ids)
