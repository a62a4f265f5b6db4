"""threads=auto (the default): the idle cores, read from /proc/stat-like counters injected here;
the busier of two samples wins; OMP_NUM_THREADS wins over both."""

import os

import pytest
import torch

from rnnexp.errors import ConfigError
from rnnexp.runtime import threads as threads_mod


def counters(*idle_fractions, step=1000):
    """A ``read()`` whose successive samples show the machine idle for the given fractions."""
    total = idle = 0
    values = [(total, idle)]
    for fraction in idle_fractions:
        total, idle = total + step, idle + int(step * fraction)
        values.append((total, idle))
    it = iter(values)
    return lambda: next(it)


@pytest.fixture
def cores(monkeypatch):
    def set_cores(n):
        monkeypatch.setattr(threads_mod, "_cores", lambda: n)
        monkeypatch.setattr(os, "cpu_count", lambda: n)
    return set_cores


@pytest.mark.parametrize("fractions,expected", [
    ((1.0, 1.0), 4),    # idle machine: every core
    ((0.0, 0.0), 1),    # every core busy: one thread, never zero
    ((0.5, 0.5), 2),    # two of four cores busy
    ((1.0, 0.25), 1),   # a lull, then busy: the busier sample wins
    ((0.74, 0.74), 3),  # 2.96 idle cores round to 3
])
def test_free_cores_counts_the_idle_cores_of_the_busier_sample(cores, fractions, expected):
    cores(4)
    assert threads_mod.free_cores(interval=0, read=counters(*fractions)) == expected


def test_a_real_sample_gives_a_core_count_within_the_affinity():
    found = threads_mod.free_cores(interval=0.01)
    assert 1 <= found <= len(os.sched_getaffinity(0))


def test_auto_is_the_default_and_omp_num_threads_wins(make_cfg, monkeypatch, cores):
    assert make_cfg().threads == "auto"
    cores(4)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads_mod.auto_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(threads_mod, "free_cores", lambda: 2)
    before = torch.get_num_threads()
    try:
        assert threads_mod.set_threads("auto") == 2 and torch.get_num_threads() == 2
        assert threads_mod.set_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="threads"):
        threads_mod.set_threads(0)
