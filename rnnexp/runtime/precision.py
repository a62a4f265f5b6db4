"""``trainer.precision=auto``: bf16-mixed where it is measured faster for this run's model, fp32 elsewhere.

Whether bf16 pays on a CPU is not written in its flags: on one AMD EPYC with AVX-512 BF16 and no
AMX a bf16-mixed LSTM step was 1.3-1.4x slower than fp32, on another of the same family 1.6-1.7x
faster (issue 27), and on a CPU without AVX-512 oneDNN has no bf16 LSTM kernel at all. So on a
CPU ``auto`` measures: a short probe (:func:`measure_speedup`) runs a few forward + backward
steps of a copy of the run's own model on one of its training batches, fp32 and bf16 autocast
interleaved, for about a second, and picks bf16-mixed when it was at least
:data:`MIN_SPEEDUP` times faster (:func:`decide`). The ratio is cached per host and model shape
in ``paths.cache_dir`` (:func:`probe_key`), so the next run of the same model on the same host
starts at once; delete the file to measure again. The probe restores every RNG it touches, so a
run's results do not depend on whether it measured or read the cache. On a GPU ``auto`` keeps
the rule that needs no measurement: bf16-mixed where the GPU supports bf16.
Resolved once, before the Trainer is built, so the run's ``config.yaml`` records the
precision that ran and the log names it, the measured ratio and why. Any other value goes to
Lightning as given.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import torch
from omegaconf import DictConfig, open_dict

from rnnexp.compat.lightning import precision_inputs, unified_precision
from rnnexp.errors import ConfigError

log = logging.getLogger(__name__)

AUTO = "auto"
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # what the CPU may have
FAST_BF16_CPU_FLAG = "amx_bf16"  # the flag the GPU-less fallback trusts when the probe cannot run
# bf16 keeps 8 significant bits; below a 10% speed-up that is not worth it, and the probe's own
# noise on a shared machine is of that order (interleaved steps, about a second).
MIN_SPEEDUP = 1.1
CACHE_FILE = "precision_probe.json"


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
    """``(precision, reason)`` for ``trainer.precision=auto`` on ``accelerator`` from the hardware's
    flags alone: the GPU rule, and the CPU fallback where no probe could run."""
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


def decide(ratio: Optional[float], error: Optional[str] = None) -> Tuple[str, str]:
    """``(precision, reason)`` from a probe's bf16 speed-up ``ratio`` (fp32 time / bf16 time)."""
    if ratio is None:
        return "32-true", f"bf16 did not run on this CPU ({error}); fp32"
    if ratio >= MIN_SPEEDUP:
        return "bf16-mixed", f"a bf16 step of this model was {ratio:.2f}x as fast as fp32 (>= {MIN_SPEEDUP})"
    return "32-true", f"a bf16 step of this model was {ratio:.2f}x as fast as fp32 (< {MIN_SPEEDUP})"


def measure_speedup(model: Any, batch: Dict[str, Any], pairs: int = 6, budget_s: float = 1.0) -> float:
    """fp32 time / bf16-autocast time of forward + backward steps of a deep copy of ``model``
    (its ``diagnostic_loss`` on ``batch``): one warm-up step each, then up to ``pairs`` pairs in
    alternating order (AB BA ...) until ``budget_s`` has passed after two pairs, or after the first
    pair where bf16 is more than twice as slow (emulated bf16: decided); totals, not medians.
    Raises what a bf16 step raises (no bf16 kernel on this CPU)."""
    import torch

    net = copy.deepcopy(model).train()
    params = [p for p in net.parameters() if p.requires_grad]
    device = params[0].device if params else torch.device("cpu")
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) and k != "lengths" else v for k, v in batch.items()}

    def step(bf16: bool) -> float:
        for p in params:
            p.grad = None
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            loss = net.diagnostic_loss(batch)
        loss.float().backward()
        return time.perf_counter() - start

    step(False), step(True)  # warm-up: oneDNN builds its primitives on the first call
    totals, begun = {False: 0.0, True: 0.0}, time.perf_counter()
    for i in range(pairs):
        for bf16 in ((False, True) if i % 2 == 0 else (True, False)):
            totals[bf16] += step(bf16)
        if i >= 1 and time.perf_counter() - begun > budget_s:
            break
        if totals[True] > 2 * totals[False]:  # decisively slower (bf16 emulated): no need for more
            break
    return totals[False] / max(totals[True], 1e-12)


