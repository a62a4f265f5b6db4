"""Variational dropout (Gal and Ghahramani 2016): one mask per sequence and tensor, reused at
every step, on padded batches and on ``PackedSequence`` data alike. Used between the layers of
:class:`rnnexp.models.nets.backbone.RecurrentBackbone`, which runs each layer as its own
module for it (the dropout inside torch's fused multi-layer modules draws a new mask per step)."""

from __future__ import annotations

from typing import Dict, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence


class VariationalMasks:
    """One dropout mask per sequence and tensor, reused at every step; drawn on first use."""

    def __init__(self, batch: int, training: bool) -> None:
        self.batch, self.training = batch, training
        self.masks: Dict[Union[str, int], Tensor] = {}
        self._rows: Optional[Tuple[Tensor, Tensor]] = None  # (batch_sizes, rows): every layer packs alike

    def apply(self, data, key: Union[str, int], p: float):
        if not self.training or p == 0:
            return data
        values = data.data if isinstance(data, PackedSequence) else data
        if key not in self.masks:
            keep = values.new_full((self.batch, values.shape[-1]), 1.0 - p)
            self.masks[key] = torch.bernoulli(keep) / (1.0 - p)
        mask = self.masks[key]
        if isinstance(data, PackedSequence):
            if self._rows is None or self._rows[0] is not data.batch_sizes:
                self._rows = (data.batch_sizes, _packed_rows(data).to(mask.device))
            return data._replace(data=values * mask[self._rows[1]])
        return values * mask[:, None, :]


def _packed_rows(packed: PackedSequence) -> Tensor:
    """The batch row (in the caller's order) of every row of ``packed.data``: step t holds the
    first ``batch_sizes[t]`` sequences of the sorted batch, so row i of the data is sorted sequence
    ``i - (rows before step t)``, mapped back through ``sorted_indices``. One gather, no loop over steps."""
    sizes = packed.batch_sizes  # always on the CPU
    order = packed.sorted_indices
    device = order.device if order is not None else packed.data.device
    starts = torch.cumsum(sizes, 0) - sizes
    within = torch.arange(int(sizes.sum()), device=device) - torch.repeat_interleave(starts, sizes).to(device)
    return within if order is None else order[within]
