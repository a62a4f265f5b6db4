"""The kinds of recurrent cell, one table entry each: the only place that knows what a cell is.

The backbone never branches on a cell's name; it asks the entry how to build a block of
layers, how many tensors a layer's state holds, how many gate blocks its recurrent weights
stack, which activations it takes and which gate (if any) is the forget gate. Adding a cell
is one entry here (a module with ``nn.RNN``'s constructor and ``forward(input, hx)`` contract)
plus one YAML file in ``conf/cell/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

from torch import nn

from rnnexp.errors import ConfigError
from rnnexp.models.nets.jordan import JordanRNN
from rnnexp.models.nets.scripted_rnn import ACTIVATIONS, ScriptedRNN


@dataclass(frozen=True)
class CellKind:
    """How to build and read one kind of recurrent layer.

    ``fused`` builds a block from torch's ``nn.RNN`` keyword arguments (``input_size``,
    ``hidden_size``, ``num_layers``, ``batch_first``, ``bidirectional``, ``dropout``);
    ``nonlinearities`` are the activations the cell takes, its default first; those not in
    ``fused_nonlinearities`` run on ``fallback`` (a slower module with the same contract).
    ``state_parts`` is 1 for a state ``h`` and 2 for ``(h, c)``; ``gates`` is the number of
    ``[H, H]`` blocks stacked in ``weight_hh`` (in torch's gate order); ``forget_gate`` is the
    index of the forget gate's block, where the cell has one. ``autocast_covers`` says whether
    torch's autocast already runs the block in low precision (CPU autocast has ``nn.LSTM`` on
    its list, not ``nn.GRU``/``nn.RNN``); where it does not, the backbone runs the block on
    low-precision copies of its inputs, state and weights under an active autocast
    (:mod:`rnnexp.models.nets.autocast_rnn`). False is always correct, only maybe slower.
    """

    fused: Callable[..., nn.Module]
    state_parts: int = 1
    gates: int = 1
    nonlinearities: Tuple[str, ...] = ("tanh",)
    fused_nonlinearities: Tuple[str, ...] = ("tanh",)
    fallback: Optional[Callable[..., nn.Module]] = None
    forget_gate: Optional[int] = None
    autocast_covers: bool = False

    def is_fused(self, nonlinearity: str) -> bool:
        return nonlinearity in self.fused_nonlinearities

    def block(self, nonlinearity: str, **kwargs) -> nn.Module:
        """A multi-layer module of this cell (``nn.RNN``'s keyword arguments)."""
        if len(self.nonlinearities) > 1:  # only cells with a choice take the argument
            kwargs["nonlinearity"] = nonlinearity
        if self.is_fused(nonlinearity):
            return self.fused(**kwargs)
        assert self.fallback is not None
        return self.fallback(**kwargs)


CELLS: Dict[str, CellKind] = {
    # Elman's simple recurrent network: h_t = act(W x_t + U h_{t-1} + b).
    "rnn": CellKind(
        nn.RNN, nonlinearities=ACTIVATIONS, fused_nonlinearities=("tanh", "relu"), fallback=ScriptedRNN
    ),
    # Gates i, f, g, o (torch's order): the forget gate is block 1.
    "lstm": CellKind(nn.LSTM, state_parts=2, gates=4, forget_gate=1, autocast_covers=True),
    "gru": CellKind(nn.GRU, gates=3),
    # Jordan's simple recurrent network: the state carried is the output y_{t-1} (nets/jordan.py).
    # No torch kernel: its TorchScript module is the only implementation, for every activation.
    "jordan": CellKind(JordanRNN, nonlinearities=ACTIVATIONS, fused_nonlinearities=ACTIVATIONS),
}


def cell_kind(name: str) -> CellKind:
    if name not in CELLS:
        raise ConfigError("cell", name, f"choose one of {', '.join(CELLS)}")
    return CELLS[name]
