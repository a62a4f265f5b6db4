"""The LightningModule base of every task: builds the network, runs the stages, logs the epoch sums."""

from __future__ import annotations

import inspect
import logging
import numbers
from typing import Any, Dict, List, Optional, Tuple

import pytorch_lightning as pl
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from pytorch_lightning.plugins.precision import MixedPrecision
from torch import Tensor, nn
from torch.optim.lr_scheduler import ReduceLROnPlateau

from rnnexp.batch import DESCRIBE_TARGETS
from rnnexp.errors import ConfigError, UserError, check_choice
from rnnexp.models.nets.sequence_model import SequenceModel
from rnnexp.models.tasks.epoch_sums import EpochSums
from rnnexp.models.tasks.step_logging import logs_this_step

CLIP_ALGORITHMS = ("norm", "value")
log = logging.getLogger(__name__)


def without_penalties(network: Dict[str, Any], model: str) -> Dict[str, Any]:
    """``network`` without the keys only :class:`SequenceModel` reads (AR, TAR, embedding row
    dropout), for the tasks built on other networks; a value set there is refused in one line."""
    for key in ("ar", "tar", "embedding_dropout"):
        if network.get(key):
            raise ConfigError(key, network[key], f"is not available for model={model}; set it to 0")
    return {k: v for k, v in network.items() if k not in ("ar", "tar", "embedding_dropout")}


