"""Waiting for something that happens in another process, with a deadline that only ends a hung test."""

from __future__ import annotations

import time


def wait_for(predicate, timeout: float = 120, what: str = "a condition"):
    """Poll ``predicate`` until it returns something true; raise after ``timeout`` seconds.

    The deadline is not an assertion about speed: it only turns a hang into a failure.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
