"""The elementwise linear recurrence ``h_t = a_t * h_{t-1} + b_t`` of minGRU, minLSTM and the LRU.

Three implementations of one function, chosen by ``model.scan`` (docs/cells.md has the figures
behind ``auto``); all take time-major ``a``, ``b`` [T, N, H] (real or complex) and ``h0`` [N, H]
and return every ``h_t`` [T, N, H]:

- ``sequential``: one TorchScript loop over the steps (one fused multiply-add per step);
- ``chunked``: the steps cut into chunks of ~sqrt(T); a loop over the positions inside a chunk
  runs all chunks at once, a loop over the chunks carries the state, and one pass adds
  ``cumprod(a) * carry`` (~2 sqrt(T) steps of bigger tensors instead of T small ones);
- ``parallel``: the Hillis-Steele doubling scan of the pairs ``(a, b)`` with the associative
  ``(a1, b1) o (a2, b2) = (a1 a2, a2 b1 + b2)``: ceil(log2 T) passes over the whole sequence, the
  form for long sequences on a GPU. Unlike the log-space scan (Heinsen 2023) it takes any sign of
  ``b`` and complex values, and computes no log or exp.

None of them leaves a graph of T small ops for autograd: :class:`LinearRecurrence` runs the
forward pass without one and the backward pass as the same kind of scan in reverse,
``g_t = dL/dh_t + conj(a_{t+1}) g_{t+1}``, ``dL/db_t = g_t``, ``dL/da_t = g_t conj(h_{t-1})``
(PyTorch's conjugate-Wirtinger convention for complex values; ``conj`` is a no-op on reals).
Products of ``|a| <= 1`` only shrink, so nothing overflows over long sequences (an underflow
to 0 is the exact limit). Callers pass fp32 (or fp64) values: the recurrence never runs in bf16.
"""

from __future__ import annotations

import math
from typing import List

import torch
from torch import Tensor, nn

IMPLEMENTATIONS = ("sequential", "chunked", "parallel")
SCANS = ("auto",) + IMPLEMENTATIONS

# model.scan=auto (docs/cells.md): on a CPU the sequential loop measured fastest at every length
# (28 to 4096 steps, B=64, H=128: benchmarks/modern_cells.py); on a GPU every step of a loop is a
# kernel launch, so the doubling scan's log2(T) passes should win beyond a few steps. The GPU
# threshold is an assumption until benchmarks/gpu_check.py has run on a GPU.
GPU_PARALLEL_FROM = 16


def choose(scan: str, device: torch.device, steps: int) -> str:
    """The implementation ``model.scan`` names, or for ``auto`` the measured best for the device and length."""
    if scan != "auto":
        return scan
    if device.type == "cpu":
        return "sequential"
    return "parallel" if steps >= GPU_PARALLEL_FROM else "sequential"


@torch.jit.script
def _sequential(a: Tensor, b: Tensor, h0: Tensor, reverse: bool) -> Tensor:
    # Each step written straight into its slot of ``out`` (``out=``), which is then the next step's
    # state: no copy per step (the scan alone 1.37x faster at T=784, B=64, H=128 on one thread).
    out = torch.empty_like(b)
    h = h0
    steps = a.shape[0]
    for i in range(steps):
        t = steps - 1 - i if reverse else i
        slot = out[t]
        torch.addcmul(b[t], a[t], h, out=slot)
        h = slot
    return out


@torch.jit.script
def _sequential_backward(a: Tensor, grad: Tensor) -> Tensor:
    """g_t = grad_t + a_{t+1} g_{t+1} (``a`` already conjugated), reading a one step ahead: no shifted copy."""
    out = torch.empty_like(grad)
    steps = a.shape[0]
    g = out[steps - 1]
    g.copy_(grad[steps - 1])
    for i in range(1, steps):
        t = steps - 1 - i
        slot = out[t]
        torch.addcmul(grad[t], a[t + 1], g, out=slot)
        g = slot
    return out


@torch.jit.script
def _chunked(a: Tensor, b: Tensor, h0: Tensor, reverse: bool, chunk: int) -> Tensor:
    steps = a.shape[0]
    chunks = (steps + chunk - 1) // chunk
    pad = chunks * chunk - steps
    if pad > 0:  # a = 1, b = 0 past the end: the state passes through unchanged
        a = torch.cat([a, torch.ones((pad,) + a.shape[1:], dtype=a.dtype, device=a.device)])
        b = torch.cat([b, torch.zeros((pad,) + b.shape[1:], dtype=b.dtype, device=b.device)])
    a = a.reshape((chunks, chunk) + a.shape[1:])
    b = b.reshape((chunks, chunk) + b.shape[1:])
    # Each chunk's scan from a zero state and its running product of a, all chunks at once.
    local = torch.empty_like(b)
    decay = torch.empty_like(a)
    first = chunk - 1 if reverse else 0
    local[:, first] = b[:, first]
    decay[:, first] = a[:, first]
    h = local[:, first]
    p = decay[:, first]
    for j in range(1, chunk):  # written in place, as in _sequential
        i = chunk - 1 - j if reverse else j
        h_slot, p_slot = local[:, i], decay[:, i]
        torch.addcmul(b[:, i], a[:, i], h, out=h_slot)
        torch.mul(p, a[:, i], out=p_slot)
        h, p = h_slot, p_slot
    carry = torch.empty_like(b[:, 0])  # the state entering each chunk
    c = h0
    last = 0 if reverse else chunk - 1
    for j in range(chunks):
        k = chunks - 1 - j if reverse else j
        carry[k] = c
        c = torch.addcmul(local[k, last], decay[k, last], c)
    out = torch.addcmul(local, decay, carry.unsqueeze(1))
    return out.reshape((chunks * chunk,) + out.shape[2:])[:steps]


