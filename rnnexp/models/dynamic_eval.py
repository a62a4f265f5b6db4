"""Dynamic evaluation of a language model (Krause et al. 2018, "Dynamic Evaluation of Neural
Sequence Models"): score a text window by window and adapt a copy of the weights to each window
after scoring it, so later windows are predicted by a model that has seen the earlier ones.

A window is scored first and only then used for an update: its score never depends on its own
content through the weights (:func:`run_stream`). The trained weights θ₀ stay as they are; a
deep copy of the network is adapted. Two update rules:

* ``sgd``: a plain :class:`torch.optim.SGD` step with ``lr`` on the window's mean loss (nats per
  character).
* ``rms``: Krause's RMS-normalised rule with a decay toward θ₀,
  ``θ ← θ − lr·g/(sqrt(MS)+eps) + decay·(θ₀ − θ)``, where MS is the per-parameter mean squared
  gradient of θ₀ over windows of the training split (:func:`mean_squared_gradients`). With
  ``decay_scale=uniform`` (the default) ``decay`` is one number for every weight and reads
  directly (``decay=0.1`` moves every weight 10% of the way back to θ₀ per window).
  ``decay_scale=rms`` is the paper's global decay prior: each weight's decay is
  ``decay·RMS/mean(RMS)`` (``RMS = sqrt(MS)``, the mean over all weights), capped at 1, so
  weights with large gradients are pulled back harder.

The state is carried from window to window (detached), as in the language model's own
validation and test loops, and under the run's autocast (bf16-mixed) when it used one, so the
static score equals ``Trainer.test``'s on the same split and batching. Everything follows the
network's device.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional

import torch
from torch import Tensor, nn

from rnnexp.compat.lightning import autocast_dtype
from rnnexp.errors import ConfigError, is_number
from rnnexp.models.nets.layer_state import detach_state
from rnnexp.models.nets.losses import sequence_loss_sum

METHODS = ("sgd", "rms")
DECAY_SCALES = ("uniform", "rms")


@dataclass
class StreamScore:
    """Summed nats and characters of a pass, and each window's mean nats (for tests and plots)."""

    nats: float = 0.0
    chars: int = 0
    windows: List[float] = field(default_factory=list)

    @property
    def loss(self) -> float:
        return self.nats / max(self.chars, 1)

    @property
    def bpc(self) -> float:
        return self.loss / math.log(2)


def check_update(method: str, lr: Any, decay: Any, eps: Any = 1.0) -> None:
    """One line naming the bad value: an unknown method, ``lr <= 0``, a decay outside [0, 1)."""
    if method not in METHODS:
        raise ConfigError("method", method, f"choose one of {', '.join(METHODS)}")
    if not is_number(lr) or not lr > 0:
        raise ConfigError("lr", lr, "must be a number > 0 (dynamic=false scores without adaptation)")
    if not is_number(decay) or not 0 <= decay < 1:
        raise ConfigError("decay", decay, "must be a number in [0, 1): the fraction of the way back to the "
                          "trained weights per window")
    if method == "sgd" and decay:
        raise ConfigError("decay", decay, "applies to method=rms only; drop it or use method=rms")
    if not is_number(eps) or not eps > 0:
        raise ConfigError("eps", eps, "must be a number > 0")


def autocast_for(precision: Optional[str], device: torch.device):
    """The autocast Lightning runs a step under for ``trainer.precision`` (none for fp32)."""
    dtype = autocast_dtype(precision or "32-true")
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _to(batch: Dict[str, Any], device: torch.device) -> Dict[str, Any]:
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}


