"""Jordan's simple recurrent network (CS20's second SRN), with ``nn.RNN``'s module contract.

Elman's network (``cell=rnn``) carries its hidden layer: ``h_t = σ_h(W_h x_t + U_h h_{t-1} + b_h)``.
Jordan's carries its *output* instead:

    h_t = σ_h(W_h x_t + U_h y_{t-1} + b_h)
    y_t = σ_y(W_y h_t + b_y)

so a layer's outputs and its state are ``y`` (width ``hidden_size``), and ``h`` never leaves
the step. torch has no kernel for it, so it runs on :class:`ScriptedRNN`'s machinery
(batch-first, multi-layer, bidirectional, packed or padded input, state held past each row's
length, outputs zero there) with a TorchScript time loop of its own. Parameter names follow
torch's (``weight_ih`` = W_h, ``weight_hh`` = U_h, ``bias_ih + bias_hh`` = b_h) plus
``weight_hy`` = W_y and ``bias_hy`` = b_y, so the backbone's initialisations and the
per-step diagnostics treat it like any cell. ``nonlinearity`` is both σ_h and σ_y.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnexp.models.nets.scripted_rnn import ScriptedRNN, _activate


def _jordan_recurrence(
    projected: Tensor,
    y: Tensor,
    weight_hh: Tensor,
    bias_hh: Tensor,
    weight_hy: Tensor,
    bias_hy: Tensor,
    valid: Tensor,
    activation: str,
) -> Tuple[Tensor, Tensor]:
    """``projected`` [T, B, H] is ``W_h x_t + b_ih`` for all steps; ``y`` [B, H] the carried output."""
    outputs: List[Tensor] = []
    for t in range(projected.shape[0]):
        h = _activate(projected[t] + F.linear(y, weight_hh, bias_hh), activation)
        new = _activate(F.linear(h, weight_hy, bias_hy), activation)
        y = torch.where(valid[t], new, y)
        outputs.append(new.masked_fill(~valid[t], 0.0))
    return torch.stack(outputs), y


_SCRIPTED: Optional[Callable[..., Tuple[Tensor, Tensor]]] = None


def _scripted() -> Callable[..., Tuple[Tensor, Tensor]]:
    global _SCRIPTED
    if _SCRIPTED is None:
        with warnings.catch_warnings():  # torch.jit.script is deprecated in torch >= 2.10, still works
            warnings.simplefilter("ignore", DeprecationWarning)
            _SCRIPTED = torch.jit.script(_jordan_recurrence)
    return _SCRIPTED


class JordanRNN(ScriptedRNN):
    """``nn.RNN(batch_first=True)``'s constructor and ``forward(input, hx) -> (output, y_n)``
    for the Jordan network; ``hx`` / ``y_n`` [L*D, B, H] are the carried outputs."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 batch_first: bool = True, dropout: float = 0.0, bidirectional: bool = False) -> None:
        super().__init__(input_size, hidden_size, num_layers, nonlinearity, batch_first, dropout, bidirectional)
        for layer in range(num_layers):
            for suffix in ("", "_reverse")[: 2 if bidirectional else 1]:
                self.register_parameter(f"weight_hy_l{layer}{suffix}", nn.Parameter(torch.empty(hidden_size, hidden_size)))
                self.register_parameter(f"bias_hy_l{layer}{suffix}", nn.Parameter(torch.empty(hidden_size)))
        bound = 1.0 / math.sqrt(hidden_size)
        for name, param in self.named_parameters():
            if "_hy_" in name:
                nn.init.uniform_(param, -bound, bound)

    def _recur(self, name: str, projected: Tensor, y: Tensor, valid: Tensor) -> Tuple[Tensor, Tensor]:
        weights = [getattr(self, f"{w}{name}") for w in ("weight_hh", "bias_hh", "weight_hy", "bias_hy")]
        return _scripted()(projected, y, *weights, valid, self.nonlinearity)
