"""The guard of tests on the real data sets: skip where the data is missing, fail where CI has it.

Use the marker, ``@pytest.mark.shared_data("mnist")`` (a path under :data:`SHARED_DATA`), never a
plain ``skipif``: the marker obeys ``RNNEXP_REQUIRE_DATA=1``, which ``.ci/run`` sets.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REQUIRE_DATA_ENV = "RNNEXP_REQUIRE_DATA"


def require_shared_data(path: Path) -> None:
    """Skip when a real data set is missing, or fail when ``RNNEXP_REQUIRE_DATA=1``: CI has the
    data, so there a missing file is a broken machine, not a reason to pass silently."""
    if path.exists():
        return
    if os.environ.get(REQUIRE_DATA_ENV) == "1":
        pytest.fail(f"{path} is missing and {REQUIRE_DATA_ENV}=1", pytrace=False)
    pytest.skip(f"{path} is not on this machine ({REQUIRE_DATA_ENV}=1 makes this a failure)")
