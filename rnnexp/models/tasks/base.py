"""The LightningModule base of every task: builds the network, runs the stages, logs the epoch sums."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import pytorch_lightning as pl
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import Tensor, nn

from rnnexp.compat.lightning import attached_trainer
from rnnexp.batch import DESCRIBE_TARGETS
from rnnexp.errors import ConfigError, check_choice, check_number
from rnnexp.models.tasks.epoch_sums import EpochSums
from rnnexp.models.tasks.networks import NETWORKS
from rnnexp.models.tasks.optimization import Optimization
from rnnexp.models.tasks.step_logging import logs_this_step, scalar_metrics

CLIP_ALGORITHMS = ("norm", "value")


def plain(value: Any) -> Any:
    """OmegaConf containers -> dicts and lists, so checkpoints load with ``weights_only``."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


class SequenceTask(Optimization, pl.LightningModule):
    """A task on a sequence network built from plain hyperparameters; which network is the
    subclass's ``network`` (a name of :data:`rnnexp.models.tasks.networks.NETWORKS`).

    ``input_size``, ``num_classes``, ``input_kind``, ``target_kind`` and ``vocab`` come from the data
    (:meth:`rnnexp.batch.DataSpec.model_kwargs`); ``**network`` are the network's settings
    (``cell``, ``hidden_size``, ``encoder``, ``pooling``, ...; ``d_model``, ... for the
    transformer), passed through to the network, whose signatures are their only list.
    ``optimizer`` is a ``_partial_`` spec (``{_target_: torch.optim.Adam, _partial_: true, lr: ...}``);
    ``scheduler`` is ``{scheduler: <_partial_ spec>, interval: step|epoch, frequency, monitor}``
    or None. Every argument is a plain value, so ``load_from_checkpoint(path)`` needs nothing else
    (also for checkpoints of the earlier format, whose network settings were named arguments).

    Subclasses say which data they learn from (``accepts``: target kinds of
    :data:`rnnexp.batch.TARGET_KINDS`), whether the head is many-to-one, and how a batch's
    logits give the loss sum, its weight and the correct predictions (:meth:`_sums_of`), and which
    network they run (``network``; ``causal`` for one that must read left to right).
    Per epoch, ``{stage}/loss`` and ``{stage}/acc`` come from those sums; ``train/loss_step``
    is logged on the steps Lightning writes.

    ``gradient_clip_val`` / ``gradient_clip_algorithm`` are for subclasses that optimise
    manually (see :meth:`manual_step`); with automatic optimization clipping is
    ``trainer.gradient_clip_val``. How the optimizer and scheduler are built is
    :class:`rnnexp.models.tasks.optimization.Optimization`.
    """

    accepts: Tuple[str, ...] = ()
    many_to_one: bool
    network: str = "recurrent"
    causal: bool = False

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
        if gradient_clip_val is not None:
            check_number("gradient_clip_val", gradient_clip_val, 0, low_open=True, hint=", or null for no clipping")
        self.net = self.build_net(input_size, num_classes, input_kind, {key: self.hparams[key] for key in network})
        self.sums = EpochSums()
        self.logged_at_checkpoint: Dict[str, float] = {}  # from the checkpoint a run resumed from
        self._penalties: Dict[str, Tensor] = {}  # this training step's AR/TAR terms (SequenceOutput.penalties)

    def build_net(self, input_size: int, num_classes: int, input_kind: Optional[str], network: Dict[str, Any]) -> nn.Module:
        """The network from the data's sizes and the network settings; a task with a network of
        another shape (the encoder-decoder) overrides it."""
        return NETWORKS[self.network].build(input_size, num_classes, input_kind, network, self.many_to_one, self.causal)

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
        TAR; ``SequenceOutput.penalties``) are kept for :meth:`_step` to add to the loss."""
        out = self(inputs, lengths, state)
        if stage == "train" and NETWORKS[self.network].penalties:
            self._penalties = out.penalties
        return out

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
        sums = self.sums.pop(stage, self.trainer.strategy if attached_trainer(self) is not None else None)
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
        # What the loggers held when the checkpoint was written (the end-of-training one: the last
        # epoch's train/*, learning rate, val/*). A run resumed after its training had ended (killed
        # while testing) trains nothing and logs none of them again; train.py reports them from here.
        trainer = attached_trainer(self)
        checkpoint["rnnexp_logged_metrics"] = {} if trainer is None else scalar_metrics(trainer.callback_metrics)

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        self.sums.load(checkpoint.get("rnnexp_epoch_sums"))
        self.logged_at_checkpoint = dict(checkpoint.get("rnnexp_logged_metrics") or {})

    def forward(self, inputs: Tensor, lengths: Optional[Tensor] = None, state=None):
        return self.net(inputs, lengths, state)

    def diagnostic_loss(self, batch: Dict[str, Any]) -> Tensor:
        """The training loss of ``batch`` without logging or metric updates, for diagnostics
        (``rnnexp.callbacks.gradient_through_time``). No carried state."""
        logits, _ = self(batch["inputs"], batch.get("lengths"))
        total, weight, _ = self._sums_of(logits, batch)
        return total / weight.clamp_min(1e-12)
