"""The ``allocator`` setting: whether glibc keeps the memory of freed tensors for the next step.

torch's CPU tensors come from ``malloc``. glibc serves blocks above its mmap threshold (at most
32 MiB by default) with a fresh ``mmap`` and gives them back with ``munmap`` when freed, and
trims the heap's free top above 128 KiB. A training step allocates the same large buffers
every time (the fused LSTM's gates over a long sequence: 205 MB for pixel MNIST's 784 steps
x 128 rows, 41 MB for a tweets window of 64 x 100 x 1600), so each step maps them again and
the kernel zeroes every page on first touch: 45% of a pixel-MNIST run's CPU time and 13% of
``tweets_awd``'s was system time. ``cached`` raises both thresholds with ``mallopt`` (the
blocks stay in the heap and are reused, as CUDA's caching allocator keeps GPU memory), which
cut the system time of 20 pixel-MNIST training steps by 85% and their CPU time to 0.63x
(``benchmarks/allocator.py``, docs/recipes.md). The price is
that the process keeps its peak heap size until it exits. ``system`` leaves glibc's defaults.

Other C libraries (macOS, musl) have no ``mallopt``: there ``cached`` does nothing. For the
same effect from outside, ``LD_PRELOAD`` jemalloc or tcmalloc, as PyTorch's CPU tuning guide
suggests.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

from rnnexp.errors import check_choice

ALLOCATORS = ("cached", "system")

# mallopt's parameters (malloc.h) and the values of ``cached``: blocks up to 1 GiB from the
# heap, and the heap's free top kept up to the largest value an int holds (2 GiB).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
CACHED = {M_MMAP_THRESHOLD: 1 << 30, M_TRIM_THRESHOLD: (1 << 31) - 1}

log = logging.getLogger(__name__)


def _libc():
    """glibc when this process runs on it (it has ``mallopt``), else None."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # glibc only
        return libc if hasattr(libc, "mallopt") else None
    except (OSError, TypeError, AttributeError):
        return None


def set_allocator(allocator: str) -> bool:
    """Apply the ``allocator`` setting to this process (and the workers it forks); True when
    glibc took the ``cached`` thresholds. ``system`` changes nothing: it cannot undo an earlier
    ``cached`` in the same process (a later run in a multirun keeps it)."""
    check_choice("allocator", allocator, ALLOCATORS)
    if allocator == "system":
        return False
    libc = _libc()
    if libc is None:
        log.debug("allocator=cached: this C library has no mallopt; nothing changed")
        return False
    accepted = all(libc.mallopt(ctypes.c_int(option), ctypes.c_int(value)) == 1 for option, value in CACHED.items())
    if not accepted:
        log.warning("allocator=cached: glibc refused a mallopt threshold; freed blocks may go back to the system")
    return accepted
