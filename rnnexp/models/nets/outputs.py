"""What the networks' one ``forward`` returns: a pair, as s4's ``forward(x, state) -> (x, state)``.

``outputs, state = backbone(x, lengths, state)`` and ``logits, state = net(inputs)`` read the
same everywhere. What a regulariser needs beyond the pair rides along as a named attribute that
unpacking does not see, so no module needs a second entry point (``run``) to hand it out and no
caller unpacks more than it reads.
"""

from __future__ import annotations

from typing import Dict, List, NamedTuple

from torch import Tensor


class _BackbonePair(NamedTuple):
    outputs: Tensor
    state: List


class BackboneOutput(_BackbonePair):
    """``(outputs, state)``; ``.undropped``: the last layer's outputs before their dropout, what
    temporal activation regularisation (TAR) penalises (the outputs themselves without dropout)."""

    undropped: Tensor

    def __new__(cls, outputs: Tensor, state: List, undropped: Tensor) -> "BackboneOutput":
        self = super().__new__(cls, outputs, state)
        self.undropped = undropped  # a NamedTuple subclass without __slots__ keeps a __dict__
        return self


class _SequencePair(NamedTuple):
    logits: Tensor
    state: List


class SequenceOutput(_SequencePair):
    """``(logits, state)``; ``.penalties``: ``{"ar": ..., "tar": ...}``, the activation penalties set
    on the model, in training only (``{}`` in eval mode or when neither coefficient is set)."""

    penalties: Dict[str, Tensor]

    def __new__(cls, logits: Tensor, state: List, penalties: Dict[str, Tensor]) -> "SequenceOutput":
        self = super().__new__(cls, logits, state)
        self.penalties = penalties
        return self
