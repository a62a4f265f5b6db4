"""The Linear Recurrent Unit (Orvieto, Smith, Gu, Fernando, Gulcehre, Pascanu and De 2023,
"Resurrecting Recurrent Neural Networks for Long Sequences").

A complex diagonal linear recurrence with an exponential parametrisation::

    lambda = exp(-exp(nu) + i exp(theta))           (|lambda| = exp(-exp(nu)) < 1 always)
    gamma  = exp(gamma_log), initialised to sqrt(1 - |lambda|^2)
    x_t = lambda * x_{t-1} + gamma * (B u_t)        (a_t = lambda, b_t = gamma * B u_t)
    y_t = Re(C x_t) + D u_t

``nu`` and ``theta`` come from the ring initialisation: ``|lambda|`` uniform on the ring
``[r_min, r_max]`` of the complex plane, phase uniform in ``[0, max_phase]``. ``B`` [N, F] and
``C`` [H, N] are complex (Glorot-like normal, as the paper), ``D`` [H, F] is real; ``D`` is a
matrix, not the paper's diagonal, because the input width ``F`` and the output width
``H = hidden_size`` may differ here. The state ``x`` has ``state_size`` N complex entries,
carried as 2N reals (real and imaginary parts interleaved), so every state helper of the
backbone (cat, index_select, detach, dtype casts) works unchanged. The layer is linear in its
input: depth needs the nonlinearity of ``model.block=residual`` (its gated MLP), as in the paper.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnexp.models.nets.linear_recurrence import widen


class LRULayer(nn.Module):
    """One direction of one layer: ``coefficients(u [T, B, F]) -> (a [N], b [T, B, N])`` (complex) of ``x_t = a x_{t-1} + b_t``."""

    def __init__(self, input_size: int, hidden_size: int, state_size: int, r_min: float, r_max: float,
                 max_phase: float) -> None:
        super().__init__()
        self.hidden_size, self.complex_size = hidden_size, state_size
        self.state_size = 2 * state_size  # reals carried per row
        u1, u2 = torch.rand(state_size), torch.rand(state_size)
        nu_log = torch.log(-0.5 * torch.log(u1 * (r_max**2 - r_min**2) + r_min**2))
        theta_log = torch.log(max_phase * u2)
        self.nu_log = nn.Parameter(nu_log)
        self.theta_log = nn.Parameter(theta_log)
        modulus = torch.exp(-torch.exp(nu_log))
        self.gamma_log = nn.Parameter(torch.log(torch.sqrt(1 - modulus**2)))
        # B: [2N, F] rows (re, im) interleaved; C as a real map of the interleaved (re, im) state.
        self.B = nn.Linear(input_size, 2 * state_size, bias=False)
        nn.init.normal_(self.B.weight, std=1 / math.sqrt(2 * input_size))
        self.C = nn.Linear(2 * state_size, hidden_size, bias=False)
        nn.init.normal_(self.C.weight, std=1 / math.sqrt(state_size))
        self.D = nn.Linear(input_size, hidden_size)
        nn.init.normal_(self.D.weight, std=1 / math.sqrt(input_size))
        nn.init.zeros_(self.D.bias)

    def no_weight_decay(self) -> Tuple[str, ...]:
        """The parametrisation of lambda and gamma: weight decay would pull ``nu_log`` toward 0,
        ``|lambda|`` toward exp(-1), and undo the ring initialisation (the paper trains them
        without it). Read by ``Optimization.optimizer_parameters``, as timm's hook of the same name."""
        return ("nu_log", "theta_log", "gamma_log")

    def eigenvalues(self) -> Tensor:
        """lambda [N], complex (at least complex64)."""
        return torch.polar(torch.exp(-torch.exp(widen(self.nu_log))), torch.exp(widen(self.theta_log)))

    def coefficients(self, u: Tensor) -> Tuple[Tensor, Tensor]:
        # gamma scales B's rows (re and im of each state), not the [T, B, N] product: one pass less each way.
        weight = self.B.weight * torch.exp(self.gamma_log).repeat_interleave(2)[:, None]
        b = torch.view_as_complex(widen(F.linear(u, weight)).unflatten(-1, (self.complex_size, 2)))
        return self.eigenvalues(), b  # a = lambda [N], shared by every step and row

    def to_state(self, x: Tensor) -> Tensor:
        return torch.view_as_real(x).flatten(-2)

    def from_state(self, state: Tensor) -> Tensor:
        return torch.view_as_complex(widen(state).unflatten(-1, (self.complex_size, 2)).contiguous())

    def readout(self, x: Tensor, u: Tensor) -> Tensor:
        # Re(C x) for complex C = C_re + i C_im is C_re Re(x) - C_im Im(x): one real map of (re, im).
        return self.C(torch.view_as_real(x).flatten(-2)) + self.D(u)
