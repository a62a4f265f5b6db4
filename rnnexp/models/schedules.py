"""Learning-rate schedules torch does not ship under the seeds' names.

Both are ``torch.optim.lr_scheduler`` objects, stepped once per optimizer step
(``interval: step`` in ``conf/schedule/``), so ``global_step`` means what it means in
TensorFlow. The LR factor is a small callable object rather than a lambda so it is
saved in checkpoints (``LambdaLR`` stores callable objects' attributes, drops functions).
"""

from __future__ import annotations

import math
from typing import Optional

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LinearLR, LRScheduler, SequentialLR

from rnnexp.errors import ConfigError, check_int, check_number, check_positive_int


class TFExponentialDecay:
    """``decay_rate ** (step / decay_steps)``, the exponent floored when ``staircase``."""

    def __init__(self, decay_steps: int, decay_rate: float, staircase: bool) -> None:
        self.decay_steps, self.decay_rate, self.staircase = decay_steps, decay_rate, staircase

    def __call__(self, step: int) -> float:
        exponent = step / self.decay_steps
        return self.decay_rate ** (math.floor(exponent) if self.staircase else exponent)


def exponential_decay(
    optimizer: Optimizer,
    decay_steps: int = 1000,
    decay_rate: float = 0.96,
    staircase: bool = False,
    gamma: Optional[float] = None,
) -> LambdaLR:
    """TensorFlow's ``tf.train.exponential_decay(lr, global_step, decay_steps, decay_rate, staircase)``.

    ``gamma`` is torch's ``ExponentialLR`` shorthand (lr * gamma after every step): it
    stands for ``decay_rate=gamma, decay_steps=1``.
    """
    if gamma is not None:
        decay_rate, decay_steps = gamma, 1
    check_positive_int("schedule.scheduler.decay_steps", decay_steps)
    check_number("schedule.scheduler.decay_rate", decay_rate, 0, low_open=True, hint=" (e.g. 0.96)")
    if not isinstance(staircase, bool):
        raise ConfigError("schedule.scheduler.staircase", staircase, "must be true or false")
    return LambdaLR(optimizer, TFExponentialDecay(decay_steps, float(decay_rate), staircase))


def warmup_cosine(
    optimizer: Optimizer,
    total_steps: Optional[int],
    warmup_steps: int = 0,
    min_lr: float = 0.0,
    warmup_start_factor: float = 0.01,
) -> LRScheduler:
    """Linear warmup from ``warmup_start_factor * lr`` to ``lr`` over ``warmup_steps``, then a
    cosine down to ``min_lr`` at ``total_steps`` (``null`` in the config: the trainer's
    ``estimated_stepping_batches``, filled in by ``configure_optimizers``)."""
    check_positive_int("schedule.scheduler.total_steps", total_steps)
    check_int("schedule.scheduler.warmup_steps", warmup_steps, 0, total_steps, hint=f" (total_steps={total_steps})")
    check_number("schedule.scheduler.warmup_start_factor", warmup_start_factor, 0, 1, low_open=True, high_open=False)
    cosine = CosineAnnealingLR(optimizer, T_max=total_steps - warmup_steps, eta_min=min_lr)
    if warmup_steps == 0:
        return cosine
    warmup = LinearLR(optimizer, start_factor=warmup_start_factor, total_iters=warmup_steps)
    return SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_steps])
