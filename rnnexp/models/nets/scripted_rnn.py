"""A vanilla RNN layer for the activations torch's fused ``nn.RNN`` lacks (CS20's list:
``elu``, ``softplus``, ``softsign``, ``relu6``, ``sigmoid``).

``nn.RNN`` only knows ``tanh`` and ``relu``. This module is a drop-in for it as the
backbone uses it (``batch_first``, multi-layer, bidirectional, a ``PackedSequence`` or a
padded tensor in, the same parameter names and the same final-state layout), so weights,
initialisation and per-layer diagnostics work unchanged. The time loop runs in a
TorchScript function so it costs one interpreter call per layer and direction rather
than one per step; it is still several times slower than the fused kernel (see
``benchmarks/custom_cell_speed.py``), which is why ``tanh``/``relu`` never come here.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnexp.errors import check_choice

# tanh and relu are here only so the layer can be checked against nn.RNN.
ACTIVATIONS = ("tanh", "relu", "elu", "softplus", "softsign", "relu6", "sigmoid")


def _activate(x: Tensor, activation: str) -> Tensor:
    if activation == "tanh":
        return torch.tanh(x)
    if activation == "relu":
        return F.relu(x)
    if activation == "elu":
        return F.elu(x)
    if activation == "softplus":
        return F.softplus(x)
    if activation == "softsign":
        return F.softsign(x)
    if activation == "relu6":
        return F.relu6(x)
    return torch.sigmoid(x)


def _recurrence(
    projected: Tensor, h: Tensor, weight_hh: Tensor, bias_hh: Tensor, valid: Tensor, activation: str
) -> Tuple[Tensor, Tensor]:
    """``projected`` [T, B, H] is ``x W_ih^T + b_ih`` for all steps at once; ``valid`` [T, B, 1].

    Past a row's length the state is held, so the returned state is the one at each row's
    last valid step, and the output there is zero (``dynamic_rnn``'s contract).
    """
    outputs: List[Tensor] = []
    for t in range(projected.shape[0]):
        new = _activate(projected[t] + F.linear(h, weight_hh, bias_hh), activation)
        h = torch.where(valid[t], new, h)
        outputs.append(new.masked_fill(~valid[t], 0.0))
    return torch.stack(outputs), h


_SCRIPTED: Optional[Callable[..., Tuple[Tensor, Tensor]]] = None


def scripted_recurrence() -> Callable[..., Tuple[Tensor, Tensor]]:
    """The TorchScript-compiled time loop, compiled once on first use."""
    global _SCRIPTED
    if _SCRIPTED is None:
        with warnings.catch_warnings():
            # torch >= 2.10 marks torch.jit.script deprecated; it still compiles and runs,
            # and torch.compile would cost a long first-call compile on every run.
            warnings.simplefilter("ignore", DeprecationWarning)
            _SCRIPTED = torch.jit.script(_recurrence)
    return _SCRIPTED


def reverse_valid(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each row of ``x`` [B, T, ...] within its first ``lengths[b]`` steps; padding stays put.

    Its own inverse, so the backward direction reads reversed inputs and its outputs are
    put back in time order with the same call.
    """
    steps = x.shape[1]
    t = torch.arange(steps, device=x.device)[None, :]
    n = lengths.to(x.device)[:, None]
    index = torch.where(t < n, n - 1 - t, t)
    return x.gather(1, index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x))


class ScriptedRNN(nn.Module):
    """``nn.RNN(batch_first=True)`` with any activation of :data:`ACTIVATIONS`.

    ``forward(input [B, T, F] | PackedSequence, hx [L*D, B, H] | None) -> (output, h_n)``,
    output of the same kind as the input. ``dropout`` acts between layers, as in ``nn.RNN``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        batch_first: bool = True,
        dropout: float = 0.0,
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        check_choice("nonlinearity", nonlinearity, ACTIVATIONS)
        if not batch_first:
            raise ValueError("ScriptedRNN is batch-first only")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.nonlinearity, self.batch_first, self.dropout = nonlinearity, batch_first, dropout
        self.bidirectional = bidirectional
        directions = 2 if bidirectional else 1
        for layer in range(num_layers):
            width = input_size if layer == 0 else directions * hidden_size
            for suffix in ("", "_reverse")[:directions]:
                self.register_parameter(f"weight_ih_l{layer}{suffix}", nn.Parameter(torch.empty(hidden_size, width)))
                self.register_parameter(f"weight_hh_l{layer}{suffix}", nn.Parameter(torch.empty(hidden_size, hidden_size)))
                self.register_parameter(f"bias_ih_l{layer}{suffix}", nn.Parameter(torch.empty(hidden_size)))
                self.register_parameter(f"bias_hh_l{layer}{suffix}", nn.Parameter(torch.empty(hidden_size)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)  # nn.RNN's default
        for param in self.parameters():
            nn.init.uniform_(param, -bound, bound)

    def forward(
        self, input: Union[Tensor, PackedSequence], hx: Optional[Tensor] = None
    ) -> Tuple[Union[Tensor, PackedSequence], Tensor]:
        packed = isinstance(input, PackedSequence)
        if packed:
            x, lengths = pad_packed_sequence(input, batch_first=True)  # rows back in the caller's order
        else:
            x = input
            lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.int64)
        batch, directions = x.shape[0], 2 if self.bidirectional else 1
        if hx is None:
            hx = x.new_zeros(self.num_layers * directions, batch, self.hidden_size)
        valid = (torch.arange(x.shape[1])[:, None] < lengths[None, :]).to(x.device).unsqueeze(-1)  # [T, B, 1]

        finals: List[Tensor] = []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0:
                x = F.dropout(x, self.dropout, self.training)
            outputs = []
            for d, suffix in enumerate(("", "_reverse")[:directions]):
                inputs = x if d == 0 else reverse_valid(x, lengths)
                projected = F.linear(inputs, getattr(self, f"weight_ih_l{layer}{suffix}"), getattr(self, f"bias_ih_l{layer}{suffix}"))
                out, h = self._recur(f"_l{layer}{suffix}", projected.transpose(0, 1).contiguous(), hx[layer * directions + d], valid)
                out = out.transpose(0, 1)
                outputs.append(out if d == 0 else reverse_valid(out, lengths))
                finals.append(h)
            x = torch.cat(outputs, dim=-1) if directions == 2 else outputs[0]
        h_n = torch.stack(finals)
        if packed:
            return pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False), h_n
        return x, h_n

    def _recur(self, name: str, projected: Tensor, h: Tensor, valid: Tensor) -> Tuple[Tensor, Tensor]:
        """The time loop of one layer and direction (``name`` like ``_l0_reverse``): [T, B, H] outputs
        and the final state. A subclass with another recurrence (the Jordan network) overrides it."""
        weight_hh, bias_hh = getattr(self, f"weight_hh{name}"), getattr(self, f"bias_hh{name}")
        return scripted_recurrence()(projected, h, weight_hh, bias_hh, valid, self.nonlinearity)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"nonlinearity={self.nonlinearity!r}, bidirectional={self.bidirectional}")
