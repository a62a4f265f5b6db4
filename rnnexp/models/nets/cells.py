"""The kinds of recurrent cell, one table entry each: the only place that knows what a cell is.

The backbone never branches on a cell's name; it asks the entry how to build a block of
layers, how many tensors a layer's state holds, how many gate blocks its recurrent weights
stack, which activations it takes and which gate (if any) is the forget gate. Adding a cell
is one entry here (a module with ``nn.RNN``'s constructor and ``forward(input, hx)`` contract)
plus one YAML file in ``conf/cell/``. The elementwise cells of this decade (minGRU, minLSTM, LRU)
are one ``elementwise`` entry each: a module with ``forward(input, hx, lengths)`` on padded
inputs (:mod:`rnnexp.models.nets.elementwise_rnn`) and the backbone keys it takes (``options``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

from torch import nn

from rnnexp.errors import ConfigError, check_number, check_positive_int
from rnnexp.models.nets.elementwise_rnn import ElementwiseRNN
from rnnexp.models.nets.jordan import JordanRNN
from rnnexp.models.nets.lru import LRULayer
from rnnexp.models.nets.mingru import MinGRULayer
from rnnexp.models.nets.minlstm import MinLSTMLayer
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
    elementwise: bool = False
    options: Tuple[str, ...] = ()

    def is_fused(self, nonlinearity: str) -> bool:
        return nonlinearity in self.fused_nonlinearities

    def block(self, nonlinearity: str, options: Optional[Dict[str, Any]] = None, **kwargs) -> nn.Module:
        """A multi-layer module of this cell (``nn.RNN``'s keyword arguments, plus ``options``)."""
        if self.elementwise:
            return self.fused(**kwargs, **(options or {}))
        if len(self.nonlinearities) > 1:  # only cells with a choice take the argument
            kwargs["nonlinearity"] = nonlinearity
        if self.is_fused(nonlinearity):
            return self.fused(**kwargs)
        assert self.fallback is not None
        return self.fallback(**kwargs)


def _mingru(scan: str = "auto", **rnn: Any) -> nn.Module:
    return ElementwiseRNN(layer=MinGRULayer, scan=scan, **rnn)


def _minlstm(scan: str = "auto", forget_bias: Optional[float] = None, **rnn: Any) -> nn.Module:
    return ElementwiseRNN(layer=lambda i, h: MinLSTMLayer(i, h, forget_bias), scan=scan, **rnn)


# The LRU paper's ring for long sequences (its sCIFAR / LRA settings): |lambda| in [0.9, 0.999].
LRU_DEFAULTS = {"r_min": 0.9, "r_max": 0.999, "max_phase": 2 * math.pi}


def _lru(scan: str = "auto", state_size: Optional[int] = None, r_min: Optional[float] = None,
         r_max: Optional[float] = None, max_phase: Optional[float] = None, **rnn: Any) -> nn.Module:
    if state_size is not None:
        check_positive_int("state_size", state_size)
    values = {"r_min": r_min, "r_max": r_max, "max_phase": max_phase}
    ring = {k: LRU_DEFAULTS[k] if v is None else v for k, v in values.items()}
    for key, value in ring.items():
        check_number(key, value)
    if not 0 <= ring["r_min"] < ring["r_max"] < 1:
        raise ConfigError("r_min", ring["r_min"], f"the ring needs 0 <= r_min < r_max < 1 (r_max={ring['r_max']})")
    if not ring["max_phase"] > 0:
        raise ConfigError("max_phase", ring["max_phase"], "must be > 0 (radians; 6.283 is the whole circle)")
    size = state_size or rnn["hidden_size"]
    return ElementwiseRNN(layer=lambda i, h: LRULayer(i, h, size, **ring), scan=scan, **rnn)


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
    # Elementwise recurrences h_t = a_t * h_{t-1} + b_t (docs/cells.md): minGRU and minLSTM
    # (Feng et al. 2024) and the LRU (Orvieto et al. 2023). forget_gate marks that
    # model.forget_bias applies (minLSTM's b_f); there is no weight_hh block behind it.
    "mingru": CellKind(_mingru, nonlinearities=(), elementwise=True, options=("scan",)),
    "minlstm": CellKind(_minlstm, nonlinearities=(), elementwise=True, forget_gate=0, options=("scan", "forget_bias")),
    "lru": CellKind(_lru, nonlinearities=(), elementwise=True, options=("scan", "state_size", "r_min", "r_max", "max_phase")),
}


def cell_kind(name: str) -> CellKind:
    if name not in CELLS:
        raise ConfigError("cell", name, f"choose one of {', '.join(CELLS)}")
    return CELLS[name]
