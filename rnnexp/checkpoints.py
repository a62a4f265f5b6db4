"""Finding and vetting checkpoints before Lightning loads them.

Lightning starts fresh with a warning when ``ckpt_path="last"`` finds nothing, and fails
deep inside ``load_state_dict`` (or, with a same-sized vocabulary, not at all) when a
checkpoint comes from another config. These checks turn both into one clear line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping

import torch

from rnnexp.errors import UserError

# Hyperparameters that may change when a run is continued: they do not change what the
# weights mean.
MAY_DIFFER = {"optimizer", "scheduler"}


def load_checkpoint(path: Path) -> Dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means the file is not a usable checkpoint
        raise UserError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}; it is truncated or not a "
                        "Lightning checkpoint (pick another file in the run's checkpoints/ folder)") from exc


def latest_checkpoint(run_dir: Path) -> Path:
    """The checkpoint of ``run_dir`` with the most optimizer steps (mid-epoch or end of epoch)."""
    folder = Path(run_dir) / "checkpoints"
    candidates = sorted(folder.glob("*.ckpt")) if folder.is_dir() else []
    if not Path(run_dir).is_dir():
        raise UserError(f"resume={run_dir}: no such run directory; give a folder under outputs/<task>/runs/")
    if not candidates:
        raise UserError(f"resume={run_dir}: no checkpoint in {folder}; the run stopped before its first checkpoint, "
                        "start it again without resume=")
    steps = {path: int(load_checkpoint(path).get("global_step", -1)) for path in candidates}
    return max(candidates, key=lambda p: (steps[p], p.stat().st_mtime))


def check_fits(path: Path, hparams: Mapping[str, Any]) -> None:
    """Raise a :class:`UserError` naming every hyperparameter where the checkpoint and the config differ."""
    saved = load_checkpoint(path).get("hyper_parameters") or {}
    differ = [k for k in hparams if k not in MAY_DIFFER and k in saved and saved[k] != hparams[k]]
    if differ:
        shown = "; ".join(f"model.{k} is {_short(saved[k])} there, {_short(hparams[k])} here" for k in differ)
        raise UserError(f"checkpoint {path} does not fit this config: {shown}. Use the overrides it was trained with "
                        "(its run directory's .hydra/overrides.yaml)")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
