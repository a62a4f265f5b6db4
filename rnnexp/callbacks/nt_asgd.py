"""Non-monotonically triggered averaged SGD (NT-ASGD; Merity et al. 2017, section 3).

Train with plain SGD; once validation has stopped improving (Merity's rule, :func:`should_switch`)
average the iterates from then on and evaluate, checkpoint and test the average.

``torch.optim.ASGD`` with ``lambd=0`` already is both phases in one optimizer: its update is
plain SGD (``eta = lr``), and it keeps ``ax``, a copy of the weights until step ``t0`` and their
running mean from ``t0`` on (``mu = 1 / max(1, step - t0)``). So the switch is one assignment,
``t0 = <current step>`` in every param group (the averaging then starts exactly as Merity's
fresh ``ASGD(t0=0)`` does), and resuming needs nothing special: ``t0``, ``ax`` and the step
counts are in the optimizer's state dict, the validation history in this callback's.

The average lives in the optimizer, the model keeps the raw SGD iterate it trains on. This
callback swaps the average in for every validation, and writes it as the checkpoint's
``state_dict`` (so ``load_from_checkpoint``, the test of the best checkpoint and
``rnnexp.generate`` use it), with the raw weights beside it under :data:`RAW_KEY`, which a
resumed fit puts back before training on.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch import Tensor

from rnnexp.errors import ConfigError, check_positive_int

log = logging.getLogger(__name__)
RAW_KEY = "nt_asgd_raw_state_dict"


def should_switch(history: Sequence[float], value: float, nonmono: int) -> bool:
    """Merity's trigger: more than ``nonmono`` earlier evaluations, and ``value`` worse than the
    best of all but the last ``nonmono`` of them (``val_loss > min(logs[:-nonmono])``)."""
    return len(history) > nonmono and value > min(history[:-nonmono])


class NTASGD(pl.Callback):
    """Switches ``optimizer=asgd`` (``lambd: 0``) from SGD to averaging when ``monitor`` (lower is
    better) has not improved for ``nonmono`` validations."""

    def __init__(self, nonmono: int = 5, monitor: str = "val/loss") -> None:
        check_positive_int("nonmono", nonmono)
        self.nonmono, self.monitor = nonmono, monitor
        self.history: List[float] = []
        self.switched_at: Optional[int] = None  # the global step the averaging starts from
        self._raw: Dict[Tensor, Tensor] = {}  # params -> their raw values while the average is swapped in

    # -- the switch ------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for optimizer in trainer.optimizers:
            if not isinstance(optimizer, torch.optim.ASGD) or any(g["lambd"] != 0 for g in optimizer.param_groups):
                name = type(optimizer).__name__
                raise ConfigError("optimizer", name, "callbacks=nt_asgd needs optimizer=asgd (torch.optim.ASGD, lambd 0)")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._swap_back()
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None or trainer.state.fn != TrainerFn.FITTING:
            return
        value = float(value)
        if self.switched_at is None and should_switch(self.history, value, self.nonmono):
            self.switched_at = trainer.global_step
            for optimizer in trainer.optimizers:
                for group in optimizer.param_groups:
                    group["t0"] = float(self.switched_at)
            log.info("NT-ASGD: %s=%.4g is worse than the best before the last %d evaluations; averaging "
                     "the weights from step %d on", self.monitor, value, self.nonmono, self.switched_at)
        self.history.append(value)

    # -- evaluating with the average -------------------------------------------------------
    def _averages(self, trainer: pl.Trainer) -> Dict[Tensor, Tensor]:
        """param -> its running average (ASGD's ``ax``), once the averaging has started."""
        if self.switched_at is None:
            return {}
        return {p: state["ax"] for optimizer in trainer.optimizers for p, state in optimizer.state.items() if "ax" in state}

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn != TrainerFn.FITTING:
            return
        with torch.no_grad():
            for param, average in self._averages(trainer).items():
                self._raw[param] = param.detach().clone()
                param.copy_(average)

    def _swap_back(self) -> None:
        with torch.no_grad():
            for param, raw in self._raw.items():
                param.copy_(raw)
        self._raw = {}

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._swap_back()

    # -- checkpoints -----------------------------------------------------------------------
    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: Dict[str, Any]) -> None:
        averages = self._averages(trainer)
        if not averages:
            return
        raw: Dict[str, Tensor] = {}
        for key, param in pl_module.state_dict(keep_vars=True).items():  # tied weights: both names
            if param in averages and key in checkpoint["state_dict"]:
                raw[key] = self._raw.get(param, param).detach().clone()
                checkpoint["state_dict"][key] = averages[param].detach().clone()
        checkpoint[RAW_KEY] = raw

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: Dict[str, Any]) -> None:
        """Resuming a fit (Lightning calls this only then, after loading the averaged state_dict):
        train on from the raw SGD iterate."""
        raw = checkpoint.get(RAW_KEY)
        if raw:
            pl_module.load_state_dict(raw, strict=False)

    def state_dict(self) -> Dict[str, Any]:
        return {"history": list(self.history), "switched_at": self.switched_at, "nonmono": self.nonmono}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.history = [float(v) for v in state_dict.get("history", [])]
        self.switched_at = state_dict.get("switched_at")
