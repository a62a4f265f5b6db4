"""The ``threads`` setting: torch's CPU threads, a number or ``auto`` (the default: the cores other
processes leave idle).

torch starts one thread per core. When another process keeps a core busy, the thread on it
waits for it at every parallel region, and a small model's steps (which synchronise many
times each) ran 17-20x slower with 2 threads than with 1 on our shared 2-core machine
(benchmarks/threads.py, docs/recipes.md); on the same machine idle, 1 thread cost 1.6x
(3 epochs of ``experiment=mnist_row_lstm``: 84.6 s with 1 thread, 52.5 s with 2; issue 27).
So neither number is right for both: ``auto`` counts the idle cores, from ``/proc/stat`` over
two short samples while this process sleeps (its own work is not counted; the busier sample
wins, so a moment's lull does not read as an idle core); elsewhere all cores count as free.
An ``OMP_NUM_THREADS`` in the environment (set by a cluster scheduler or a test runner) wins.
Processes started at the same instant (a parallel multirun launcher) each see the same idle
cores: give them ``threads=1`` or set ``OMP_NUM_THREADS``.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Optional, Tuple

from rnnexp.errors import ConfigError, is_int


def set_threads(threads: Any) -> int:
    """``torch.set_num_threads`` from the ``threads`` setting: ``auto`` or an integer >= 1."""
    import torch

    if threads in (None, "auto"):
        threads = auto_threads()
    if not is_int(threads) or threads < 1:
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


def free_cores(interval: float = 0.1, samples: int = 2,
               read: Optional[Callable[[], Tuple[int, int]]] = None) -> int:
    """Cores of this process's affinity that were idle over each of ``samples`` intervals of
    ``interval`` seconds, the fewest of the samples (at least 1). ``read``: ``(total, idle)``
    jiffies of the whole machine (``/proc/stat``)."""
    read = read or _cpu_times
    cores = _cores()
    machine = os.cpu_count() or cores
    found = cores
    try:
        before = read()
        for _ in range(samples):
            time.sleep(interval)
            after = read()
            (total0, idle0), (total1, idle1), before = before, after, after
            if total1 > total0:
                idle = machine * (idle1 - idle0) / (total1 - total0)  # idle cores of the whole machine
                found = min(found, max(1, min(cores, int(idle + 0.5))))
    except (OSError, ValueError, IndexError):
        return cores
    return found
