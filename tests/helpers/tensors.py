"""Tensor helpers several model tests share."""

from __future__ import annotations

import torch


def noisy_padding(x, lengths):
    """``x`` with large random values past each row's length: they must change nothing."""
    noisy = x.clone()
    for b, n in enumerate(lengths.tolist()):
        noisy[b, n:] = torch.randn_like(noisy[b, n:]) * 100
    return noisy
