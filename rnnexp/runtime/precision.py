"""``trainer.precision=auto``: bf16-mixed where the hardware computes in bf16, fp32 elsewhere.

bf16 only pays where the hardware multiplies in it fast: CPUs with AMX (``amx_bf16`` in
``/proc/cpuinfo``) and GPUs with bf16 support. AVX-512 BF16 alone is not enough: on such a CPU
(``avx512_bf16`` without ``amx_bf16``, oneDNN ISA "AVX 10.1") a bf16 matmul ran at half the fp32
rate and a bf16-mixed LSTM/GRU step was 1.3-1.4x slower than fp32 (docs/precision.md). So
``auto`` picks bf16-mixed only with AMX or a bf16 GPU, fp32 elsewhere.
Resolved once, before the Trainer is built, so the run's ``config.yaml`` records the
precision that ran and the log names it and why. Any other value goes to Lightning as given.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Tuple

import torch
from omegaconf import DictConfig, open_dict

from rnnexp.compat.lightning import precision_inputs
from rnnexp.errors import ConfigError

log = logging.getLogger(__name__)

AUTO = "auto"
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # what the CPU may have
FAST_BF16_CPU_FLAG = "amx_bf16"  # what auto needs


def cpu_bf16_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> Tuple[str, ...]:
    """The CPU's bf16 flags among :data:`BF16_CPU_FLAGS` (empty where the file is missing)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return ()
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
    return tuple(flag for flag in BF16_CPU_FLAGS if flag in flags)


def detect(accelerator: Optional[str]) -> Tuple[str, str]:
    """``(precision, reason)`` for ``trainer.precision=auto`` on ``accelerator``."""
    accelerator = str(accelerator or AUTO)
    cuda = accelerator in ("gpu", "cuda") or (accelerator == AUTO and torch.cuda.is_available())
    if cuda:
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16-mixed", f"GPU {torch.cuda.get_device_name()} supports bf16"
        return "32-true", "no bf16 support on the GPU"
    if accelerator not in ("cpu", AUTO):
        return "32-true", f"accelerator={accelerator}"
    flags = cpu_bf16_flags()
    if FAST_BF16_CPU_FLAG in flags:
        return "bf16-mixed", f"the CPU has {', '.join(flags)}"
    if flags:
        return "32-true", f"the CPU has {', '.join(flags)} but no {FAST_BF16_CPU_FLAG}: bf16 would be slower"
    return "32-true", f"the CPU has none of {', '.join(BF16_CPU_FLAGS)} (bf16 would be emulated)"


def choices() -> Tuple[str, ...]:
    """``auto`` and every value Lightning's Trainer takes (its own list, where this Lightning has one)."""
    values = precision_inputs()
    if not values:
        return ()
    return (AUTO, *values)


def resolve_precision(cfg: DictConfig) -> str:
    """Replace ``trainer.precision=auto`` in ``cfg`` by what this machine runs best; log the choice."""
    trainer = cfg.get("trainer")
    if trainer is None:
        return "32-true"
    precision = str(trainer.get("precision", "32-true"))
    known = choices()
    if known and precision not in known:
        raise ConfigError("trainer.precision", precision, "choose auto, 32-true or bf16-mixed (or another of "
                          f"Lightning's: {', '.join(v for v in known if v not in (AUTO, '32-true', 'bf16-mixed'))})")
    if precision == AUTO:
        precision, reason = detect(trainer.get("accelerator"))
        with open_dict(cfg):
            cfg.trainer.precision = precision
        log.info("Precision: %s (trainer.precision=auto: %s; trainer.precision=32 forces fp32)", precision, reason)
    else:
        log.info("Precision: %s (trainer.precision)", precision)
    return precision
