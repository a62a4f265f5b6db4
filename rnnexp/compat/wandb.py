"""wandb and Lightning's ``WandbLogger``: the one init argument rnnexp takes back out."""

from __future__ import annotations

from typing import Any


def drop_anonymous_argument(logger: Any) -> None:
    """Lightning always passes ``anonymous=None`` to ``wandb.init``, which wandb >= 0.2x answers with a
    deprecation warning on every run ("The anonymous setting has no effect"); remove it before
    the run starts (``WandbLogger._wandb_init``, the keyword arguments it keeps for ``wandb.init``)."""
    init_kwargs = getattr(logger, "_wandb_init", None)
    if isinstance(init_kwargs, dict) and init_kwargs.get("anonymous") is None:
        init_kwargs.pop("anonymous", None)


def check() -> None:
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import WandbLogger

    logger = WandbLogger(mode="disabled")
    if not isinstance(getattr(logger, "_wandb_init", None), dict):
        raise RuntimeError(f"pytorch-lightning {pl.__version__}'s WandbLogger has no _wandb_init dict: "
                           "update rnnexp/compat/wandb.py")