def host_id() -> str:
    """This host as the cache knows it: name, CPU model, torch version and torch threads."""
    import torch

    model_name = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
                break
    return f"{platform.node()}|{model_name or platform.processor()}|torch {torch.__version__}|{torch.get_num_threads()} threads"


def probe_key(model: Any, batch: Dict[str, Any]) -> str:
    """Host and model shape: the model's class, its parameters' shapes and the batch's shapes."""
    import torch

    shapes = [(name, tuple(p.shape)) for name, p in model.named_parameters()]
    inputs = {k: (tuple(v.shape), str(v.dtype)) for k, v in sorted(batch.items()) if isinstance(v, torch.Tensor)}
    text = json.dumps([host_id(), type(model).__qualname__, shapes, inputs], default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _read_cache(path: Path) -> Dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # missing or damaged: measure again


def cached_probe(cache_dir: Optional[Path], key: str, measure: Callable[[], float]) -> Tuple[Optional[float], Optional[str], bool]:
    """``(ratio or None, error, from_cache)``: the cached ratio of ``key``, else ``measure()``
    (an error becomes ``None`` and its first line), written back to ``cache_dir/precision_probe.json``."""
    path = Path(cache_dir) / CACHE_FILE if cache_dir else None
    entries = _read_cache(path) if path else {}
    if key in entries and "ratio" in entries[key]:
        return entries[key]["ratio"], entries[key].get("error"), True
    try:
        ratio, error = float(measure()), None
    except RuntimeError as exc:  # no bf16 kernel here (oneDNN: "could not create a primitive ...")
        ratio, error = None, (str(exc).split(". ")[0].splitlines() or [type(exc).__name__])[0][:120]
    if path:
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            entries[key] = {"ratio": ratio, "error": error, "host": host_id(), "measured": time.strftime("%Y-%m-%d %H:%M:%S")}
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(entries, indent=1, sort_keys=True))
            os.replace(tmp, path)  # atomic: parallel runs never read half a file
    return ratio, error, False


def probe(model: Any, datamodule: Any, cache_dir: Optional[Path]) -> Tuple[str, str]:
    """``(precision, reason)`` for ``auto`` on a CPU from the run's own model and one training batch.
    Every RNG the probe draws from (torch's, for the loader's shuffle and dropout) is restored."""
    import torch

    with torch.random.fork_rng(devices=[]):
        datamodule.setup("fit")
        batch = next(iter(datamodule.train_dataloader()))
        key = probe_key(model, batch)
        ratio, error, cached = cached_probe(cache_dir, key, lambda: measure_speedup(model, batch))
    precision, reason = decide(ratio, error)
    where = f"cached in {Path(cache_dir) / CACHE_FILE}" if cached else "measured now"
    return precision, f"{reason}; {where}"


def resolve_precision(cfg: DictConfig, model: Any = None, datamodule: Any = None) -> str:
    """Replace ``trainer.precision=auto`` in ``cfg`` by what this machine runs best; log the choice.
    With ``model`` and ``datamodule`` (rnnexp.train.build) a CPU run is decided by :func:`probe`."""
    trainer = cfg.get("trainer")
    if trainer is None:
        return "32-true"
    precision = str(trainer.get("precision", "32-true"))
    known = choices()
    if known and precision not in known:
        raise ConfigError("trainer.precision", precision, "choose auto, 32-true or bf16-mixed (or another of "
                          f"Lightning's: {', '.join(v for v in known if v not in (AUTO, '32-true', 'bf16-mixed'))})")
    if precision != AUTO:
        precision = unified_precision(precision)  # "bf16" -> "bf16-mixed": the one name every reader sees
    if precision == AUTO:
        precision, reason = detect(trainer.get("accelerator"))
        accelerator = str(trainer.get("accelerator") or AUTO)
        on_cpu = accelerator == "cpu" or (accelerator == AUTO and not torch.cuda.is_available())
        if on_cpu and model is not None and datamodule is not None:
            paths = cfg.get("paths") or {}
            cache_dir = paths.get("cache_dir") or (Path(paths["log_dir"]) / ".cache" if paths.get("log_dir") else None)
            try:
                precision, reason = probe(model, datamodule, cache_dir)
            except Exception as exc:  # a model or data the probe cannot step: the flags decide
                reason = f"{reason} (no probe: {type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''})"
        with open_dict(cfg):
            cfg.trainer.precision = precision
        log.info("Precision: %s (trainer.precision=auto: %s; trainer.precision=32 forces fp32)", precision, reason)
    else:
        with open_dict(cfg):
            cfg.trainer.precision = precision
        log.info("Precision: %s (trainer.precision)", precision)
    return precision
