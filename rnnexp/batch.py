"""The batch contract: what a DataModule feeds and what a model reads.

Data and models meet here and nowhere else: ``rnnexp.data`` and ``rnnexp.models`` both import
this module and never each other. A DataModule describes its data with a :class:`DataSpec`;
its loaders yield :class:`Batch` dicts.

``Batch`` keys:

- ``inputs``: token ids ``[B, T]`` (int64, :data:`PAD_INDEX` past each row's length) or float
  features ``[B, T, F]``;
- ``lengths``: ``[B]`` int64 on the CPU, the valid steps of each row (packing needs them there);
- ``targets``: ``[B]`` class ids (one per sequence) or ``[B, T]`` (one per step,
  :data:`IGNORE_INDEX` at padding);
- ``weights`` (optional): ``[B, T]`` float per-step loss weights (TensorFlow's
  ``sequence_loss(weights=...)``); a weight of 0 removes a step from the loss and the metrics;
- ``carry_state`` (optional): True when row ``i`` continues row ``i`` of the previous batch of
  the same stage (contiguous streams, truncated BPTT), so the model keeps its final state.

Source/target pairs (target kind ``sequence``: an output sequence of its own length, as in
translation) add two keys, and ``targets`` becomes the output sequence:

- ``targets``: ``[B, U]`` the output tokens followed by :data:`EOS`, ``IGNORE_INDEX`` past each row;
- ``target_inputs``: ``[B, U]`` the decoder's inputs under teacher forcing, :data:`BOS` followed by
  the output tokens (``targets`` shifted right), :data:`PAD_INDEX` past each row;
- ``target_lengths``: ``[B]`` int64 on the CPU, the valid steps of ``targets`` (EOS included).

Their vocabulary (``DataSpec.vocab``, shared by source and target) holds :data:`BOS` and :data:`EOS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, TypedDict

from torch import Tensor

# Inputs are padded with this token id (index 0 of every vocabulary).
PAD_INDEX = 0
# Targets at padded positions carry this value; torch's cross_entropy and the metrics skip it.
IGNORE_INDEX = -100

# What the inputs are: token ids (a vocabulary of ``input_size``) or ``input_size`` float features per step.
INPUT_KINDS = ("tokens", "features")
# What the targets are: one class per sequence, one class per step, the next token of the input,
# or an output sequence of its own length (source/target pairs).
TARGET_KINDS = ("label", "step", "next_token", "sequence")
DESCRIBE_TARGETS = {
    "label": "one label per sequence",
    "step": "one label per step",
    "next_token": "the next token at every step",
    "sequence": "an output sequence of its own length",
}
# The tokens that start and end an output sequence (target kind "sequence").
BOS, EOS = "<bos>", "<eos>"


class Batch(TypedDict, total=False):
    inputs: Tensor
    lengths: Tensor
    targets: Tensor
    weights: Tensor
    carry_state: bool
    target_inputs: Tensor
    target_lengths: Tensor


@dataclass(frozen=True)
class DataSpec:
    """What a data set feeds a model; the model is built from it.

    ``input_size`` is the vocabulary size for ``tokens`` and the feature width for ``features``;
    ``vocab`` (tokens) is stored in checkpoints so a model can decode on its own.
    """

    input_kind: str
    input_size: int
    target_kind: str
    num_classes: int
    vocab: Optional[List[str]] = field(default=None)

    def __post_init__(self) -> None:
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(f"input_kind must be one of {INPUT_KINDS}, got {self.input_kind!r}")
        if self.target_kind not in TARGET_KINDS:
            raise ValueError(f"target_kind must be one of {TARGET_KINDS}, got {self.target_kind!r}")

    def model_kwargs(self) -> Dict[str, Any]:
        """The plain values a model takes from the data (saved with its hyperparameters)."""
        kwargs: Dict[str, Any] = {
            "input_size": self.input_size,
            "num_classes": self.num_classes,
            "input_kind": self.input_kind,
            "target_kind": self.target_kind,
        }
        if self.vocab is not None:
            kwargs["vocab"] = list(self.vocab)
        return kwargs

    def describe(self) -> str:
        """``token ids (vocabulary of 8)`` or ``float features (28 per step)``, for error messages."""
        if self.input_kind == "tokens":
            return f"token ids (vocabulary of {self.input_size})"
        return f"float features ({self.input_size} per step)"
