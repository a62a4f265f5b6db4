"""Turn a batch's inputs into the [B, T, F] float features a backbone reads."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from rnnexp.errors import ConfigError, check_choice, check_positive_int

ENCODERS = ("onehot", "embedding", "features")


class InputEncoder(nn.Module):
    """``onehot`` (the seeds' one-hot characters), ``embedding`` (token ids -> dense vectors)
    or ``features`` (inputs already are [B, T, F] floats, as MNIST rows)."""

    def __init__(self, kind: str, input_size: int, embedding_dim: int | None = None) -> None:
        super().__init__()
        check_choice("encoder", kind, ENCODERS)
        check_positive_int("input_size", input_size)
        self.kind, self.input_size = kind, input_size
        self.embedding = None
        if kind == "embedding":
            if embedding_dim is None:
                raise ConfigError("embedding_dim", embedding_dim, "set it when encoder=embedding")
            check_positive_int("embedding_dim", embedding_dim)
            self.embedding = nn.Embedding(input_size, embedding_dim, padding_idx=0)
        self.output_size = embedding_dim if kind == "embedding" else input_size

    def forward(self, inputs: Tensor) -> Tensor:
        if self.kind == "onehot":
            return F.one_hot(inputs, self.input_size).float()
        if self.kind == "embedding":
            return self.embedding(inputs)
        return inputs.float() if inputs.dim() == 3 else inputs.float().unsqueeze(-1)
