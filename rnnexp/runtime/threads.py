"""The ``threads`` setting: torch's CPU threads, a number or ``auto`` (the cores other processes leave idle).

torch starts one thread per core. When another process keeps a core busy, the thread on it
waits for it at every parallel region, and a small model's steps (which synchronise many
times each) ran 17-20x slower with 2 threads than with 1 on our shared 2-core machine
(benchmarks/threads.py, docs/recipes.md): hence the default of 1. Idle cores are read from ``/proc/stat`` over a short interval (while
this process sleeps, so its own work is not counted); elsewhere all cores count as free. An
``OMP_NUM_THREADS`` in the environment (set by a cluster scheduler or a test runner) wins.
"""

from __future__ import annotations

import os
import time
from typing import Any

from rnnexp.errors import ConfigError


def set_threads(threads: Any) -> int:
    """``torch.set_num_threads`` from the ``threads`` setting: ``auto`` or an integer >= 1."""
    import torch

    if threads in (None, "auto"):
        threads = auto_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError("threads", threads, "must be auto or an integer >= 1")
    torch.set_num_threads(threads)
    return threads


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_times():
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]), idle


def auto_threads() -> int:
    """``OMP_NUM_THREADS`` when the environment sets it (a scheduler, a test runner), else :func:`free_cores`."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return free_cores()


def free_cores(interval: float = 0.1) -> int:
    """Cores of this process's affinity that were idle over ``interval`` seconds (at least 1)."""
    cores = _cores()
    try:
        total0, idle0 = _cpu_times()
        time.sleep(interval)
        total1, idle1 = _cpu_times()
    except (OSError, ValueError, IndexError):
        return cores
    if total1 <= total0:
        return cores
    machine = os.cpu_count() or cores
    idle = machine * (idle1 - idle0) / (total1 - total0)  # idle cores of the whole machine
    return max(1, min(cores, int(idle + 0.5)))
