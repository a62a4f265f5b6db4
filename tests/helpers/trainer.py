"""A small ``pl.Trainer`` for tests that fit a model in-process: CPU, no logger, no bar, no summary."""

from __future__ import annotations

import pytorch_lightning as pl


def small_trainer(root, **kwargs) -> pl.Trainer:
    """``pl.Trainer`` writing under ``root`` with nothing the test did not ask for; ``kwargs`` win."""
    options = dict(default_root_dir=root, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                   enable_model_summary=False)
    options.update(kwargs)
    return pl.Trainer(**options)
