"""The LightningModule base shared by the classifier and the tagger / language model."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import pytorch_lightning as pl
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import Tensor
from torch.optim.lr_scheduler import ReduceLROnPlateau

from rnnexp.errors import ConfigError, UserError, check_choice
from rnnexp.models.losses import sequence_loss
from rnnexp.models.sequence_model import SequenceModel

CLIP_ALGORITHMS = ("norm", "value")


def plain(value: Any) -> Any:
    """OmegaConf containers -> dicts and lists, so checkpoints load with ``weights_only``."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


class RecurrentModule(pl.LightningModule):
    """Builds a :class:`SequenceModel` from plain hyperparameters.

    ``optimizer`` is a ``_partial_`` spec (``{_target_: torch.optim.Adam, _partial_: true, lr: ...}``);
    ``scheduler`` is ``{scheduler: <_partial_ spec>, interval: step|epoch, frequency, monitor}``
    or None. ``vocab`` (the data's token list) is stored so a checkpoint can decode on its own.
    Every argument is a plain value, so ``load_from_checkpoint(path)`` needs nothing else.

    ``gradient_clip_val`` / ``gradient_clip_algorithm`` are for subclasses that optimise
    manually (see :meth:`manual_step`); with automatic optimization clipping is
    ``trainer.gradient_clip_val``.
    """

    many_to_one: bool
    target_kind: str  # what the data must provide: "label" (one per sequence) or "sequence" (one per step)

    def __init__(
        self,
        input_size: int,
        num_classes: int,
        cell: str = "lstm",
        hidden_size: int = 64,
        num_layers: int = 1,
        hidden_sizes: Optional[Sequence[int]] = None,
        bidirectional: bool = False,
        dropout: float = 0.0,
        nonlinearity: str = "tanh",
        learn_initial_state: bool = False,
        init: str = "default",
        forget_bias: Optional[float] = None,
        encoder: str = "onehot",
        embedding_dim: Optional[int] = None,
        pooling: str = "last",
        head_dropout: float = 0.0,
        optimizer: Optional[Dict[str, Any]] = None,
        scheduler: Optional[Dict[str, Any]] = None,
        vocab: Optional[List[str]] = None,
        input_dropout: float = 0.0,
        variational_dropout: bool = False,
        gradient_clip_val: Optional[float] = None,
        gradient_clip_algorithm: str = "norm",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        for key, value in list(self.hparams.items()):
            self.hparams[key] = plain(value)
        check_choice("gradient_clip_algorithm", gradient_clip_algorithm, CLIP_ALGORITHMS)
        if gradient_clip_val is not None and (isinstance(gradient_clip_val, bool) or not gradient_clip_val > 0):
            raise ConfigError("gradient_clip_val", gradient_clip_val, "must be a number > 0, or null for no clipping")
        hidden_sizes = self.hparams.hidden_sizes
        self.net = SequenceModel(
            input_size,
            num_classes,
            many_to_one=self.many_to_one,
            encoder=encoder,
            embedding_dim=embedding_dim,
            pooling=pooling,
            head_dropout=head_dropout,
            cell=cell,
            hidden_size=hidden_size,
            num_layers=num_layers,
            hidden_sizes=hidden_sizes,
            bidirectional=bidirectional,
            dropout=dropout,
            nonlinearity=nonlinearity,
            learn_initial_state=learn_initial_state,
            init=init,
            forget_bias=forget_bias,
            input_dropout=input_dropout,
            variational_dropout=variational_dropout,
        )

    # Each stage runs ``_step(batch, stage)`` per batch and ``_log_epoch(stage)`` at its end;
    # subclasses define those two (epoch metrics come from torchmetrics accumulated in _step).
    def _step(self, batch: Dict[str, Any], stage: str) -> Tensor:
        raise NotImplementedError

    def _log_epoch(self, stage: str) -> Any:
        raise NotImplementedError

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def forward(self, inputs: Tensor, lengths: Optional[Tensor] = None, state=None):
        return self.net(inputs, lengths, state)

    def configure_optimizers(self):
        spec = self.hparams.optimizer
        if not spec or "_target_" not in spec:
            raise ConfigError("optimizer", spec, "pick one with optimizer=adam (or adamw, sgd, rmsprop)")
        try:
            optimizer = instantiate(spec)(self.parameters())
        except (ValueError, TypeError) as exc:  # torch.optim's own range checks, e.g. a negative lr
            raise UserError(f"optimizer: {exc} (in {spec['_target_']}); fix it with optimizer.<name>=...") from exc
        schedule = self.hparams.scheduler
        if not schedule or not schedule.get("scheduler"):
            return optimizer
        spec = dict(schedule["scheduler"])
        if "total_steps" in spec and spec["total_steps"] is None:  # warmup_cosine: the whole run
            spec["total_steps"] = int(self.trainer.estimated_stepping_batches)
        try:
            scheduler = instantiate(spec)(optimizer)
        except (ValueError, TypeError) as exc:
            raise UserError(f"schedule: {exc} (in {schedule['scheduler'].get('_target_')})") from exc
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": schedule.get("interval", "epoch"),
                "frequency": schedule.get("frequency", 1),
                "monitor": schedule.get("monitor", "val/loss"),
            },
        }

    def diagnostic_loss(self, batch: Dict[str, Any]) -> Tensor:
        """The training loss of ``batch`` without logging or metric updates, for diagnostics
        (``rnnexp.callbacks.gradient_through_time``). No carried state."""
        logits, _ = self(batch["inputs"], batch.get("lengths"))
        if self.many_to_one:
            return F.cross_entropy(logits, batch["targets"])
        return sequence_loss(logits, batch["targets"], batch.get("weights"))

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
