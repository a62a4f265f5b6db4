"""A download folder that disappears again when the download fails.

Without it a failed first run (no network, a wrong mirror) leaves an empty ``data/mnist/``
behind, and the next error is harder to read: the folder exists, so is the data there?
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def download_folder(folder: Path) -> Iterator[Path]:
    """Create ``folder`` (with its parents); if the block raises, remove the folders it created."""
    created = []
    path = Path(folder)
    while not path.exists() and path != path.parent:
        created.append(path)
        path = path.parent
    Path(folder).mkdir(parents=True, exist_ok=True)
    try:
        yield Path(folder)
    except BaseException:
        for path in created:  # deepest first; stop at one that is not empty
            try:
                path.rmdir()
            except OSError:
                break
        raise
