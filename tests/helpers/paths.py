"""Where things are: the repo root, its ``conf/``, and the real data sets shared beside the clone."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
# The real data sets (tweets, MNIST): $RNNEXP_DATA_DIR, as for train.py, else ../shared/data beside the clone.
SHARED_DATA = Path(os.environ.get("RNNEXP_DATA_DIR") or ROOT.parent / "shared" / "data")
