"""What bf16 can run on this CPU, for tests that need a kernel the host may lack."""

from __future__ import annotations

import functools

import pytest
import torch


@functools.lru_cache(maxsize=None)
def lstm_runs_in_bf16() -> bool:
    """oneDNN has no bf16 LSTM primitive on CPUs without AVX-512 BF16 or AMX ("could not create a
    primitive descriptor for the LSTM forward propagation primitive"); the bf16 LSTM is only
    testable where it exists. (trainer.precision=auto's probe sees the same error and keeps fp32.)"""
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            torch.nn.LSTM(2, 2)(torch.zeros(1, 1, 2))
        return True
    except RuntimeError:
        return False


NO_BF16_LSTM = pytest.mark.skipif(not lstm_runs_in_bf16(), reason="no bf16 LSTM kernel on this CPU (oneDNN)")