@torch.jit.script
def _parallel(a: Tensor, b: Tensor, h0: Tensor, reverse: bool) -> Tensor:
    steps = a.shape[0]
    shift = 1
    if reverse:
        b = torch.cat([b[:-1], torch.addcmul(b[-1:], a[-1:], h0.unsqueeze(0))])  # fold h0 into the last step
        while shift < steps:
            b = torch.cat([torch.addcmul(b[:-shift], a[:-shift], b[shift:]), b[-shift:]])
            if shift * 2 < steps:
                a = torch.cat([a[:-shift] * a[shift:], a[-shift:]])
            shift *= 2
        return b
    b = torch.cat([torch.addcmul(b[:1], a[:1], h0.unsqueeze(0)), b[1:]])  # fold h0 into the first step
    while shift < steps:
        b = torch.cat([b[:shift], torch.addcmul(b[shift:], a[shift:], b[:-shift])])
        if shift * 2 < steps:
            a = torch.cat([a[:shift], a[shift:] * a[:-shift]])
        shift *= 2
    return b


def widen(t: Tensor) -> Tensor:
    """``t`` in fp32 when it is in a lower precision (bf16 under autocast); fp32 and fp64 stay."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


class RealStateLayer(nn.Module):
    """A layer whose carried state is its output ``h`` (minGRU, minLSTM): the state in and out as
    it is (widened to fp32 on the way in), and ``h`` read out unchanged. The LRU, whose state is
    complex and whose output is a readout of it, writes its own three."""

    def to_state(self, h: Tensor) -> Tensor:
        return h

    def from_state(self, state: Tensor) -> Tensor:
        return widen(state)

    def readout(self, h: Tensor, x: Tensor) -> Tensor:
        return h


def chunk_length(steps: int) -> int:
    """~sqrt(T): the two loops of the chunked scan then take about the same number of steps."""
    return max(1, int(math.ceil(math.sqrt(steps))))


def scan(impl: str, a: Tensor, b: Tensor, h0: Tensor, reverse: bool = False) -> Tensor:
    """The recurrence by implementation ``impl`` (no autograd graph is wanted through it)."""
    if impl == "sequential":
        return _sequential(a, b, h0, reverse)
    if impl == "chunked":
        return _chunked(a, b, h0, reverse, chunk_length(a.shape[0]))
    if impl == "parallel":
        return _parallel(a, b, h0, reverse)
    raise ValueError(f"unknown scan implementation {impl!r}")


class LinearRecurrence(torch.autograd.Function):
    """``h = scan(a, b, h0)`` with the reverse scan as its backward pass (module docstring)."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, h0: Tensor, impl: str) -> Tensor:  # type: ignore[override]
        # A shared ``a`` [H] (the LRU's eigenvalues) is read through a stride-0 view: never T x B copies.
        h = scan(impl, a.expand_as(b), b, h0)
        ctx.impl = impl
        ctx.save_for_backward(a, h, h0)
        return h

    @staticmethod
    def backward(ctx, grad_h: Tensor):  # type: ignore[override]
        a, h, h0 = ctx.saved_tensors
        grad_h = grad_h.contiguous()
        # g_t = dL/dh_t + conj(a_{t+1}) g_{t+1}: a reverse scan with coefficients a shifted by one.
        a_conj = (a.conj().resolve_conj() if a.is_complex() else a).expand_as(h)
        if ctx.impl == "sequential":
            g = _sequential_backward(a_conj, grad_h)
        else:
            a_next = torch.cat([a_conj[1:], torch.zeros_like(a_conj[:1])])
            g = scan(ctx.impl, a_next, grad_h, torch.zeros_like(h0), reverse=True)
        grad_a = grad_h0 = None
        if ctx.needs_input_grad[0]:
            if a.dim() == 1:  # shared: the sum over steps and rows, without the [T, B, H] products
                grad_a = _sum_times_conj(g[1:], h[:-1]) + _sum_times_conj(g[:1], h0[None])
            else:
                grad_a = torch.empty_like(a)
                torch.mul(g[1:], h[:-1].conj(), out=grad_a[1:])
                torch.mul(g[0], h0.conj(), out=grad_a[0])
        if ctx.needs_input_grad[2]:
            grad_h0 = g[0] * a_conj[0]
        return grad_a, g, grad_h0, None


def _sum_times_conj(g: Tensor, h: Tensor) -> Tensor:
    """``(g * conj(h)).sum((0, 1))`` for [T, B, H] tensors."""
    return (g * h.conj()).sum((0, 1))


def linear_recurrence(a: Tensor, b: Tensor, h0: Tensor, impl: str = "sequential") -> Tensor:
    """Every ``h_t = a_t * h_{t-1} + b_t`` for time-major ``b`` [T, B, H], ``h0`` [B, H] and ``a``
    either [T, B, H] or [H], one coefficient per channel shared by every step and row (the LRU's)."""
    if (a.shape != b.shape and a.shape != b.shape[-1:]) or b.shape[1:] != h0.shape:
        raise ValueError(f"a {tuple(a.shape)}, b {tuple(b.shape)} and h0 {tuple(h0.shape)} do not match")
    return LinearRecurrence.apply(a.contiguous(), b.contiguous(), h0.contiguous(), impl)


def reference(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """The recurrence as a plain autograd loop (the tests' and benchmarks' reference)."""
    out: List[Tensor] = []
    h = h0
    for t in range(a.shape[0]):
        h = a[t] * h + b[t]
        out.append(h)
    return torch.stack(out)

