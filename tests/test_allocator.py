"""allocator=cached: glibc keeps a freed large tensor's memory in the heap for the next step."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rnnexp.runtime.allocator import _libc, set_allocator
from rnnexp.errors import ConfigError

# In a fresh process (the setting lasts for the process): allocate and free a 200 MB tensor,
# as a pixel-MNIST step does with the LSTM's gates, and read glibc's own accounting of it.
PROBE = r"""
import ctypes, json, sys
import torch
from rnnexp.runtime.allocator import set_allocator

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Mallinfo2
applied = set_allocator(sys.argv[1])
x = torch.empty(50_000_000)              # 200 MB
held = libc.mallinfo2()
del x
freed = libc.mallinfo2()
print(json.dumps({"applied": applied, "mapped_while_held": held.hblkhd, "heap_free_after": freed.fordblks}))
"""


def probe(allocator: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, allocator], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(_libc() is None or not hasattr(_libc(), "mallinfo2"), reason="glibc's mallopt/mallinfo2 are what this tests")
def test_cached_keeps_a_freed_large_tensor_in_the_heap_and_system_unmaps_it():
    cached, system = probe("cached"), probe("system")
    assert cached["applied"] and not system["applied"]
    # glibc's default: a 200 MB block is its own mmap while held, unmapped when freed.
    assert system["mapped_while_held"] >= 200_000_000 and system["heap_free_after"] < 200_000_000
    # cached: the block came from the heap and stays there, free for the next step's tensors.
    assert cached["mapped_while_held"] < 200_000_000 and cached["heap_free_after"] >= 200_000_000


def test_an_unknown_allocator_is_one_config_error():
    with pytest.raises(ConfigError, match="allocator='tcmalloc' is invalid: choose one of cached, system"):
        set_allocator("tcmalloc")
