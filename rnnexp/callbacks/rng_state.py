"""Keep the torch / numpy / Python random states in checkpoints (Lightning saves none of them).

Restoring them on resume gives the same dropout masks and sampling draws as a run that
never stopped. Stored as tensors and plain tuples so checkpoints still load with
``weights_only``.
"""

from __future__ import annotations

import random
from typing import Any, Dict

import numpy as np
import pytorch_lightning as pl
import torch


def collect_rng_states() -> Dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "python": random.getstate(),
    }


def restore_rng_states(states: Dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


class RngStateCheckpoint(pl.Callback):
    """Saves the RNG states with every checkpoint; restores them right before the first
    training batch after a resume, so nothing Lightning does while restarting (building
    loaders, the sanity check) shifts the streams."""

    def __init__(self) -> None:
        self._pending: Dict[str, Any] = {}

    def state_dict(self) -> Dict[str, Any]:
        return collect_rng_states()

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self._pending = dict(state_dict or {})

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._pending:
            restore_rng_states(self._pending)
            self._pending = {}
