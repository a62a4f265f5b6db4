"""A stack of recurrent layers with TensorFlow's ``dynamic_rnn(sequence_length=...)`` contract.

Runs on torch's fused ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` kernels. Consecutive
layers of the same width share one multi-layer module (one fused call, as
``nn.LSTM(num_layers=k)``); layers of different widths (``hidden_sizes=[128, 256]``)
become one module per run of equal widths. Variable lengths go through
``pack_padded_sequence`` so the final state of every row is the state at its own
last valid step, also for the backward direction of a bidirectional layer.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnexp.errors import ConfigError, check_choice, check_fraction, check_positive_int

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
NONLINEARITIES = ("tanh", "relu")
# Recurrent-weight initialisations: torch's uniform default, orthogonal (Saxe et al. 2014),
# identity with zero biases (IRNN: Le, Jaitly and Hinton 2015). Per gate block for LSTM/GRU.
INITS = ("default", "orthogonal", "identity")

# One layer's state as torch's one-layer module returns it: h of [D, B, H], or (h, c) for LSTM.
LayerState = Union[Tensor, Tuple[Tensor, Tensor]]


class RecurrentBackbone(nn.Module):
    """``forward(x [B, T, F], lengths [B] | None, state | None) -> (outputs [B, T, D*H], final_state)``.

    ``outputs`` is zero at ``t >= lengths[b]``; ``final_state`` has one entry per
    layer. ``dropout`` is applied to every layer's output (between layers and on
    the last one, like ``DropoutWrapper(output_keep_prob)`` on each cell) and only
    in training.
    """

    def __init__(
        self,
        input_size: int,
        cell: str = "lstm",
        hidden_size: int = 64,
        num_layers: int = 1,
        hidden_sizes: Optional[Sequence[int]] = None,
        bidirectional: bool = False,
        dropout: float = 0.0,
        nonlinearity: str = "tanh",
        learn_initial_state: bool = False,
        init: str = "default",
        forget_bias: Optional[float] = None,
    ) -> None:
        super().__init__()
        check_choice("cell", cell, CELLS)
        check_choice("init", init, INITS)
        if forget_bias is not None and cell != "lstm":
            raise ConfigError("forget_bias", forget_bias, f"only cell=lstm has a forget gate; set it to null for {cell}")
        check_positive_int("input_size", input_size)
        check_fraction("dropout", dropout)
        check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
        if nonlinearity != "tanh" and cell != "rnn":
            raise ConfigError("nonlinearity", nonlinearity, f"only cell=rnn takes a nonlinearity; {cell} uses tanh")
        if hidden_sizes:
            sizes = list(hidden_sizes)
            for i, size in enumerate(sizes):
                check_positive_int(f"hidden_sizes[{i}]", size)
        else:
            check_positive_int("hidden_size", hidden_size)
            check_positive_int("num_layers", num_layers)
            sizes = [hidden_size] * num_layers

        self.cell = cell
        self.hidden_sizes = sizes
        self.num_directions = 2 if bidirectional else 1
        self.output_size = self.num_directions * sizes[-1]
        self.dropout = nn.Dropout(dropout)

        # Runs of equal widths become one fused multi-layer module.
        self.runs: List[int] = []
        for size in sizes:
            if self.runs and sizes[sum(self.runs) - 1] == size:
                self.runs[-1] += 1
            else:
                self.runs.append(1)
        self.blocks = nn.ModuleList()
        in_features, first = input_size, 0
        for run in self.runs:
            kwargs = dict(
                input_size=in_features,
                hidden_size=sizes[first],
                num_layers=run,
                batch_first=True,
                bidirectional=bidirectional,
                dropout=dropout if run > 1 else 0.0,
            )
            if cell == "rnn":
                kwargs["nonlinearity"] = nonlinearity
            self.blocks.append(CELLS[cell](**kwargs))
            in_features, first = self.num_directions * sizes[first], first + run

        self._initialise(init, forget_bias)

        self.initial_state = None
        if learn_initial_state:
            parts = 2 if cell == "lstm" else 1
            self.initial_state = nn.ParameterList(
                nn.Parameter(torch.zeros(self.num_directions, 1, size)) for size in sizes for _ in range(parts)
            )

    def _initialise(self, init: str, forget_bias: Optional[float]) -> None:
        for block in self.blocks:
            for name, param in block.named_parameters():
                hidden = block.hidden_size
                if init != "default" and name.startswith("weight_hh"):
                    with torch.no_grad():
                        for gate in param.split(hidden):  # one [H, H] block per gate
                            if init == "orthogonal":
                                nn.init.orthogonal_(gate)
                            else:
                                gate.copy_(torch.eye(hidden))
                if name.startswith("bias"):
                    with torch.no_grad():
                        if init == "identity":
                            param.zero_()
                        if forget_bias is not None:
                            # torch adds bias_ih and bias_hh; TF's forget_bias is their sum.
                            # Gate order i, f, g, o: the forget block is the second.
                            param[hidden : 2 * hidden] = forget_bias if name.startswith("bias_ih") else 0.0

    @property
    def num_layers(self) -> int:
        return len(self.hidden_sizes)

    def forward(
        self, x: Tensor, lengths: Optional[Tensor] = None, state: Optional[Sequence[LayerState]] = None
    ) -> Tuple[Tensor, List[LayerState]]:
        batch, steps = x.shape[0], x.shape[1]
        if state is None and self.initial_state is not None:
            state = self._learned_initial_state(batch)
        if state is not None and len(state) != self.num_layers:
            raise ValueError(f"state has {len(state)} layers, the backbone has {self.num_layers}")

        packed = None
        if lengths is not None:
            lengths = _check_lengths(lengths, batch, steps)
            if bool((lengths < steps).any()):
                packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)

        data: Union[Tensor, PackedSequence] = packed if packed is not None else x
        final: List[LayerState] = []
        first = 0
        for index, (block, run) in enumerate(zip(self.blocks, self.runs)):
            if index > 0:
                data = _apply(self.dropout, data)
            hx = None if state is None else _join_layers(state[first : first + run])
            data, hn = block(data, hx)
            final.extend(_split_layers(hn, run, self.num_directions))
            first += run

        if isinstance(data, PackedSequence):
            data, _ = pad_packed_sequence(data, batch_first=True, total_length=steps)
        return self.dropout(data), final

    def _learned_initial_state(self, batch: int) -> List[LayerState]:
        assert self.initial_state is not None
        tensors = [p.expand(-1, batch, -1).contiguous() for p in self.initial_state]
        if self.cell == "lstm":
            return [(tensors[i], tensors[i + 1]) for i in range(0, len(tensors), 2)]
        return tensors


def _check_lengths(lengths: Tensor, batch: int, steps: int) -> Tensor:
    # pack_padded_sequence wants CPU int64 lengths (pytorch #43227), whatever device the batch is on.
    lengths = torch.as_tensor(lengths).to(device="cpu", dtype=torch.int64)
    if lengths.shape != (batch,):
        raise ValueError(f"lengths has shape {tuple(lengths.shape)}, expected ({batch},)")
    if batch and (int(lengths.min()) < 1 or int(lengths.max()) > steps):
        raise ValueError(f"lengths must lie in [1, {steps}], got min {int(lengths.min())} max {int(lengths.max())}")
    return lengths


def _apply(module: nn.Module, data: Union[Tensor, PackedSequence]) -> Union[Tensor, PackedSequence]:
    if isinstance(data, PackedSequence):
        return data._replace(data=module(data.data))
    return module(data)


def _join_layers(states: Sequence[LayerState]) -> LayerState:
    """Per-layer states -> the [layers*D, B, H] layout of one multi-layer module."""
    if isinstance(states[0], tuple):
        return (torch.cat([s[0] for s in states]), torch.cat([s[1] for s in states]))
    return torch.cat(list(states))


def _split_layers(hn: LayerState, layers: int, directions: int) -> List[LayerState]:
    if isinstance(hn, tuple):
        hs, cs = hn[0].split(directions), hn[1].split(directions)
        return [(hs[i], cs[i]) for i in range(layers)]
    return list(hn.split(directions))


def detach_state(state: Optional[Sequence[LayerState]]) -> Optional[List[LayerState]]:
    """Cut the graph between batches (truncated BPTT) while keeping the values."""
    if state is None:
        return None
    return [tuple(t.detach() for t in s) if isinstance(s, tuple) else s.detach() for s in state]
