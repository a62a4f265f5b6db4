"""Small data files in the real formats, for tests that run configs needing data on disk.

Each data set adds a writer here: ``FIXTURE_WRITERS[name](data_dir)`` writes files where
that data set's config (``data=<name>``) looks for them under ``paths.data_dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict

from tests.helpers.mnist import write_mnist
from tests.helpers.tweets import write_tweets

FIXTURE_WRITERS: Dict[str, Callable[[Path], None]] = {"mnist": write_mnist, "tweets": write_tweets}


def write_all(data_dir: Path) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    for writer in FIXTURE_WRITERS.values():
        writer(data_dir)
    return data_dir
