"""One recurrent layer run one step at a time, keeping the state after every step.

Only for diagnostics (gradient through time): a fused kernel's per-step states are not
nodes of the autograd graph, so ``dL/dh_t`` (the total derivative, through all later
steps) cannot be read off its output tensor. Here each step is a call of a one-layer,
one-direction module of the same type with the layer's own parameters
(``torch.func.functional_call``), so the same weights and kernels compute the same
values, and each step's state is a tensor that feeds the next step and the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnexp.models.nets.autocast_rnn import call_block
from rnnexp.models.nets.scripted_rnn import reverse_valid

State = Union[Tensor, Tuple[Tensor, Tensor]]


@dataclass
class LayerTap:
    """States after each step of one layer: ``states[direction][t]`` is [B, H], in that
    direction's reading order (the backward direction reads each row reversed within its length)."""

    states: List[List[Tensor]]
    lengths: Tensor


def layer_parameters(block: nn.Module, layer: int, suffix: str = "") -> dict:
    """Layer ``layer``'s parameters of a multi-layer module (``suffix`` "" or "_reverse"),
    named as a one-layer, one-direction module's."""
    # Every parameter of the layer (the Jordan network has weight_hy/bias_hy besides torch's four).
    end = f"_l{layer}{suffix}"
    return {f"{n[: -len(end)]}_l0": p for n, p in block.named_parameters() if n.endswith(end)}


def one_direction_template(block: nn.Module, layer: int, directions: int) -> nn.Module:
    kwargs = dict(
        input_size=block.input_size if layer == 0 else directions * block.hidden_size,
        hidden_size=block.hidden_size,
        num_layers=1,
        batch_first=True,
    )
    if hasattr(block, "nonlinearity"):
        kwargs["nonlinearity"] = block.nonlinearity
    return type(block)(**kwargs)


def run_unrolled(
    template: nn.Module,
    block: nn.Module,
    layer: int,
    directions: int,
    x: Tensor,
    lengths: Tensor,
    state: Optional[State],
    state_parts: int = 1,
    autocast_covers: bool = True,
) -> Tuple[Tensor, State, LayerTap]:
    """``x`` [B, T, F] padded -> (outputs [B, T, D*H] zero at padding, final state as torch's
    one-layer module returns it, the tap). ``state_parts`` is 2 for cells with a state ``(h, c)``.
    Under autocast each step runs in its dtype as the fused block would (``autocast_covers``:
    see :mod:`rnnexp.models.nets.autocast_rnn`); the tapped states are in the inputs' dtype."""
    batch, steps = x.shape[0], x.shape[1]
    valid = (torch.arange(steps)[None, :] < lengths[:, None]).to(x.device)
    lstm = state_parts == 2
    outputs, finals_h, finals_c, tapped = [], [], [], []
    for d, suffix in enumerate(("", "_reverse")[:directions]):
        params = layer_parameters(block, layer, suffix)
        inputs = x if d == 0 else reverse_valid(x, lengths)
        zeros = x.new_zeros(batch, block.hidden_size)
        if state is None:
            h, c = zeros, zeros
        elif lstm:
            h, c = state[0][d], state[1][d]
        else:
            h, c = state[d], zeros
        hs: List[Tensor] = []
        for t in range(steps):
            hx = (h[None], c[None]) if lstm else h[None]
            _, new = call_block(template, inputs[:, t : t + 1], hx, autocast_covers, params)
            keep = valid[:, t, None]
            # The state fed to the next step and to the output is this tensor: its gradient is dL/dh_t.
            h = torch.where(keep, (new[0][0] if lstm else new[0]).to(h.dtype), h)
            if lstm:
                c = torch.where(keep, new[1][0].to(c.dtype), c)
            hs.append(h)
        tapped.append(hs)
        out = torch.stack(hs, 1) * valid[..., None]
        outputs.append(out if d == 0 else reverse_valid(out, lengths))
        finals_h.append(h)
        finals_c.append(c)
    final: State = (torch.stack(finals_h), torch.stack(finals_c)) if lstm else torch.stack(finals_h)
    return torch.cat(outputs, -1), final, LayerTap(tapped, lengths)


class UnrolledRecorder:
    """The diagnostic path beside the backbone: while one is attached
    (``RecurrentBackbone.record_states``), the backbone hands each block to :meth:`run_block`,
    which runs its layers one step at a time and appends a :class:`LayerTap` per layer to ``taps``."""

    def __init__(self, num_directions: int, state_parts: int, autocast_covers: bool) -> None:
        self.num_directions, self.state_parts, self.autocast_covers = num_directions, state_parts, autocast_covers
        self.taps: List[LayerTap] = []
        self._templates: Dict[Tuple[int, int], nn.Module] = {}  # one-layer modules without weights of their own

    def run_block(self, index: int, block: nn.Module, x: Tensor, lengths: Tensor, states: Optional[List[State]],
                  training: bool) -> Tuple[Tensor, List[State]]:
        """Block ``index``'s layers over padded ``x``: (outputs, the final state of each layer);
        dropout between its layers as the fused module applies it."""
        finals: List[State] = []
        for k in range(block.num_layers):
            if k > 0 and training and block.dropout > 0:
                x = F.dropout(x, block.dropout, True)
            key = (index, k)
            if key not in self._templates:
                self._templates[key] = one_direction_template(block, k, self.num_directions)
            x, hn, tap = run_unrolled(self._templates[key], block, k, self.num_directions, x, lengths,
                                      None if states is None else states[k], self.state_parts, self.autocast_covers)
            finals.append(hn)
            self.taps.append(tap)
        return x, finals


def state_gradients(loss: Tensor, taps: List[LayerTap]) -> List[Tensor]:
    """``dL/dh_t`` per layer as [B, T, D*H] in time order (both directions at the original
    step ``t``); zero where a state does not reach the loss. Leaves parameters' ``.grad`` alone."""
    flat = [s for tap in taps for direction in tap.states for s in direction]
    grads = torch.autograd.grad(loss, flat, allow_unused=True)
    grads = [torch.zeros_like(s) if g is None else g for s, g in zip(flat, grads)]
    out, i = [], 0
    for tap in taps:
        parts = []
        for d, direction in enumerate(tap.states):
            g = torch.stack(grads[i : i + len(direction)], 1)
            i += len(direction)
            parts.append(g if d == 0 else reverse_valid(g, tap.lengths))
        out.append(torch.cat(parts, -1))
    return out
