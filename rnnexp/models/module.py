"""The LightningModule base shared by the classifier and the tagger / language model."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import Tensor

from rnnexp.errors import ConfigError, UserError
from rnnexp.models.sequence_model import SequenceModel


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
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        for key, value in list(self.hparams.items()):
            self.hparams[key] = plain(value)
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
        )

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
        try:
            scheduler = instantiate(schedule["scheduler"])(optimizer)
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
