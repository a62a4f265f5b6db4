"""Activation regularisation (AR) and temporal activation regularisation (TAR), Merity et al. 2017.

AR, ``ar * mean(m * h)^2`` on the last layer's *dropped* outputs, keeps activations small; TAR,
``tar * mean((h_t - h_{t-1})^2)`` on the same outputs *before* dropout, keeps the hidden state
from jumping between steps. The AWD-LSTM code averages over every position of its unpadded
batches; here batches may be padded, so both means run over valid steps only (``t < length``;
a TAR pair needs both of its steps valid), times the features. A batch is one window of a
stream: its first step has no predecessor inside the window, so TAR never differences across
window boundaries (the carried state is detached there anyway).
"""

from __future__ import annotations

from typing import Dict

import torch
from torch import Tensor


def valid_steps(lengths: Tensor, steps: int, device: torch.device) -> Tensor:
    """[B, T] bool: ``t < lengths[b]``."""
    return torch.arange(steps, device=device)[None, :] < lengths.to(device)[:, None]


def _masked_mean_square(values: Tensor, valid: Tensor) -> Tensor:
    weights = valid.to(values.dtype)[..., None]
    count = weights.sum() * values.shape[-1]
    return (values.square() * weights).sum() / count.clamp_min(1.0)


def activation_regularisation(outputs: Tensor, lengths: Tensor) -> Tensor:
    """mean of ``outputs^2`` [B, T, F] over the valid steps and the features (fp32)."""
    outputs = outputs.float()
    return _masked_mean_square(outputs, valid_steps(lengths, outputs.shape[1], outputs.device))


def temporal_activation_regularisation(outputs: Tensor, lengths: Tensor) -> Tensor:
    """mean of ``(h_t - h_{t-1})^2`` over ``1 <= t < lengths[b]`` and the features (fp32); 0
    when no row has two steps."""
    outputs = outputs.float()
    valid = valid_steps(lengths, outputs.shape[1], outputs.device)[:, 1:]
    return _masked_mean_square(outputs[:, 1:] - outputs[:, :-1], valid)


def activation_penalties(dropped: Tensor, undropped: Tensor, lengths: Tensor, ar: float, tar: float) -> Dict[str, Tensor]:
    """``{"ar": ar * AR(dropped), "tar": tar * TAR(undropped)}``, each only when its coefficient is set."""
    penalties = {}
    if ar:
        penalties["ar"] = ar * activation_regularisation(dropped, lengths)
    if tar:
        penalties["tar"] = tar * temporal_activation_regularisation(undropped, lengths)
    return penalties
