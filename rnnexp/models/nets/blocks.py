"""Pre-norm residual blocks around any recurrent layer (``model.block=residual``).

As the minGRU and LRU papers (and S4/Mamba-style sequence models) stack their layers: each block
is ``h = h + dropout(layer(norm(h)))`` then ``h = h + dropout(mlp(norm(h)))``, with a gated MLP
(GLU with GELU, ``mlp_ratio`` x the width) as the position-wise nonlinearity, and one final norm
after the last block. Used by :class:`rnnexp.models.nets.backbone.RecurrentBackbone` for every
cell, so "the LSTM in the same blocks" is ``cell=lstm model.block=residual``.
"""

from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

from rnnexp.errors import ConfigError, check_choice, check_number

BLOCKS = ("plain", "residual")
NORMS = ("layer", "rms")


def make_norm(kind: str, width: int) -> nn.Module:
    check_choice("norm", kind, NORMS)
    return nn.LayerNorm(width) if kind == "layer" else nn.RMSNorm(width)


class GatedMLP(nn.Module):
    """``W_o (gelu(W_u x) * W_v x)``: the GLU variant of Shazeer 2020 (GEGLU)."""

    def __init__(self, width: int, ratio: float) -> None:
        super().__init__()
        inner = max(1, int(round(ratio * width)))
        self.up = nn.Linear(width, 2 * inner)
        self.down = nn.Linear(inner, width)

    def forward(self, x: Tensor) -> Tensor:
        u, v = self.up(x).chunk(2, dim=-1)
        return self.down(F.gelu(u) * v)


class ResidualBlock(nn.Module):
    """The norms and the MLP of one block; the recurrent layer itself stays in the backbone's
    ``blocks`` (so weight drop, autocast and state handling are the plain path's)."""

    def __init__(self, width: int, norm: str, mlp_ratio: float) -> None:
        super().__init__()
        self.norm = make_norm(norm, width)
        self.mlp: Optional[GatedMLP] = None
        self.mlp_norm: Optional[nn.Module] = None
        if mlp_ratio > 0:
            self.mlp_norm = make_norm(norm, width)
            self.mlp = GatedMLP(width, mlp_ratio)


def check_block_options(block: str, norm: Optional[str], mlp_ratio: Optional[float]) -> None:
    check_choice("block", block, BLOCKS)
    if block == "plain":
        for key, value in (("norm", norm), ("mlp_ratio", mlp_ratio)):
            if value is not None:
                raise ConfigError(key, value, "applies to block=residual only; set it to null or set block=residual")
        return
    if norm is not None:
        check_choice("norm", norm, NORMS)
    if mlp_ratio is not None:
        check_number("mlp_ratio", mlp_ratio, 0, hint=" (0: no MLP sublayer)")
