"""A stack of recurrent layers with TensorFlow's ``dynamic_rnn(sequence_length=...)`` contract.

Runs on torch's fused ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` kernels. Consecutive
layers of the same width share one multi-layer module (one fused call, as
``nn.LSTM(num_layers=k)``); layers of different widths (``hidden_sizes=[128, 256]``)
become one module per run of equal widths. Variable lengths go through
``pack_padded_sequence`` so the final state of every row is the state at its own
last valid step, also for the backward direction of a bidirectional layer.

Vanilla RNNs with an activation other than ``tanh``/``relu`` run on
:class:`rnnexp.models.nets.scripted_rnn.ScriptedRNN`, which follows the same contract. Variational
dropout (one mask per sequence, reused at every step) needs the tensors between layers,
so it runs every layer as its own module; torch's dropout inside a fused multi-layer
module draws a new mask at every step.

The elementwise cells (minGRU, minLSTM, LRU; :mod:`rnnexp.models.nets.elementwise_rnn`) take
the padded inputs and the lengths and mask the recurrence instead of packing, with the same
contract. ``block=residual`` wraps every layer of any cell in a pre-norm residual block with a
gated MLP (:mod:`rnnexp.models.nets.blocks`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, List, Optional, Sequence, Union

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnexp.errors import ConfigError, check_choice, check_fraction, check_positive_int
from rnnexp.models.nets.autocast_rnn import call_block
from rnnexp.models.nets.blocks import ResidualBlock, check_block_options, make_norm
from rnnexp.models.nets.cells import cell_kind
from rnnexp.models.nets.initialisation import INITS, initialise_recurrent_weights
from rnnexp.models.nets.layer_state import LayerState, join_layers, split_layers, to_dtype
from rnnexp.models.nets.outputs import BackboneOutput
from rnnexp.models.nets.unrolled import LayerTap, UnrolledRecorder
from rnnexp.models.nets.variational_dropout import VariationalMasks
from rnnexp.models.nets.weight_drop import check_applies, dropped_weights

class RecurrentBackbone(nn.Module):
    """``forward(x [B, T, F], lengths [B] | None, state | None) -> (outputs [B, T, D*H], final_state)``.

    ``outputs`` is zero at ``t >= lengths[b]``; ``final_state`` has one entry per
    layer. ``dropout`` is applied to every layer's output (between layers and on
    the last one, like ``DropoutWrapper(output_keep_prob)`` on each cell),
    ``input_dropout`` to the inputs of the first layer (``input_keep_prob``), both
    only in training. ``variational_dropout=True`` draws one mask per sequence and
    reuses it at every step (Gal and Ghahramani 2016; ``DropoutWrapper(variational_recurrent=True)``
    on inputs and outputs). ``weight_drop`` is DropConnect on the recurrent weights, one mask
    per forward pass (AWD-LSTM; :mod:`rnnexp.models.nets.weight_drop`), not applied on the
    per-step diagnostic path (:meth:`record_states`).
    """

    def __init__(
        self,
        input_size: int,
        cell: str = "lstm",
        hidden_size: int = 32,
        num_layers: int = 1,
        hidden_sizes: Optional[Sequence[int]] = None,
        bidirectional: bool = False,
        dropout: float = 0.0,
        nonlinearity: str = "tanh",
        learn_initial_state: bool = False,
        init: str = "default",
        forget_bias: Optional[float] = None,
        input_dropout: float = 0.0,
        variational_dropout: bool = False,
        weight_drop: float = 0.0,
        scan: str = "auto",
        state_size: Optional[int] = None,
        r_min: Optional[float] = None,
        r_max: Optional[float] = None,
        max_phase: Optional[float] = None,
        block: str = "plain",
        norm: Optional[str] = None,
        mlp_ratio: Optional[float] = None,
    ) -> None:
        super().__init__()
        kind = cell_kind(cell)
        check_choice("init", init, INITS)
        if forget_bias is not None and kind.forget_gate is None:
            raise ConfigError("forget_bias", forget_bias, f"cell={cell} has no forget gate; set it to null")
        if kind.elementwise and init != "default":
            raise ConfigError("init", init, f"cell={cell} has no recurrent matrix to initialise; use init=default")
        # The cell keys (model.scan and the LRU's): refused where the cell takes none, passed where it does.
        cell_keys = {"scan": scan, "state_size": state_size, "r_min": r_min, "r_max": r_max, "max_phase": max_phase}
        unset = {"scan": "auto"}
        for key, value in cell_keys.items():
            if key not in kind.options and value != unset.get(key):
                raise ConfigError(key, value, f"cell={cell} takes no {key}; set it to {unset.get(key) or 'null'}")
        options = {k: v for k, v in {**cell_keys, "forget_bias": forget_bias}.items() if k in kind.options}
        check_block_options(block, norm, mlp_ratio)
        self.residual = block == "residual"
        check_positive_int("input_size", input_size)
        check_fraction("dropout", dropout)
        check_fraction("input_dropout", input_dropout)
        check_fraction("weight_drop", weight_drop)
        if not isinstance(variational_dropout, bool):
            raise ConfigError("variational_dropout", variational_dropout, "must be true or false")
        if not kind.nonlinearities and nonlinearity != "tanh":  # "tanh": the config's default, unused
            raise ConfigError("nonlinearity", nonlinearity, f"cell={cell} has no activation to choose; leave it at tanh")
        if kind.nonlinearities and nonlinearity not in kind.nonlinearities:
            if len(kind.nonlinearities) == 1:
                raise ConfigError("nonlinearity", nonlinearity, f"cell={cell} takes none; it uses {kind.nonlinearities[0]}")
            check_choice("nonlinearity", nonlinearity, kind.nonlinearities)
        if hidden_sizes:
            sizes = list(hidden_sizes)
            for i, size in enumerate(sizes):
                check_positive_int(f"hidden_sizes[{i}]", size)
        else:
            check_positive_int("hidden_size", hidden_size)
            check_positive_int("num_layers", num_layers)
            sizes = [hidden_size] * num_layers
        if self.residual and len(set(sizes)) > 1:
            raise ConfigError("hidden_sizes", list(sizes), "block=residual adds each layer to its input: use one width "
                              "(hidden_size x num_layers)")

        self.cell, self.kind = cell, kind
        self.hidden_sizes = sizes
        self.num_directions = 2 if bidirectional else 1
        self.output_size = self.num_directions * sizes[-1]
        self.dropout = nn.Dropout(dropout)
        self.input_dropout = nn.Dropout(input_dropout)
        self.weight_drop = weight_drop
        self.variational = variational_dropout and (dropout > 0 or input_dropout > 0)

        # Runs of equal widths become one fused multi-layer module (one per layer for variational
        # dropout and residual blocks).
        self.runs: List[int] = []
        for size in sizes:
            if self.runs and sizes[sum(self.runs) - 1] == size and not self.variational and not self.residual:
                self.runs[-1] += 1
            else:
                self.runs.append(1)
        self.blocks = nn.ModuleList()
        in_features, first = input_size, 0
        if self.residual:  # the residual stream is the layers' output width
            in_features = self.output_size
            self.input_proj: nn.Module = nn.Identity() if input_size == in_features else nn.Linear(input_size, in_features)
            self.residual_blocks = nn.ModuleList(
                ResidualBlock(in_features, norm or "layer", 2.0 if mlp_ratio is None else mlp_ratio) for _ in sizes
            )
            self.final_norm = make_norm(norm or "layer", in_features)
        for run in self.runs:
            self.blocks.append(
                kind.block(
                    nonlinearity,
                    options,
                    input_size=in_features,
                    hidden_size=sizes[first],
                    num_layers=run,
                    batch_first=True,
                    bidirectional=bidirectional,
                    dropout=dropout if run > 1 else 0.0,
                )
            )
            in_features, first = self.num_directions * sizes[first], first + run

        check_applies(self.blocks, weight_drop, cell)
        # Reals carried per layer and direction: the width, or the LRU's 2 x state_size.
        self.state_sizes = [getattr(b, "state_size", b.hidden_size) for b, run in zip(self.blocks, self.runs) for _ in range(run)]
        if not kind.elementwise:
            initialise_recurrent_weights(self.blocks, kind.forget_gate, init, forget_bias)
        self._recorder: Optional[UnrolledRecorder] = None  # diagnostics only (record_states)

        self.initial_state = None
        if learn_initial_state:
            self.initial_state = nn.ParameterList(
                nn.Parameter(torch.zeros(self.num_directions, 1, size)) for size in self.state_sizes for _ in range(kind.state_parts)
            )

    @property
    def num_layers(self) -> int:
        return len(self.hidden_sizes)

    def forward(
        self, x: Tensor, lengths: Optional[Tensor] = None, state: Optional[Sequence[LayerState]] = None
    ) -> BackboneOutput:
        """``(outputs [B, T, H], final state per layer)``; ``.undropped`` holds the last layer's
        outputs before their dropout (what temporal activation regularisation penalises)."""
        batch, steps = x.shape[0], x.shape[1]
        if state is None and self.initial_state is not None:
            state = self._learned_initial_state(batch)
        if state is not None and len(state) != self.num_layers:
            raise ValueError(f"state has {len(state)} layers, the backbone has {self.num_layers}")

        masks = VariationalMasks(batch, self.training) if self.variational else None
        if masks is not None:
            x = masks.apply(x, "input", self.input_dropout.p)
        else:
            x = self.input_dropout(x)

        packed = None
        if lengths is not None:
            lengths = _check_lengths(lengths, batch, steps)
        if self.residual:
            return self._run_residual(x, lengths, state, masks)
        if self._recorder is not None:  # diagnostics: padded tensors, one step at a time
            if lengths is None:
                lengths = torch.full((batch,), steps, dtype=torch.int64)
        elif lengths is not None and not self.kind.elementwise:  # elementwise blocks mask their recurrence instead
            if bool((lengths < steps).any()):
                packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)

        data: Union[Tensor, PackedSequence] = packed if packed is not None else x
        final: List[LayerState] = []
        first = 0
        for index, (block, run) in enumerate(zip(self.blocks, self.runs)):
            if index > 0:
                data = self._drop_between(data, masks, index - 1)
            if self._recorder is None:
                hx = None if state is None else join_layers(state[first : first + run])
                data, hn = self._call_block(block, data, hx, lengths)
                final.extend(split_layers(to_dtype(hn, x.dtype), run, self.num_directions))
            else:
                states = None if state is None else list(state[first : first + run])
                data, finals = self._recorder.run_block(index, block, data, lengths, states, self.training)
                final.extend(to_dtype(hn, x.dtype) for hn in finals)
            first += run

        if isinstance(data, PackedSequence):
            data, _ = pad_packed_sequence(data, batch_first=True, total_length=steps)
        if masks is not None:
            return BackboneOutput(masks.apply(data, len(self.blocks) - 1, self.dropout.p), final, data)
        return BackboneOutput(self.dropout(data), final, data)

    def _call_block(self, block: nn.Module, data, hx, lengths: Optional[Tensor]):
        if self.kind.elementwise:
            return block(data, hx, lengths)
        params = dropped_weights(block, self.weight_drop, self.training)
        return call_block(block, data, hx, self.kind.autocast_covers, params)

    def _run_residual(self, x: Tensor, lengths: Optional[Tensor], state, masks: Optional[VariationalMasks]):
        """Pre-norm residual blocks (:mod:`rnnexp.models.nets.blocks`): one layer per block,
        ``dropout`` on each sublayer's output before its add, one norm after the last block."""
        steps = x.shape[1]
        short = lengths is not None and bool((lengths < steps).any())
        h = self.input_proj(x)
        final: List[LayerState] = []
        for index, (block, res) in enumerate(zip(self.blocks, self.residual_blocks)):
            hx = None if state is None else join_layers(state[index : index + 1])
            data = res.norm(h)
            if short and not self.kind.elementwise:
                data = pack_padded_sequence(data, lengths, batch_first=True, enforce_sorted=False)
            y, hn = self._call_block(block, data, hx, lengths)
            if isinstance(y, PackedSequence):
                y, _ = pad_packed_sequence(y, batch_first=True, total_length=steps)
            final.extend(split_layers(to_dtype(hn, x.dtype), 1, self.num_directions))
            h = h + self._drop_between(y.to(h.dtype), masks, f"recurrent{index}")
            if res.mlp is not None:
                h = h + self._drop_between(res.mlp(res.mlp_norm(h)), masks, f"mlp{index}")
        out = self.final_norm(h)
        if short:
            valid = torch.arange(steps)[None, :] < lengths[:, None]
            out = torch.where(valid.to(out.device)[..., None], out, torch.zeros((), dtype=out.dtype, device=out.device))
        return BackboneOutput(out, final, out)

    def _drop_between(self, data, masks: Optional["VariationalMasks"], layer: Union[int, str]):
        if masks is None:
            return _apply(self.dropout, data)
        return masks.apply(data, layer, self.dropout.p)

    @contextmanager
    def record_states(self) -> Iterator[List[LayerTap]]:
        """Within the block, ``forward`` runs every layer one step at a time and appends one
        :class:`~rnnexp.models.nets.unrolled.LayerTap` per layer to the yielded list;
        ``rnnexp.models.nets.unrolled.state_gradients(loss, taps)`` then gives dL/dh_t per layer.
        Same values as the fused path, many times slower: for diagnostics only."""
        if self.kind.elementwise or self.residual:
            raise ConfigError("callbacks.gradient_through_time", self.cell if self.kind.elementwise else "block=residual",
                              "steps torch's own rnn/lstm/gru/jordan modules in plain blocks only; turn it off here")
        self._recorder = UnrolledRecorder(self.num_directions, self.kind.state_parts, self.kind.autocast_covers)
        try:
            yield self._recorder.taps
        finally:
            self._recorder = None

    def _learned_initial_state(self, batch: int) -> List[LayerState]:
        assert self.initial_state is not None
        tensors = [p.expand(-1, batch, -1).contiguous() for p in self.initial_state]
        parts = self.kind.state_parts
        if parts > 1:
            return [tuple(tensors[i : i + parts]) for i in range(0, len(tensors), parts)]
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
