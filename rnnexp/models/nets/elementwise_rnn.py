"""Layers and directions of an elementwise recurrence (minGRU, minLSTM, LRU) with the backbone's contract.

``ElementwiseRNN(input_size, hidden_size, num_layers, batch_first, bidirectional, dropout, layer=...)``
takes ``nn.RNN``'s constructor arguments and ``forward(x [B, T, F], hx [layers*D, B, S] | None,
lengths [B] | None) -> (outputs [B, T, D*H], h_n [layers*D, B, S])``, in torch's layout of states.
``layer(input_size, hidden_size)`` builds one direction of one layer: an object with
``coefficients(x [T, B, F]) -> (a, b)`` of ``h_t = a_t * h_{t-1} + b_t`` (``a`` [T, B, H], or [H]
shared by every step and row), ``readout(h, x)``,
``state_size`` and the ``to_state``/``from_state`` maps between its recurrence and the carried
real tensor (the LRU's state is complex).

Variable lengths are masked instead of packed: past a row's length ``a = 1`` and ``b = 0``, so
its state passes through unchanged and the state after the last step is the state at the row's
own last valid step; the reverse direction reads each row reversed within its own length, so it
starts at the row's last valid step. Outputs past the length are zero, and padding values reach
nothing (``where`` picks, it never multiplies them). The recurrence and the carried state run in
fp32 whatever the autocast dtype of the projections (:mod:`rnnexp.models.nets.linear_recurrence`);
under autocast the outputs are emitted in its dtype, as torch's fused kernels emit theirs.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnexp.errors import check_choice
from rnnexp.models.nets.linear_recurrence import SCANS, choose, linear_recurrence


class ElementwiseRNN(nn.Module):
    """A multi-layer, optionally bidirectional stack of one elementwise cell (module docstring)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, batch_first: bool = True,
                 bidirectional: bool = False, dropout: float = 0.0, *, layer: Callable[..., nn.Module],
                 scan: str = "auto") -> None:
        super().__init__()
        check_choice("scan", scan, SCANS)
        if not batch_first:
            raise ValueError("ElementwiseRNN takes batch-first inputs")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bidirectional, self.dropout, self.scan = bidirectional, dropout, scan
        self.num_directions = 2 if bidirectional else 1
        cells = []
        for index in range(num_layers):
            width = input_size if index == 0 else self.num_directions * hidden_size
            cells.extend(layer(width, hidden_size) for _ in range(self.num_directions))
        self.cells = nn.ModuleList(cells)
        self.state_size = cells[0].state_size

    def forward(self, x: Tensor, hx: Optional[Tensor] = None, lengths: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        steps = x.shape[1]
        impl = choose(self.scan, x.device, steps)
        data = x.transpose(0, 1)  # time-major: a step's rows are contiguous for the scan
        valid = order = None
        if lengths is not None and bool((lengths < steps).any()):
            time = torch.arange(steps)[:, None]
            rows = lengths[None, :]
            valid = (time < rows).to(x.device)[..., None]  # [T, B, 1]
            # Reversed within each row's length; the padding stays where it is.
            order = torch.where(time < rows, rows - 1 - time, time).to(x.device)[..., None]
        low = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else None
        finals: List[Tensor] = []
        for index in range(self.num_layers):
            if index > 0 and self.training and self.dropout > 0:
                data = F.dropout(data, self.dropout, True)
            outs = []
            for direction in range(self.num_directions):
                cell = self.cells[index * self.num_directions + direction]
                inputs = data if direction == 0 else _reverse(data, order)
                a, b = cell.coefficients(inputs)
                if valid is not None:  # a shared a [H] (the LRU's) becomes one per step and row here
                    a = torch.where(valid, a, torch.ones((), dtype=a.dtype, device=a.device))
                    b = torch.where(valid, b, torch.zeros((), dtype=b.dtype, device=b.device))
                if hx is None:
                    h0 = b.new_zeros(b.shape[1:])
                else:
                    h0 = cell.from_state(hx[index * self.num_directions + direction])
                h = linear_recurrence(a, b, h0, impl)
                finals.append(cell.to_state(h[-1]))
                y = cell.readout(h, inputs)
                if low is not None:  # emitted in autocast's dtype like the fused kernels; the state stays fp32
                    y = y.to(low)
                outs.append(y if direction == 0 else _reverse(y, order))
            data = outs[0] if len(outs) == 1 else torch.cat(outs, -1)
            if valid is not None:
                data = data * valid.to(data.dtype)
        return data.transpose(0, 1), torch.stack(finals)


def _reverse(x: Tensor, order: Optional[Tensor]) -> Tensor:
    """Each row of time-major ``x`` reversed within its own length (``order`` from ``forward``)."""
    if order is None:
        return x.flip(0)
    return x.gather(0, order.expand(-1, -1, x.shape[-1]))
