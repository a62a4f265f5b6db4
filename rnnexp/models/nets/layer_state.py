"""Recurrent states between the layout of torch's modules and rnnexp's one entry per layer.

torch's multi-layer module keeps every layer's h (and c) in one [layers*D, B, H] tensor; rnnexp
passes a list with one entry per layer (so layers of different widths and learned initial states
fit), carries it between windows, and cuts its graph between batches (truncated BPTT).
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

# One layer's state as torch's one-layer module returns it: h of [D, B, H], or (h, c) for LSTM.
LayerState = Union[Tensor, Tuple[Tensor, Tensor]]


def join_layers(states: Sequence[LayerState]) -> LayerState:
    """Per-layer states -> the [layers*D, B, H] layout of one multi-layer module."""
    if isinstance(states[0], tuple):
        return (torch.cat([s[0] for s in states]), torch.cat([s[1] for s in states]))
    return torch.cat(list(states))


def to_dtype(state: LayerState, dtype: torch.dtype) -> LayerState:
    """The final state in the inputs' dtype (fp32 under bf16 autocast): the carried state keeps
    one dtype whatever the precision, and the next window casts it again where it runs in bf16."""
    if isinstance(state, tuple):
        return tuple(t.to(dtype) for t in state)
    return state.to(dtype)


def split_layers(hn: LayerState, layers: int, directions: int) -> List[LayerState]:
    """The [layers*D, B, H] state of one multi-layer module -> one entry per layer."""
    if isinstance(hn, tuple):
        hs, cs = hn[0].split(directions), hn[1].split(directions)
        return [(hs[i], cs[i]) for i in range(layers)]
    return list(hn.split(directions))


def detach_state(state: Optional[Sequence[LayerState]]) -> Optional[List[LayerState]]:
    """Cut the graph between batches (truncated BPTT) while keeping the values."""
    if state is None:
        return None
    return [tuple(t.detach() for t in s) if isinstance(s, tuple) else s.detach() for s in state]
