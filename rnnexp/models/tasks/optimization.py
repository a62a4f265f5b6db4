"""How a task optimises: the optimizer and scheduler built from their plain ``_partial_`` specs,
the fused-Adam rule under mixed precision, and the steps of manual optimization.

A mixin of :class:`rnnexp.models.tasks.base.SequenceTask` (and of every task on it), apart
from the stages so that either can be read alone. It reads ``self.hparams.optimizer`` /
``scheduler`` / ``gradient_clip_*`` and the trainer; nothing else of the task.
"""

from __future__ import annotations

import inspect
import logging
import numbers
from typing import Any, Dict

from hydra.utils import get_object, instantiate
from pytorch_lightning.plugins.precision import MixedPrecision
from torch import Tensor
from torch.optim.lr_scheduler import ReduceLROnPlateau

from rnnexp.compat.lightning import attached_trainer
from rnnexp.errors import ConfigError, UserError

log = logging.getLogger(__name__)


class Optimization:
    """``configure_optimizers`` and manual optimization for a LightningModule with plain
    ``optimizer`` / ``scheduler`` hyperparameters (see :class:`SequenceTask`)."""

    def configure_optimizers(self):
        spec = self.hparams.optimizer
        if not spec or "_target_" not in spec:
            raise ConfigError("optimizer", spec, "pick one with optimizer=adam (or adamw, sgd, rmsprop)")
        optimizer = _build("optimizer", self._fusable(spec), self.optimizer_parameters())
        schedule = self.hparams.scheduler
        if not schedule or not schedule.get("scheduler"):
            return optimizer
        spec = dict(schedule["scheduler"])
        if "total_steps" in spec and spec["total_steps"] is None:  # warmup_cosine: the whole run
            spec["total_steps"] = int(self.trainer.estimated_stepping_batches)
            warmup = spec.get("warmup_steps")
            if isinstance(warmup, int) and not isinstance(warmup, bool) and warmup >= spec["total_steps"] > 0:
                # A run shorter than the preset's warmup (debug=fdr, a few limited batches) still runs.
                log.warning("The run has %d optimizer steps, not more than schedule.scheduler.warmup_steps=%d: "
                            "warming up over %d", spec["total_steps"], warmup, spec["total_steps"] - 1)
                spec["warmup_steps"] = spec["total_steps"] - 1
        scheduler = _build("schedule.scheduler", spec, optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": schedule.get("interval", "epoch"),
                "frequency": schedule.get("frequency", 1),
                "monitor": schedule.get("monitor", "val/loss"),
            },
        }

    def optimizer_parameters(self):
        """What the optimizer gets: all parameters, or two groups when a module names parameters
        that take no weight decay (``no_weight_decay()``, timm's hook: the LRU's eigenvalue
        parametrisation; the transformer's norms, biases and embeddings). Names are the module's own
        parameter names, dotted for its submodules' (``get_parameter``)."""
        exempt = {id(module.get_parameter(name)) for module in self.modules() if hasattr(module, "no_weight_decay")
                  for name in module.no_weight_decay()}
        if not exempt:
            return self.parameters()
        return [{"params": [p for p in self.parameters() if id(p) not in exempt]},
                {"params": [p for p in self.parameters() if id(p) in exempt], "weight_decay": 0.0}]

    def _fusable(self, spec: Dict[str, Any]) -> Dict[str, Any]:
        """``spec`` without ``fused: true`` when Lightning would refuse it.

        Lightning's mixed-precision plugin raises on gradient clipping with any optimizer that
        unscales its own gradients (torch's fused Adam/AdamW), even for bf16, which has no scaler.
        Clipping is the default (``trainer.gradient_clip_val=1.0``), so under ``bf16-mixed`` /
        ``16-mixed`` with clipping the update falls back to torch's default (``foreach``)
        implementation: the same rule, a slower optimizer step.
        """
        trainer = attached_trainer(self)
        if not spec.get("fused") or trainer is None:
            return spec
        clipped = bool(trainer.gradient_clip_val) or self.hparams.get("gradient_clip_val") is not None
        if clipped and isinstance(trainer.precision_plugin, MixedPrecision):
            log.info("optimizer.fused=true is off: Lightning does not clip the gradients of a fused optimizer under %s", trainer.precision)
            return {**spec, "fused": None}
        return spec

    def manual_step(self, loss: Tensor) -> None:
        """One optimizer step for subclasses with ``automatic_optimization = False``.

        Lightning leaves all of this to manual code (and ``Trainer(gradient_clip_val=...)``
        raises there): zero the gradients, ``manual_backward``, clip with this module's
        ``gradient_clip_val`` / ``gradient_clip_algorithm``, step, and step the
        ``interval: step`` schedulers every ``frequency`` steps. Call
        :meth:`manual_epoch_end` from ``on_train_epoch_end`` for ``interval: epoch`` ones.
        """
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(loss)
        if self.hparams.gradient_clip_val is not None:
            self.clip_gradients(
                optimizer,
                gradient_clip_val=self.hparams.gradient_clip_val,
                gradient_clip_algorithm=self.hparams.gradient_clip_algorithm,
            )
        optimizer.step()
        self._step_manual_schedulers("step")

    def manual_epoch_end(self) -> None:
        """Step ``interval: epoch`` schedulers under manual optimization."""
        self._step_manual_schedulers("epoch")

    def _step_manual_schedulers(self, interval: str) -> None:
        schedule = self.hparams.scheduler
        if not schedule or not schedule.get("scheduler") or schedule.get("interval", "epoch") != interval:
            return
        count = self.global_step if interval == "step" else self.current_epoch + 1
        if count % schedule.get("frequency", 1):
            return
        scheduler = self.lr_schedulers()
        if isinstance(scheduler, ReduceLROnPlateau):
            monitor = schedule.get("monitor", "val/loss")
            if monitor not in self.trainer.callback_metrics:
                return  # no validation yet
            scheduler.step(self.trainer.callback_metrics[monitor])
        else:
            scheduler.step()


def _build(where: str, spec: Dict[str, Any], argument: Any) -> Any:
    """Instantiate a ``_partial_`` spec and call it on ``argument``; a bad value is one line naming its key.

    Values checked before the call: torch takes ``lr='abc'`` and fails later with a message that
    names no key (``'<=' not supported ...``), and ``StepLR(gamma='half')`` only at its first step.
    """
    _check_numbers(where, spec)
    try:
        return instantiate(spec)(argument)
    except (ValueError, TypeError) as exc:  # torch's own range checks, e.g. a negative lr
        raise UserError(f"{where}: {exc} (in {spec['_target_']}); fix it with {where}.<key>=...") from exc


def _check_numbers(where: str, spec: Dict[str, Any]) -> None:
    """A key whose value is not a number where the target's default is one is a :class:`ConfigError`."""
    try:
        parameters = inspect.signature(get_object(spec["_target_"])).parameters
    except Exception:  # noqa: BLE001 - no signature to compare with: torch's own checks remain
        return
    for key, value in spec.items():
        default = parameters[key].default if key in parameters else None
        numeric_default = isinstance(default, numbers.Number) and not isinstance(default, bool)
        if numeric_default and (not isinstance(value, numbers.Number) or isinstance(value, bool)):
            raise ConfigError(f"{where}.{key}", value, f"must be a number (the default of {spec['_target_']} is {default})")
