"""Turn a batch's inputs into the [B, T, F] float features a backbone reads."""

from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

from rnnexp.errors import ConfigError, check_choice, check_fraction, check_positive_int

ENCODERS = ("auto", "onehot", "embedding", "features")
# Which encoders can read which inputs (rnnexp.batch.INPUT_KINDS).
READS = {"onehot": "tokens", "embedding": "tokens", "features": "features"}


def resolve_encoder(kind: str, input_kind: Optional[str], embedding_dim: Optional[int], input_size: int = 0) -> str:
    """The encoder to build: ``auto`` follows the data (token ids: ``embedding`` when
    ``embedding_dim`` is set, else ``onehot``; float features: ``features``; token ids when
    ``input_kind`` is None, as for a model built by hand without a data spec). An explicit
    encoder that cannot read the data's inputs is a :class:`ConfigError` naming both."""
    check_choice("encoder", kind, ENCODERS)
    if kind == "auto":
        if input_kind == "features":
            return "features"
        return "embedding" if embedding_dim is not None else "onehot"
    if input_kind is not None and READS[kind] != input_kind:
        what = f"float features ({input_size} per step)" if input_kind == "features" else f"token ids ({input_size} tokens)"
        fits = "features" if input_kind == "features" else "onehot or embedding"
        raise ConfigError("encoder", kind, f"the data feeds {what}, which {kind} cannot read; set it to {fits} (or auto)")
    return kind


class InputEncoder(nn.Module):
    """``onehot`` (the seeds' one-hot characters), ``embedding`` (token ids -> dense vectors)
    or ``features`` (inputs already are [B, T, F] floats, as MNIST rows); ``auto`` picks one
    from ``input_kind`` (see :func:`resolve_encoder`). ``embedding_dropout`` drops whole rows of the
    embedding matrix in training (AWD-LSTM): every occurrence of a dropped token in the batch reads
    zeros, the kept rows are scaled by ``1 / (1 - p)``."""

    def __init__(
        self, kind: str, input_size: int, embedding_dim: int | None = None, input_kind: Optional[str] = None,
        embedding_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        kind = resolve_encoder(kind, input_kind, embedding_dim, input_size)
        check_positive_int("input_size", input_size)
        self.kind, self.input_size = kind, input_size
        self.embedding = None
        if kind == "embedding":
            if embedding_dim is None:
                raise ConfigError("embedding_dim", embedding_dim, "set it when encoder=embedding")
            check_positive_int("embedding_dim", embedding_dim)
            self.embedding = nn.Embedding(input_size, embedding_dim, padding_idx=0)
        check_fraction("embedding_dropout", embedding_dropout)
        if embedding_dropout and kind != "embedding":
            raise ConfigError("embedding_dropout", embedding_dropout,
                              f"drops rows of an embedding: needs encoder=embedding (it is {kind}), e.g. embedding_dim=64")
        self.embedding_dropout = embedding_dropout
        self.output_size = embedding_dim if kind == "embedding" else input_size

    def forward(self, inputs: Tensor) -> Tensor:
        if self.kind == "onehot":
            return F.one_hot(inputs, self.input_size).float()
        if self.kind == "embedding":
            if not self.training or not self.embedding_dropout:
                return self.embedding(inputs)
            weight = self.embedding.weight
            rows = F.dropout(weight.new_ones(weight.shape[0], 1), self.embedding_dropout, True)  # one mask per batch
            return F.embedding(inputs, weight * rows, self.embedding.padding_idx)
        return inputs.float() if inputs.dim() == 3 else inputs.float().unsqueeze(-1)
