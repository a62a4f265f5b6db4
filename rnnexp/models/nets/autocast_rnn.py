"""Run a recurrent block in the active autocast's low precision where autocast does not.

CPU autocast casts ``nn.LSTM`` on a padded tensor to bf16 (``lstm.input`` is on its list) but
not on a ``PackedSequence`` (``lstm.data`` is not), nor ``nn.GRU`` / ``nn.RNN`` nor a custom
module's time loop: those would run in fp32 under ``trainer.precision=bf16-mixed`` and miss
the matrix units. For such a call (``CellKind.autocast_covers`` is False, or the data are
packed) :func:`call_block` does by hand what autocast does for the padded LSTM: the block
runs on low-precision copies of its inputs, state and weights (``torch.func.functional_call``
with ``param.to(dtype)``), so the master weights stay fp32 and their gradients flow back
through the casts in fp32. Outside autocast, or when autocast
covers the cell, the block is called as it is.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple, Union

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.utils.rnn import PackedSequence

State = Union[Tensor, Tuple[Tensor, ...]]
Data = Union[Tensor, PackedSequence]


def autocast_dtype(x: Tensor) -> Optional[torch.dtype]:
    """The dtype autocast runs low-precision ops in on ``x``'s device, or None when it is off."""
    device = x.device.type
    if not torch.is_autocast_enabled(device):
        return None
    return torch.get_autocast_dtype(device)


def cast(value, dtype: torch.dtype):
    """A tensor, a PackedSequence or a tuple of tensors (an LSTM state) in ``dtype``; None stays None."""
    if value is None:
        return None
    if isinstance(value, PackedSequence):
        return value if value.data.dtype == dtype else value._replace(data=value.data.to(dtype))
    if isinstance(value, tuple):
        return tuple(t.to(dtype) for t in value)
    return value.to(dtype)


def low_precision_parameters(module: nn.Module, dtype: torch.dtype, params: Optional[Dict[str, Tensor]] = None):
    """``module``'s parameters (or ``params``) as differentiable casts to ``dtype``."""
    source = params if params is not None else dict(module.named_parameters())
    return {name: p.to(dtype) for name, p in source.items()}


def call_block(block: nn.Module, data: Data, hx: Optional[State], covered: bool,
               params: Optional[Dict[str, Tensor]] = None):
    """``block(data, hx)`` (with ``params`` in place of its own, if given), in autocast's dtype
    when autocast is on and does not cover the block."""
    packed = isinstance(data, PackedSequence)
    values = data.data if packed else data
    dtype = None if covered and not packed else autocast_dtype(values)
    if dtype is None or not values.is_floating_point():
        return block(data, hx) if params is None else functional_call(block, params, (data, hx))
    params = low_precision_parameters(block, dtype, params)
    with torch.autocast(values.device.type, enabled=False):  # everything is already in dtype
        return functional_call(block, params, (cast(data, dtype), cast(hx, dtype)))
