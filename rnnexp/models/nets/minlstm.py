"""minLSTM (Feng, Tung, Ahmed, Bengio and Hajimirsadeghi 2024, "Were RNNs All We Needed?").

The LSTM without the state in its gates and without its output gate, with the paper's
normalised (length-independent) forget and input gates::

    f_t = sigmoid(W_f x_t + b_f)     i_t = sigmoid(W_i x_t + b_i)     h~_t = W_h x_t + b_h
    f'_t = f_t / (f_t + i_t)         i'_t = i_t / (f_t + i_t)
    h_t = f'_t * h_{t-1} + i'_t * h~_t          (a_t = f'_t, b_t = i'_t * h~_t)

The candidate is linear, as in the paper's sequential mode (see :mod:`rnnexp.models.nets.mingru`
for why not its log-space ``g``). ``forget_bias`` initialises ``b_f`` (``model.forget_bias``).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnexp.models.nets.linear_recurrence import RealStateLayer, widen


class MinLSTMLayer(RealStateLayer):
    """One direction of one layer: ``coefficients(x [T, B, F]) -> (a, b)`` of ``h_t = a_t h_{t-1} + b_t``."""

    def __init__(self, input_size: int, hidden_size: int, forget_bias: Optional[float] = None) -> None:
        super().__init__()
        self.hidden_size = self.state_size = hidden_size
        self.proj = nn.Linear(input_size, 3 * hidden_size)  # [f | i | h~]
        if forget_bias is not None:
            with torch.no_grad():
                self.proj.bias[:hidden_size].fill_(forget_bias)

    def coefficients(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        forget, inp, candidate = widen(self.proj(x)).chunk(3, dim=-1)
        # f / (f + i) = sigmoid(log f - log i): no 0 / 0 where both gates underflow.
        a = torch.sigmoid(F.logsigmoid(forget) - F.logsigmoid(inp))
        return a, (1 - a) * candidate  # i' = 1 - f'
