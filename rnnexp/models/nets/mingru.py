"""minGRU (Feng, Tung, Ahmed, Bengio and Hajimirsadeghi 2024, "Were RNNs All We Needed?").

The GRU without the state in its gates, so the recurrence is elementwise and linear in ``h``::

    z_t = sigmoid(W_z x_t + b_z)        h~_t = W_h x_t + b_h
    h_t = (1 - z_t) * h_{t-1} + z_t * h~_t       (a_t = 1 - z_t, b_t = z_t * h~_t)

The candidate is the paper's linear ``h~_t = Linear(x_t)`` (its sequential-mode definition).
Its log-space variant ``g(x) = x + 0.5 if x >= 0 else sigmoid(x)`` exists only to keep
``h~`` positive for the log-space scan (Heinsen 2023); the scans here
(:mod:`rnnexp.models.nets.linear_recurrence`) take any sign, so the plain linear candidate
is kept. The multi-layer, bidirectional, variable-length module is
:class:`rnnexp.models.nets.elementwise_rnn.ElementwiseRNN`.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor, nn

from rnnexp.models.nets.linear_recurrence import RealStateLayer, widen


class MinGRULayer(RealStateLayer):
    """One direction of one layer: ``coefficients(x [T, B, F]) -> (a, b)`` of ``h_t = a_t h_{t-1} + b_t``."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = self.state_size = hidden_size
        self.proj = nn.Linear(input_size, 2 * hidden_size)  # [z | h~]

    def coefficients(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        gate, candidate = widen(self.proj(x)).chunk(2, dim=-1)
        z = torch.sigmoid(gate)
        return 1 - z, z * candidate