def plain(value: Any) -> Any:
    """OmegaConf containers -> dicts and lists, so checkpoints load with ``weights_only``."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


class RecurrentModule(pl.LightningModule):
    """A task on a :class:`SequenceModel` built from plain hyperparameters.

    ``input_size``, ``num_classes``, ``input_kind``, ``target_kind`` and ``vocab`` come from the data
    (:meth:`rnnexp.batch.DataSpec.model_kwargs`); ``**network`` are the network's settings
    (``cell``, ``hidden_size``, ``encoder``, ``pooling``, ...), passed through to
    :class:`SequenceModel` and the backbone, whose signatures are their only list.
    ``optimizer`` is a ``_partial_`` spec (``{_target_: torch.optim.Adam, _partial_: true, lr: ...}``);
    ``scheduler`` is ``{scheduler: <_partial_ spec>, interval: step|epoch, frequency, monitor}``
    or None. Every argument is a plain value, so ``load_from_checkpoint(path)`` needs nothing else
    (also for checkpoints of the earlier format, whose network settings were named arguments).

    Subclasses say which data they learn from (``accepts``: target kinds of
    :data:`rnnexp.batch.TARGET_KINDS`), whether the head is many-to-one, and how a batch's
    logits give the loss sum, its weight and the correct predictions (:meth:`_sums_of`).
    Per epoch, ``{stage}/loss`` and ``{stage}/acc`` come from those sums; ``train/loss_step``
    is logged on the steps Lightning writes.

    ``gradient_clip_val`` / ``gradient_clip_algorithm`` are for subclasses that optimise
    manually (see :meth:`manual_step`); with automatic optimization clipping is
    ``trainer.gradient_clip_val``.
    """

    accepts: Tuple[str, ...] = ()
    many_to_one: bool

    def __init__(
        self,
        input_size: int,
        num_classes: int,
        optimizer: Optional[Dict[str, Any]] = None,
        scheduler: Optional[Dict[str, Any]] = None,
        vocab: Optional[List[str]] = None,
        input_kind: Optional[str] = None,
        target_kind: Optional[str] = None,
        gradient_clip_val: Optional[float] = None,
        gradient_clip_algorithm: str = "norm",
        **network: Any,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        for key, value in list(self.hparams.items()):
            self.hparams[key] = plain(value)
        self._check_targets(target_kind)
        check_choice("gradient_clip_algorithm", gradient_clip_algorithm, CLIP_ALGORITHMS)
        if gradient_clip_val is not None and (isinstance(gradient_clip_val, bool) or not gradient_clip_val > 0):
            raise ConfigError("gradient_clip_val", gradient_clip_val, "must be a number > 0, or null for no clipping")
        self.net = self.build_net(input_size, num_classes, input_kind, {key: self.hparams[key] for key in network})
        self.sums = EpochSums()
        self._penalties: Dict[str, Tensor] = {}  # this training step's AR/TAR terms (SequenceModel.run)

    def build_net(self, input_size: int, num_classes: int, input_kind: Optional[str], network: Dict[str, Any]) -> nn.Module:
        """The network from the data's sizes and the network settings; a task with a network of
        another shape (the encoder-decoder) overrides it."""
        return SequenceModel(input_size, num_classes, many_to_one=self.many_to_one, input_kind=input_kind, **network)

    def _check_targets(self, target_kind: Optional[str]) -> None:
        """A task that cannot learn from the data's targets is one line naming the task that can."""
        if target_kind is None or target_kind in self.accepts:
            return
        from rnnexp.models.tasks import DEFAULT_TASK, TASKS  # the registry imports this module

        names = {cls: name for name, cls in TASKS.items()}
        raise ConfigError(
            "model", names.get(type(self), type(self).__name__),
            f"the data gives {DESCRIBE_TARGETS.get(target_kind, target_kind)}: use model={DEFAULT_TASK.get(target_kind)} "
            "(or model=auto, the data's own model)",
        )

    # -- what a task defines ---------------------------------------------------------------
    def _sums_of(self, logits: Tensor, batch: Dict[str, Any]) -> Tuple[Tensor, Tensor, Tensor]:
        """``(loss sum, weight, correct predictions)`` of a batch; the loss is their ratio."""
        raise NotImplementedError

    def _logits(self, batch: Dict[str, Any], stage: str) -> Tensor:
        """Logits of a batch; the language model overrides this to carry its state."""
        logits, _ = self._run(batch["inputs"], batch.get("lengths"), None, stage)
        return logits

    def _run(self, inputs: Tensor, lengths: Optional[Tensor], state: Any, stage: str):
        """``self(inputs, lengths, state)``; in training, the network's activation penalties (AR,
        TAR) are kept for :meth:`_step` to add to the loss."""
        if stage == "train" and isinstance(self.net, SequenceModel):
            logits, final, self._penalties = self.net.run(inputs, lengths, state)
            return logits, final
        return self(inputs, lengths, state)

    def _log_extra(self, stage: str, mean: Tensor) -> None:
        """Metrics derived from the epoch's mean loss (perplexity, bits per token)."""

    # -- the stages ------------------------------------------------------------------------
    def _step(self, batch: Dict[str, Any], stage: str) -> Tensor:
        total, weight, correct = self._sums_of(self._logits(batch, stage), batch)
        loss = total / weight.clamp_min(1e-12)
        self.sums.add(stage, total, weight, correct)
        if stage == "train" and logs_this_step(self):
            self.log("train/loss_step", loss, batch_size=int(weight), on_step=True, on_epoch=False, prog_bar=True)
        if stage == "train" and self._penalties:  # AR / TAR: the optimised loss only, not train/loss
            penalties, self._penalties = self._penalties, {}
            for name, value in penalties.items():
                if logs_this_step(self):
                    self.log(f"train/{name}", value, on_step=True, on_epoch=False)
                loss = loss + value
        return loss

    def _log_epoch(self, stage: str) -> None:
        sums = self.sums.pop(stage, self.trainer.strategy if self._trainer is not None else None)
        if sums is None:
            return
        loss_sum, weight, correct = sums.float().unbind()
        weight = weight.clamp_min(1e-12)
        mean = loss_sum / weight
        self.log(f"{stage}/loss", mean, prog_bar=stage != "test")
        self.log(f"{stage}/acc", correct / weight, prog_bar=stage != "train")
        self._log_extra(stage, mean)

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def on_train_epoch_start(self) -> None:
        self.sums.reset("train")

    def on_train_batch_start(self, batch, batch_idx) -> None:
        if self.sums.pending:
            self.sums.restore(self.current_epoch, self.device)

    def on_validation_epoch_start(self) -> None:
        self.sums.reset("val")

    def on_test_epoch_start(self) -> None:
        self.sums.reset("test")

    def on_train_epoch_end(self) -> None:
        if self.sums.pending:
            self.sums.restore(self.current_epoch, self.device)
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint["rnnexp_epoch_sums"] = self.sums.state(self.current_epoch)

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        self.sums.load(checkpoint.get("rnnexp_epoch_sums"))

    def forward(self, inputs: Tensor, lengths: Optional[Tensor] = None, state=None):
        return self.net(inputs, lengths, state)

    def diagnostic_loss(self, batch: Dict[str, Any]) -> Tensor:
        """The training loss of ``batch`` without logging or metric updates, for diagnostics
        (``rnnexp.callbacks.gradient_through_time``). No carried state."""
        logits, _ = self(batch["inputs"], batch.get("lengths"))
        total, weight, _ = self._sums_of(logits, batch)
        return total / weight.clamp_min(1e-12)

    # -- optimisation ----------------------------------------------------------------------
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
        """What the optimizer gets: all parameters, or parameter groups (the transformer keeps
        weight decay off its norms, biases and embeddings)."""
        return self.parameters()

    def _fusable(self, spec: Dict[str, Any]) -> Dict[str, Any]:
        """``spec`` without ``fused: true`` when Lightning would refuse it.

        Lightning's mixed-precision plugin raises on gradient clipping with any optimizer that
        unscales its own gradients (torch's fused Adam/AdamW), even for bf16, which has no scaler.
        Clipping is the default (``trainer.gradient_clip_val=1.0``), so under ``bf16-mixed`` /
        ``16-mixed`` with clipping the update falls back to torch's default (``foreach``)
        implementation: the same rule, a slower optimizer step.
        """
        trainer = self._trainer
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
