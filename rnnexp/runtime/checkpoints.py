"""Writing checkpoints atomically, and finding and vetting them before Lightning loads them.

Lightning's own save goes through an fsspec transaction whose temporary file is made by
``tempfile.mkstemp()`` in the system temp folder; when that is another file system than the
run directory (a local ``/tmp`` and outputs on a shared disk, as on most clusters) the final
move is a copy, and a kill during it leaves a truncated checkpoint. :class:`AtomicCheckpointIO`
writes beside the target and renames.

Lightning also starts fresh with a warning when ``ckpt_path="last"`` finds nothing, and fails
deep inside ``load_state_dict`` (or, with a same-sized vocabulary, not at all) when a
checkpoint comes from another config. The checks here turn both into one clear line.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from rnnexp.errors import UserError
from rnnexp.runtime.resolvers import check_resumable

log = logging.getLogger(__name__)

# Hyperparameters that may change when a run is continued: they do not change what the
# weights mean.
MAY_DIFFER = {"optimizer", "scheduler"}


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes ``<dir>/.<name>.<pid>.tmp``, fsyncs it and renames it over ``<dir>/<name>``.

    A rename within one directory is atomic, so readers (and a resumed run) see either the
    previous checkpoint or the new one, never part of one. Remote paths (``s3://`` ...) keep
    Lightning's own save.
    """

    def save_checkpoint(self, checkpoint: Dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if "://" in str(path) and not str(path).startswith("file://"):
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        target = Path(str(path).removeprefix("file://"))
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with open(partial, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, target)
        finally:
            if partial.exists():  # the write failed: leave the previous checkpoint as it was
                partial.unlink()


def load_checkpoint(path: Path) -> Dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means the file is not a usable checkpoint
        raise UserError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}; it is truncated or not a "
                        "Lightning checkpoint (pick another file in the run's checkpoints/ folder)") from exc


def latest_checkpoint(run_dir: Path) -> Path:
    """The readable checkpoint of ``run_dir`` with the most optimizer steps (mid-epoch or end of epoch).

    An unreadable one (truncated by a copy that was not atomic, corrupted on disk) is skipped
    with one warning line naming it and the checkpoint used instead. Only ``*.ckpt`` files are
    candidates: the ``.<name>.<pid>.tmp`` a kill left behind in the middle of a write is never read.
    """
    folder = check_resumable(run_dir) / "checkpoints"
    steps, unreadable = {}, {}
    for path in sorted(folder.glob("*.ckpt")):
        try:
            steps[path] = int(load_checkpoint(path).get("global_step", -1))
        except UserError as exc:
            cause = exc.__cause__ or exc
            unreadable[path] = (str(cause).splitlines() or [type(cause).__name__])[0]
    if not steps:
        raise UserError(f"resume={run_dir}: no checkpoint in {folder} can be read; start the run again without resume=")
    chosen = max(steps, key=lambda p: (steps[p], p.stat().st_mtime))
    for path, reason in unreadable.items():
        log.warning("Skipping the unreadable checkpoint %s (%s); resuming from %s (step %d)", path, reason,
                    chosen.name, steps[chosen])
    return chosen


def check_fits(path: Path, hparams: Mapping[str, Any]) -> None:
    """Raise a :class:`UserError` naming every hyperparameter where the checkpoint and the config differ."""
    checkpoint = load_checkpoint(path)
    if "state_dict" not in checkpoint:
        raise UserError(f"{path} holds no model weights (no state_dict); it is not a Lightning checkpoint")
    saved = checkpoint.get("hyper_parameters") or {}
    differ = [k for k in hparams if k not in MAY_DIFFER and k in saved and saved[k] != hparams[k]]
    if differ:
        shown = "; ".join(_difference(k, saved[k], hparams[k]) for k in differ)
        raise UserError(f"checkpoint {path} does not fit this config: {shown}. Use the overrides it was trained with "
                        "(its run directory's .hydra/overrides.yaml)")


def _difference(key: str, there: Any, here: Any) -> str:
    if key == "vocab" and isinstance(there, list) and isinstance(here, list):
        first = next((i for i, (a, b) in enumerate(zip(there, here)) if a != b), min(len(there), len(here)))
        return (f"the vocabulary differs ({len(there)} tokens there, {len(here)} here; first difference at index "
                f"{first}): train on the same data")
    return f"model.{key} is {_short(there)} there, {_short(here)} here"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
