"""Keep the torch (CPU and CUDA) / numpy / Python random states in checkpoints (Lightning saves none of them).

Restoring them on resume gives the same dropout masks and sampling draws as a run that
never stopped. Stored as tensors and plain tuples so checkpoints still load with
``weights_only``.
"""

from __future__ import annotations

import random
from typing import Any, Dict, Optional

import numpy as np
import pytorch_lightning as pl
import torch


def collect_rng_states() -> Dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "python": random.getstate(),
    }
    # Dropout on a GPU draws from the CUDA generators. Only read when CUDA is already in use:
    # get_rng_state_all() would otherwise initialise CUDA (slow, and wrong in a forked worker).
    if torch.cuda.is_initialized():
        states["cuda"] = list(torch.cuda.get_rng_state_all())
    return states


def restore_rng_states(states: Dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    cuda = states.get("cuda")
    if cuda and torch.cuda.is_available():
        # One state per device of the saving machine; a machine with fewer devices restores those it has
        # (a CPU-only machine, none). torch.cuda.set_rng_state defers until CUDA is initialised.
        for device, state in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, device)
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


class RngStateCheckpoint(pl.Callback):
    """Saves what an exact resume needs beyond Lightning's own checkpoint: the RNG states
    and, for a language model reading contiguous streams (truncated BPTT), the state it
    carries from one window to the next.

    Both are restored right before the first training batch after a resume, so nothing
    Lightning does while restarting (building loaders, the sanity check, the module's
    epoch-start reset of the carried state) shifts or clears them. The carried state is
    only put back when the run resumes inside the epoch it was saved in.
    """

    def __init__(self) -> None:
        self._pending: Dict[str, Any] = {}
        self._module: Optional[pl.LightningModule] = None
        self._fit_trainer: Optional[pl.Trainer] = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._fit_trainer, self._module = trainer, pl_module

    def state_dict(self) -> Dict[str, Any]:
        states = collect_rng_states()
        # LanguageModel keeps the detached final state of the last training window here.
        carried = (getattr(self._module, "_states", None) or {}).get("train")
        if carried is not None and self._fit_trainer is not None:
            states["carried"] = {"epoch": self._fit_trainer.current_epoch, "state": carried}
        return states

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self._pending = dict(state_dict or {})

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        restore_rng_states(pending)
        carried = pending.get("carried")
        states = getattr(pl_module, "_states", None)
        if carried is not None and isinstance(states, dict) and carried["epoch"] == trainer.current_epoch:
            states["train"] = _to_device(carried["state"], pl_module.device)


def _to_device(state: Any, device: torch.device) -> Any:
    if isinstance(state, torch.Tensor):
        return state.to(device)
    if isinstance(state, (list, tuple)):
        return type(state)(_to_device(s, device) for s in state)
    return state
