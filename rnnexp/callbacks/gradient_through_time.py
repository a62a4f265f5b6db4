"""Gradient through time: ``||dL/dh_t||`` at every step ``t`` of every layer, as a figure.

Vanishing gradients show as a curve that falls by orders of magnitude from the last step
back to the first (a tanh RNN on long sequences); an LSTM's stays much flatter. Every
``every_n_steps`` optimizer steps the callback re-runs the current training batch (its
first ``max_rows`` rows) in eval mode (no dropout, and no draw from the RNG that training
uses) through the backbone unrolled one step at a time, so each step's state is an
autograd node (``RecurrentBackbone.record_states``), and takes the gradient of the
module's ``diagnostic_loss`` with respect to those states only: parameters' ``.grad``
and the training step are untouched, and nothing runs on the other steps.

Writes ``<dirpath>/step_000100.png`` (log-scale, one curve per layer), the figure to
TensorBoard (``add_figure``) and wandb (``log_image``) when those loggers are present, and
to every logger the scalar ``diagnostics/grad_first_over_last/layer_<k>``,
``||dL/dh_1|| / ||dL/dh_T||`` (1 = no decay; 1e-10 = vanished).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import pytorch_lightning as pl
import torch
from torch import Tensor

from rnnexp.errors import ConfigError, check_positive_int
from rnnexp.models.nets.backbone import RecurrentBackbone
from rnnexp.models.nets.unrolled import state_gradients

log = logging.getLogger(__name__)
TAG = "diagnostics/gradient_through_time"


def gradient_norms_through_time(pl_module: pl.LightningModule, batch: Any) -> Tensor:
    """[layers, T]: the norm of dL/dh_t over the batch and the layer's features."""
    backbone = next((m for m in pl_module.modules() if isinstance(m, RecurrentBackbone)), None)
    if backbone is None or not hasattr(pl_module, "diagnostic_loss"):
        raise ConfigError("callbacks.gradient_through_time", type(pl_module).__name__,
                          "needs an rnnexp SequenceTask (a RecurrentBackbone and diagnostic_loss)")
    was_training = pl_module.training
    pl_module.eval()
    # Forked RNG: building the one-step modules draws initial weights, which must not shift
    # the dropout masks and shuffling of the training run that follows.
    devices = [pl_module.device] if pl_module.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.enable_grad(), backbone.record_states() as taps:
            loss = pl_module.diagnostic_loss(batch)
            grads = state_gradients(loss, taps)
    finally:
        pl_module.train(was_training)
    return torch.stack([g.detach().float().norm(dim=(0, 2)) for g in grads]).cpu()


def _first_rows(batch: Any, rows: Optional[int]) -> Any:
    if rows is None or not isinstance(batch, dict):
        return batch
    size = batch["inputs"].shape[0]
    return {k: v[:rows] if isinstance(v, Tensor) and v.dim() >= 1 and v.shape[0] == size else v for k, v in batch.items()}


def plot(norms: Tensor, step: int):
    """A matplotlib Figure (no pyplot state: safe in any thread, nothing to close)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6.4, 4.0), tight_layout=True)
    ax = fig.subplots()
    steps = torch.arange(1, norms.shape[1] + 1)
    tiny = torch.finfo(torch.float32).tiny  # log scale: an exact 0 (underflow) sits at the floor
    for layer, row in enumerate(norms):
        ax.semilogy(steps, row.clamp_min(tiny), label=f"layer {layer}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("time step t")
    ax.set_ylabel("||dL/dh_t||")
    ax.set_title(f"Gradient through time, step {step}")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    return fig


class GradientThroughTime(pl.Callback):
    """``every_n_steps``: null (off) or an integer; ``max_rows``: rows of the batch used (null: all)."""

    def __init__(self, every_n_steps: Optional[int] = None, dirpath: Optional[str] = None, max_rows: Optional[int] = 32) -> None:
        if every_n_steps is not None:
            check_positive_int("callbacks.gradient_through_time.every_n_steps", every_n_steps)
        if max_rows is not None:
            check_positive_int("callbacks.gradient_through_time.max_rows", max_rows)
        self.every_n_steps, self.dirpath, self.max_rows = every_n_steps, dirpath, max_rows
        self._fired_at = -1
        self.last: Optional[Tensor] = None  # the last [layers, T] norms, for tests and notebooks

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        step = trainer.global_step  # optimizer steps done, counting this batch's
        if not self.every_n_steps or step % self.every_n_steps or step == self._fired_at:
            return
        self._fired_at = step  # gradient accumulation: several batches end on one global step
        norms = gradient_norms_through_time(pl_module, _first_rows(batch, self.max_rows))
        self.last = norms
        ratios = {f"diagnostics/grad_first_over_last/layer_{k}": float(row[0] / row[-1]) if row[-1] > 0 else float("nan")
                  for k, row in enumerate(norms)}
        for logger in trainer.loggers:
            logger.log_metrics(ratios, step=step)
        if not trainer.is_global_zero:
            return
        fig = plot(norms, step)
        directory = Path(self.dirpath or Path(trainer.default_root_dir) / "gradient_through_time")
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"step_{step:06d}.png"
        fig.savefig(path, dpi=100)
        self._to_loggers(trainer, fig, path, step)

    @staticmethod
    def _to_loggers(trainer: pl.Trainer, fig, path: Path, step: int) -> None:
        from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger

        for logger in trainer.loggers:
            try:
                if isinstance(logger, TensorBoardLogger):
                    logger.experiment.add_figure(TAG, fig, global_step=step, close=False)
                elif isinstance(logger, WandbLogger):
                    logger.log_image(key=TAG, images=[str(path)], step=step)
            except Exception as exc:  # a dashboard hiccup must not end the training run
                log.warning("gradient_through_time: could not send the figure to %s: %s", type(logger).__name__, exc)