class Updater:
    """Adapts ``net`` (the copy) in place after each window: ``sgd`` or ``rms`` (module docstring)."""

    def __init__(self, net: nn.Module, method: str, lr: float, decay: float = 0.0, eps: float = 2e-5,
                 ms: Optional[List[Tensor]] = None, decay_scale: str = "uniform") -> None:
        self.params = [p for p in net.parameters() if p.requires_grad]
        self.method, self.lr, self.decay, self.eps = method, lr, decay, eps
        self.theta0 = [p.detach().clone() for p in self.params]
        if method == "rms":
            if ms is None:
                raise ValueError("method=rms needs the mean squared gradients (mean_squared_gradients)")
            rms = [m.to(p.device).sqrt() for m, p in zip(ms, self.params)]
            self.scale = [r + eps for r in rms]
            self.decays: List[Any] = [decay] * len(rms)
            if decay_scale == "rms":
                mean = torch.cat([r.flatten() for r in rms]).mean().clamp_min(1e-30)
                self.decays = [(r / mean * decay).clamp_(max=1.0) for r in rms]
        else:
            self.sgd = torch.optim.SGD(self.params, lr=lr)

    def step(self, loss: Tensor) -> None:
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        with torch.no_grad():
            if self.method == "sgd":
                for p, g in zip(self.params, grads):
                    p.grad = g
                self.sgd.step()
                for p in self.params:
                    p.grad = None
                return
            for p, g, s, p0, decay in zip(self.params, grads, self.scale, self.theta0, self.decays):
                update = (p0 - p).mul_(decay)
                if g is not None:
                    update.addcdiv_(g, s, value=-self.lr)
                p.add_(update)


def _rnn_backward_allowed():
    """cuDNN's RNN backward refuses eval mode; the native kernels do not (and dropout must stay off)."""
    return torch.backends.cudnn.flags(enabled=False)


def run_stream(net: nn.Module, windows: Iterable[Dict[str, Any]], precision: Optional[str] = None,
               updater: Optional[Updater] = None, state: Any = None, keep_state: Optional[list] = None) -> StreamScore:
    """Score ``windows`` in order carrying the state; after each window's score, ``updater.step``
    on that window's mean loss (``updater=None``: static evaluation). ``net`` is in eval mode
    (no dropout), as in ``Trainer.test``. ``keep_state`` (a list) receives the final state."""
    net.eval()
    device = next(net.parameters()).device
    score = StreamScore()
    grad = updater is not None
    with _rnn_backward_allowed() if grad else contextlib.nullcontext(), torch.set_grad_enabled(grad):
        for batch in windows:
            batch = _to(batch, device)
            if state is not None and _rows(state) != batch["inputs"].shape[0]:
                state = None
            with autocast_for(precision, device):
                logits, final = net(batch["inputs"], batch.get("lengths"), state)
                total, count = sequence_loss_sum(logits, batch["targets"], batch.get("weights"))
            state = detach_state(final) if batch.get("carry_state", True) else None
            score.nats += float(total.detach().float())
            score.chars += int(count)
            mean = total / count.clamp_min(1e-12)
            score.windows.append(float(mean.detach().float()))
            if grad:
                updater.step(mean)  # after the score: the window never sees itself
    if keep_state is not None:
        keep_state.append(state)
    return score


def dynamic_score(net: nn.Module, windows: Iterable[Dict[str, Any]], method: str, lr: float, decay: float = 0.0,
                  eps: float = 2e-5, ms: Optional[List[Tensor]] = None, precision: Optional[str] = None,
                  decay_scale: str = "uniform") -> StreamScore:
    """Dynamic evaluation on a deep copy of ``net``: ``net`` (θ₀) is left as it was."""
    adapted = copy.deepcopy(net)
    return run_stream(adapted, windows, precision, Updater(adapted, method, lr, decay, eps, ms, decay_scale))


def mean_squared_gradients(net: nn.Module, windows: Iterable[Dict[str, Any]],
                           precision: Optional[str] = None) -> List[Tensor]:
    """Per-parameter mean over ``windows`` of the squared gradient of the window's mean loss at
    θ₀ (no update), carrying the state: Krause's MS, collected on the training split."""
    net.eval()
    device = next(net.parameters()).device
    params = [p for p in net.parameters() if p.requires_grad]
    sums = [torch.zeros_like(p, dtype=torch.float32) for p in params]
    count, state = 0, None
    with _rnn_backward_allowed():
        for batch in windows:
            batch = _to(batch, device)
            with autocast_for(precision, device):
                logits, final = net(batch["inputs"], batch.get("lengths"), state)
                total, chars = sequence_loss_sum(logits, batch["targets"], batch.get("weights"))
            state = detach_state(final)
            grads = torch.autograd.grad(total / chars.clamp_min(1e-12), params, allow_unused=True)
            for s, g in zip(sums, grads):
                if g is not None:
                    s.add_(g.float().square())
            count += 1
    if not count:
        raise ConfigError("ms_windows", count, "the training split gave no window to collect gradients on")
    return [s / count for s in sums]


def _rows(state: List[Any]) -> int:
    first = state[0][0] if isinstance(state[0], tuple) else state[0]
    return int(first.shape[1])
